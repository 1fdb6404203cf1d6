package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

// TestAdminAPIAuthentication sends admin calls with every kind of wrong
// credential and checks the challenge and problem a caller sees.
func TestAdminAPIAuthentication(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()

	// A DPoP-bound client without the admin scope, its token audience the
	// issuer (no audiences registered).
	plain := h.newKeyClient(inventory.Registration{Scope: "reports:read"})
	plainCfg := &sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: plain.id, Key: plain.key, KeyID: plain.kid, DPoP: true, HTTPClient: h.httpClient(nil)}
	plainClient := plainCfg.Client(ctx)

	// A client whose tokens are for another audience.
	api := h.newKeyClient(inventory.Registration{Scope: "keybound:admin", Audiences: []string{"https://api.example.com"}})
	apiCfg := &sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: api.id, Key: api.key, KeyID: api.kid, DPoP: true, HTTPClient: h.httpClient(nil)}

	// The admin identity's own DPoP-bound token, to present the wrong way.
	d, err := app.LoadAdmin(h.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sdk.LoadPrivateKey(d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	adminTok, err := (&sdk.Config{TokenURL: d.TokenEndpoint, ClientID: d.ClientID, Key: key, KeyID: d.KeyID, Scopes: []string{adminapi.Scope}, DPoP: true, HTTPClient: h.httpClient(nil)}).TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}

	// An admin identity registered for unbound bearer tokens: its token
	// carries the admin scope, but a bearer token must never administer.
	bearer := h.newKeyClient(inventory.Registration{Scope: "keybound:admin", AllowBearer: true})
	bearerClient := (&sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: bearer.id, Key: bearer.key, KeyID: bearer.kid, HTTPClient: h.httpClient(nil)}).Client(ctx)

	tests := []struct {
		name       string
		client     *http.Client
		headers    map[string]string
		wantStatus int
		wantCode   string // "" for no error code
		wantScheme string
	}{
		{"no Authorization", nil, nil, 401, "", "Bearer"},
		{"garbage bearer token", nil, map[string]string{"Authorization": "Bearer not-a-token"}, 401, "invalid_token", "Bearer"},
		// RFC 6750 section 3.1: a scheme this resource does not accept is
		// answered like no credentials at all.
		{"unknown scheme", nil, map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="}, 401, "", "Bearer"},
		{"scheme without a token", nil, map[string]string{"Authorization": "Bearer"}, 400, "invalid_request", "Bearer"},
		{"DPoP-bound admin token sent as Bearer", nil, map[string]string{"Authorization": "Bearer " + adminTok.AccessToken}, 401, "invalid_token", "DPoP"},
		{"DPoP-bound admin token without a proof", nil, map[string]string{"Authorization": "DPoP " + adminTok.AccessToken}, 401, "invalid_dpop_proof", "DPoP"},
		{"valid DPoP token without the admin scope", plainClient, nil, 403, "insufficient_scope", "DPoP"},
		{"valid DPoP token for another audience", apiCfg.Client(ctx), nil, 401, "invalid_token", "DPoP"},
		{"unbound bearer token with the admin scope", bearerClient, nil, 403, "insufficient_scope", "Bearer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.client, "GET", adminapi.Prefix+"/clients", "", nil, tt.headers)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			p := r.problem(t)
			if p.Status != tt.wantStatus || p.Code != tt.wantCode || p.Detail == "" || !strings.HasPrefix(p.Type, "urn:keybound:problem:") {
				t.Errorf("problem = %+v, want status %d error %q with a detail", p, tt.wantStatus, tt.wantCode)
			}
			wa := r.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, tt.wantScheme+" ") {
				t.Errorf("WWW-Authenticate = %q, want scheme %s", wa, tt.wantScheme)
			}
			if !strings.Contains(wa, `realm="keybound-admin"`) {
				t.Errorf("WWW-Authenticate = %q lacks the realm", wa)
			}
			// RFC 6750 section 3.1: no error code when no credentials came.
			if tt.wantCode == "" && strings.Contains(wa, "error=") {
				t.Errorf("WWW-Authenticate = %q has an error for a request without credentials", wa)
			}
			if tt.wantCode != "" && !strings.Contains(wa, `error="`+tt.wantCode+`"`) {
				t.Errorf("WWW-Authenticate = %q lacks error=%q", wa, tt.wantCode)
			}
			if tt.wantScheme == "DPoP" && !strings.Contains(wa, "algs=") {
				t.Errorf("DPoP challenge %q does not list algs (RFC 9449 section 7.1)", wa)
			}
			if strings.Contains(string(r.body), "eyJ") {
				t.Errorf("problem echoes a JWS: %s", r.body)
			}
			if strings.Contains(string(r.body), `"clients"`) {
				t.Error("refused request got a listing")
			}
		})
	}
}

