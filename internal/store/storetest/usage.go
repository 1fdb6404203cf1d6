package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// The usage-analytics part of the contract:
//
//   - Every stored audit event is counted in the usage rollups, and nothing
//     else is: a refused batch changes no count, and concurrent batches all
//     count.
//   - A window of N days is the UTC day of Now and the N-1 days before it;
//     the boundary is midnight UTC, whatever zone the times carry. Events
//     after the day of Now are in no window.
//   - Rows group by client, route, method, scopes (space-separated as
//     recorded), credential type and decision (not the reason), ordered by
//     those fields; Last is exact, and the newest event of the group
//     whatever the append order. One client's rows are the same as its
//     rows among every client's.
//   - Sources are the SourceAddr host without the port (store.SourceHost),
//     one row per client and host with its whole history, listed when its
//     last event is in the window; events without a client are in
//     UsageCounts (client "") but not in UsageSources or ClientActivity.
//   - ClientActivity spans the whole trail; LastAllowed is zero for a client
//     that was only ever denied.
//   - Posture snapshots come back byte for byte, newest append first.
func testUsage(t *testing.T, newStore func(*testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Windows", testUsageWindows},
		{"Grouping", testUsageGrouping},
		{"Sources", testUsageSources},
		{"Activity", testUsageActivity},
		{"RefusedBatchCountsNothing", testUsageRefusedBatch},
		{"Concurrency", testUsageConcurrency},
		{"BadFilter", testUsageBadFilter},
		{"PostureSnapshots", testPostureSnapshots},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// usageNow is "now" for the usage cases: base, whose UTC day is the
// reference day.
var usageNow = base

// dayStart returns midnight UTC of the day n days before usageNow's.
func dayStart(n int) time.Time {
	u := usageNow.UTC()
	return time.Date(u.Year(), u.Month(), u.Day()-n, 0, 0, 0, 0, time.UTC)
}

func usageEvent(client, route string, tm time.Time) store.AuditEvent {
	ev := auditEvent(0, client, route, "GET", "allow", 0, "invoices:read")
	ev.Time = tm
	return ev
}

func usageCounts(t *testing.T, s store.Store, f store.UsageFilter) []store.UsageCount {
	t.Helper()
	rows, err := s.UsageCounts(t.Context(), f)
	if err != nil {
		t.Fatalf("UsageCounts(%+v): %v", f, err)
	}
	return rows
}

var windows = []int{7, 30, 90}

func testUsageWindows(t *testing.T, s store.Store) {
	// In the zone of base (UTC+2), 01:00 on the day is still the day before
	// in UTC: the boundary must be UTC midnight.
	zone := base.Location()
	times := []time.Time{
		usageNow.Add(-time.Hour),                    // today
		dayStart(6),                                 // first instant of the 7-day window
		dayStart(6).Add(-1),                         // last instant before it
		dayStart(29).In(zone),                       // first instant of the 30-day window, in another zone
		dayStart(29).Add(-time.Nanosecond).In(zone), // outside 30, inside 90
		dayStart(89),                                // first instant of the 90-day window
		dayStart(89).Add(-1),                        // outside every window
		dayStart(-1),                                // tomorrow: in no window
	}
	for _, tm := range times {
		appendAudit(t, s, usageEvent("c1", "invoices", tm))
	}
	rows := usageCounts(t, s, store.UsageFilter{Now: usageNow, Days: windows})
	if len(rows) != 1 {
		t.Fatalf("want one group, got %+v", rows)
	}
	r := rows[0]
	if want := []int64{2, 4, 6}; !reflect.DeepEqual(r.Counts, want) {
		t.Errorf("counts per 7/30/90 days = %v, want %v", r.Counts, want)
	}
	if one := usageCounts(t, s, store.UsageFilter{ClientID: "c1", Now: usageNow, Days: windows}); !reflect.DeepEqual(one, rows) {
		t.Errorf("one client's counts differ from every client's:\n got %+v\nwant %+v", one, rows)
	}
	if !r.Last.Equal(usageNow.Add(-time.Hour)) || r.Last.Location() != time.UTC {
		t.Errorf("Last = %v, want %v in UTC (the newest event in the window, not tomorrow's)", r.Last, usageNow.Add(-time.Hour).UTC())
	}
	// The order of Days is the order of Counts, and one window works.
	rows = usageCounts(t, s, store.UsageFilter{Now: usageNow, Days: []int{90, 1}})
	if len(rows) != 1 || !reflect.DeepEqual(rows[0].Counts, []int64{6, 1}) {
		t.Errorf("Days [90 1]: %+v, want counts [6 1]", rows)
	}
	// Now a day later: the 7-day window slides.
	for _, id := range []string{"", "c1"} {
		rows = usageCounts(t, s, store.UsageFilter{ClientID: id, Now: usageNow.Add(24 * time.Hour), Days: []int{7}})
		if len(rows) != 1 || !reflect.DeepEqual(rows[0].Counts, []int64{2}) {
			t.Errorf("client %q a day later: %+v, want 2 (tomorrow's event in, the window's first day out)", id, rows)
		}
	}
	// A window with nothing in it has no rows.
	if rows := usageCounts(t, s, store.UsageFilter{Now: usageNow.Add(-200 * 24 * time.Hour), Days: windows}); len(rows) != 0 {
		t.Errorf("empty window: %+v", rows)
	}
}

func testUsageGrouping(t *testing.T, s store.Store) {
	mk := func(client, route, method, cred, decision, reason string, d time.Duration, scopes ...string) store.AuditEvent {
		ev := auditEvent(0, client, route, method, decision, -d, scopes...)
		ev.CredentialType, ev.Reason = cred, reason
		return ev
	}
	anon := mk("", "status", "GET", "", "allow", "ok", time.Minute)
	appendAudit(t, s,
		mk("c2", "ledger", "POST", "dpop", "allow", "ok", time.Hour, "ledger:write"),
		mk("c1", "invoices", "GET", "dpop", "allow", "ok", 3*time.Hour, "invoices:read"),
		mk("c1", "invoices", "GET", "dpop", "allow", "ok", 10*24*time.Hour, "invoices:read"),
		mk("c1", "invoices", "GET", "bearer", "allow", "ok", 2*time.Hour, "invoices:read"),
		mk("c1", "invoices", "GET", "dpop", "deny", "rate_limited", 2*time.Hour, "invoices:read"),
		mk("c1", "invoices", "GET", "dpop", "deny", "insufficient_scope", 6*time.Hour, "invoices:read"), // reasons are not a dimension
		anon,
	)
	// A second batch adds to the same group with an older time: Last keeps
	// the newest.
	appendAudit(t, s,
		mk("c1", "invoices", "GET", "dpop", "allow", "ok", 5*time.Hour, "invoices:read"),
		mk("c1", "invoices", "GET", "dpop", "allow", "ok", 4*time.Hour, "invoices:read", "ledger:write"),
	)
	type row struct {
		client, route, method, scopes, cred, decision string
		counts                                        []int64
		last                                          time.Time
	}
	got := func(f store.UsageFilter) []row {
		var out []row
		for _, r := range usageCounts(t, s, f) {
			out = append(out, row{r.ClientID, r.Route, r.Method, r.Scopes, r.CredentialType, r.Decision, r.Counts, r.Last})
		}
		return out
	}
	ago := func(d time.Duration) time.Time { return usageNow.Add(-d).UTC() }
	want := []row{
		{"", "status", "GET", "", "", "allow", []int64{1, 1}, ago(time.Minute)},
		{"c1", "invoices", "GET", "invoices:read", "bearer", "allow", []int64{1, 1}, ago(2 * time.Hour)},
		{"c1", "invoices", "GET", "invoices:read", "dpop", "allow", []int64{2, 3}, ago(3 * time.Hour)},
		{"c1", "invoices", "GET", "invoices:read", "dpop", "deny", []int64{2, 2}, ago(2 * time.Hour)},
		{"c1", "invoices", "GET", "invoices:read ledger:write", "dpop", "allow", []int64{1, 1}, ago(4 * time.Hour)},
		{"c2", "ledger", "POST", "ledger:write", "dpop", "allow", []int64{1, 1}, ago(time.Hour)},
	}
	if g := got(store.UsageFilter{Now: usageNow, Days: []int{7, 30}}); !reflect.DeepEqual(g, want) {
		t.Errorf("rows:\n got %+v\nwant %+v", g, want)
	}
	// One client's rows are the same, however the backend finds them.
	if g := got(store.UsageFilter{ClientID: "c1", Now: usageNow, Days: []int{7, 30}}); !reflect.DeepEqual(g, want[1:5]) {
		t.Errorf("client c1:\n got %+v\nwant %+v", g, want[1:5])
	}
	if g := got(store.UsageFilter{ClientID: "c2", Now: usageNow, Days: []int{7, 30}}); !reflect.DeepEqual(g, want[5:]) {
		t.Errorf("client c2:\n got %+v\nwant %+v", g, want[5:])
	}
	if g := got(store.UsageFilter{ClientID: "nobody", Now: usageNow, Days: []int{7}}); len(g) != 0 {
		t.Errorf("unknown client: %+v", g)
	}
}

func testUsageSources(t *testing.T, s store.Store) {
	mk := func(client, addr string, tm time.Time) store.AuditEvent {
		ev := usageEvent(client, "invoices", tm)
		ev.SourceAddr = addr
		return ev
	}
	appendAudit(t, s,
		mk("c1", "192.0.2.1:5000", usageNow.Add(-time.Hour)),
		mk("c1", "192.0.2.1:5001", usageNow.Add(-2*time.Hour)), // another port, same host
		mk("c1", "192.0.2.1:6000", dayStart(40)),
		mk("c1", "[2001:db8::1]:443", dayStart(20)),
		mk("c1", "2001:db8::2", dayStart(3)), // no port
		mk("c1", "pipe", dayStart(3)),
		mk("c2", "198.51.100.9:1", usageNow.Add(-time.Minute)),
		mk("", "203.0.113.5:1", usageNow.Add(-time.Minute)), // no client: left out
		mk("c1", "192.0.2.200:1", dayStart(100)),            // outside 90 days
	)
	rows, err := s.UsageSources(t.Context(), store.UsageFilter{Now: usageNow, Days: windows})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		client, source string
		first, last    time.Time
		events         int64
	}
	var got []row
	for _, r := range rows {
		got = append(got, row{r.ClientID, r.Source, r.First, r.Last, r.Events})
	}
	want := []row{
		{"c1", "192.0.2.1", dayStart(40), usageNow.Add(-time.Hour).UTC(), 3},
		{"c1", "2001:db8::1", dayStart(20), dayStart(20), 1},
		{"c1", "2001:db8::2", dayStart(3), dayStart(3), 1},
		{"c1", "pipe", dayStart(3), dayStart(3), 1},
		{"c2", "198.51.100.9", usageNow.Add(-time.Minute).UTC(), usageNow.Add(-time.Minute).UTC(), 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources:\n got %+v\nwant %+v", got, want)
	}
	// A host seen 100 days ago and again today: in the window, with its
	// whole history.
	appendAudit(t, s, mk("c1", "192.0.2.200:2", usageNow.Add(-time.Second)), mk("c1", "192.0.2.201:1", dayStart(-1)))
	rows, err = s.UsageSources(t.Context(), store.UsageFilter{ClientID: "c1", Now: usageNow, Days: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Source != "192.0.2.1" || rows[1].Source != "192.0.2.200" || !rows[1].First.Equal(dayStart(100)) || rows[1].Events != 2 {
		t.Errorf("last day: %+v (a host seen only tomorrow is in no window)", rows)
	}
	rows, err = s.UsageSources(t.Context(), store.UsageFilter{ClientID: "c2", Now: usageNow, Days: []int{1}})
	if err != nil || len(rows) != 1 || rows[0].Source != "198.51.100.9" {
		t.Errorf("c2 only: %+v, %v", rows, err)
	}
}

func testUsageActivity(t *testing.T, s store.Store) {
	denied := usageEvent("c2", "invoices", usageNow.Add(-time.Hour))
	denied.Decision, denied.Reason = "deny", "insufficient_scope"
	late := usageEvent("c1", "invoices", usageNow.Add(-400*24*time.Hour))
	deniedC1 := usageEvent("c1", "invoices", usageNow.Add(-time.Minute))
	deniedC1.Decision, deniedC1.Reason = "deny", "rate_limited"
	appendAudit(t, s, usageEvent("c1", "invoices", usageNow.Add(-2*time.Hour)), denied, usageEvent("", "status", usageNow))
	// An older batch appended later: First moves back, Last stays.
	appendAudit(t, s, late, deniedC1)
	acts, err := s.ClientActivity(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ClientActivity{
		{ClientID: "c1", First: late.Time.UTC(), Last: deniedC1.Time.UTC(), LastAllowed: usageNow.Add(-2 * time.Hour).UTC(), Events: 3},
		{ClientID: "c2", First: denied.Time.UTC(), Last: denied.Time.UTC(), Events: 1},
	}
	if !reflect.DeepEqual(acts, want) {
		t.Errorf("activity:\n got %+v\nwant %+v", acts, want)
	}
	one, err := s.ClientActivity(t.Context(), "c2")
	if err != nil || !reflect.DeepEqual(one, want[1:]) {
		t.Errorf("c2: %+v, %v", one, err)
	}
	none, err := s.ClientActivity(t.Context(), "nobody")
	if err != nil || len(none) != 0 {
		t.Errorf("a client without events: %+v, %v (want no row, no error)", none, err)
	}
}

func testUsageRefusedBatch(t *testing.T, s store.Store) {
	appendAudit(t, s, usageEvent("c1", "invoices", usageNow.Add(-time.Hour)))
	bad := usageEvent("c1", "invoices", time.Time{})
	if err := s.AppendAuditEvents(t.Context(), []store.AuditEvent{usageEvent("c1", "invoices", usageNow.Add(-time.Minute)), usageEvent("c9", "x", usageNow), bad}); err == nil {
		t.Fatal("a batch with an event without a time was stored")
	}
	rows := usageCounts(t, s, store.UsageFilter{Now: usageNow, Days: []int{1}})
	if len(rows) != 1 || rows[0].Counts[0] != 1 || !rows[0].Last.Equal(usageNow.Add(-time.Hour)) {
		t.Errorf("after a refused batch: %+v, want the one stored event only", rows)
	}
	if acts, _ := s.ClientActivity(t.Context(), ""); len(acts) != 1 || acts[0].Events != 1 {
		t.Errorf("activity after a refused batch: %+v", acts)
	}
	if src, _ := s.UsageSources(t.Context(), store.UsageFilter{Now: usageNow, Days: []int{1}}); len(src) != 1 || src[0].Events != 1 {
		t.Errorf("sources after a refused batch: %+v", src)
	}
}

func testUsageConcurrency(t *testing.T, s store.Store) {
	const writers, batches, perBatch = 4, 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				evs := make([]store.AuditEvent, perBatch)
				for i := range evs {
					evs[i] = usageEvent(fmt.Sprintf("c%d", i%2), "invoices", usageNow.Add(-time.Duration(w*1000+b*perBatch+i)*time.Second))
				}
				errs <- s.AppendAuditEvents(t.Context(), evs)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, r := range usageCounts(t, s, store.UsageFilter{Now: usageNow, Days: []int{2}}) {
		total += r.Counts[0]
	}
	if total != writers*batches*perBatch {
		t.Errorf("counted %d events, appended %d", total, writers*batches*perBatch)
	}
	acts, err := s.ClientActivity(t.Context(), "")
	if err != nil || len(acts) != 2 || acts[0].Events+acts[1].Events != writers*batches*perBatch {
		t.Errorf("activity: %+v, %v", acts, err)
	}
}

func testUsageBadFilter(t *testing.T, s store.Store) {
	for _, f := range []store.UsageFilter{
		{Days: windows},                    // no Now
		{Now: usageNow},                    // no windows
		{Now: usageNow, Days: []int{7, 0}}, // an empty window
		{Now: usageNow, Days: []int{-3}},   // a negative one
		{Now: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), Days: windows}, // not storable
	} {
		if _, err := s.UsageCounts(t.Context(), f); err == nil {
			t.Errorf("UsageCounts(%+v) accepted", f)
		}
		if _, err := s.UsageSources(t.Context(), f); err == nil {
			t.Errorf("UsageSources(%+v) accepted", f)
		}
	}
}

func testPostureSnapshots(t *testing.T, s store.Store) {
	if _, err := s.LatestPostureSnapshot(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no snapshot yet: err = %v, want ErrNotFound", err)
	}
	if _, err := s.AppendPostureSnapshot(t.Context(), store.PostureSnapshot{Body: []byte("{}")}); err == nil {
		t.Error("a snapshot without a time was stored")
	}
	body1 := []byte(`{ "b": 1, "a": [2] }`)
	body2 := []byte("{\"x\":\"\u00e9\\n\"}")
	id1, err := s.AppendPostureSnapshot(t.Context(), store.PostureSnapshot{ID: 99, Time: at(time.Hour), Body: body1})
	if err != nil {
		t.Fatal(err)
	}
	// Appended later with an earlier time: the latest is by append order.
	id2, err := s.AppendPostureSnapshot(t.Context(), store.PostureSnapshot{Time: at(time.Minute), Body: body2})
	if err != nil {
		t.Fatal(err)
	}
	if id2 <= id1 {
		t.Errorf("ids %d then %d: want growing ids", id1, id2)
	}
	got, err := s.LatestPostureSnapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id2 || !bytes.Equal(got.Body, body2) || !got.Time.Equal(at(time.Minute)) || got.Time.Location() != time.UTC {
		t.Errorf("latest = %+v (%s), want id %d, body %s, time %v UTC", got, got.Body, id2, body2, at(time.Minute))
	}
}
