package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// auditEventFields is the number of fields of store.AuditEvent the suite
// knows. When the type grows, this fails first: extend fullAuditEvent and
// every backend.
const auditEventFields = 19

// auditEvent returns an event with the fields the filters and the summary
// look at; the rest keep distinct values derived from n, so a mixed-up row
// shows in the round trip.
func auditEvent(n int, clientID, route, method, decision string, d time.Duration, scopes ...string) store.AuditEvent {
	return store.AuditEvent{
		Time:           at(d),
		RequestID:      fmt.Sprintf("req-%d", n),
		ClientID:       clientID,
		Owner:          "team-" + clientID,
		CredentialType: "dpop",
		TokenJTI:       fmt.Sprintf("jti-%d", n),
		Scopes:         scopes,
		Route:          route,
		Method:         method,
		PathTemplate:   "/" + route + "/{id}",
		ObjectID:       fmt.Sprintf("obj-%d", n),
		Status:         200 + n,
		BytesIn:        int64(1000 + n),
		BytesOut:       int64(2000 + n),
		LatencyMicros:  int64(3000 + n),
		SourceAddr:     fmt.Sprintf("192.0.2.%d:443", n),
		Decision:       decision,
		Reason:         "ok",
	}
}

// fullAuditEvent sets every field, with values that stress the encoding:
// extreme integers, characters that need quoting, non-ASCII text.
func fullAuditEvent() store.AuditEvent {
	return store.AuditEvent{
		Time:           at(5*time.Second + 7),
		RequestID:      "01J9Z6\x00\"quoted\"\nline",
		ClientID:       "c1",
		Owner:          "équipe-facturation",
		CredentialType: "mtls",
		TokenJTI:       "jti-full",
		Scopes:         []string{"invoices:read", "ledger:write", "a/b~c"},
		Route:          "invoices",
		Method:         "GET",
		PathTemplate:   "/invoices/{id}",
		ObjectID:       "inv-42",
		Status:         599,
		BytesIn:        1<<63 - 1,
		BytesOut:       -1,
		LatencyMicros:  1<<53 + 1,
		SourceAddr:     "[2001:db8::1]:55123",
		Decision:       "allow",
		Reason:         "ok",
	}
}

// normAudit maps ev to the form the contract compares: no ID, UTC time
// without a monotonic reading, nil for empty scopes.
func normAudit(ev store.AuditEvent) store.AuditEvent {
	ev.ID = 0
	ev.Time = normTime(ev.Time)
	if len(ev.Scopes) == 0 {
		ev.Scopes = nil
	}
	return ev
}