// rsaJWK returns the public JWK of an RSA key of bits size.
func rsaJWK(t *testing.T, bits int) map[string]any {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

// TestRegistrationValidation sends each bad registration and checks the
// problem names the field to fix, and that nothing was stored or logged.
func TestRegistrationValidation(t *testing.T) {
	h := start(t, nil)
	ec := newEC(t)
	pubJWKS := map[string]any{"keys": []any{ecJWK(&ec.PublicKey)}}
	privJWK := ecJWK(&ec.PublicKey)
	privJWK["d"] = b64(ec.D.FillBytes(make([]byte, 32)))
	now := time.Now().UTC()

	valid := func() map[string]any {
		return map[string]any{
			"client_name":                "billing-sync",
			"owner":                      "team-billing@example.com",
			"purpose":                    "nightly invoice sync",
			"environment":                "prod",
			"expires_at":                 now.Add(30 * 24 * time.Hour).Format(time.RFC3339),
			"scope":                      "invoices:read",
			"token_endpoint_auth_method": "private_key_jwt",
			"jwks":                       pubJWKS,
			"dpop_bound_access_tokens":   true,
		}
	}
	with := func(mod func(m map[string]any)) []byte {
		m := valid()
		mod(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const invalidMetadata = "urn:keybound:problem:invalid-client-metadata"

	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantStatus  int
		wantType    string
		wantField   string
	}{
		{"missing owner", "application/json", with(func(m map[string]any) { delete(m, "owner") }), 400, invalidMetadata, "owner"},
		{"blank owner", "application/json", with(func(m map[string]any) { m["owner"] = "   " }), 400, invalidMetadata, "owner"},
		{"missing purpose", "application/json", with(func(m map[string]any) { delete(m, "purpose") }), 400, invalidMetadata, "purpose"},
		{"missing environment", "application/json", with(func(m map[string]any) { delete(m, "environment") }), 400, invalidMetadata, "environment"},
		{"environment with spaces", "application/json", with(func(m map[string]any) { m["environment"] = "prod eu" }), 400, invalidMetadata, "environment"},
		{"missing client_name", "application/json", with(func(m map[string]any) { delete(m, "client_name") }), 400, invalidMetadata, "client_name"},
		{"missing expires_at", "application/json", with(func(m map[string]any) { delete(m, "expires_at") }), 400, invalidMetadata, "expires_at"},
		{"expiry beyond 90 days", "application/json", with(func(m map[string]any) { m["expires_at"] = now.Add(91 * 24 * time.Hour).Format(time.RFC3339) }), 400, invalidMetadata, "expires_at"},
		{"expiry in the past", "application/json", with(func(m map[string]any) { m["expires_at"] = now.Add(-time.Hour).Format(time.RFC3339) }), 400, invalidMetadata, "expires_at"},
		{"private_key_jwt without jwks", "application/json", with(func(m map[string]any) { delete(m, "jwks") }), 400, invalidMetadata, "jwks"},
		{"jwks with a private key", "application/json", with(func(m map[string]any) { m["jwks"] = map[string]any{"keys": []any{privJWK}} }), 400, invalidMetadata, "jwks"},
		{"jwks with an RSA 1024 key", "application/json", with(func(m map[string]any) { m["jwks"] = map[string]any{"keys": []any{rsaJWK(t, 1024)}} }), 400, invalidMetadata, "jwks"},
		{"jwks with a symmetric key", "application/json", with(func(m map[string]any) {
			m["jwks"] = map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}}}
		}), 400, invalidMetadata, "jwks"},
		{"empty jwks", "application/json", with(func(m map[string]any) { m["jwks"] = map[string]any{"keys": []any{}} }), 400, invalidMetadata, "jwks"},
		{"jwks with a tls method", "application/json", with(func(m map[string]any) {
			m["token_endpoint_auth_method"] = "tls_client_auth"
			m["tls_client_auth_subject_dn"] = "CN=x"
		}), 400, invalidMetadata, "jwks"},
		{"two bindings", "application/json", with(func(m map[string]any) { m["allow_bearer"] = true }), 400, invalidMetadata, "dpop_bound_access_tokens"},
		{"no binding", "application/json", with(func(m map[string]any) { delete(m, "dpop_bound_access_tokens") }), 400, invalidMetadata, "dpop_bound_access_tokens"},
		{"unknown auth method", "application/json", with(func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_jwt" }), 400, invalidMetadata, "token_endpoint_auth_method"},
		{"no auth method", "application/json", with(func(m map[string]any) { delete(m, "token_endpoint_auth_method") }), 400, invalidMetadata, "token_endpoint_auth_method"},
		{"tls_client_auth with two subjects", "application/json", with(func(m map[string]any) {
			delete(m, "jwks")
			m["token_endpoint_auth_method"] = "tls_client_auth"
			m["tls_client_auth_subject_dn"] = "CN=x"
			m["tls_client_auth_san_dns"] = "x.example.com"
		}), 400, invalidMetadata, "tls_client_auth_subject_dn"},
		{"self_signed_tls_client_auth without x5c", "application/json", with(func(m map[string]any) { m["token_endpoint_auth_method"] = "self_signed_tls_client_auth" }), 400, invalidMetadata, "jwks"},
		{"bad scope characters", "application/json", with(func(m map[string]any) { m["scope"] = `invoices:read "quoted"` }), 400, invalidMetadata, "scope"},
		{"scope with a backslash", "application/json", with(func(m map[string]any) { m["scope"] = `a\b` }), 400, invalidMetadata, "scope"},
		{"grant type other than client_credentials", "application/json", with(func(m map[string]any) { m["grant_types"] = []string{"authorization_code"} }), 400, invalidMetadata, "grant_types"},
		{"relative audience", "application/json", with(func(m map[string]any) { m["audiences"] = []string{"/api"} }), 400, invalidMetadata, "audiences[0]"},
		{"token lifetime too short", "application/json", with(func(m map[string]any) { m["access_token_lifetime"] = 5 }), 400, invalidMetadata, "access_token_lifetime"},
		{"token lifetime above the server maximum", "application/json", with(func(m map[string]any) { m["access_token_lifetime"] = 7200 }), 400, invalidMetadata, "access_token_lifetime"},
		{"unknown JSON field", "application/json", with(func(m map[string]any) { m["client_secret"] = "chosen-by-me" }), 400, "urn:keybound:problem:malformed-json", ""},
		{"malformed JSON", "application/json", []byte(`{"client_name": "x",`), 400, "urn:keybound:problem:malformed-json", ""},
		{"trailing data", "application/json", append(with(func(map[string]any) {}), []byte(`{}`)...), 400, "urn:keybound:problem:malformed-json", ""},
		{"JSON array", "application/json", []byte(`[]`), 400, "urn:keybound:problem:malformed-json", ""},
		{"wrong content type", "application/x-www-form-urlencoded", []byte("client_name=x"), 415, "urn:keybound:problem:unsupported-media-type", ""},
		{"no content type", "", with(func(map[string]any) {}), 415, "urn:keybound:problem:unsupported-media-type", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.adminRaw("POST", "/clients", tt.contentType, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if r.header.Get("Location") != "" {
				t.Errorf("Location %q set on a refusal", r.header.Get("Location"))
			}
			p := r.problem(t)
			if p.Type != tt.wantType || p.Status != tt.wantStatus || p.Detail == "" || p.Instance != adminapi.Prefix+"/clients" {
				t.Errorf("problem = %+v, want type %s", p, tt.wantType)
			}
			if tt.wantField == "" {
				return
			}
			if p.Code != "invalid_client_metadata" {
				t.Errorf("error = %q, want invalid_client_metadata (RFC 7591 section 3.2.2)", p.Code)
			}
			var fields []string
			for _, e := range p.Errors {
				fields = append(fields, e.Field)
				if e.Field == tt.wantField && e.Detail == "" {
					t.Errorf("errors[%s] has no detail", e.Field)
				}
			}
			if !slices.Contains(fields, tt.wantField) {
				t.Errorf("errors name %v, want %s: %s", fields, tt.wantField, r.body)
			}
			if strings.Contains(string(r.body), privJWK["d"].(string)) {
				t.Error("problem echoes the private key")
			}
		})
	}

	// Nothing was stored and nothing logged beyond the admin's own creation.
	if ids := h.clientIDs(""); !slices.Equal(ids, []string{h.adminID}) {
		t.Errorf("clients after refused registrations = %v, want only the admin %s", ids, h.adminID)
	}
	for _, ev := range h.events() {
		if ev.Action == "client.create" && ev.Target != h.adminID {
			t.Errorf("refused registration logged: %+v", ev)
		}
	}

	// The valid base registration is accepted, so each row failed for its
	// own reason only.
	r := h.adminRaw("POST", "/clients", "application/json", with(func(map[string]any) {}))
	if r.status != 201 {
		t.Fatalf("valid registration: %d %s", r.status, r.body)
	}
	var v adminapi.ClientView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	if r.header.Get("Location") != adminapi.Prefix+"/clients/"+v.ClientID {
		t.Errorf("Location = %q", r.header.Get("Location"))
	}
	if !strings.HasPrefix(v.ClientID, "kb-") || v.Status != "active" || !v.DPoPBound || v.ClientSecret != "" || v.StaticSecret {
		t.Errorf("view = %+v", v)
	}
}

// TestClientLifecycleThroughAdminAPI walks one client through every status
// change and checks the audit trail and the list filters.
func TestClientLifecycleThroughAdminAPI(t *testing.T) {
	h := start(t, nil)
	a := h.newKeyClient(inventory.Registration{Scope: "a", Owner: "team-a@example.com", Environment: "prod"})
	b := h.newKeyClient(inventory.Registration{Scope: "b", Owner: "team-b@example.com", Environment: "prod"})
	c := h.newKeyClient(inventory.Registration{Scope: "c", Owner: "team-b@example.com", Environment: "dev"})

	type step struct {
		action, id string
		wantStatus int
		wantType   string // problem type for refusals
		wantState  string // client status after success
		wantChange string // the event's status change
	}
	steps := []step{
		{"suspend", a.id, 200, "", "suspended", "active -> suspended"},
		{"suspend", a.id, 409, "urn:keybound:problem:invalid-transition", "", ""},
		{"resume", a.id, 200, "", "active", "suspended -> active"},
		{"resume", a.id, 409, "urn:keybound:problem:invalid-transition", "", ""},
		{"revoke", a.id, 200, "", "revoked", "active -> revoked"},
		{"resume", a.id, 409, "urn:keybound:problem:invalid-transition", "", ""},
		{"suspend", a.id, 409, "urn:keybound:problem:invalid-transition", "", ""},
		{"revoke", a.id, 409, "urn:keybound:problem:invalid-transition", "", ""},
		{"suspend", "kb-doesnotexist", 404, "urn:keybound:problem:not-found", "", ""},
		{"revoke", "kb-doesnotexist", 404, "urn:keybound:problem:not-found", "", ""},
		{"suspend", h.adminID, 409, "urn:keybound:problem:self-lockout", "", ""},
		{"revoke", h.adminID, 409, "urn:keybound:problem:self-lockout", "", ""},
		{"suspend", b.id, 200, "", "suspended", "active -> suspended"},
	}
	for i, s := range steps {
		before := len(h.events())
		code, body := h.adminDo("POST", "/clients/"+s.id+"/"+s.action, map[string]string{"reason": "step " + s.action})
		if code != s.wantStatus {
			t.Fatalf("step %d %s %s: %d %s, want %d", i, s.action, s.id, code, body, s.wantStatus)
		}
		evs := h.events()
		if s.wantStatus != 200 {
			var p problemBody
			_ = json.Unmarshal(body, &p)
			if p.Type != s.wantType || p.Status != s.wantStatus || p.Detail == "" {
				t.Errorf("step %d %s: problem %+v, want %s", i, s.action, p, s.wantType)
			}
			if len(evs) != before {
				t.Errorf("step %d %s refused but logged %+v", i, s.action, evs[len(evs)-1])
			}
			continue
		}
		var v adminapi.ClientView
		_ = json.Unmarshal(body, &v)
		if string(v.Status) != s.wantState || v.ClientID != s.id {
			t.Errorf("step %d %s: view status %q id %s, want %s", i, s.action, v.Status, v.ClientID, s.wantState)
		}
		if len(evs) != before+1 {
			t.Fatalf("step %d %s: %d new events, want 1", i, s.action, len(evs)-before)
		}
		var ev = evs[0]
		for _, e := range evs {
			if e.ID > ev.ID {
				ev = e
			}
		}
		if ev.Actor != h.adminID || ev.Action != "client."+s.action || ev.Target != s.id || ev.Changes["status"] != s.wantChange || ev.Changes["reason"] != "step "+s.action {
			t.Errorf("step %d event = %+v, want actor %s action client.%s status %q", i, ev, h.adminID, s.action, s.wantChange)
		}
		if code, got := h.adminDo("GET", "/clients/"+s.id, nil); code != 200 || !strings.Contains(string(got), `"status":"`+s.wantState+`"`) {
			t.Errorf("step %d GET after %s: %d %s", i, s.action, code, got)
		}
	}

	// A revoked client can no longer get tokens, whatever it sends.
	if r := h.postForm(nil, "/oauth2/token", tokenForm(a, h), nil); r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("token for revoked client: %d %s", r.status, r.raw)
	}

	filters := []struct {
		query string
		want  []string
	}{
		{"?owner=team-b@example.com", []string{b.id, c.id}},
		{"?owner=team-a@example.com", []string{a.id}},
		{"?environment=prod", []string{a.id, b.id}},
		{"?environment=dev", []string{c.id}},
		{"?environment=admin", []string{h.adminID}},
		{"?status=revoked", []string{a.id}},
		{"?status=suspended", []string{b.id}},
		{"?status=active", []string{h.adminID, c.id}},
		{"?owner=team-b@example.com&environment=prod", []string{b.id}},
		{"?owner=team-b@example.com&status=active", []string{c.id}},
		{"?owner=nobody@example.com", []string{}},
		{"?limit=2", []string{h.adminID, a.id}},
		{"", []string{h.adminID, a.id, b.id, c.id}},
	}
	for _, f := range filters {
		t.Run("list"+f.query, func(t *testing.T) {
			if got := h.clientIDs(f.query); !slices.Equal(got, f.want) {
				t.Errorf("GET /clients%s = %v, want %v", f.query, got, f.want)
			}
		})
	}

	for _, path := range []string{"/clients?limit=0", "/clients?limit=abc", "/clients?limit=-1", "/clients?limit=1001", "/clients?status=deleted", "/events?limit=0", "/events?limit=abc"} {
		t.Run("bad "+path, func(t *testing.T) {
			r := h.adminRaw("GET", path, "", nil)
			if r.status != 400 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if p := r.problem(t); p.Type != "urn:keybound:problem:invalid-parameter" || p.Detail == "" {
				t.Errorf("problem = %+v", p)
			}
		})
	}

	if r := h.adminRaw("GET", "/clients/kb-doesnotexist", "", nil); r.status != 404 || r.problem(t).Type != "urn:keybound:problem:not-found" {
		t.Errorf("GET unknown client: %d %s", r.status, r.body)
	}
	// A status change with a body that is not JSON is refused, not applied.
	if r := h.adminRaw("POST", "/clients/"+c.id+"/suspend", "text/plain", []byte("because")); r.status != 415 {
		t.Errorf("suspend with text body: %d %s", r.status, r.body)
	}
	if code, got := h.adminDo("GET", "/clients/"+c.id, nil); code != 200 || !strings.Contains(string(got), `"status":"active"`) {
		t.Errorf("client changed by a refused suspend: %s", got)
	}
}

