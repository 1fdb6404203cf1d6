package storetest

import (
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

// The notification part of the contract:
//
//   - CreateNotification stores one row per (Kind, ClientID, ExpiresAt,
//     Lead): a second create of the same key reports false and changes
//     nothing, and of many concurrent creators exactly one reports true.
//   - A pending notification needs NextAttemptAt, a finished one must not
//     have one, LastError is at most store.MaxNotificationError bytes, and
//     an unknown client is ErrNotFound: such rows would never be delivered,
//     or would carry unbounded text.
//   - ClaimNotification is a compare-and-set on NextAttemptAt; of many
//     concurrent claimers exactly one wins, and only the winner's
//     UpdateNotification is written (others get ErrStale).
//   - DueNotifications includes NextAttemptAt == now, excludes finished
//     rows, and orders by NextAttemptAt.
//   - ExpiringClients includes ExpiresAt == from, excludes ExpiresAt == to
//     and every client that is not active.
func testNotifications(t *testing.T, newStore func(*testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"RoundTrip", testNotificationRoundTrip},
		{"OncePerKey", testNotificationOncePerKey},
		{"CreateRefusals", testNotificationRefusals},
		{"ClaimAndUpdate", testNotificationClaim},
		{"ClaimRace", testNotificationClaimRace},
		{"DueAndList", testNotificationDueAndList},
		{"ExpiringClients", testExpiringClients},
		{"Purge", testNotificationPurge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			mustCreate(t, s, fullClient("n1"))
			mustCreate(t, s, fullClient("n2"))
			tt.fn(t, s)
		})
	}
}

// pendingNote is a pending warning for client, lead before its expiry,
// created at created and due at once.
func pendingNote(id, client string, lead, created time.Duration) *store.Notification {
	return &store.Notification{
		ID: id, Kind: "identity.expiring", ClientID: client,
		ExpiresAt: at(90 * 24 * time.Hour), Lead: lead, CreatedAt: at(created),
		Status: store.NotificationPending, NextAttemptAt: at(created),
	}
}

func normNote(n *store.Notification) store.Notification {
	c := *n
	c.ExpiresAt, c.CreatedAt = normTime(c.ExpiresAt), normTime(c.CreatedAt)
	c.LastAttemptAt, c.NextAttemptAt, c.DeliveredAt = normTime(c.LastAttemptAt), normTime(c.NextAttemptAt), normTime(c.DeliveredAt)
	return c
}

func mustCreateNote(t *testing.T, s store.Store, n *store.Notification) {
	t.Helper()
	ok, err := s.CreateNotification(t.Context(), n)
	if err != nil || !ok {
		t.Fatalf("CreateNotification(%s) = %v, %v; want true, nil", n.ID, ok, err)
	}
}

func mustGetNote(t *testing.T, s store.Store, id string) *store.Notification {
	t.Helper()
	n, err := s.GetNotification(t.Context(), id)
	if err != nil {
		t.Fatalf("GetNotification(%s): %v", id, err)
	}
	checkUTC(t, "notification "+id, n.ExpiresAt, n.CreatedAt, n.LastAttemptAt, n.NextAttemptAt, n.DeliveredAt)
	return n
}

func noteIDs(ns []*store.Notification) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func testNotificationRoundTrip(t *testing.T, s store.Store) {
	full := &store.Notification{
		ID: "ntf-full", Kind: "identity.expiring", ClientID: "n1",
		ExpiresAt: at(90 * 24 * time.Hour), Lead: 3*24*time.Hour + 7, CreatedAt: at(time.Minute + 3),
		Status: store.NotificationPending, Attempts: 2, LastError: "receiver answered 503",
		LastAttemptAt: at(2*time.Minute + 5), NextAttemptAt: at(3*time.Minute + 9),
	}
	mustCreateNote(t, s, full)
	if got := mustGetNote(t, s, full.ID); !reflect.DeepEqual(normNote(got), normNote(full)) {
		t.Errorf("round trip:\n got %+v\nwant %+v", normNote(got), normNote(full))
	}
	done := &store.Notification{
		ID: "ntf-done", Kind: "identity.expired", ClientID: "n2", ExpiresAt: at(time.Hour), CreatedAt: at(2 * time.Hour),
		Status: store.NotificationDelivered, DeliveredAt: at(2 * time.Hour),
	}
	mustCreateNote(t, s, done)
	if got := mustGetNote(t, s, done.ID); !reflect.DeepEqual(normNote(got), normNote(done)) {
		t.Errorf("round trip:\n got %+v\nwant %+v", normNote(got), normNote(done))
	}
	if _, err := s.GetNotification(t.Context(), "ntf-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNotification(unknown) = %v, want ErrNotFound", err)
	}
}

