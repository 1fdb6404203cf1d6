// Package storetest is the conformance suite every store.Store backend
// runs: one set of behaviours, so a backend swap cannot change what callers
// see. Its one job is to pin the contract down with tests; it must not grow
// helpers that production code imports.
//
// Beyond the doc comments in package store, the suite fixes these points,
// and every backend must honour them:
//
//   - Times round-trip to the nanosecond and come back in UTC; the zero
//     time.Time comes back zero. UpdateClient compares UpdatedAt for
//     equality, so a backend that rounded (PostgreSQL timestamptz keeps
//     microseconds) would make an update from an unread copy stale: store
//     Unix nanoseconds in an integer column instead.
//   - nil and empty Scopes, Audiences, JWKS, salt and hash are the same
//     value; JWKS comes back byte for byte (no JSON normalisation).
//   - ListClients orders by CreatedAt then ID; ListAdminEvents orders by
//     append order, newest first, and assigns IDs that grow. A Limit of zero
//     means no limit.
//   - Failures write nothing: a conflicting create, a stale or missing
//     update leaves both the client and the admin log as they were.
//   - RevokedSince includes RevokedAt == since and excludes ExpiresAt <= now;
//     PurgeExpired removes ExpiresAt < now. A revocation without a JTI or an
//     expiry is refused, since it could never be listed (fail closed).
//   - Concurrent callers never see the backend's lock contention as errors.
//   - AppendAuditEvents is all or nothing per batch and refuses an event
//     with a zero Time or a scope that is empty or holds a space (neither
//     could be found or split back). ListAuditEvents orders by Time, newest
//     first, ties by append order; unlike the admin log, the audit trail is
//     queried by time range, and batches from several gateway writers land
//     out of time order. SummarizeAudit returns Scopes space-separated and
//     First and Last in UTC.
//
// Every time the suite uses is derived from one fixed instant; nothing sleeps
// or reads the wall clock.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// base is the fixed instant every test time derives from. It carries
// nanoseconds and a non-UTC zone, so truncation or zone loss shows up.
var base = time.Date(2031, time.March, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*60*60))

// at returns base+d.
func at(d time.Duration) time.Time { return base.Add(d) }

// clientFields is the number of fields of identity.Client the suite knows.
// When the type grows, this fails first: extend fullClient and every backend.
const clientFields = 22

// Run runs the suite. open must return a new, empty store each call; Run
// closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	newStore := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore func(*testing.T) store.Store)
	}{
		{"ClientRoundTrip", testClientRoundTrip},
		{"CreateClientConflict", testCreateConflict},
		{"GetClientNotFound", testGetNotFound},
		{"GetClientBySecretLookup", testSecretLookup},
		{"ReturnedClientIsACopy", testReturnedCopy},
		{"ListClients", testListClients},
		{"UpdateClient", testUpdateClient},
		{"UpdateClientRace", testUpdateRace},
		{"AdminEvents", testAdminEvents},
		{"SigningKeys", testSigningKeys},
		{"RevokeToken", testRevokeToken},
		{"RevokedSince", testRevokedSince},
		{"PurgeExpired", testPurgeExpired},
		{"Concurrency", testConcurrency},
		{"AuditEvents", testAuditEvents},
		{"AuditSummary", testAuditSummary},
		{"AuditBatches", testAuditBatches},
		{"AuditConcurrency", testAuditConcurrency},
		{"Certificates", testCertificates},
		{"CreateClients", testCreateClients},
		{"SetClientsStatus", testSetClientsStatus},
		{"Usage", testUsage},
		{"LifecycleFilters", testLifecycleFilters},
		{"Notifications", testNotifications},
		{"Reviews", testReviews},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore) })
	}
}

