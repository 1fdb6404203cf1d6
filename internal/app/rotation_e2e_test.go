package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

func TestRotateKeysWithOverlapEndToEnd(t *testing.T) {
	h := start(t, nil)
	old := h.newKeyClient(inventory.Registration{Scope: "invoices:read", AllowBearer: true})
	key2, err := sdk.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	set2, err := sdk.PublicJWKS(key2, "k2")
	if err != nil {
		t.Fatal(err)
	}
	next := clientKey{id: old.id, key: key2, kid: "k2"}
	if r := h.bearerToken(next); r.status != http.StatusUnauthorized || r.body["error"] != "invalid_client" {
		t.Fatalf("the new key before rotation: %d %s", r.status, r.raw)
	}

	code, b := h.adminDo("POST", "/clients/"+old.id+"/rotate", map[string]any{"jwks": json.RawMessage(set2), "overlap_seconds": 3600})
	if code != http.StatusOK {
		t.Fatalf("rotate: %d %s", code, b)
	}
	var v adminapi.ClientView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.PreviousCredential == nil || v.PreviousCredential.RetiresAt.Sub(time.Now()) < 59*time.Minute || v.ClientSecret != "" {
		t.Fatalf("rotation answer: previous %+v secret %q", v.PreviousCredential, v.ClientSecret)
	}
	// During the overlap both keys authenticate.
	for name, k := range map[string]clientKey{"old": old, "new": next} {
		if r := h.bearerToken(k); r.status != http.StatusOK {
			t.Errorf("%s key during the overlap: %d %s", name, r.status, r.raw)
		}
	}
	// A second rotation while the overlap is open is refused with a way out.
	code, b = h.adminDo("POST", "/clients/"+old.id+"/rotate", map[string]any{"jwks": json.RawMessage(set2)})
	if p := (httpResult{body: b}).problem(t); code != http.StatusConflict || !strings.HasSuffix(p.Type, "rotation-open") || !strings.Contains(p.Detail, "--retire-previous") {
		t.Fatalf("overlapping rotation: %d %s", code, b)
	}
	// Retiring the old key ends it at once.
	if code, b = h.adminDo("POST", "/clients/"+old.id+"/rotate", map[string]any{"retire_previous": true}); code != http.StatusOK {
		t.Fatalf("retire_previous: %d %s", code, b)
	}
	if r := h.bearerToken(old); r.status != http.StatusUnauthorized || r.body["error"] != "invalid_client" {
		t.Errorf("old key after retirement: %d %s", r.status, r.raw)
	}
	if r := h.bearerToken(next); r.status != http.StatusOK {
		t.Errorf("new key after retirement: %d %s", r.status, r.raw)
	}
	if code, b = h.adminDo("POST", "/clients/"+old.id+"/rotate", map[string]any{"retire_previous": true}); code != http.StatusConflict {
		t.Errorf("retire_previous with nothing open: %d %s", code, b)
	}

	var actions []string
	for _, ev := range h.events() {
		if ev.Target == old.id {
			actions = append(actions, ev.Action)
		}
	}
	if !slices.Contains(actions, "client.rotate") || !slices.Contains(actions, "client.rotation.retire") {
		t.Errorf("admin events of the client: %v", actions)
	}
}

func TestRotateRefusalsEndToEnd(t *testing.T) {
	h := start(t, nil)
	k := h.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	for _, tt := range []struct {
		name  string
		body  string
		code  int
		field string
	}{
		{"no jwks", `{}`, 400, "jwks"},
		{"jwks not a set", `{"jwks":{"keys":"nope"}}`, 400, "jwks"},
		{"overlap too long", `{"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},"overlap_seconds":99999999}`, 400, ""},
		{"overlap negative", `{"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},"overlap_seconds":-5}`, 400, ""},
		{"retire with a new key", `{"retire_previous":true,"jwks":{"keys":[]}}`, 400, ""},
		{"unknown field", `{"secret":"x"}`, 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.adminRaw("POST", "/clients/"+k.id+"/rotate", "application/json", []byte(tt.body))
			if r.status != tt.code {
				t.Fatalf("status %d, want %d: %s", r.status, tt.code, r.body)
			}
			p := r.problem(t)
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
				t.Errorf("problem errors %+v, want field %s", p.Errors, tt.field)
			}
			if v := h.clientView(k.id); v.PreviousCredential != nil {
				t.Error("a refused rotation opened an overlap")
			}
		})
	}
	if code, b := h.adminDo("POST", "/clients/kb-nosuchclient/rotate", map[string]any{}); code != http.StatusNotFound {
		t.Errorf("unknown client: %d %s", code, b)
	}
}