func appendAudit(t *testing.T, s store.Store, evs ...store.AuditEvent) {
	t.Helper()
	if err := s.AppendAuditEvents(t.Context(), evs); err != nil {
		t.Fatalf("AppendAuditEvents(%d events): %v", len(evs), err)
	}
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditEvent {
	t.Helper()
	evs, err := s.ListAuditEvents(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAuditEvents(%+v): %v", f, err)
	}
	return evs
}

// auditFixture is three batches whose times run out of append order and
// collide (events 2 and 4 share a time), so the list order is tested, not
// assumed. Indexes into it name the events in the tests below.
func auditFixture() [][]store.AuditEvent {
	deny := func(ev store.AuditEvent, reason string) store.AuditEvent {
		ev.Reason, ev.Status = reason, 403
		return ev
	}
	noToken := auditEvent(5, "", "invoices", "GET", "deny", 4*time.Second)
	noToken.CredentialType, noToken.TokenJTI, noToken.Owner, noToken.ObjectID, noToken.Reason, noToken.Status = "none", "", "", "", "invalid_token", 401
	full := fullAuditEvent()
	return [][]store.AuditEvent{
		{
			auditEvent(0, "c1", "invoices", "GET", "allow", 0, "invoices:read"),
			auditEvent(1, "c1", "invoices", "GET", "allow", time.Second, "invoices:read"),
			deny(auditEvent(2, "c2", "ledger", "POST", "deny", 2*time.Second, "ledger:write"), "insufficient_scope"),
		},
		{
			auditEvent(3, "c1", "ledger", "POST", "allow", 3*time.Second, "invoices:read", "ledger:write"),
			deny(auditEvent(4, "c2", "ledger", "POST", "deny", 2*time.Second, "ledger:write"), "insufficient_scope"),
			noToken,
		},
		{
			func() store.AuditEvent { full.Scopes = []string{"invoices:read"}; return full }(),
			deny(auditEvent(7, "c1", "invoices", "GET", "deny", 6*time.Second, "invoices:read"), "rate_limited"),
		},
	}
}

func testAuditEvents(t *testing.T, newStore func(*testing.T) store.Store) {
	if n := reflect.TypeFor[store.AuditEvent]().NumField(); n != auditEventFields {
		t.Fatalf("store.AuditEvent has %d fields, the suite knows %d: extend fullAuditEvent and every backend", n, auditEventFields)
	}
	s := newStore(t)
	if evs := listAudit(t, s, store.AuditFilter{}); len(evs) != 0 {
		t.Fatalf("ListAuditEvents on an empty store: %d events", len(evs))
	}
	var all []store.AuditEvent
	for _, batch := range auditFixture() {
		appendAudit(t, s, batch...)
		all = append(all, batch...)
	}

	// Every listed event round-trips, in UTC, with a positive ID that grows
	// with appending.
	got := listAudit(t, s, store.AuditFilter{})
	if len(got) != len(all) {
		t.Fatalf("ListAuditEvents: %d events, want %d", len(got), len(all))
	}
	ids := map[int64]string{}
	for _, g := range got {
		checkUTC(t, "audit event "+g.RequestID, g.Time)
		if g.ID <= 0 {
			t.Errorf("event %s: ID %d, want > 0", g.RequestID, g.ID)
		}
		if prev, dup := ids[g.ID]; dup {
			t.Errorf("events %s and %s share ID %d", prev, g.RequestID, g.ID)
		}
		ids[g.ID] = g.RequestID
	}
	byReq := map[string]store.AuditEvent{}
	for _, g := range got {
		byReq[g.RequestID] = g
	}
	for _, w := range all {
		g, ok := byReq[w.RequestID]
		if !ok {
			t.Errorf("event %q not listed", w.RequestID)
			continue
		}
		if !reflect.DeepEqual(normAudit(g), normAudit(w)) {
			t.Errorf("round trip of %q:\n got %+v\nwant %+v", w.RequestID, normAudit(g), normAudit(w))
		}
	}
	if a, b := byReq["req-2"], byReq["req-4"]; a.ID >= b.ID {
		t.Errorf("IDs do not follow append order: req-2 has %d, req-4 (appended later) %d", a.ID, b.ID)
	}

	// Every fixture event's index is its position in all, so want lists name
	// events by index, newest first.
	reqIdx := map[string]int{}
	for i, ev := range all {
		reqIdx[ev.RequestID] = i
	}
	zone := time.FixedZone("UTC-7", -7*60*60)
	tests := []struct {
		name string
		f    store.AuditFilter
		want []int
	}{
		{"all, newest time first, ties newest append first", store.AuditFilter{}, []int{7, 6, 5, 3, 4, 2, 1, 0}},
		{"client", store.AuditFilter{ClientID: "c1"}, []int{7, 6, 3, 1, 0}},
		{"other client", store.AuditFilter{ClientID: "c2"}, []int{4, 2}},
		{"route", store.AuditFilter{Route: "invoices"}, []int{7, 6, 5, 1, 0}},
		{"decision", store.AuditFilter{Decision: "deny"}, []int{7, 5, 4, 2}},
		{"since is inclusive", store.AuditFilter{Since: at(2 * time.Second)}, []int{7, 6, 5, 3, 4, 2}},
		{"since one ns later", store.AuditFilter{Since: at(2*time.Second + 1)}, []int{7, 6, 5, 3}},
		{"until is exclusive", store.AuditFilter{Until: at(2 * time.Second)}, []int{1, 0}},
		{"since and until", store.AuditFilter{Since: at(time.Second), Until: at(4 * time.Second)}, []int{3, 4, 2, 1}},
		{"times in another zone", store.AuditFilter{Since: at(time.Second).In(zone), Until: at(4 * time.Second).In(zone)}, []int{3, 4, 2, 1}},
		{"client, route and decision", store.AuditFilter{ClientID: "c1", Route: "invoices", Decision: "allow"}, []int{6, 1, 0}},
		{"limit", store.AuditFilter{Limit: 3}, []int{7, 6, 5}},
		{"limit cuts a tie", store.AuditFilter{Since: at(2 * time.Second), Until: at(3 * time.Second), Limit: 1}, []int{4}},
		{"filter and limit", store.AuditFilter{ClientID: "c1", Limit: 2}, []int{7, 6}},
		{"limit above count", store.AuditFilter{Limit: 100}, []int{7, 6, 5, 3, 4, 2, 1, 0}},
		{"negative limit is no limit", store.AuditFilter{ClientID: "c2", Limit: -1}, []int{4, 2}},
		{"empty client id is no filter", store.AuditFilter{ClientID: ""}, []int{7, 6, 5, 3, 4, 2, 1, 0}},
		{"no match", store.AuditFilter{ClientID: "zzz"}, nil},
		{"until before since", store.AuditFilter{Since: at(4 * time.Second), Until: at(time.Second)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var idx []int
			for _, ev := range listAudit(t, s, tt.f) {
				idx = append(idx, reqIdx[ev.RequestID])
			}
			if !slices.Equal(idx, tt.want) {
				t.Errorf("ListAuditEvents(%+v) = events %v, want %v", tt.f, idx, tt.want)
			}
		})
	}
}

func testAuditSummary(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	for _, batch := range auditFixture() {
		appendAudit(t, s, batch...)
	}
	row := func(client, route, method, scopes, decision string, n int64, first, last time.Duration) store.AuditSummaryRow {
		return store.AuditSummaryRow{ClientID: client, Route: route, Method: method, Scopes: scopes, Decision: decision,
			Count: n, First: at(first).UTC(), Last: at(last).UTC()}
	}
	var (
		c1Read  = row("c1", "invoices", "GET", "invoices:read", "allow", 3, 0, 5*time.Second+7)
		c2Deny  = row("c2", "ledger", "POST", "ledger:write", "deny", 2, 2*time.Second, 2*time.Second)
		anon    = row("", "invoices", "GET", "", "deny", 1, 4*time.Second, 4*time.Second)
		c1Limit = row("c1", "invoices", "GET", "invoices:read", "deny", 1, 6*time.Second, 6*time.Second)
		c1Write = row("c1", "ledger", "POST", "invoices:read ledger:write", "allow", 1, 3*time.Second, 3*time.Second)
	)
	tests := []struct {
		name string
		f    store.AuditFilter
		want []store.AuditSummaryRow
	}{
		{"all: by count, ties by client, route, method, scopes, decision", store.AuditFilter{}, []store.AuditSummaryRow{c1Read, c2Deny, anon, c1Limit, c1Write}},
		{"client", store.AuditFilter{ClientID: "c1"}, []store.AuditSummaryRow{c1Read, c1Limit, c1Write}},
		{"route", store.AuditFilter{Route: "ledger"}, []store.AuditSummaryRow{c2Deny, c1Write}},
		{"decision", store.AuditFilter{Decision: "deny"}, []store.AuditSummaryRow{c2Deny, anon, c1Limit}},
		{"since narrows counts and first", store.AuditFilter{Since: at(time.Second)},
			[]store.AuditSummaryRow{row("c1", "invoices", "GET", "invoices:read", "allow", 2, time.Second, 5*time.Second+7), c2Deny, anon, c1Limit, c1Write}},
		{"until", store.AuditFilter{Until: at(3 * time.Second)},
			[]store.AuditSummaryRow{row("c1", "invoices", "GET", "invoices:read", "allow", 2, 0, time.Second), c2Deny}},
		{"limit", store.AuditFilter{Limit: 2}, []store.AuditSummaryRow{c1Read, c2Deny}},
		{"no match", store.AuditFilter{ClientID: "zzz"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.SummarizeAudit(t.Context(), tt.f)
			if err != nil {
				t.Fatalf("SummarizeAudit: %v", err)
			}
			for _, r := range got {
				checkUTC(t, "summary row", r.First, r.Last)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SummarizeAudit(%+v):\n got %+v\nwant %+v", tt.f, got, tt.want)
			}
		})
	}
}

// testAuditBatches pins the batch contract: an empty batch writes nothing
// and is no error; one unstorable event refuses its whole batch.
func testAuditBatches(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	for _, batch := range [][]store.AuditEvent{nil, {}} {
		if err := s.AppendAuditEvents(t.Context(), batch); err != nil {
			t.Errorf("AppendAuditEvents(%#v): %v, want nil", batch, err)
		}
	}
	if evs := listAudit(t, s, store.AuditFilter{}); len(evs) != 0 {
		t.Fatalf("empty batches wrote %d events", len(evs))
	}

	good := auditEvent(1, "c1", "invoices", "GET", "allow", 0, "invoices:read")
	noTime := auditEvent(2, "c1", "invoices", "GET", "allow", 0)
	noTime.Time = time.Time{}
	spaced := auditEvent(3, "c1", "invoices", "GET", "allow", 0, "invoices:read ledger:write")
	empty := auditEvent(4, "c1", "invoices", "GET", "allow", 0, "")
	for _, bad := range []struct {
		name string
		ev   store.AuditEvent
	}{
		{"zero time", noTime},
		{"scope with a space", spaced},
		{"empty scope", empty},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if err := s.AppendAuditEvents(t.Context(), []store.AuditEvent{good, bad.ev, good}); err == nil {
				t.Fatal("AppendAuditEvents accepted an event it cannot store faithfully")
			}
			if evs := listAudit(t, s, store.AuditFilter{}); len(evs) != 0 {
				t.Errorf("a refused batch wrote %d events; want none (one transaction per batch)", len(evs))
			}
		})
	}
}

