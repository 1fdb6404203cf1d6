package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// dumpTable returns every row of table as text, in primary-key order.
func dumpTable(t *testing.T, db *sql.DB, table, order string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM ` + table + ` ORDER BY ` + order)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUsageMigrationBackfill upgrades a database whose audit trail predates
// migration 0005: the backfill in SQL must build exactly the rollups that
// AppendAuditEvents builds in Go, including the floored day of times before
// 1970 and the host of every shape of source address (store.SourceHost).
func TestUsageMigrationBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	addrs := []string{"192.0.2.1:443", "192.0.2.1:444", "[2001:db8::1]:443", "[::1]", "2001:db8::2", "pipe", "", "[]:1", "[unterminated", "a:b:c"}
	var evs []store.AuditEvent
	for i := range 60 {
		ev := auditEv(i)
		ev.Time = epoch.Add(-time.Duration(i) * 7 * time.Hour)
		ev.SourceAddr = addrs[i%len(addrs)]
		if i%5 == 0 {
			ev.Decision, ev.Reason = "deny", "insufficient_scope"
		}
		if i%7 == 0 {
			ev.ClientID = ""
		}
		evs = append(evs, ev)
	}
	for _, tm := range []time.Time{
		time.Unix(0, 0).UTC(), time.Unix(0, -1).UTC(), time.Unix(-86400, 0).UTC(), time.Unix(-86400, -1).UTC(),
		time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC),
	} {
		ev := auditEv(len(evs))
		ev.Time = tm
		evs = append(evs, ev)
	}
	if err := s.AppendAuditEvents(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	tables := map[string]string{
		"audit_usage_daily":    "day, client_id, route, method, scopes, credential_type, decision",
		"audit_client_sources": "client_id, source",
	}
	db := rawDB(t, path)
	want := map[string][]string{}
	for tb, order := range tables {
		want[tb] = dumpTable(t, db, tb, order)
		if len(want[tb]) == 0 {
			t.Fatalf("%s is empty after AppendAuditEvents", tb)
		}
	}
	// Back to schema version 4, with the audit trail kept. Every migration
	// after 0005 is undone here too, newest first.
	for _, q := range []string{
		`DROP TABLE reviews`, `DROP TABLE owners`,
		`DROP TABLE notifications`, `DROP INDEX clients_expires`,
		`DROP INDEX audit_events_reason_time`, `DROP TRIGGER clients_lookup_distinct_insert`, `DROP TRIGGER clients_lookup_distinct_update`, `DROP INDEX clients_prev_secret_lookup`, `ALTER TABLE clients DROP COLUMN prev_secret_lookup`,
		`ALTER TABLE clients DROP COLUMN previous`, `ALTER TABLE clients DROP COLUMN tags`,
		`DROP TABLE audit_usage_daily`, `DROP TABLE audit_client_sources`,
		`DROP TABLE posture_snapshots`, `DELETE FROM schema_migrations WHERE version >= 5`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s = openAt(t, path)
	defer s.Close()
	db = rawDB(t, path)
	for tb, order := range tables {
		if got := dumpTable(t, db, tb, order); !reflect.DeepEqual(got, want[tb]) {
			t.Errorf("%s after the backfill:\n got %s\nwant %s", tb, strings.Join(got, "\n     "), strings.Join(want[tb], "\n     "))
		}
	}
}

func TestSourceHost(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:443": "192.0.2.1", "[2001:db8::1]:443": "2001:db8::1", "[::1]": "::1", "2001:db8::2": "2001:db8::2",
		"pipe": "pipe", "": "", "[]:1": "", "[unterminated": "[unterminated", "a:b:c": "a:b:c", "host:": "host",
	} {
		if got := store.SourceHost(in); got != want {
			t.Errorf("SourceHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUsageDay(t *testing.T) {
	for _, tt := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0}, {time.Unix(86399, 999999999), 0}, {time.Unix(86400, 0), 1},
		{time.Unix(0, -1), -1}, {time.Unix(-86400, 0), -1}, {time.Unix(-86400, -1), -2},
		{time.Date(2031, 3, 14, 23, 30, 0, 0, time.FixedZone("UTC-2", -2*3600)), store.UsageDay(time.Date(2031, 3, 15, 1, 30, 0, 0, time.UTC))},
	} {
		if got := store.UsageDay(tt.t); got != tt.want {
			t.Errorf("UsageDay(%v) = %d, want %d", tt.t, got, tt.want)
		}
	}
}

// BenchmarkAppendAuditEventsSparse appends batches in which every event
// has a client, route and source of its own, so every event costs an
// upsert in each usage rollup: the rollups' worst case. Compare with
// BenchmarkAppendAuditEvents, whose batches come from 32 clients.
func BenchmarkAppendAuditEventsSparse(b *testing.B) {
	const batchSize = 256
	s := openAt(b, filepath.Join(b.TempDir(), "keybound.db"))
	defer s.Close()
	ctx := context.Background()
	batch := make([]store.AuditEvent, batchSize)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			n++
			ev := auditEv(n)
			ev.ClientID = fmt.Sprintf("c%05d", n%10007)
			ev.Route = fmt.Sprintf("route-%d", n%13)
			ev.SourceAddr = fmt.Sprintf("10.0.%d.%d:443", n%10007/256, n%256)
			batch[i] = ev
		}
		if err := s.AppendAuditEvents(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/event")
}

// TestUsageCountsClientIDWithNUL: every client's counts are aggregated on
// a NUL-joined key; a client id holding NUL must still come back whole.
func TestUsageCountsClientIDWithNUL(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	defer s.Close()
	ev := auditEv(1)
	ev.ClientID = "odd\x00id\x00"
	if err := s.AppendAuditEvents(t.Context(), []store.AuditEvent{ev}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.UsageCounts(t.Context(), store.UsageFilter{Now: ev.Time, Days: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].ClientID != ev.ClientID || rows[0].Route != ev.Route || rows[0].Decision != "allow" || !rows[0].Last.Equal(ev.Time) {
		t.Errorf("rows %+v", rows)
	}
}