// TestAdminCannotLockItselfOut: an offboarding whose filter matches the
// calling admin identity, or a downscope removing keybound:admin from it,
// is refused with self-lockout and changes nothing; a dry run still shows
// the match.
func TestAdminCannotLockItselfOut(t *testing.T) {
	h := start(t, nil)
	other := h.newKeyClient(inventory.Registration{Scope: "a", Environment: "admin"})
	before := len(h.events())
	refusals := []struct {
		name, path string
		body       any
	}{
		{"offboard by environment", "/offboard", map[string]any{"environment": "admin", "action": "suspend", "reason": "cleanup"}},
		{"offboard by owner, revoke", "/offboard", map[string]any{"owner": "keybound operator", "action": "revoke"}},
		{"downscope itself", "/clients/" + h.adminID + "/downscope", map[string]any{"remove": []string{"keybound:admin"}, "apply": true}},
	}
	for _, tt := range refusals {
		code, body := h.adminDo("POST", tt.path, tt.body)
		var p problemBody
		_ = json.Unmarshal(body, &p)
		if code != 409 || p.Type != "urn:keybound:problem:self-lockout" || !strings.Contains(p.Detail, "another admin identity") {
			t.Errorf("%s: %d %s, want 409 self-lockout", tt.name, code, body)
		}
	}
	if n := len(h.events()); n != before {
		t.Errorf("refusals wrote %d admin events", n-before)
	}
	// The admin identity still works, and so does the other match.
	if code, body := h.adminDo("GET", "/clients/"+other.id, nil); code != 200 || !strings.Contains(string(body), `"status":"active"`) {
		t.Fatalf("after the refusals: %d %s", code, body)
	}
	// A dry run only shows, so it may match the caller.
	if code, body := h.adminDo("POST", "/offboard", map[string]any{"environment": "admin", "dry_run": true}); code != 200 || !strings.Contains(string(body), h.adminID) {
		t.Errorf("dry run: %d %s", code, body)
	}
	// A downscope that only shows the diff is fine too.
	if code, body := h.adminDo("POST", "/clients/"+h.adminID+"/downscope", map[string]any{"remove": []string{"keybound:admin"}}); code != 200 {
		t.Errorf("downscope preview: %d %s", code, body)
	}
}

