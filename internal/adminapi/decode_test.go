package adminapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

var admin = &protect.Caller{Claims: &accesstoken.Claims{ClientID: "kb-admin"}}

// serve runs h on a POST with body and renders its error as the API does.
func serve(a *API, h handlerFunc, body string, wrap func(*http.Request, http.ResponseWriter)) (*httptest.ResponseRecorder, problem.Details) {
	r := httptest.NewRequest(http.MethodPost, Prefix+"/clients/kb-1/suspend", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.SetPathValue("id", "kb-1")
	rec := httptest.NewRecorder()
	if wrap != nil {
		wrap(r, rec)
	}
	if err := h(rec, r, admin); err != nil {
		a.render(rec, r, err)
	}
	var p problem.Details
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	return rec, p
}

// TestDecodeRefusesTrailingData: a body is exactly one JSON object. The
// API has no inventory behind it, so a body that got through would panic.
func TestDecodeRefusesTrailingData(t *testing.T) {
	a := &API{}
	for _, body := range []string{
		`{"reason":"x"}}`,
		`{"reason":"x"}]`,
		`{"reason":"x"}{}`,
		`{"reason":"x"} {"reason":"y"}`,
		`{"reason":"x"} garbage`,
		`{"reason":"x"}"`,
	} {
		rec, p := serve(a, a.changeStatus("suspend"), body, nil)
		if rec.Code != http.StatusBadRequest || p.Type != "urn:keybound:problem:malformed-json" || !strings.Contains(p.Detail, "after the JSON object") {
			t.Errorf("%s: %d %s; want 400 malformed-json about data after the object", body, rec.Code, rec.Body)
		}
	}
	// Whitespace after the object is not data.
	var v statusChange
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{\"reason\":\"x\"}\r\n\t "))
	r.Header.Set("Content-Type", "application/json")
	if err := decode(r, &v); err != nil || v.Reason != "x" {
		t.Errorf("object followed by whitespace: %v, %+v", err, v)
	}
}

// TestDecodeOversizedBody: a body over the limit is 413 naming the limit,
// whether the JSON is cut in the middle of a value or after a complete
// one, and whether this endpoint's limit or the server's is hit first.
func TestDecodeOversizedBody(t *testing.T) {
	a := &API{}
	limit := strconv.Itoa(MaxRequestBytes)
	long := `{"reason":"` + strings.Repeat("a", MaxRequestBytes) + `"}`
	padded := `{"reason":"x"}` + strings.Repeat(" ", MaxRequestBytes)
	for name, body := range map[string]string{"value over the limit": long, "whitespace over the limit": padded} {
		rec, p := serve(a, a.changeStatus("suspend"), body, nil)
		if rec.Code != http.StatusRequestEntityTooLarge || rec.Header().Get("Content-Type") != "application/problem+json" ||
			p.Type != "urn:keybound:problem:too-large" || p.Status != http.StatusRequestEntityTooLarge || !strings.Contains(p.Detail, limit) {
			t.Errorf("%s: %d %.300s; want a 413 problem naming the limit %s", name, rec.Code, rec.Body, limit)
		}
	}
	// The server's own limit (server.max_body_bytes), applied before the
	// handler, is the one named when it is lower.
	rec, p := serve(a, a.changeStatus("suspend"), long, func(r *http.Request, w http.ResponseWriter) {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
	})
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(p.Detail, "4096") {
		t.Errorf("over the server limit: %d %.300s; want 413 naming 4096", rec.Code, rec.Body)
	}
	// Exactly at the limit is accepted.
	exact := `{"reason":"` + strings.Repeat("a", MaxRequestBytes-len(`{"reason":""}`)) + `"}`
	var v statusChange
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(exact))
	r.Header.Set("Content-Type", "application/json")
	if err := decode(r, &v); err != nil || len(exact) != MaxRequestBytes {
		t.Errorf("a body of exactly %d bytes: %v", len(exact), err)
	}
}

// TestSuspendReasonWithControlCharacters: a reason that would forge lines
// of `keybound admin-log` is refused with a 400 naming the reason field,
// and the identity and the admin log stay as they were.
func TestSuspendReasonWithControlCharacters(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	c := &identity.Client{ID: "kb-1", Name: "billing", Owner: "team", Purpose: "tests", Environment: "prod", Status: identity.StatusActive,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(24 * time.Hour), AuthMethod: identity.AuthPrivateKeyJWT}
	if err := st.CreateClient(ctx, c, store.AdminEvent{Time: now, Actor: "test", Action: "client.create", Target: c.ID}); err != nil {
		t.Fatal(err)
	}
	inv := &inventory.Service{Store: st, Now: func() time.Time { return now }}
	a := &API{Inventory: inv, Now: inv.Now}
	for _, action := range []string{"suspend", "revoke"} {
		rec, p := serve(a, a.changeStatus(action), `{"reason":"\u001b[2J\nclient.revoke kb-2 by admin"}`, nil)
		if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/problem+json" ||
			len(p.Errors) != 1 || p.Errors[0].Field != "reason" || p.Errors[0].Detail == "" {
			t.Errorf("%s: %d %s; want 400 with one error naming reason", action, rec.Code, rec.Body)
		}
	}
	got, err := st.GetClient(ctx, "kb-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != identity.StatusActive || !got.UpdatedAt.Equal(now) {
		t.Errorf("the refused change went through: %s, updated %s", got.Status, got.UpdatedAt)
	}
	if evs, _ := st.ListAdminEvents(ctx, "", 0); len(evs) != 1 {
		t.Errorf("admin log holds %d events; want only the creation", len(evs))
	}
	rec, _ := serve(a, a.changeStatus("suspend"), `{"reason":"on-call rotation"}`, nil)
	if rec.Code != http.StatusOK {
		t.Errorf("a printable reason: %d %s", rec.Code, rec.Body)
	}
}