// testAuditConcurrency appends many batches at once, as several gateway
// writers would: every one lands, with distinct IDs.
func testAuditConcurrency(t *testing.T, newStore func(*testing.T) store.Store) {
	const writers, perBatch = 16, 64
	s := newStore(t)
	var (
		wg   sync.WaitGroup
		errs = make([]error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			batch := make([]store.AuditEvent, perBatch)
			for i := range batch {
				batch[i] = auditEvent(w*perBatch+i, fmt.Sprintf("c%02d", w), "invoices", "GET", "allow", time.Duration(i), "invoices:read")
			}
			errs[w] = s.AppendAuditEvents(t.Context(), batch)
			if _, err := s.ListAuditEvents(t.Context(), store.AuditFilter{ClientID: "c00", Limit: 8}); err != nil && errs[w] == nil {
				errs[w] = fmt.Errorf("ListAuditEvents: %w", err)
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	if t.Failed() {
		return
	}
	evs := listAudit(t, s, store.AuditFilter{})
	if len(evs) != writers*perBatch {
		t.Fatalf("ListAuditEvents: %d events, want %d", len(evs), writers*perBatch)
	}
	seen := map[int64]bool{}
	for _, ev := range evs {
		if seen[ev.ID] {
			t.Fatalf("ID %d assigned twice", ev.ID)
		}
		seen[ev.ID] = true
	}
	rows, err := s.SummarizeAudit(t.Context(), store.AuditFilter{})
	if err != nil {
		t.Fatalf("SummarizeAudit: %v", err)
	}
	if len(rows) != writers {
		t.Fatalf("SummarizeAudit: %d rows, want %d (one per writer)", len(rows), writers)
	}
	for _, r := range rows {
		if r.Count != perBatch {
			t.Errorf("client %s: count %d, want %d", r.ClientID, r.Count, perBatch)
		}
	}
}