func testNotificationOncePerKey(t *testing.T, s store.Store) {
	first := pendingNote("ntf-a", "n1", 24*time.Hour, 0)
	mustCreateNote(t, s, first)
	// Same key, another delivery id and time: not stored, not an error.
	again := pendingNote("ntf-b", "n1", 24*time.Hour, time.Hour)
	if ok, err := s.CreateNotification(t.Context(), again); err != nil || ok {
		t.Fatalf("second create of the same key = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.GetNotification(t.Context(), "ntf-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the duplicate was stored: %v", err)
	}
	// Any one field of the key differing is another warning.
	for i, mut := range []func(n *store.Notification){
		func(n *store.Notification) { n.Lead = 3 * 24 * time.Hour },
		func(n *store.Notification) { n.ClientID = "n2" },
		func(n *store.Notification) { n.ExpiresAt = n.ExpiresAt.Add(time.Nanosecond) },
		func(n *store.Notification) { n.Kind = "identity.expired" },
	} {
		n := pendingNote(fmt.Sprintf("ntf-k%d", i), "n1", 24*time.Hour, 0)
		mut(n)
		mustCreateNote(t, s, n)
	}
	// A delivery id reused for another key is a conflict, not a silent skip.
	reused := pendingNote("ntf-a", "n2", time.Hour, 0)
	if _, err := s.CreateNotification(t.Context(), reused); !errors.Is(err, store.ErrConflict) {
		t.Errorf("reused id = %v, want ErrConflict", err)
	}

	// Many nodes racing to record one warning: exactly one stores it.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.CreateNotification(t.Context(), pendingNote(fmt.Sprintf("ntf-race-%d", i), "n2", 14*24*time.Hour, 0))
			if err != nil {
				t.Errorf("racing create: %v", err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d racing creates reported true, want 1", wins)
	}
	ns, err := s.ListNotifications(t.Context(), store.NotificationFilter{ClientID: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	var race int
	for _, n := range ns {
		if strings.HasPrefix(n.ID, "ntf-race-") {
			race++
		}
	}
	if race != 1 {
		t.Errorf("%d rows stored by the race, want 1", race)
	}
}

func testNotificationRefusals(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		mut  func(n *store.Notification)
		is   error
	}{
		{"no id", func(n *store.Notification) { n.ID = "" }, nil},
		{"no kind", func(n *store.Notification) { n.Kind = "" }, nil},
		{"no client", func(n *store.Notification) { n.ClientID = "" }, nil},
		{"unknown client", func(n *store.Notification) { n.ClientID = "ghost" }, store.ErrNotFound},
		{"no expiry", func(n *store.Notification) { n.ExpiresAt = time.Time{} }, nil},
		{"no created", func(n *store.Notification) { n.CreatedAt = time.Time{} }, nil},
		{"negative lead", func(n *store.Notification) { n.Lead = -1 }, nil},
		{"unknown status", func(n *store.Notification) { n.Status = "sent" }, nil},
		{"pending without next attempt", func(n *store.Notification) { n.NextAttemptAt = time.Time{} }, nil},
		{"delivered with next attempt", func(n *store.Notification) { n.Status = store.NotificationDelivered }, nil},
		{"negative attempts", func(n *store.Notification) { n.Attempts = -1 }, nil},
		{"unbounded error", func(n *store.Notification) { n.LastError = strings.Repeat("x", store.MaxNotificationError+1) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := pendingNote("ntf-bad", "n1", time.Hour, 0)
			tt.mut(n)
			ok, err := s.CreateNotification(t.Context(), n)
			if err == nil || ok {
				t.Fatalf("CreateNotification = %v, %v; want an error", ok, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
			if ns, _ := s.ListNotifications(t.Context(), store.NotificationFilter{}); len(ns) != 0 {
				t.Errorf("a refused create stored %v", noteIDs(ns))
			}
		})
	}
	// At the bound is fine.
	n := pendingNote("ntf-bound", "n1", time.Hour, 0)
	n.LastError = strings.Repeat("x", store.MaxNotificationError)
	mustCreateNote(t, s, n)
}

func testNotificationClaim(t *testing.T, s store.Store) {
	ctx := t.Context()
	n := pendingNote("ntf-c", "n1", time.Hour, 0)
	mustCreateNote(t, s, n)
	lease := at(time.Minute)
	if ok, err := s.ClaimNotification(ctx, n.ID, at(time.Second), lease); err != nil || ok {
		t.Fatalf("claim with a stale due = %v, %v; want false", ok, err)
	}
	if ok, err := s.ClaimNotification(ctx, n.ID, n.NextAttemptAt, lease); err != nil || !ok {
		t.Fatalf("claim = %v, %v; want true", ok, err)
	}
	if got := mustGetNote(t, s, n.ID).NextAttemptAt; !got.Equal(lease) {
		t.Errorf("NextAttemptAt after claim = %v, want the lease end %v", got, lease)
	}
	// The claim is gone from the due list until the lease ends.
	if due, _ := s.DueNotifications(ctx, at(time.Minute-1), 0); len(due) != 0 {
		t.Errorf("claimed row still due: %v", noteIDs(due))
	}
	if ok, _ := s.ClaimNotification(ctx, n.ID, n.NextAttemptAt, at(2*time.Minute)); ok {
		t.Error("a second claim with the old due won")
	}
	retry := store.NotificationUpdate{Status: store.NotificationPending, Attempts: 1, LastError: "receiver answered 503",
		LastAttemptAt: at(time.Second), NextAttemptAt: at(time.Hour)}
	if err := s.UpdateNotification(ctx, n.ID, at(time.Second), retry); !errors.Is(err, store.ErrStale) {
		t.Errorf("update without the claim = %v, want ErrStale", err)
	}
	if err := s.UpdateNotification(ctx, "ntf-missing", lease, retry); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of an unknown id = %v, want ErrNotFound", err)
	}
	bad := retry
	bad.NextAttemptAt = time.Time{}
	if err := s.UpdateNotification(ctx, n.ID, lease, bad); err == nil {
		t.Error("a pending update without NextAttemptAt was accepted")
	}
	if err := s.UpdateNotification(ctx, n.ID, lease, retry); err != nil {
		t.Fatalf("update: %v", err)
	}
	got := mustGetNote(t, s, n.ID)
	if got.Attempts != 1 || got.LastError != retry.LastError || !got.NextAttemptAt.Equal(retry.NextAttemptAt) || !got.LastAttemptAt.Equal(retry.LastAttemptAt) {
		t.Errorf("after retry update: %+v", normNote(got))
	}
	// Claim again and finish it: a finished row cannot be claimed or updated.
	if ok, err := s.ClaimNotification(ctx, n.ID, retry.NextAttemptAt, at(2*time.Hour)); err != nil || !ok {
		t.Fatalf("second claim = %v, %v", ok, err)
	}
	done := store.NotificationUpdate{Status: store.NotificationDelivered, Attempts: 2, LastAttemptAt: at(time.Hour), DeliveredAt: at(time.Hour)}
	if err := s.UpdateNotification(ctx, n.ID, at(2*time.Hour), done); err != nil {
		t.Fatalf("finish: %v", err)
	}
	got = mustGetNote(t, s, n.ID)
	if got.Status != store.NotificationDelivered || !got.NextAttemptAt.IsZero() || !got.DeliveredAt.Equal(at(time.Hour)) || got.LastError != "" {
		t.Errorf("after delivery: %+v", normNote(got))
	}
	if err := s.UpdateNotification(ctx, n.ID, at(2*time.Hour), done); !errors.Is(err, store.ErrStale) {
		t.Errorf("update of a finished row = %v, want ErrStale", err)
	}
	if due, _ := s.DueNotifications(ctx, at(1000*time.Hour), 0); len(due) != 0 {
		t.Errorf("a delivered row is due: %v", noteIDs(due))
	}
}

func testNotificationClaimRace(t *testing.T, s store.Store) {
	n := pendingNote("ntf-r", "n1", time.Hour, 0)
	mustCreateNote(t, s, n)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []time.Time
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			until := at(time.Minute + time.Duration(i))
			ok, err := s.ClaimNotification(t.Context(), n.ID, n.NextAttemptAt, until)
			if err != nil {
				t.Errorf("claim: %v", err)
			}
			if ok {
				mu.Lock()
				winners = append(winners, until)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d claims won, want 1", len(winners))
	}
	for i := range 8 {
		until := at(time.Minute + time.Duration(i))
		err := s.UpdateNotification(t.Context(), n.ID, until, store.NotificationUpdate{Status: store.NotificationFailed, Attempts: 1, LastAttemptAt: at(time.Minute)})
		if until.Equal(winners[0]) != (err == nil) {
			t.Errorf("update with lease %d: %v (winner: %v)", i, err, until.Equal(winners[0]))
		}
	}
}

func testNotificationDueAndList(t *testing.T, s store.Store) {
	ctx := t.Context()
	// created: c at 3h, b at 2h, a at 1h; due: a at 1h, b at 2h, c at 3h.
	for i, id := range []string{"ntf-a", "ntf-b", "ntf-c"} {
		n := pendingNote(id, "n1", time.Duration(i+1)*time.Hour, time.Duration(i+1)*time.Hour)
		if id == "ntf-c" {
			n.ClientID = "n2"
		}
		mustCreateNote(t, s, n)
	}
	mustCreateNote(t, s, &store.Notification{ID: "ntf-f", Kind: "identity.expired", ClientID: "n1", ExpiresAt: at(time.Hour),
		CreatedAt: at(30 * time.Minute), Status: store.NotificationFailed, Attempts: 3, LastError: "receiver answered 400"})
	due := func(now time.Duration, limit int) []string {
		t.Helper()
		ns, err := s.DueNotifications(ctx, at(now), limit)
		if err != nil {
			t.Fatal(err)
		}
		return noteIDs(ns)
	}
	for _, tc := range []struct {
		now   time.Duration
		limit int
		want  []string
	}{
		{time.Hour - 1, 0, []string{}},
		{time.Hour, 0, []string{"ntf-a"}},
		{3 * time.Hour, 0, []string{"ntf-a", "ntf-b", "ntf-c"}},
		{3 * time.Hour, 2, []string{"ntf-a", "ntf-b"}},
	} {
		if got := due(tc.now, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("DueNotifications(+%s, %d) = %v, want %v", tc.now, tc.limit, got, tc.want)
		}
	}
	list := func(f store.NotificationFilter) []string {
		t.Helper()
		ns, err := s.ListNotifications(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return noteIDs(ns)
	}
	for _, tc := range []struct {
		f    store.NotificationFilter
		want []string
	}{
		{store.NotificationFilter{}, []string{"ntf-c", "ntf-b", "ntf-a", "ntf-f"}},
		{store.NotificationFilter{Limit: 2}, []string{"ntf-c", "ntf-b"}},
		{store.NotificationFilter{Status: store.NotificationFailed}, []string{"ntf-f"}},
		{store.NotificationFilter{Status: store.NotificationPending, ClientID: "n1"}, []string{"ntf-b", "ntf-a"}},
		{store.NotificationFilter{ClientID: "n2"}, []string{"ntf-c"}},
		{store.NotificationFilter{Status: store.NotificationDelivered}, []string{}},
	} {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("ListNotifications(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	for status, want := range map[store.NotificationStatus]int{store.NotificationPending: 3, store.NotificationFailed: 1, store.NotificationDelivered: 0} {
		if n, err := s.CountNotifications(ctx, status); err != nil || n != want {
			t.Errorf("CountNotifications(%s) = %d, %v; want %d", status, n, err, want)
		}
	}
}

func testExpiringClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(id string, exp time.Duration, status identity.Status) {
		c := fullClient(id)
		c.ExpiresAt, c.Status = at(exp), status
		mustCreate(t, s, c)
	}
	mk("e-early", 0, identity.StatusActive)
	mk("e-late", 2*time.Hour, identity.StatusActive)
	mk("e-mid-b", time.Hour, identity.StatusActive)
	mk("e-mid-a", time.Hour, identity.StatusActive)
	mk("e-susp", time.Hour, identity.StatusSuspended)
	mk("e-rev", time.Hour, identity.StatusRevoked)
	ids := func(from, to time.Duration, limit int) []string {
		t.Helper()
		cs, err := s.ExpiringClients(ctx, at(from), at(to), limit)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		from, to time.Duration
		limit    int
		want     []string
	}{
		{0, 2 * time.Hour, 0, []string{"e-early", "e-mid-a", "e-mid-b"}},
		{1, 2*time.Hour + 1, 0, []string{"e-mid-a", "e-mid-b", "e-late"}},
		{0, 2 * time.Hour, 2, []string{"e-early", "e-mid-a"}},
		{-time.Hour, 0, 0, []string{}},
	} {
		if got := ids(tc.from, tc.to, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("ExpiringClients(+%s, +%s, %d) = %v, want %v", tc.from, tc.to, tc.limit, got, tc.want)
		}
	}
	// n1 and n2 (90 days out) come back whole.
	cs, err := s.ExpiringClients(ctx, at(24*time.Hour), at(91*24*time.Hour), 0)
	if err != nil || len(cs) != 2 {
		t.Fatalf("ExpiringClients = %d clients, %v", len(cs), err)
	}
	if d := diffClient(fullClient("n1"), cs[0]); d != "" {
		t.Errorf("client from ExpiringClients differs: %s", d)
	}
}

// testNotificationPurge: rows about expiries before the cut are deleted,
// whatever their status; the rest stay.
func testNotificationPurge(t *testing.T, s store.Store) {
	old := pendingNote("ntf-old", "n1", 24*time.Hour, 0)
	old.ExpiresAt = at(time.Hour)
	oldDone := &store.Notification{ID: "ntf-old-done", Kind: "identity.expired", ClientID: "n2", ExpiresAt: at(2 * time.Hour),
		CreatedAt: at(3 * time.Hour), Status: store.NotificationDelivered, DeliveredAt: at(3 * time.Hour)}
	edge := pendingNote("ntf-edge", "n2", 24*time.Hour, 0)
	edge.ExpiresAt = at(10 * time.Hour)
	recent := pendingNote("ntf-recent", "n1", 3*24*time.Hour, 0)
	for _, n := range []*store.Notification{old, oldDone, edge, recent} {
		mustCreateNote(t, s, n)
	}
	n, err := s.PurgeNotifications(t.Context(), at(10*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PurgeNotifications = %d, %v; want 2", n, err)
	}
	left, err := s.ListNotifications(t.Context(), store.NotificationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := noteIDs(left)
	slices.Sort(got)
	if !slices.Equal(got, []string{"ntf-edge", "ntf-recent"}) {
		t.Errorf("left after the purge: %v, want ntf-edge and ntf-recent", got)
	}
	if n, err := s.PurgeNotifications(t.Context(), at(10*time.Hour)); err != nil || n != 0 {
		t.Errorf("second purge = %d, %v; want 0", n, err)
	}
}