// TestKeyRotationThroughAdminAPI rotates the signing key and checks the
// publish-before-use rule from a verifier's side.
func TestKeyRotationThroughAdminAPI(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	token := func() string {
		r := h.postForm(nil, "/oauth2/token", tokenForm(c, h), nil)
		if r.status != 200 {
			t.Fatalf("token: %d %s", r.status, r.raw)
		}
		return r.body["access_token"].(string)
	}
	jwks := func() jose.JSONWebKeySet {
		r := h.do(nil, "GET", "/oauth2/jwks", "", nil, nil)
		if r.status != 200 {
			t.Fatalf("jwks: %d %s", r.status, r.body)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(r.body, &set); err != nil {
			t.Fatal(err)
		}
		return set
	}
	before := token()
	oldKID, _ := decodeHeader(t, before)["kid"].(string)
	if set := jwks(); len(set.Keys) != 1 || set.Keys[0].KeyID != oldKID {
		t.Fatalf("JWKS before rotation = %+v, want only %s", set.Keys, oldKID)
	}

	code, b := h.adminDo("POST", "/keys/rotate", nil)
	if code != 200 {
		t.Fatalf("rotate: %d %s", code, b)
	}
	var out struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.KID == "" || out.KID == oldKID {
		t.Fatalf("rotate answered %s", b)
	}

	set := jwks()
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
		if !k.IsPublic() {
			t.Errorf("JWKS key %s is not public", k.KeyID)
		}
	}
	slices.Sort(kids)
	want := []string{oldKID, out.KID}
	slices.Sort(want)
	if !slices.Equal(kids, want) {
		t.Errorf("JWKS after rotation lists %v, want %v", kids, want)
	}

	// The new key is only published: tokens are still signed by the old one
	// until the publish lead has passed, and verify against the JWKS.
	after := token()
	if kid := decodeHeader(t, after)["kid"]; kid != oldKID {
		t.Errorf("token after rotation signed by %v, want the old key %s", kid, oldKID)
	}
	for _, tok := range []string{before, after} {
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		keys := set.Key(jws.Signatures[0].Header.KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %s not in the JWKS", jws.Signatures[0].Header.KeyID)
		}
		if _, err := jws.Verify(keys[0]); err != nil {
			t.Errorf("token does not verify with the published key: %v", err)
		}
	}
	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	if got := h.introspect(rs, after); got["active"] != true {
		t.Errorf("introspection after rotation = %v", got)
	}

	var logged bool
	for _, ev := range h.events() {
		if ev.Action == "keys.rotate" {
			logged = true
			if ev.Actor != h.adminID || ev.Target != out.KID {
				t.Errorf("rotation event = %+v", ev)
			}
		}
	}
	if !logged {
		t.Error("rotation not in the admin log")
	}
}

