package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/inventory"
)

// importKey is a legacy static API key, built at run time.
func importKey(n int) string { return fmt.Sprintf("partner-key-%03d-%s", n, strings.Repeat("Zq9", 8)) }

func importRowE2E(n int) inventory.ImportRow {
	return inventory.ImportRow{
		Name: fmt.Sprintf("partner-%d", n), Owner: "team-partners@example.com", Purpose: "partner feed", Environment: "prod",
		ExpiresAt: time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.DateOnly), Secret: importKey(n), Scope: "legacy:read",
	}
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestImportAndLeakMatchingThroughAdminAPI drives POST /clients:import and
// POST /secrets/match against the real server and store, and then uses an
// imported key as the legacy callers do: as a static API key at the gateway
// and as a client secret at the token endpoint.
func TestImportAndLeakMatchingThroughAdminAPI(t *testing.T) {
	g := startGateway(t, staticRoutes)
	rows := []inventory.ImportRow{importRowE2E(1), importRowE2E(2)}
	rows[1].Vendor = "acme"

	clientsBefore, eventsBefore := len(g.clientIDs("?limit=1000")), len(g.events())
	refused := []struct {
		name   string
		rows   []inventory.ImportRow
		fields []string // the problem's error fields, in order
	}{
		{"missing owner", func() []inventory.ImportRow {
			r := append([]inventory.ImportRow(nil), rows...)
			r[1].Owner = ""
			return r
		}(), []string{"rows[1].owner"}},
		{"bad expiry", func() []inventory.ImportRow {
			r := append([]inventory.ImportRow(nil), rows...)
			r[0].ExpiresAt = "next year"
			return r
		}(), []string{"rows[0].expires_at"}},
		{"duplicate secret", func() []inventory.ImportRow {
			r := append([]inventory.ImportRow(nil), rows...)
			r[1].Secret = r[0].Secret
			return r
		}(), []string{"rows[1].secret"}},
		{"every problem at once", func() []inventory.ImportRow {
			r := append([]inventory.ImportRow(nil), rows...)
			r[0].Owner, r[1].Secret, r[1].Scope = "", "tiny-k3y", `a"b`
			return r
		}(), []string{"rows[0].owner", "rows[1].scope", "rows[1].secret"}},
		{"no rows", nil, []string{"rows"}},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			code, b := g.adminDo("POST", "/clients:import", adminapi.ImportRequest{Rows: tt.rows})
			var pd problemBody
			_ = json.Unmarshal(b, &pd)
			if code != http.StatusBadRequest || pd.Type != "urn:keybound:problem:invalid-import" {
				t.Fatalf("got %d %s", code, b)
			}
			if fields := pd.fields(); !slices.Equal(fields, tt.fields) {
				t.Errorf("error fields %v, want %v", fields, tt.fields)
			}
			for _, r := range tt.rows {
				if r.Secret != "" && bytes.Contains(b, []byte(r.Secret)) {
					t.Error("the answer holds a secret")
				}
			}
		})
	}
	t.Run("refused: unknown field", func(t *testing.T) {
		body := []byte(`{"rows":[{"name":"x","colour":"blue"}]}`)
		if r := g.adminRaw("POST", "/clients:import", "application/json", body); r.status != 400 || !strings.Contains(string(r.body), "colour") {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("refused: larger than server.max_body_bytes", func(t *testing.T) {
		var many []inventory.ImportRow
		for i := 0; i < 600; i++ {
			many = append(many, importRowE2E(100+i))
		}
		code, b := g.adminDo("POST", "/clients:import", adminapi.ImportRequest{Rows: many})
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "server.max_body_bytes") {
			t.Errorf("got %d %s", code, b)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		code, b := g.adminDo("POST", "/clients:import", adminapi.ImportRequest{Rows: rows, DryRun: true})
		var res adminapi.ImportResponse
		_ = json.Unmarshal(b, &res)
		if code != 200 || !res.DryRun || res.Valid != 2 || res.Imported != 0 {
			t.Errorf("got %d %s", code, b)
		}
	})
	if n, m := len(g.clientIDs("?limit=1000")), len(g.events()); n != clientsBefore || m != eventsBefore {
		t.Fatalf("refused imports and a dry run changed the store: %d clients (was %d), %d events (was %d)", n, clientsBefore, m, eventsBefore)
	}

	code, b := g.adminDo("POST", "/clients:import", adminapi.ImportRequest{Rows: rows})
	if code != http.StatusCreated {
		t.Fatalf("import: %d %s", code, b)
	}
	for _, r := range rows {
		if bytes.Contains(b, []byte(r.Secret)) {
			t.Fatal("the import answer holds a secret")
		}
	}
	var res adminapi.ImportResponse
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Imported != 2 || len(res.Clients) != 2 {
		t.Fatalf("import answer %s", b)
	}
	for i, v := range res.Clients {
		if v.AuthMethod != "client_secret_basic" || !v.StaticSecret || !v.DPoPBound || v.Owner != rows[i].Owner || v.Scope != "legacy:read" || v.ClientSecret != "" {
			t.Errorf("imported client %d: %+v", i, v)
		}
	}
	if res.Clients[1].Vendor != "acme" {
		t.Errorf("vendor %q", res.Clients[1].Vendor)
	}
	imports := 0
	for _, ev := range g.events() {
		if ev.Action == "client.import" {
			imports++
			if ev.Actor != g.adminID || ev.Changes["secret_fingerprint"] == "" {
				t.Errorf("import event %+v", ev)
			}
		}
	}
	if imports != 2 {
		t.Errorf("%d client.import events, want 2", imports)
	}

	t.Run("importing the same keys again is refused", func(t *testing.T) {
		code, b := g.adminDo("POST", "/clients:import", adminapi.ImportRequest{Rows: []inventory.ImportRow{importRowE2E(3), rows[0]}})
		if code != 400 || !strings.Contains(string(b), "rows[1].secret") || !strings.Contains(string(b), res.Clients[0].ClientID) {
			t.Errorf("got %d %s", code, b)
		}
	})

	t.Run("the imported key works as a static API key", func(t *testing.T) {
		r := g.send(nil, "GET", "/legacy/7", map[string]string{"X-API-Key": rows[0].Secret})
		if r.status != 200 || g.up.last().Header.Get("X-Keybound-Client-Id") != res.Clients[0].ClientID {
			t.Errorf("gateway: %d %s", r.status, r.body)
		}
	})

	t.Run("the imported key gets a DPoP-bound token", func(t *testing.T) {
		dkey := newEC(t)
		form := url.Values{"grant_type": {"client_credentials"}}
		req, _ := http.NewRequest("POST", g.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(res.Clients[1].ClientID, rows[1].Secret)
		req.Header.Set("DPoP", proofFor(t, dkey, "POST", g.issuer+"/oauth2/token", ""))
		resp, err := g.httpClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&tr)
		if resp.StatusCode != 200 || tr["token_type"] != "DPoP" {
			t.Errorf("token: %d %v", resp.StatusCode, tr)
		}
	})

	t.Run("secret matching", func(t *testing.T) {
		req := adminapi.SecretMatchRequest{Source: "/src/partner-feed", Secrets: []adminapi.SecretSighting{
			{SHA256: sha256Hex(rows[0].Secret), Rule: "generic-api-key", Location: "config/feed.env:4", Commit: "0123456789abcdef0123456789abcdef01234567"},
			{SHA256: sha256Hex("an unmanaged key nobody registered"), Rule: "generic-api-key", Location: "old.env:1"},
		}}
		code, b := g.adminDo("POST", "/secrets/match", req)
		var out adminapi.SecretMatchResponse
		_ = json.Unmarshal(b, &out)
		if code != 200 || len(out.Results) != 2 {
			t.Fatalf("match: %d %s", code, b)
		}
		leaked, unmanaged := out.Results[0], out.Results[1]
		if leaked.Status != "leaked" || leaked.ClientID != res.Clients[0].ClientID || !leaked.Recorded || leaked.FlaggedAt.IsZero() ||
			leaked.Fingerprint != sha256Hex(rows[0].Secret)[:16] || leaked.Owner != rows[0].Owner {
			t.Errorf("leaked result %+v", leaked)
		}
		if unmanaged.Status != "unmanaged" || unmanaged.ClientID != "" || unmanaged.Recorded {
			t.Errorf("unmanaged result %+v", unmanaged)
		}
		var leakEvents int
		for _, ev := range g.events() {
			if ev.Action == "client.leaked" {
				leakEvents++
				if ev.Target != res.Clients[0].ClientID || ev.Changes["location"] != "config/feed.env:4" || ev.Changes["source"] != "/src/partner-feed" ||
					ev.Changes["commit"] == "" || ev.Changes["fingerprint"] != leaked.Fingerprint {
					t.Errorf("leak event %+v", ev)
				}
			}
		}
		if leakEvents != 1 {
			t.Errorf("%d client.leaked events, want 1", leakEvents)
		}
		// Matching again finds it flagged already and records nothing new.
		code, b = g.adminDo("POST", "/secrets/match", req)
		_ = json.Unmarshal(b, &out)
		if code != 200 || out.Results[0].Recorded || !out.Results[0].FlaggedAt.Equal(leaked.FlaggedAt) {
			t.Errorf("second match: %d %s", code, b)
		}
	})

	t.Run("secret matching refuses anything but digests", func(t *testing.T) {
		code, b := g.adminDo("POST", "/secrets/match", adminapi.SecretMatchRequest{Secrets: []adminapi.SecretSighting{{SHA256: rows[0].Secret}}})
		if code != 400 || !strings.Contains(string(b), "secrets[0].sha256") || bytes.Contains(b, []byte(rows[0].Secret)) {
			t.Errorf("got %d %s", code, b)
		}
		many := make([]adminapi.SecretSighting, inventory.MaxSightings+1)
		if code, b := g.adminDo("POST", "/secrets/match", adminapi.SecretMatchRequest{Secrets: many}); code != 400 && code != 413 {
			t.Errorf("too many: %d %s", code, b)
		}
	})
}