// fullClient returns a client with every field set to a distinct value.
func fullClient(id string) *identity.Client {
	return &identity.Client{
		ID:          id,
		Name:        "billing exporter " + id,
		Owner:       "team-billing",
		Purpose:     "exports invoices to the ledger",
		Environment: "prod",
		Vendor:      "acme",
		Status:      identity.StatusActive,
		CreatedAt:   at(0),
		UpdatedAt:   at(time.Second + 1),
		ExpiresAt:   at(90 * 24 * time.Hour),
		Scopes:      []string{"invoices:read", "ledger:write"},
		Audiences:   []string{"https://ledger.example", "https://api.example"},
		AuthMethod:  identity.AuthClientSecretBasic,
		// Whitespace and key order are deliberate: the JWKS must come back
		// byte for byte, not re-encoded.
		JWKS:          json.RawMessage(`{ "keys": [ {"kty":"OKP", "crv":"Ed25519", "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"} ] }`),
		TLSSubjectDN:  "CN=billing,O=Example",
		TLSSANURI:     "spiffe://example.org/billing",
		TLSSANDNS:     "billing.internal.example",
		Secret:        &identity.SecretHash{Salt: bytes.Repeat([]byte{0x5a}, 16), Hash: bytes.Repeat([]byte{0xa5}, 32), Lookup: identity.SecretLookup("secret of " + id)},
		Binding:       identity.BindingDPoP,
		TokenLifetime: 5*time.Minute + 7*time.Nanosecond,
		Tags:          []string{"ledger-sync", "billing"},
		Previous: &identity.PreviousCredential{
			JWKS:         json.RawMessage(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"VCpo2LMLhn6iWku8MKvSLg2ZAoC-nlOyPVQaO3FxVeQ"}]}`),
			TLSSubjectDN: "CN=billing-old,O=Example",
			TLSSANURI:    "spiffe://example.org/billing-old",
			TLSSANDNS:    "billing-old.internal.example",
			Secret:       &identity.SecretHash{Salt: bytes.Repeat([]byte{0x3c}, 16), Hash: bytes.Repeat([]byte{0xc3}, 32), Lookup: identity.SecretLookup("old secret of " + id)},
			RotatedAt:    at(time.Hour + 3),
			RetiresAt:    at(25 * time.Hour),
		},
	}
}

// minimalClient returns a client with every optional field at its zero value.
func minimalClient(id string) *identity.Client {
	return &identity.Client{ID: id, Status: identity.StatusSuspended}
}

func event(action, target string, d time.Duration) store.AdminEvent {
	return store.AdminEvent{
		Time:    at(d),
		Actor:   "admin@example.org",
		Action:  action,
		Target:  target,
		Changes: map[string]string{"action": action},
	}
}

// normClient maps c to the canonical form the contract compares: UTC times
// without monotonic readings, and nil for empty slices.
func normClient(c *identity.Client) identity.Client {
	n := *c
	n.CreatedAt, n.UpdatedAt, n.ExpiresAt = normTime(c.CreatedAt), normTime(c.UpdatedAt), normTime(c.ExpiresAt)
	if len(n.Scopes) == 0 {
		n.Scopes = nil
	}
	if len(n.Audiences) == 0 {
		n.Audiences = nil
	}
	if len(n.JWKS) == 0 {
		n.JWKS = nil
	}
	if len(n.Tags) == 0 {
		n.Tags = nil
	}
	if c.Previous != nil {
		p := *c.Previous
		p.RotatedAt, p.RetiresAt = normTime(p.RotatedAt), normTime(p.RetiresAt)
		if len(p.JWKS) == 0 {
			p.JWKS = nil
		}
		n.Previous = &p
	}
	if c.Secret != nil {
		s := *c.Secret
		if len(s.Salt) == 0 {
			s.Salt = nil
		}
		if len(s.Hash) == 0 {
			s.Hash = nil
		}
		if len(s.Lookup) == 0 {
			s.Lookup = nil
		}
		n.Secret = &s
	}
	return n
}

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// checkUTC reports an error for each non-zero time not in UTC.
func checkUTC(t *testing.T, what string, ts ...time.Time) {
	t.Helper()
	for i, tm := range ts {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("%s: time %d is in %v; backends return UTC", what, i, tm.Location())
		}
	}
}

// diffClient lists the fields where got differs from want.
func diffClient(want, got *identity.Client) string {
	w, g := normClient(want), normClient(got)
	wv, gv := reflect.ValueOf(w), reflect.ValueOf(g)
	var diffs []string
	for i := range wv.NumField() {
		if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
			diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", wv.Type().Field(i).Name, fmtField(gv.Field(i)), fmtField(wv.Field(i))))
		}
	}
	return strings.Join(diffs, "; ")
}

func fmtField(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case json.RawMessage:
		return string(x)
	case *identity.SecretHash:
		if x == nil {
			return "<nil>"
		}
		return fmt.Sprintf("{salt %x hash %x}", x.Salt, x.Hash)
	}
	return v.Interface()
}

func mustCreate(t *testing.T, s store.Store, c *identity.Client) {
	t.Helper()
	if err := s.CreateClient(t.Context(), c, event("client.create", c.ID, 0)); err != nil {
		t.Fatalf("CreateClient(%s): %v", c.ID, err)
	}
}

func mustGet(t *testing.T, s store.Store, id string) *identity.Client {
	t.Helper()
	c, err := s.GetClient(t.Context(), id)
	if err != nil {
		t.Fatalf("GetClient(%s): %v", id, err)
	}
	return c
}

func events(t *testing.T, s store.Store, target string) []store.AdminEvent {
	t.Helper()
	evs, err := s.ListAdminEvents(t.Context(), target, 0)
	if err != nil {
		t.Fatalf("ListAdminEvents(%q): %v", target, err)
	}
	return evs
}

func testClientRoundTrip(t *testing.T, newStore func(*testing.T) store.Store) {
	if n := reflect.TypeFor[identity.Client]().NumField(); n != clientFields {
		t.Fatalf("identity.Client has %d fields, the suite knows %d: extend fullClient and every backend", n, clientFields)
	}
	tests := []struct {
		name   string
		client *identity.Client
	}{
		{"every field", fullClient("c-full")},
		{"zero optional fields", minimalClient("c-min")},
		{"empty not nil", &identity.Client{ID: "c-empty", Scopes: []string{}, Audiences: []string{}, JWKS: json.RawMessage{}}},
		{"far times", func() *identity.Client {
			c := fullClient("c-far")
			c.CreatedAt = time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC)
			c.ExpiresAt = time.Date(2200, 12, 31, 23, 59, 59, 999999999, time.UTC)
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ev := event("client.create", tt.client.ID, 3*time.Nanosecond)
			if err := s.CreateClient(t.Context(), tt.client, ev); err != nil {
				t.Fatalf("CreateClient: %v", err)
			}
			got := mustGet(t, s, tt.client.ID)
			if d := diffClient(tt.client, got); d != "" {
				t.Errorf("round trip differs: %s", d)
			}
			checkUTC(t, "GetClient", got.CreatedAt, got.UpdatedAt, got.ExpiresAt)

			evs := events(t, s, "")
			if len(evs) != 1 {
				t.Fatalf("admin events after create: got %d, want 1", len(evs))
			}
			checkEvent(t, evs[0], ev)
		})
	}
}

// checkEvent compares got with want, ignoring the store-assigned ID (which
// must be positive).
func checkEvent(t *testing.T, got, want store.AdminEvent) {
	t.Helper()
	if got.ID <= 0 {
		t.Errorf("event ID = %d, want > 0", got.ID)
	}
	checkUTC(t, "admin event", got.Time)
	if !got.Time.Equal(want.Time) || got.Actor != want.Actor || got.Action != want.Action || got.Target != want.Target ||
		!(len(got.Changes) == 0 && len(want.Changes) == 0 || reflect.DeepEqual(got.Changes, want.Changes)) {
		t.Errorf("event = %+v, want %+v", got, want)
	}
}

func testCreateConflict(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	orig := fullClient("c1")
	mustCreate(t, s, orig)

	dup := fullClient("c1")
	dup.Name = "impostor"
	err := s.CreateClient(t.Context(), dup, event("client.create", "c1", time.Second))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateClient duplicate: got %v, want ErrConflict", err)
	}
	if d := diffClient(orig, mustGet(t, s, "c1")); d != "" {
		t.Errorf("stored client changed by the failed create: %s", d)
	}
	if evs := events(t, s, ""); len(evs) != 1 {
		t.Errorf("admin events: got %d, want 1 (the failed create must write none)", len(evs))
	}
}

func testGetNotFound(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	mustCreate(t, s, minimalClient("present"))
	for _, id := range []string{"absent", "", "PRESENT", "present "} {
		if _, err := s.GetClient(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetClient(%q): got %v, want ErrNotFound", id, err)
		}
	}
}

func testSecretLookup(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	ctx := t.Context()
	l1, l2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	c := fullClient("k1")
	c.Secret.Lookup = l1
	mustCreate(t, s, c)
	mustCreate(t, s, minimalClient("no-secret"))

	got, err := s.GetClientBySecretLookup(ctx, l1)
	if err != nil || got.ID != "k1" {
		t.Fatalf("GetClientBySecretLookup(l1) = %v, %v; want client k1", got, err)
	}
	if d := diffClient(c, got); d != "" {
		t.Errorf("client found by lookup differs: %s", d)
	}
	for name, l := range map[string][]byte{"unknown": l2, "empty": nil, "prefix": l1[:16]} {
		if _, err := s.GetClientBySecretLookup(ctx, l); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetClientBySecretLookup(%s): got %v, want ErrNotFound", name, err)
		}
	}

	// Two clients can never share a lookup digest: the second is refused and
	// writes nothing.
	dup := fullClient("k2")
	dup.Secret.Lookup = l1
	if err := s.CreateClient(ctx, dup, event("client.create", "k2", time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateClient with a taken lookup: got %v, want ErrConflict", err)
	}
	if _, err := s.GetClient(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused client was stored: %v", err)
	}

	// A rotated secret is found by its new digest only.
	cur := mustGet(t, s, "k1")
	next := *cur
	sec := *cur.Secret
	sec.Lookup = l2
	next.Secret = &sec
	next.UpdatedAt = cur.UpdatedAt.Add(time.Minute)
	if err := s.UpdateClient(ctx, &next, cur.UpdatedAt, event("client.rotate", "k1", 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClientBySecretLookup(ctx, l1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old digest after rotation: got %v, want ErrNotFound", err)
	}
	if got, err := s.GetClientBySecretLookup(ctx, l2); err != nil || got.ID != "k1" {
		t.Errorf("new digest after rotation = %v, %v; want client k1", got, err)
	}

	// A replaced secret kept for a rotation overlap is found by its digest
	// too (the caller decides whether the overlap is still open), and its
	// digest cannot be taken by another client.
	cur = mustGet(t, s, "k1")
	next = *cur
	prev := *cur.Previous
	prevSecret := *cur.Previous.Secret
	prevSecret.Lookup = l1
	prev.Secret = &prevSecret
	next.Previous = &prev
	next.UpdatedAt = cur.UpdatedAt.Add(time.Minute)
	if err := s.UpdateClient(ctx, &next, cur.UpdatedAt, event("client.rotate", "k1", 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClientBySecretLookup(ctx, l1); err != nil || got.ID != "k1" {
		t.Errorf("previous secret's digest = %v, %v; want client k1", got, err)
	}
	dup = fullClient("k3")
	dup.Secret.Lookup = bytes.Repeat([]byte{3}, 32)
	dup.Previous.Secret.Lookup = l1
	if err := s.CreateClient(ctx, dup, event("client.create", "k3", 4*time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient reusing a previous secret's digest: got %v, want ErrConflict", err)
	}
	// Nor may a current digest equal another client's previous one, or the
	// other way round: a static key must name one client.
	cross := fullClient("k4")
	cross.Secret.Lookup, cross.Previous.Secret.Lookup = l1, bytes.Repeat([]byte{4}, 32)
	if err := s.CreateClient(ctx, cross, event("client.create", "k4", 4*time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient whose secret is another client's previous one: got %v, want ErrConflict", err)
	}
	cross = fullClient("k5")
	cross.Secret.Lookup, cross.Previous.Secret.Lookup = bytes.Repeat([]byte{5}, 32), l2
	if err := s.CreateClient(ctx, cross, event("client.create", "k5", 4*time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient whose previous secret is another client's current one: got %v, want ErrConflict", err)
	}
	other := fullClient("k6")
	other.Secret.Lookup, other.Previous = bytes.Repeat([]byte{6}, 32), nil
	mustCreate(t, s, other)
	stored := mustGet(t, s, "k6")
	moved := *stored
	sec6 := *stored.Secret
	sec6.Lookup = l1
	moved.Secret, moved.UpdatedAt = &sec6, stored.UpdatedAt.Add(time.Minute)
	if err := s.UpdateClient(ctx, &moved, stored.UpdatedAt, event("client.rotate", "k6", 5*time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateClient to another client's previous digest: got %v, want ErrConflict", err)
	}
	for _, id := range []string{"k4", "k5"} {
		if _, err := s.GetClient(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused client %s was stored: %v", id, err)
		}
	}
	// Dropping the previous credential drops its digest.
	cur = mustGet(t, s, "k1")
	next = *cur
	next.Previous = nil
	next.UpdatedAt = cur.UpdatedAt.Add(time.Minute)
	if err := s.UpdateClient(ctx, &next, cur.UpdatedAt, event("client.rotation.retire", "k1", 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClientBySecretLookup(ctx, l1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retired previous secret's digest: got %v, want ErrNotFound", err)
	}
}

func testReturnedCopy(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	c := fullClient("c1")
	mustCreate(t, s, c)
	c.Scopes[0] = "changed-after-create"
	c.Secret.Hash[0] ^= 0xff

	got := mustGet(t, s, "c1")
	got.Scopes[0] = "changed-after-get"
	got.JWKS[0] = '['

	if d := diffClient(fullClient("c1"), mustGet(t, s, "c1")); d != "" {
		t.Errorf("stored client aliases caller memory: %s", d)
	}
}

func testListClients(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	mk := func(id, owner, env string, st identity.Status, created time.Duration) *identity.Client {
		c := minimalClient(id)
		c.Owner, c.Environment, c.Status, c.CreatedAt = owner, env, st, at(created)
		return c
	}
	// Inserted out of order; "b" and "a" share a creation time, so the ID
	// must break the tie.
	for _, c := range []*identity.Client{
		mk("d", "ops", "dev", identity.StatusActive, 3*time.Hour),
		mk("b", "billing", "prod", identity.StatusActive, time.Hour),
		mk("e", "billing", "dev", identity.StatusRevoked, 4*time.Hour),
		mk("a", "billing", "prod", identity.StatusSuspended, time.Hour),
		mk("c", "ops", "prod", identity.StatusActive, 2*time.Hour),
		mk("f", "billing", "prod", identity.StatusActive, time.Nanosecond),
	} {
		mustCreate(t, s, c)
	}
	tests := []struct {
		name   string
		filter store.ClientFilter
		want   []string
	}{
		{"all", store.ClientFilter{}, []string{"f", "a", "b", "c", "d", "e"}},
		{"owner", store.ClientFilter{Owner: "billing"}, []string{"f", "a", "b", "e"}},
		{"environment", store.ClientFilter{Environment: "dev"}, []string{"d", "e"}},
		{"status", store.ClientFilter{Status: identity.StatusActive}, []string{"f", "b", "c", "d"}},
		{"owner and environment", store.ClientFilter{Owner: "billing", Environment: "prod"}, []string{"f", "a", "b"}},
		{"all three", store.ClientFilter{Owner: "billing", Environment: "prod", Status: identity.StatusActive}, []string{"f", "b"}},
		{"limit", store.ClientFilter{Limit: 2}, []string{"f", "a"}},
		{"limit above count", store.ClientFilter{Limit: 100}, []string{"f", "a", "b", "c", "d", "e"}},
		{"filter and limit", store.ClientFilter{Owner: "ops", Limit: 1}, []string{"c"}},
		{"no match", store.ClientFilter{Owner: "nobody"}, nil},
		{"no match on status", store.ClientFilter{Status: "unknown"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListClients(t.Context(), tt.filter)
			if err != nil {
				t.Fatalf("ListClients: %v", err)
			}
			var ids []string
			for _, c := range got {
				ids = append(ids, c.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("ListClients(%+v) = %v, want %v", tt.filter, ids, tt.want)
			}
		})
	}
	// Listed clients are whole, not a summary.
	got, err := s.ListClients(t.Context(), store.ClientFilter{Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListClients: %v, %d clients", err, len(got))
	}
	if d := diffClient(mk("f", "billing", "prod", identity.StatusActive, time.Nanosecond), got[0]); d != "" {
		t.Errorf("listed client differs: %s", d)
	}
}

func testUpdateClient(t *testing.T, newStore func(*testing.T) store.Store) {
	orig := fullClient("c1")
	updated := fullClient("c1")
	updated.Status = identity.StatusSuspended
	updated.Scopes = []string{"invoices:read"}
	updated.Secret = nil
	updated.JWKS = nil
	updated.UpdatedAt = at(time.Hour + 1)

	tests := []struct {
		name       string
		client     *identity.Client
		prev       time.Time
		wantErr    error
		wantStored *identity.Client // nil: unchanged
	}{
		{"current prevUpdatedAt", updated, orig.UpdatedAt, nil, updated},
		{"same instant in another zone", updated, orig.UpdatedAt.In(time.FixedZone("UTC-7", -7*60*60)), nil, updated},
		{"stale by one nanosecond", updated, orig.UpdatedAt.Add(-time.Nanosecond), store.ErrStale, nil},
		{"stale: the new UpdatedAt", updated, updated.UpdatedAt, store.ErrStale, nil},
		{"stale: zero prevUpdatedAt", updated, time.Time{}, store.ErrStale, nil},
		{"missing client", fullClient("absent"), orig.UpdatedAt, store.ErrNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			mustCreate(t, s, orig)
			ev := event("client.update", tt.client.ID, time.Hour)
			err := s.UpdateClient(t.Context(), tt.client, tt.prev, ev)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("UpdateClient: got %v, want %v", err, tt.wantErr)
			}
			want := tt.wantStored
			if want == nil {
				want = orig
			}
			if d := diffClient(want, mustGet(t, s, "c1")); d != "" {
				t.Errorf("stored client: %s", d)
			}
			if _, err := s.GetClient(t.Context(), "absent"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("update of a missing client created it: GetClient = %v", err)
			}
			evs := events(t, s, "")
			if tt.wantErr != nil {
				if len(evs) != 1 {
					t.Errorf("admin events: got %d, want 1 (a failed update writes none)", len(evs))
				}
				return
			}
			if len(evs) != 2 {
				t.Fatalf("admin events: got %d, want 2", len(evs))
			}
			checkEvent(t, evs[0], ev)
		})
	}

	t.Run("zero UpdatedAt matches zero prevUpdatedAt", func(t *testing.T) {
		s := newStore(t)
		c := minimalClient("c0")
		mustCreate(t, s, c)
		next := minimalClient("c0")
		next.UpdatedAt = at(0)
		if err := s.UpdateClient(t.Context(), next, time.Time{}, event("client.update", "c0", 0)); err != nil {
			t.Fatalf("UpdateClient: %v", err)
		}
		if d := diffClient(next, mustGet(t, s, "c0")); d != "" {
			t.Errorf("stored client: %s", d)
		}
	})
}

// testUpdateRace has many updaters hold the same prevUpdatedAt: exactly one
// may win, and the log records exactly one update.
func testUpdateRace(t *testing.T, newStore func(*testing.T) store.Store) {
	const n = 16
	s := newStore(t)
	orig := fullClient("c1")
	mustCreate(t, s, orig)

	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			c := fullClient("c1")
			c.Name = fmt.Sprintf("writer %d", i)
			c.UpdatedAt = at(time.Hour + time.Duration(i))
			errs[i] = s.UpdateClient(context.Background(), c, orig.UpdatedAt, event("client.update", "c1", time.Hour))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("updaters %d and %d both succeeded with the same prevUpdatedAt", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrStale):
			t.Errorf("updater %d: got %v, want nil or ErrStale", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no updater succeeded")
	}
	if got := mustGet(t, s, "c1"); got.Name != fmt.Sprintf("writer %d", winner) {
		t.Errorf("stored name %q, want the winner's %q", got.Name, fmt.Sprintf("writer %d", winner))
	}
	if evs := events(t, s, "c1"); len(evs) != 2 {
		t.Errorf("admin events for c1: got %d, want 2 (create and one update)", len(evs))
	}
}

func testAdminEvents(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	// Times run backwards on purpose: "newest" is the order of appending,
	// not the caller's clock.
	appended := []store.AdminEvent{
		event("key.rotate", "a", 5*time.Second),
		event("client.suspend", "b", 4*time.Second),
		{Time: at(3 * time.Second), Actor: "system", Action: "client.expire", Target: "a"},
		event("client.revoke", "b", 2*time.Second),
		{Time: at(time.Second), Actor: "admin@example.org", Action: "client.update", Target: "a",
			Changes: map[string]string{"scopes": "a b", "note": "quotes \" and\nnewlines", "": "empty key"}},
	}
	for _, ev := range appended {
		if err := s.AppendAdminEvent(t.Context(), ev); err != nil {
			t.Fatalf("AppendAdminEvent: %v", err)
		}
	}
	all := events(t, s, "")
	if len(all) != len(appended) {
		t.Fatalf("ListAdminEvents: got %d events, want %d", len(all), len(appended))
	}
	for i, got := range all {
		checkEvent(t, got, appended[len(appended)-1-i])
		if i > 0 && got.ID >= all[i-1].ID {
			t.Errorf("event IDs not decreasing newest first: %d then %d", all[i-1].ID, got.ID)
		}
	}

	tests := []struct {
		name   string
		target string
		limit  int
		want   []int // indexes into appended, newest first
	}{
		{"all", "", 0, []int{4, 3, 2, 1, 0}},
		{"target a", "a", 0, []int{4, 2, 0}},
		{"target b", "b", 0, []int{3, 1}},
		{"limit", "", 2, []int{4, 3}},
		{"target and limit", "a", 2, []int{4, 2}},
		{"negative limit is no limit", "b", -1, []int{3, 1}},
		{"unknown target", "zzz", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAdminEvents(t.Context(), tt.target, tt.limit)
			if err != nil {
				t.Fatalf("ListAdminEvents: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d", len(got), len(tt.want))
			}
			for i, idx := range tt.want {
				checkEvent(t, got[i], appended[idx])
			}
		})
	}
}

func testSigningKeys(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	if keys, err := s.ListSigningKeys(t.Context()); err != nil || len(keys) != 0 {
		t.Fatalf("ListSigningKeys on an empty store: %v, %d keys", err, len(keys))
	}
	k1 := store.SigningKey{KID: "k1", Algorithm: "EdDSA", PrivatePKCS8: []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0xff},
		CreatedAt: at(0), ActivatesAt: at(time.Hour)}
	k2 := store.SigningKey{KID: "k2", Algorithm: "ES256", PrivatePKCS8: bytes.Repeat([]byte{0x30, 0x00}, 70),
		CreatedAt: at(24 * time.Hour), ActivatesAt: at(25 * time.Hour)}
	for _, k := range []store.SigningKey{k2, k1} {
		if err := s.PutSigningKey(t.Context(), k); err != nil {
			t.Fatalf("PutSigningKey(%s): %v", k.KID, err)
		}
	}
	checkKeys(t, s, k1, k2)

	// Retiring k1 is a second put with the same KID: an upsert, not a duplicate.
	k1.RetiredAt, k1.RemoveAt = at(25*time.Hour), at(26*time.Hour+time.Nanosecond)
	if err := s.PutSigningKey(t.Context(), k1); err != nil {
		t.Fatalf("PutSigningKey(k1 retired): %v", err)
	}
	checkKeys(t, s, k1, k2)
}

func checkKeys(t *testing.T, s store.Store, want ...store.SigningKey) {
	t.Helper()
	got, err := s.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListSigningKeys: got %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		checkUTC(t, "signing key "+g.KID, g.CreatedAt, g.ActivatesAt, g.RetiredAt, g.RemoveAt)
		if g.KID != w.KID || g.Algorithm != w.Algorithm || !bytes.Equal(g.PrivatePKCS8, w.PrivatePKCS8) ||
			!g.CreatedAt.Equal(w.CreatedAt) || !g.ActivatesAt.Equal(w.ActivatesAt) ||
			!g.RetiredAt.Equal(w.RetiredAt) || !g.RemoveAt.Equal(w.RemoveAt) {
			// The private key is test data, but keep the habit: never print it.
			t.Errorf("key %d = {%s %s created %v activates %v retired %v remove %v}, want {%s %s created %v activates %v retired %v remove %v} (private key equal: %t)",
				i, g.KID, g.Algorithm, g.CreatedAt, g.ActivatesAt, g.RetiredAt, g.RemoveAt,
				w.KID, w.Algorithm, w.CreatedAt, w.ActivatesAt, w.RetiredAt, w.RemoveAt, bytes.Equal(g.PrivatePKCS8, w.PrivatePKCS8))
		}
	}
}

func revoked(jti string, revokedAt, expiresAt time.Duration) store.RevokedToken {
	return store.RevokedToken{JTI: jti, ClientID: "client-" + jti, RevokedAt: at(revokedAt), ExpiresAt: at(expiresAt)}
}

func jtis(ts []store.RevokedToken) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.JTI)
	}
	slices.Sort(out)
	return out
}

func testRevokeToken(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	tok := revoked("j1", time.Minute, time.Hour)
	for i := range 3 {
		if err := s.RevokeToken(t.Context(), tok); err != nil {
			t.Fatalf("RevokeToken #%d: %v", i+1, err)
		}
	}
	got, err := s.RevokedSince(t.Context(), time.Time{}, at(0))
	if err != nil {
		t.Fatalf("RevokedSince: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("RevokedSince after revoking one token three times: got %d entries, want 1", len(got))
	}
	g := got[0]
	checkUTC(t, "revoked token", g.RevokedAt, g.ExpiresAt)
	if g.JTI != tok.JTI || g.ClientID != tok.ClientID || !g.RevokedAt.Equal(tok.RevokedAt) || !g.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Errorf("RevokedSince = %+v, want %+v", g, tok)
	}

	for _, bad := range []struct {
		name string
		tok  store.RevokedToken
	}{
		{"no JTI", store.RevokedToken{ClientID: "c", RevokedAt: at(0), ExpiresAt: at(time.Hour)}},
		{"no expiry", store.RevokedToken{JTI: "j-noexp", ClientID: "c", RevokedAt: at(0)}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if err := s.RevokeToken(t.Context(), bad.tok); err == nil {
				t.Error("RevokeToken accepted a revocation that could never be listed")
			}
		})
	}
}

func testRevokedSince(t *testing.T, newStore func(*testing.T) store.Store) {
	s := newStore(t)
	for _, tok := range []store.RevokedToken{
		revoked("early", 0, 10*time.Hour),
		revoked("mid", time.Hour, 10*time.Hour),
		revoked("late", 2*time.Hour, 10*time.Hour),
		revoked("expiring", 2*time.Hour, 3*time.Hour),
		revoked("expired", 30*time.Minute, time.Hour-time.Minute),
	} {
		if err := s.RevokeToken(t.Context(), tok); err != nil {
			t.Fatalf("RevokeToken(%s): %v", tok.JTI, err)
		}
	}
	tests := []struct {
		name       string
		since, now time.Time
		want       []string // sorted
	}{
		{"everything live", time.Time{}, at(time.Hour), []string{"early", "expiring", "late", "mid"}},
		{"since is inclusive", at(time.Hour), at(time.Hour), []string{"expiring", "late", "mid"}},
		{"since one ns later", at(time.Hour + time.Nanosecond), at(time.Hour), []string{"expiring", "late"}},
		{"expired before now excluded", time.Time{}, at(2 * time.Hour), []string{"early", "expiring", "late", "mid"}},
		{"expiring at now is expired", time.Time{}, at(3 * time.Hour), []string{"early", "late", "mid"}},
		{"expiring one ns after now", time.Time{}, at(3*time.Hour - time.Nanosecond), []string{"early", "expiring", "late", "mid"}},
		{"all expired", time.Time{}, at(10 * time.Hour), nil},
		{"since in the future", at(3 * time.Hour), at(0), nil},
		{"now in another zone", at(time.Hour), at(3 * time.Hour).In(time.FixedZone("UTC-5", -5*60*60)), []string{"late", "mid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.RevokedSince(t.Context(), tt.since, tt.now)
			if err != nil {
				t.Fatalf("RevokedSince: %v", err)
			}
			if ids := jtis(got); !slices.Equal(ids, tt.want) {
				t.Errorf("RevokedSince = %v, want %v", ids, tt.want)
			}
		})
	}
}

func testPurgeExpired(t *testing.T, newStore func(*testing.T) store.Store) {
	tests := []struct {
		name      string
		now       time.Duration
		wantCount int
		wantLeft  []string
	}{
		{"nothing expired", 0, 0, []string{"a", "b", "c"}},
		{"expiring at now is kept", time.Hour, 0, []string{"a", "b", "c"}},
		{"one expired", time.Hour + time.Nanosecond, 1, []string{"b", "c"}},
		{"two expired", 2*time.Hour + 1, 2, []string{"c"}},
		{"all expired", 24 * time.Hour, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			for _, tok := range []store.RevokedToken{
				revoked("a", 0, time.Hour), revoked("b", 0, 2*time.Hour), revoked("c", 0, 3*time.Hour),
			} {
				if err := s.RevokeToken(t.Context(), tok); err != nil {
					t.Fatalf("RevokeToken: %v", err)
				}
			}
			n, err := s.PurgeExpired(t.Context(), at(tt.now))
			if err != nil {
				t.Fatalf("PurgeExpired: %v", err)
			}
			if n != tt.wantCount {
				t.Errorf("PurgeExpired removed %d, want %d", n, tt.wantCount)
			}
			// Look far in the past so only purging, not expiry, hides rows.
			left, err := s.RevokedSince(t.Context(), time.Time{}, at(-time.Hour))
			if err != nil {
				t.Fatalf("RevokedSince: %v", err)
			}
			if ids := jtis(left); !slices.Equal(ids, tt.wantLeft) {
				t.Errorf("left after purge: %v, want %v", ids, tt.wantLeft)
			}
			if n, err := s.PurgeExpired(t.Context(), at(tt.now)); err != nil || n != 0 {
				t.Errorf("second PurgeExpired: %d, %v; want 0, nil", n, err)
			}
		})
	}
}

// testConcurrency has many goroutines write and read at once. A backend with
// a single writer (SQLite) must queue them rather than fail with "busy".
func testConcurrency(t *testing.T, newStore func(*testing.T) store.Store) {
	const n = 32
	s := newStore(t)
	ctx := t.Context()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	report := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			c := fullClient(id)
			c.CreatedAt = at(time.Duration(i))
			if err := s.CreateClient(ctx, c, event("client.create", id, 0)); err != nil {
				report(fmt.Errorf("CreateClient(%s): %w", id, err))
				return
			}
			if err := s.RevokeToken(ctx, revoked("j-"+id, 0, time.Hour)); err != nil {
				report(fmt.Errorf("RevokeToken(%s): %w", id, err))
			}
			if _, err := s.GetClient(ctx, id); err != nil {
				report(fmt.Errorf("GetClient(%s): %w", id, err))
			}
			if _, err := s.ListClients(ctx, store.ClientFilter{Limit: 8}); err != nil {
				report(fmt.Errorf("ListClients: %w", err))
			}
			if _, err := s.RevokedSince(ctx, time.Time{}, at(0)); err != nil {
				report(fmt.Errorf("RevokedSince: %w", err))
			}
			if err := s.AppendAdminEvent(ctx, event("client.touch", id, 0)); err != nil {
				report(fmt.Errorf("AppendAdminEvent(%s): %w", id, err))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	clients, err := s.ListClients(ctx, store.ClientFilter{})
	if err != nil || len(clients) != n {
		t.Errorf("ListClients: %v, %d clients; want %d", err, len(clients), n)
	}
	for i, c := range clients {
		if want := fmt.Sprintf("c%02d", i); c.ID != want {
			t.Errorf("client %d is %s, want %s (order by CreatedAt)", i, c.ID, want)
		}
	}
	if evs := events(t, s, ""); len(evs) != 2*n {
		t.Errorf("admin events: got %d, want %d", len(evs), 2*n)
	}
	toks, err := s.RevokedSince(ctx, time.Time{}, at(0))
	if err != nil || len(toks) != n {
		t.Errorf("RevokedSince: %v, %d tokens; want %d", err, len(toks), n)
	}
}
