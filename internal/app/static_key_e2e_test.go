package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/route"
)

// staticRoutes adds two routes that accept static API keys to testRoutes:
// "legacy" reads the default X-API-Key header, "partner" its own header.
func staticRoutes(c *config.Config) {
	up := c.Gateway.Routes[0].Upstream
	c.Gateway.Routes = append(c.Gateway.Routes,
		route.Spec{Name: "legacy", Path: "/legacy/{id}", Methods: []string{"GET"}, Upstream: up,
			Scopes: route.ScopeSpec{All: []string{"legacy:read"}}, Sensitivity: "internal", AllowStaticKeys: true},
		route.Spec{Name: "partner", Path: "/partner/{id}", Upstream: up,
			Scopes: route.ScopeSpec{All: []string{"partner:read"}}, Sensitivity: "internal", AllowStaticKeys: true, StaticKeyHeader: "X-Partner-Key"},
	)
}

func TestGatewayStaticAPIKeys(t *testing.T) {
	g := startGateway(t, staticRoutes)
	legacy := g.register(inventory.Registration{Scope: "legacy:read invoices:read", AuthMethod: "client_secret_basic", DPoPBound: true})
	partner := g.register(inventory.Registration{Scope: "partner:read", AuthMethod: "client_secret_post", Owner: "partner-team@example.com", DPoPBound: true})
	if legacy.ClientSecret == "" || partner.ClientSecret == "" {
		t.Fatal("registration returned no secret")
	}

	r := g.send(nil, "GET", "/legacy/42", map[string]string{"X-API-Key": legacy.ClientSecret})
	if r.status != 200 {
		t.Fatalf("static key on an opted-in route: %d %s", r.status, r.body)
	}
	got := g.up.last()
	if got.Header.Get("X-Api-Key") != "" {
		t.Error("the upstream received the static key")
	}
	if got.Header.Get("X-Keybound-Client-Id") != legacy.ClientID || got.Header.Get("X-Keybound-Binding") != "static_key" {
		t.Errorf("identity headers: client %q binding %q", got.Header.Get("X-Keybound-Client-Id"), got.Header.Get("X-Keybound-Binding"))
	}
	if r := g.send(nil, "GET", "/partner/1", map[string]string{"X-Partner-Key": partner.ClientSecret}); r.status != 200 {
		t.Fatalf("static key in a route's own header: %d %s", r.status, r.body)
	}
	if g.up.last().Header.Get("X-Partner-Key") != "" {
		t.Error("the upstream received the partner key")
	}

	// Each use is audited as static-key access.
	var evs []map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if evs = g.auditEvents(legacy.ClientID); len(evs) >= 1 {
			break
		}
	}
	if len(evs) != 1 || evs[0]["credential_type"] != "static_key" || evs[0]["decision"] != "allow" || evs[0]["route"] != "legacy" || evs[0]["object_id"] != "42" {
		t.Fatalf("audit events of the static-key client: %v", evs)
	}
	if s, _ := evs[0]["scopes"].([]any); len(s) != 2 {
		t.Errorf("audited scopes %v, want the client's two registered scopes", evs[0]["scopes"])
	}
	m := g.do(nil, "GET", "/metrics", "", nil, nil)
	if !strings.Contains(string(m.body), `keybound_gateway_static_key_requests_total{route="legacy"} 1`) {
		t.Error("metrics do not count the static-key request on route legacy")
	}

	before := g.up.count()
	tests := []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		reason string // problem type suffix
		detail string
	}{
		{"wrong key", "/legacy/1", map[string]string{"X-API-Key": "kbs_not-a-registered-key"}, 401, "invalid-api-key", "not registered"},
		{"key of another length", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret + "x"}, 401, "invalid-api-key", "not registered"},
		{"oversized key", "/legacy/1", map[string]string{"X-API-Key": strings.Repeat("k", 600)}, 401, "invalid-api-key", "512 bytes"},
		{"key in the wrong header", "/partner/1", map[string]string{"X-API-Key": partner.ClientSecret}, 401, "missing-token", ""},
		{"route without opt-in", "/reports/1", map[string]string{"X-API-Key": legacy.ClientSecret}, 401, "missing-token", ""},
		{"confidential route", "/invoices/1", map[string]string{"X-API-Key": legacy.ClientSecret}, 401, "missing-token", ""},
		{"scope not granted", "/legacy/1", map[string]string{"X-API-Key": partner.ClientSecret}, 403, "insufficient-scope", "legacy:read"},
		{"a key-based client's token is not a static key", "/legacy/1", map[string]string{"X-API-Key": "eyJhbGciOiJFUzI1NiJ9.e30.sig"}, 401, "invalid-api-key", "not registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.send(nil, "GET", tt.path, tt.hdr)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if typ, _ := r.problem["type"].(string); !strings.HasSuffix(typ, tt.reason) {
				t.Errorf("problem type %q, want ...%s", typ, tt.reason)
			}
			if d, _ := r.problem["detail"].(string); !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q does not mention %q", d, tt.detail)
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(r.body, legacy.ClientSecret) || strings.Contains(r.body, partner.ClientSecret) {
				t.Error("the refusal echoes a key")
			}
		})
	}
	if n := g.up.count(); n != before {
		t.Errorf("the upstream saw %d refused requests", n-before)
	}

	// Suspension wins at once; resume restores access.
	if code, b := g.adminDo("POST", "/clients/"+legacy.ClientID+"/suspend", nil); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	r = g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret})
	if d, _ := r.problem["detail"].(string); r.status != 401 || !strings.Contains(d, "suspended") {
		t.Fatalf("after suspend: %d %s", r.status, r.body)
	}
	g.adminDo("POST", "/clients/"+legacy.ClientID+"/resume", nil)
	if r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": legacy.ClientSecret}); r.status != 200 {
		t.Fatalf("after resume: %d %s", r.status, r.body)
	}
}

// With static secrets switched off server-wide, registered keys stop working
// at the gateway too.
func TestGatewayStaticKeysSwitchedOff(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		staticRoutes(c)
		c.Tokens.AllowStaticSecrets = false
	})
	v := g.register(inventory.Registration{Scope: "legacy:read", AuthMethod: "client_secret_basic", DPoPBound: true})
	before := g.up.count()
	r := g.send(nil, "GET", "/legacy/1", map[string]string{"X-API-Key": v.ClientSecret})
	if d, _ := r.problem["detail"].(string); r.status != 401 || !strings.Contains(d, "disabled") {
		t.Fatalf("static key with allow_static_secrets off: %d %s", r.status, r.body)
	}
	if g.up.count() != before {
		t.Error("the upstream saw the refused request")
	}
}
