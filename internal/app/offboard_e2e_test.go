package app_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
)

// statusOf reads one client's status through the admin API.
func (h *harness) statusOf(id string) string {
	h.t.Helper()
	return string(h.clientView(id).Status)
}

// TestOffboardThroughAdminAPI drives POST /admin/v1/offboard: every bad
// input is a 400 problem naming its fields and changes nothing; a revoke
// changes the matching identities in one go and revokes their live
// workload certificates too.
func TestOffboardThroughAdminAPI(t *testing.T) {
	g := startGateway(t, nil)
	v := g.register(inventory.Registration{Name: "vendor-sync", Owner: "team-off@example.com", Vendor: "acme", Scope: "invoices:read",
		AuthMethod: "tls_client_auth", TLSSANURI: "spiffe://keybound.local/vendor-sync", MTLSBound: true})
	other := g.register(inventory.Registration{Name: "stays", Owner: "team-stay@example.com", Vendor: "acme", Scope: "invoices:read",
		AuthMethod: "tls_client_auth", TLSSANURI: "spiffe://keybound.local/stays", MTLSBound: true})
	w := g.enrollWithToken(v.ClientID)
	long := strings.Repeat("x", 257)

	eventsBefore := len(g.events())
	refused := []struct {
		name   string
		req    adminapi.OffboardRequest
		fields []string
	}{
		{"no filter", adminapi.OffboardRequest{Action: "suspend", DryRun: true}, []string{"filter"}},
		{"blank filter", adminapi.OffboardRequest{Owner: "  ", Purpose: "\t"}, []string{"filter"}},
		{"unknown action", adminapi.OffboardRequest{Owner: "team-off@example.com", Action: "delete"}, []string{"action"}},
		{"too long", adminapi.OffboardRequest{Owner: long, Vendor: long, Environment: long, Purpose: long, Reason: long + long},
			[]string{"owner", "vendor", "environment", "purpose", "reason"}},
		{"everything at once", adminapi.OffboardRequest{Reason: long, Action: "wipe"}, []string{"filter", "action", "reason"}},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			code, b := g.adminDo("POST", "/offboard", tt.req)
			var pd problemBody
			_ = json.Unmarshal(b, &pd)
			if code != http.StatusBadRequest || pd.Type != "urn:keybound:problem:invalid-offboard" || pd.Status != 400 || pd.Instance != adminapi.Prefix+"/offboard" {
				t.Fatalf("got %d %s", code, b)
			}
			if fields := pd.fields(); !slices.Equal(fields, tt.fields) {
				t.Errorf("error fields %v, want %v", fields, tt.fields)
			}
		})
	}
	raw := []struct{ name, ct, body string }{
		{"unknown field", "application/json", `{"owner":"team-off@example.com","group":"x"}`},
		{"not JSON", "application/json", `owner=team-off`},
		{"wrong type", "application/json", `{"owner":"team-off@example.com","dry_run":"yes"}`},
		{"trailing data", "application/json", `{"owner":"team-off@example.com"} {}`},
	}
	for _, tt := range raw {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			if r := g.adminRaw("POST", "/offboard", tt.ct, []byte(tt.body)); r.status != http.StatusBadRequest || r.problem(t).Type != "urn:keybound:problem:malformed-json" {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}
	t.Run("refused: not JSON content type", func(t *testing.T) {
		if r := g.adminRaw("POST", "/offboard", "text/plain", []byte(`{"owner":"x"}`)); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("refused: no admin token", func(t *testing.T) {
		if r := g.do(nil, "POST", adminapi.Prefix+"/offboard", "application/json", []byte(`{"owner":"team-off@example.com"}`), nil); r.status != http.StatusUnauthorized {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	if g.statusOf(v.ClientID) != "active" || g.statusOf(other.ClientID) != "active" {
		t.Fatal("a refused offboarding changed a status")
	}
	if n := len(g.events()); n != eventsBefore {
		t.Fatalf("refused offboardings wrote %d admin events", n-eventsBefore)
	}

	t.Run("revoke", func(t *testing.T) {
		code, b := g.adminDo("POST", "/offboard", adminapi.OffboardRequest{Owner: "team-off@example.com", Vendor: "acme", Action: "revoke", Reason: "vendor contract ended"})
		var res adminapi.OffboardResponse
		if err := json.Unmarshal(b, &res); code != http.StatusOK || err != nil {
			t.Fatalf("got %d %s", code, b)
		}
		if res.DryRun || res.Matched != 1 || res.Changed != 1 || len(res.Identities) != 1 || res.Identities[0].ClientID != v.ClientID ||
			res.Identities[0].Status != "active" || res.Identities[0].NewStatus != "revoked" {
			t.Errorf("answer %+v", res)
		}
		if g.statusOf(v.ClientID) != "revoked" || g.statusOf(other.ClientID) != "active" {
			t.Error("statuses after the revoke are wrong")
		}
		var ev store.AdminEvent // the newest is the certificate's cert.revoke
		for _, e := range g.events() {
			if e.Action == inventory.ActionOffboardRevoke {
				ev = e
				break
			}
		}
		if ev.Action != inventory.ActionOffboardRevoke || ev.Target != v.ClientID || ev.Changes["reason"] != "vendor contract ended" ||
			ev.Changes["filter"] != "owner=team-off@example.com vendor=acme" {
			t.Errorf("admin event %+v", ev)
		}
		// The identity's live workload certificate is revoked with it.
		certs := g.certs(v.ClientID)
		if len(certs) != 1 || certs[0].Serial != w.view.Serial || certs[0].Status != "revoked" {
			t.Errorf("certificates after offboarding: %+v", certs)
		}
	})
}