// TestSecondAdminStatusTakesEffectAtOnce checks that suspending an admin
// identity stops its already-issued token at the very next call, and that
// resuming it restores access, with no wait for any cache.
func TestSecondAdminStatusTakesEffectAtOnce(t *testing.T) {
	h := start(t, nil)
	ops := h.newKeyClient(inventory.Registration{Scope: adminapi.Scope, Environment: "admin", Owner: "ops@example.com"})
	cfg := &sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: ops.id, Key: ops.key, KeyID: ops.kid, Scopes: []string{adminapi.Scope}, DPoP: true, HTTPClient: h.httpClient(nil)}
	opsClient := cfg.Client(context.Background())
	call := func() httpResult { return h.do(opsClient, "GET", adminapi.Prefix+"/clients/"+h.adminID, "", nil, nil) }

	if r := call(); r.status != 200 {
		t.Fatalf("second admin: %d %s", r.status, r.body)
	}
	if code, b := h.adminDo("POST", "/clients/"+ops.id+"/suspend", nil); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	r := call()
	if r.status != 401 || r.problem(t).Code != "invalid_token" || !strings.Contains(r.problem(t).Detail, "suspended") {
		t.Errorf("suspended admin's call: %d %s", r.status, r.body)
	}
	if wa := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "DPoP ") || !strings.Contains(wa, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q", wa)
	}
	// The suspended admin cannot act on anything, including resuming itself.
	if r := h.do(opsClient, "POST", adminapi.Prefix+"/clients/"+ops.id+"/resume", "", nil, nil); r.status != 401 {
		t.Errorf("suspended admin resumed itself: %d %s", r.status, r.body)
	}
	if code, b := h.adminDo("POST", "/clients/"+ops.id+"/resume", nil); code != 200 {
		t.Fatalf("resume: %d %s", code, b)
	}
	if r := call(); r.status != 200 {
		t.Errorf("resumed admin's call: %d %s", r.status, r.body)
	}
	// Self-lockout applies to every admin identity, not only the first.
	if r := h.do(opsClient, "POST", adminapi.Prefix+"/clients/"+ops.id+"/revoke", "", nil, nil); r.status != 409 {
		t.Errorf("admin revoked itself: %d %s", r.status, r.body)
	}
	if code, b := h.adminDo("POST", "/clients/"+ops.id+"/revoke", nil); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	if r := call(); r.status != 401 || !strings.Contains(r.problem(t).Detail, "revoked") {
		t.Errorf("revoked admin's call: %d %s", r.status, r.body)
	}
}

// TestAdminListQueriesNameTheBadParameter: every listing refuses a bad,
// unknown or repeated query parameter with a 400 problem whose errors name
// it, instead of ignoring it and widening the answer.
func TestAdminListQueriesNameTheBadParameter(t *testing.T) {
	h := start(t, nil)
	for _, tt := range []struct {
		path, field, detail string
	}{
		{"/clients?ownr=team-a", "ownr", "not a parameter"},
		{"/clients?status=gone", "status", "active, suspended or revoked"},
		{"/clients?limit=0", "limit", "1 to 1000"},
		{"/clients?owner=a&owner=b", "owner", "give it once"},
		{"/events?limit=many", "limit", "1 to 1000"},
		{"/events?actor=x", "actor", "not a parameter"},
		{"/certificates?clientid=x", "clientid", "not a parameter"},
		{"/reviews?state=late", "state", "due"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			r := h.adminRaw("GET", tt.path, "", nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			p := r.problem(t)
			if len(p.Errors) != 1 || p.Errors[0].Field != tt.field || !strings.Contains(p.Errors[0].Detail, tt.detail) {
				t.Errorf("errors %+v, want field %s saying %q", p.Errors, tt.field, tt.detail)
			}
		})
	}
}
