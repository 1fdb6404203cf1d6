package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

func auditEv(i int) store.AuditEvent {
	return store.AuditEvent{
		Time: epoch.Add(time.Duration(i) * time.Microsecond), RequestID: fmt.Sprintf("req-%d", i),
		ClientID: fmt.Sprintf("c%d", i%32), Owner: "team", CredentialType: "dpop", TokenJTI: fmt.Sprintf("jti-%d", i),
		Scopes: []string{"invoices:read", "ledger:write"}, Route: fmt.Sprintf("route-%d", i%8), Method: "GET",
		PathTemplate: "/invoices/{id}", ObjectID: "inv-1", Status: 200, BytesIn: 120, BytesOut: 4096,
		LatencyMicros: 850, SourceAddr: "192.0.2.7:51234", Decision: "allow", Reason: "ok",
	}
}

func TestAuditEventsNoUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	defer s.Close()
	if err := s.AppendAuditEvents(t.Context(), []store.AuditEvent{auditEv(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := rawDB(t, path).Exec(`UPDATE audit_events SET decision = 'allow', client_id = 'mallory'`); err == nil {
		t.Error("UPDATE succeeded on the append-only audit trail")
	}
}

func TestAuditUnstorableTimeRefused(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	defer s.Close()
	far := auditEv(2)
	far.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.AppendAuditEvents(t.Context(), []store.AuditEvent{auditEv(1), far}); err == nil {
		t.Fatal("AppendAuditEvents stored a time it cannot represent")
	}
	if evs, _ := s.ListAuditEvents(t.Context(), store.AuditFilter{}); len(evs) != 0 {
		t.Errorf("refused batch wrote %d events", len(evs))
	}
}

// TestAuditQueriesUseIndexes keeps the filtered lists off full-table scans:
// the audit trail is the largest table by far.
func TestAuditQueriesUseIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	defer s.Close()
	db := rawDB(t, path)
	const cols = `SELECT * FROM audit_events`
	tests := []struct{ where, index string }{
		{` WHERE time >= 1 AND time < 2 ORDER BY time DESC, id DESC`, "audit_events_time"},
		{` WHERE client_id = 'c' AND time >= 1 ORDER BY time DESC, id DESC`, "audit_events_client_time"},
		{` WHERE route = 'r' AND time >= 1 ORDER BY time DESC, id DESC`, "audit_events_route_time"},
		{` ORDER BY time DESC, id DESC LIMIT 10`, "audit_events_time"},
	}
	for _, tt := range tests {
		rows, err := db.Query(`EXPLAIN QUERY PLAN ` + cols + tt.where)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, tt.index) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: plan %q, want index %s and no sort", tt.where, p, tt.index)
		}
	}
}

// BenchmarkAppendAuditEvents appends batches of 256, the audit writer's
// default batch, and reports the cost per event.
func BenchmarkAppendAuditEvents(b *testing.B) {
	const batchSize = 256
	s := openAt(b, filepath.Join(b.TempDir(), "keybound.db"))
	defer s.Close()
	ctx := context.Background()
	batch := make([]store.AuditEvent, batchSize)
	for i := range batch {
		batch[i] = auditEv(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		// Times move forward as a live gateway's do, so rows land at the end
		// of the time indexes. (Re-appending the same times would insert into
		// the middle of every index and measure page splits instead.)
		for i := range batch {
			batch[i].Time = batch[i].Time.Add(batchSize * time.Microsecond)
		}
		if err := s.AppendAuditEvents(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/event")
}
