package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// testLifecycleFilters pins the filters the lifecycle sweeps and the
// posture report use: clients holding a rotated-out credential, and audit
// events by reason code.
func testLifecycleFilters(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	ctx := t.Context()
	rotated := fullClient("rotated")
	plain := fullClient("plain")
	plain.Previous = nil
	plain.Secret.Lookup = nil
	mustCreate(t, s, rotated)
	mustCreate(t, s, plain)
	cs, err := s.ListClients(ctx, store.ClientFilter{WithPrevious: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].ID != "rotated" {
		t.Fatalf("ListClients(WithPrevious) returned %d clients, want only the rotated client", len(cs))
	}
	if d := diffClient(rotated, cs[0]); d != "" {
		t.Errorf("rotated client differs: %s", d)
	}

	expired := auditEvent(1, "c1", "invoices", "GET", "deny", time.Minute)
	expired.Reason = "client_expired"
	other := auditEvent(2, "c1", "invoices", "GET", "deny", 2*time.Minute)
	other.Reason = "invalid_token"
	late := auditEvent(3, "c2", "invoices", "GET", "deny", time.Hour)
	late.Reason = "client_expired"
	appendAudit(t, s, expired, other, late)
	for _, tt := range []struct {
		f    store.AuditFilter
		want []string
	}{
		{store.AuditFilter{Reason: "client_expired"}, []string{"c2", "c1"}},
		{store.AuditFilter{Reason: "client_expired", Since: at(30 * time.Minute)}, []string{"c2"}},
		{store.AuditFilter{Reason: "invalid_token"}, []string{"c1"}},
		{store.AuditFilter{Reason: "ok"}, nil},
	} {
		var got []string
		for _, ev := range listAudit(t, s, tt.f) {
			got = append(got, ev.ClientID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ListAuditEvents(%+v) clients = %v, want %v", tt.f, got, tt.want)
		}
	}
}