func TestRotateLegacySecretEndToEnd(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		staticRoutes(c)
		c.Governance.SweepInterval = time.Second
	})
	legacy := g.register(inventory.Registration{Scope: "legacy:read", AuthMethod: "client_secret_basic", DPoPBound: true})
	code, b := g.adminDo("POST", "/clients/"+legacy.ClientID+"/rotate", map[string]any{"overlap_seconds": 4})
	if code != http.StatusOK {
		t.Fatalf("rotate: %d %s", code, b)
	}
	var v adminapi.ClientView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.ClientSecret, "kbs_") || v.ClientSecret == legacy.ClientSecret {
		t.Fatalf("rotation did not return a new secret: %q", v.ClientSecret)
	}
	retires := v.PreviousCredential.RetiresAt
	// The new secret is never shown again.
	if after := g.clientView(legacy.ClientID); after.ClientSecret != "" {
		t.Error("GET shows the secret")
	}
	for name, secret := range map[string]string{"old": legacy.ClientSecret, "new": v.ClientSecret} {
		if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": secret}); r.status != 200 {
			t.Errorf("%s static key during the overlap: %d %s", name, r.status, r.body)
		}
	}
	time.Sleep(time.Until(retires) + 50*time.Millisecond)
	if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret}); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer realm="keybound-gateway"` {
		t.Errorf("old static key after the overlap: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": v.ClientSecret}); r.status != 200 {
		t.Errorf("new static key after the overlap: %d %s", r.status, r.body)
	}
	// The sweep drops the retired secret and records it.
	waitUntil(t, 10*time.Second, "the sweep to retire the previous secret", func() bool {
		return g.clientView(legacy.ClientID).PreviousCredential == nil
	})
	found := false
	for _, ev := range g.events() {
		found = found || ev.Target == legacy.ClientID && ev.Action == "client.rotation.retire" && ev.Actor == "keybound-governance"
	}
	if !found {
		t.Error("no client.rotation.retire event by keybound-governance")
	}
}

func TestDownscopeEndToEnd(t *testing.T) {
	g := startGateway(t, nil)
	c, ck, dkey := g.dpopClient("invoices:read invoices:write reports:read")
	if r := g.send(c, "GET", "/invoices/1", nil); r.status != 200 {
		t.Fatalf("read before downscope: %d %s", r.status, r.body)
	}
	// The usage rollups see the call once the audit batch is stored; until
	// then every scope is unused, and removing them all is refused.
	var (
		code int
		b    []byte
	)
	waitUntil(t, 10*time.Second, "the usage rollups to record the read", func() bool {
		code, b = g.adminDo("POST", "/clients/"+ck.id+"/downscope", map[string]any{"unused": true})
		return code != http.StatusBadRequest || !strings.Contains(string(b), "would remove every scope")
	})
	if code != http.StatusOK {
		t.Fatalf("downscope --unused dry run: %d %s", code, b)
	}
	var d inventory.Downscoped
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Applied || !slices.Equal(d.Removed, []string{"invoices:write", "reports:read"}) || !slices.Equal(d.After, []string{"invoices:read"}) {
		t.Fatalf("dry run = %+v, want invoices:write and reports:read removed, not applied", d)
	}
	if v := g.clientView(ck.id); v.Scope != "invoices:read invoices:write reports:read" {
		t.Fatalf("a dry run changed the scopes: %q", v.Scope)
	}

	if r := g.send(c, "POST", "/invoices/1", nil); r.status != 200 {
		t.Fatalf("write before downscope: %d %s", r.status, r.body)
	}
	code, b = g.adminDo("POST", "/clients/"+ck.id+"/downscope", map[string]any{"remove": []string{"invoices:write"}, "apply": true})
	if code != http.StatusOK {
		t.Fatalf("downscope: %d %s", code, b)
	}
	// The token still carries invoices:write, but the identity no longer
	// holds it: refused at once.
	r := g.send(c, "POST", "/invoices/1", nil)
	if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") || !strings.Contains(r.header.Get("WWW-Authenticate"), "removed from this identity") {
		t.Errorf("write after downscope: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := g.send(c, "GET", "/invoices/1", nil); r.status != 200 {
		t.Errorf("read after downscope: %d %s", r.status, r.body)
	}
	// Introspection no longer reports the removed scope either.
	rs := g.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	held := g.tokenFor(ck, dkey)
	if got := g.introspect(rs, held); got["active"] != true || got["scope"] != "invoices:read reports:read" {
		t.Errorf("introspection after downscope: %v", got)
	}

	for _, tt := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"scope not granted", map[string]any{"remove": []string{"payroll:read"}}, "remove[0]"},
		{"every scope", map[string]any{"remove": []string{"invoices:read", "reports:read"}}, "remove"},
		{"nothing named", map[string]any{}, ""},
	} {
		code, b := g.adminDo("POST", "/clients/"+ck.id+"/downscope", tt.body)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", tt.name, code, b)
			continue
		}
		if p := (httpResult{body: b}).problem(t); tt.want != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.want) {
			t.Errorf("%s: errors %+v, want field %s", tt.name, p.Errors, tt.want)
		}
	}
	if v := g.clientView(ck.id); v.Scope != "invoices:read reports:read" {
		t.Errorf("scopes after refused downscopes: %q", v.Scope)
	}
}

func TestExpiredButStillUsedIsAudited(t *testing.T) {
	g := startGateway(t, staticRoutes)
	expires := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	short := g.newKeyClient(inventory.Registration{Scope: "invoices:read", ExpiresAt: expires})
	dkey := newEC(t)
	tok := g.tokenFor(short, dkey)
	legacy := g.register(inventory.Registration{Scope: "legacy:read", AuthMethod: "client_secret_basic", DPoPBound: true, ExpiresAt: expires})
	if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret}); r.status != 200 {
		t.Fatalf("static key before expiry: %d %s", r.status, r.body)
	}
	time.Sleep(time.Until(expires) + 50*time.Millisecond)

	u := g.gw + "/invoices/1"
	r := g.send(nil, "GET", "/invoices/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, tok)})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "expired") {
		t.Fatalf("token of an expired identity: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret}); r.status != http.StatusUnauthorized {
		t.Fatalf("static key of an expired identity: %d %s", r.status, r.body)
	}
	for _, id := range []string{short.id, legacy.ClientID} {
		var denied map[string]any
		waitUntil(t, 5*time.Second, "the refusal of "+id+" in the audit file", func() bool {
			for _, ev := range g.auditEvents(id) {
				if ev["decision"] == "deny" {
					denied = ev
				}
			}
			return denied != nil
		})
		if denied["reason"] != "client_expired" || denied["owner"] != "team-a@example.com" {
			t.Errorf("audit event of the expired identity %s: %v", id, denied)
		}
	}
	// The admin API finds them by reason once they are stored.
	got := map[string]bool{}
	waitUntil(t, 5*time.Second, "both refusals in the store", func() bool {
		clear(got)
		for _, ev := range g.auditEventsAPI(url.Values{"reason": {"client_expired"}}) {
			if ev.Reason != "client_expired" {
				t.Fatalf("the reason filter returned %+v", ev)
			}
			got[ev.ClientID] = true
		}
		return len(got) == 2
	})
	if !got[short.id] || !got[legacy.ClientID] {
		t.Errorf("clients of client_expired events: %v", got)
	}
}

// TestDownscopeAdminScope: removing keybound:admin from an identity stops
// its admin tokens at once, before they expire.
func TestDownscopeAdminScope(t *testing.T) {
	h := start(t, nil)
	other := h.newKeyClient(inventory.Registration{Scope: "keybound:admin reports:read"})
	cfg := &sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: other.id, Key: other.key, KeyID: other.kid, DPoP: true, Scopes: []string{"keybound:admin"}, HTTPClient: h.httpClient(nil)}
	admin2 := cfg.Client(t.Context())
	get := func() int {
		resp, err := admin2.Get(h.issuer + adminapi.Prefix + "/clients?limit=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("second admin before downscope: %d", code)
	}
	if code, b := h.adminDo("POST", "/clients/"+other.id+"/downscope", map[string]any{"remove": []string{"keybound:admin"}, "apply": true}); code != http.StatusOK {
		t.Fatalf("downscope: %d %s", code, b)
	}
	if code := get(); code != http.StatusForbidden {
		t.Errorf("second admin after its admin scope was removed: %d, want 403", code)
	}
}
