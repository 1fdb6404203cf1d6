package notify

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// claimRecorder records each claim's until and the clock when it was made.
type claimRecorder struct {
	*sqlite.Store
	mu     sync.Mutex
	claims []claimMade
}

type claimMade struct{ at, until time.Time }

func (r *claimRecorder) ClaimNotification(ctx context.Context, id string, due, until time.Time) (bool, error) {
	r.mu.Lock()
	r.claims = append(r.claims, claimMade{at: time.Now(), until: until})
	r.mu.Unlock()
	return r.Store.ClaimNotification(ctx, id, due, until)
}

// TestSweepWithStaleNowLeasesFromTheClock: a sweep whose now is two leases
// old (a slow sweep's earlier tasks, say) still claims each warning for a
// lease from the current time, so another node sweeping meanwhile does not
// send it a second time.
func TestSweepWithStaleNowLeasesFromTheClock(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	addClient(t, s, "kb-1", time.Now().Add(2*day))
	var (
		nodeB    *Service
		errB     error
		sweptOnB bool
	)
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 { // node B sweeps while node A delivers
			errB, sweptOnB = nodeB.Sweep(ctx, time.Now()), true
		}
		w.WriteHeader(http.StatusNoContent)
	})
	rec := &claimRecorder{Store: s}
	nodeA, _ := newService(t, s, rc, 3)
	nodeA.Store = rec
	nodeB, _ = newService(t, s, rc, 3)

	stale := time.Now().Add(-2 * nodeA.lease())
	if err := nodeA.Sweep(ctx, stale); err != nil {
		t.Errorf("node A's sweep: %v", err)
	}
	if !sweptOnB || errB != nil {
		t.Fatalf("node B's sweep: ran %v, %v", sweptOnB, errB)
	}
	if got := len(rc.requests()); got != 1 {
		t.Errorf("the receiver got the warning %d times, want once", got)
	}
	if len(rec.claims) != 1 {
		t.Fatalf("node A made %d claims, want 1", len(rec.claims))
	}
	// The clock is read just before the claim: allow that moment.
	if c := rec.claims[0]; c.until.Before(c.at.Add(nodeA.lease() - time.Second)) {
		t.Errorf("claim made at %s holds until %s: less than a lease (%s) from the clock", c.at, c.until, nodeA.lease())
	}
	ns := list(t, s, store.NotificationFilter{})
	if len(ns) != 1 || ns[0].Status != store.NotificationDelivered || ns[0].Attempts != 1 {
		t.Errorf("recorded %+v, want one warning delivered in one attempt", ns)
	}
}

// TestDeliveryLeasesCountTimeSpent: with now ahead of the clock (as tests
// step it), each claim still counts the time the sweep has spent
// delivering.
func TestDeliveryLeasesCountTimeSpent(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-1", t0.Add(2*day))
	addClient(t, s, "kb-2", t0.Add(2*day))
	var (
		mu    sync.Mutex
		clock = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		mu.Lock()
		clock = clock.Add(10 * time.Second) // each delivery takes 10s
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	rec := &claimRecorder{Store: s}
	svc, _ := newService(t, s, rc, 3)
	svc.Store = rec
	svc.clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	sweep(t, svc, t0)
	if len(rec.claims) != 2 {
		t.Fatalf("%d claims, want 2", len(rec.claims))
	}
	if want := t0.Add(10*time.Second + svc.lease()); !rec.claims[1].until.Equal(want) {
		t.Errorf("second claim holds until %s, want %s (now, the 10s spent, a lease)", rec.claims[1].until, want)
	}
}
