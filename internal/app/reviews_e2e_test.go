package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
)

// TestReviewsThroughAdminAPI pins the wire shape of the review and owner
// endpoints: every refusal is an RFC 9457 problem with its own type and
// status, names its fields, and changes nothing; the happy paths answer the
// documented JSON.
func TestReviewsThroughAdminAPI(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Governance.RequireKnownOwners = true })
	if code, b := h.adminDo("POST", "/owners", adminapi.OwnerRequest{Name: "team-a@example.com"}); code != http.StatusCreated {
		t.Fatalf("add owner: %d %s", code, b)
	}
	c := h.register(inventory.Registration{Owner: "team-a@example.com", Scope: "reports:read", AuthMethod: "client_secret_basic", DPoPBound: true})
	before := len(h.events())

	yes := adminapi.AttestRequest{By: "team-a@example.com", StillNeeded: true, PurposeOK: true, ScopesOK: true}
	notOwner, notNeeded := yes, yes
	notOwner.By, notNeeded.StillNeeded = "team-b@example.com", false
	refused := []struct {
		name, method, path string
		body               any
		status             int
		typ, field         string
	}{
		{"bad state", "GET", "/reviews?state=soon", nil, 400, "invalid-parameter", ""},
		{"unknown parameter", "GET", "/reviews?owners=x", nil, 400, "invalid-parameter", ""},
		{"attest by a non-owner", "POST", "/clients/" + c.ClientID + "/attest", notOwner, 422, "not-owner", "by"},
		{"attest not needed", "POST", "/clients/" + c.ClientID + "/attest", notNeeded, 422, "not-confirmed", ""},
		{"attest by nobody", "POST", "/clients/" + c.ClientID + "/attest", adminapi.AttestRequest{}, 400, "invalid-attestation", "by"},
		{"attest unknown client", "POST", "/clients/kb-none/attest", yes, 404, "not-found", ""},
		{"attest unknown field", "POST", "/clients/" + c.ClientID + "/attest", map[string]any{"by": "x", "approved": true}, 400, "malformed-json", ""},
		{"owner twice", "POST", "/owners", adminapi.OwnerRequest{Name: "team-a@example.com"}, 409, "owner-exists", ""},
		{"owner bad contact", "POST", "/owners", adminapi.OwnerRequest{Name: "b", Contact: "b at example"}, 400, "invalid-owner-request", "contact"},
		{"depart unknown", "POST", "/owners/" + url.PathEscape("nobody@example.com") + "/depart", nil, 404, "not-found", ""},
		{"transfer to unknown", "POST", "/owners/transfer", adminapi.TransferRequest{From: "team-a@example.com", To: "team-z@example.com"}, 400, "invalid-owner-request", "to"},
		{"transfer with no source", "POST", "/owners/transfer", adminapi.TransferRequest{To: "team-a@example.com"}, 400, "invalid-owner-request", "from"},
		{"client transfer with from", "POST", "/clients/" + c.ClientID + "/transfer", adminapi.TransferRequest{From: "x", To: "team-a@example.com"}, 400, "invalid-owner-request", ""},
		{"create with an unknown owner", "POST", "/clients", inventory.Registration{Name: "x", Owner: "team-z@example.com", Purpose: "p", Environment: "dev",
			ExpiresAt: time.Now().Add(time.Hour), AuthMethod: "client_secret_basic", DPoPBound: true}, 400, "invalid-client-metadata", "owner"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			code, b := h.adminDo(tc.method, tc.path, tc.body)
			var pd problemBody
			if err := json.Unmarshal(b, &pd); err != nil {
				t.Fatalf("%d %s", code, b)
			}
			if code != tc.status || pd.Status != tc.status || pd.Type != "urn:keybound:problem:"+tc.typ || pd.Detail == "" {
				t.Errorf("got %d %s, want %d %s", code, b, tc.status, tc.typ)
			}
			if tc.field != "" && (len(pd.Errors) == 0 || !strings.Contains(string(b), `"field":"`+tc.field+`"`)) {
				t.Errorf("problem does not name field %s: %s", tc.field, b)
			}
		})
	}
	if n := len(h.events()); n != before {
		t.Errorf("refused requests wrote %d admin events", n-before)
	}

	code, b := h.adminDo("POST", "/clients/"+c.ClientID+"/attest", yes)
	var it adminapi.ReviewItem
	if err := json.Unmarshal(b, &it); code != 200 || err != nil || it.State != "current" || it.Basis != "attested" || it.LastAttestedBy != "team-a@example.com" {
		t.Fatalf("attest: %d %s", code, b)
	}
	code, b = h.adminDo("GET", "/reviews?state=all", nil)
	var list adminapi.ReviewList
	if err := json.Unmarshal(b, &list); code != 200 || err != nil || list.Counts["current"] != 2 || len(list.Reviews) != 2 {
		t.Errorf("review list: %d %s", code, b) // the new client and the admin identity
	}
	code, b = h.adminDo("POST", "/owners/"+url.PathEscape("team-a@example.com")+"/depart", adminapi.DepartRequest{Reason: "left"})
	var dep adminapi.DepartResponse
	if err := json.Unmarshal(b, &dep); code != 200 || err != nil || dep.Orphaned != 1 || dep.ClientIDs[0] != c.ClientID || dep.Owner.Status != "departed" {
		t.Errorf("depart: %d %s", code, b)
	}
	if v := h.clientView(c.ClientID); !v.Orphaned {
		t.Errorf("client view after depart: %+v", v)
	}
}
