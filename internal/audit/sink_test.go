package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/audit"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

func TestStoreSinkZeroValueRefuses(t *testing.T) {
	if err := (audit.StoreSink{}).Write(t.Context(), []store.AuditEvent{{Time: time.Now()}}); err == nil {
		t.Error("zero StoreSink accepted a batch it cannot store")
	}
}

// TestWriterToSQLite runs the pipeline into the real store: every recorded
// event lands, one transaction per batch.
func TestWriterToSQLite(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keybound.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := audit.New(audit.Config{BatchSize: 64, FlushEvery: time.Millisecond, Sinks: []audit.Sink{audit.StoreSink{Store: st}}})
	w.Start(t.Context())
	base := time.Date(2031, 3, 14, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		w.Record(store.AuditEvent{Time: base.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprintf("r%d", i),
			ClientID: fmt.Sprintf("c%d", i%3), Route: "invoices", Method: "GET", Scopes: []string{"invoices:read"},
			Decision: "allow", Reason: "ok", Status: 200})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Written != 300 || s.Dropped != 0 {
		t.Errorf("Stats = %+v, want 300 written", s)
	}
	evs, err := st.ListAuditEvents(t.Context(), store.AuditFilter{})
	if err != nil || len(evs) != 300 {
		t.Fatalf("ListAuditEvents: %d events, %v; want 300", len(evs), err)
	}
	if evs[0].RequestID != "r299" {
		t.Errorf("newest event %s, want r299", evs[0].RequestID)
	}
	rows, err := st.SummarizeAudit(t.Context(), store.AuditFilter{})
	if err != nil || len(rows) != 3 || rows[0].Count != 100 {
		t.Errorf("SummarizeAudit: %+v, %v; want 3 rows of 100", rows, err)
	}
}
