package review_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/review"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// attestAfterList runs after once, right after the sweep's first read of
// the review history: an attestation that lands while the sweep works.
type attestAfterList struct {
	*sqlite.Store
	after func()
	once  sync.Once
}

func (a *attestAfterList) LatestReviews(ctx context.Context) ([]store.Review, error) {
	rs, err := a.Store.LatestReviews(ctx)
	a.once.Do(a.after)
	return rs, err
}

// hookSuspender runs before ahead of the first suspension it is asked for,
// then delegates to the inventory.
type hookSuspender struct {
	review.Suspender
	before func(id string)
	once   sync.Once
}

func (h *hookSuspender) Suspend(ctx context.Context, actor, id, reason string) (*identity.Client, error) {
	h.once.Do(func() { h.before(id) })
	return h.Suspender.Suspend(ctx, actor, id, reason)
}

// suspensions counts the client.suspend admin events of client id.
func suspensions(t *testing.T, f *fixture, id string) int {
	t.Helper()
	evs, err := f.st.ListAdminEvents(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Action == "client.suspend" {
			n++
		}
	}
	return n
}

func status(t *testing.T, f *fixture, id string) identity.Status {
	t.Helper()
	c, err := f.st.GetClient(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Status
}

// TestSweepSparesIdentityAttestedMeanwhile: an owner who attests after the
// sweep read the review history, but before it reached their identity,
// keeps the identity working.
func TestSweepSparesIdentityAttestedMeanwhile(t *testing.T) {
	ctx := context.Background()
	t.Run("after the sweep's first read", func(t *testing.T) {
		f := newFixture(t)
		f.seed(t, "lapsed", "team-a", "prod", t0.Add(-200*day))
		sweeper := *f.rv
		sweeper.Store = &attestAfterList{Store: f.st, after: func() {
			if _, err := f.rv.Attest(ctx, "admin-1", "lapsed", yes); err != nil {
				t.Error(err)
			}
		}}
		done, err := sweeper.Sweep(ctx, f.now)
		if err != nil || len(done) != 0 {
			t.Fatalf("sweep suspended %v, %v; want nothing", done, err)
		}
		if st := status(t, f, "lapsed"); st != identity.StatusActive || suspensions(t, f, "lapsed") != 0 {
			t.Errorf("attested identity is %s with %d suspension events, want active and none", st, suspensions(t, f, "lapsed"))
		}
	})
	t.Run("while the sweep suspends another", func(t *testing.T) {
		f := newFixture(t)
		f.seed(t, "lapsed-1", "team-a", "prod", t0.Add(-200*day))
		f.seed(t, "lapsed-2", "team-a", "prod", t0.Add(-200*day))
		var attested string
		sweeper := *f.rv
		sweeper.Inventory = &hookSuspender{Suspender: f.inv, before: func(id string) {
			attested = map[string]string{"lapsed-1": "lapsed-2", "lapsed-2": "lapsed-1"}[id]
			if _, err := f.rv.Attest(ctx, "admin-1", attested, yes); err != nil {
				t.Error(err)
			}
		}}
		done, err := sweeper.Sweep(ctx, f.now)
		if err != nil || len(done) != 1 || done[0] == attested {
			t.Fatalf("sweep suspended %v, %v; want one, not %s which was attested", done, err, attested)
		}
		if st := status(t, f, attested); st != identity.StatusActive {
			t.Errorf("%s, attested during the sweep, is %s", attested, st)
		}
		if st := status(t, f, done[0]); st != identity.StatusSuspended {
			t.Errorf("%s is %s, want suspended", done[0], st)
		}
	})
}

// racingStore runs before ahead of the first client update: a write that
// lands between the inventory's read of a client and its own write.
type racingStore struct {
	*sqlite.Store
	before func()
	once   sync.Once
}

func (r *racingStore) UpdateClient(ctx context.Context, c *identity.Client, prev time.Time, ev store.AdminEvent) error {
	r.once.Do(r.before)
	return r.Store.UpdateClient(ctx, c, prev, ev)
}

// TestSweepsAtOnceSuspendOnce: two nodes' sweeps overlapping suspend a
// lapsed identity once, and neither reports a failure, wherever the other
// one's suspension lands.
func TestSweepsAtOnceSuspendOnce(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// racing returns node A's sweeper, whose suspension is overtaken
		// by other, node B's full sweep.
		racing func(f *fixture, other func()) *review.Service
	}{
		{"other node suspends it first", func(f *fixture, other func()) *review.Service {
			a := *f.rv
			a.Inventory = &hookSuspender{Suspender: f.inv, before: func(string) { other() }}
			return &a
		}},
		{"other node suspends it between the inventory's read and write", func(f *fixture, other func()) *review.Service {
			inv := *f.inv
			inv.Store = &racingStore{Store: f.st, before: other}
			a := *f.rv
			a.Inventory = &inv
			return &a
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.seed(t, "lapsed", "team-a", "prod", t0.Add(-200*day))
			var doneB []string
			a := tc.racing(f, func() {
				var err error
				if doneB, err = f.rv.Sweep(ctx, f.now); err != nil {
					t.Errorf("node B's sweep: %v", err)
				}
			})
			doneA, err := a.Sweep(ctx, f.now)
			if err != nil {
				t.Errorf("node A's sweep failed: %v", err)
			}
			if all := slices.Concat(doneA, doneB); !slices.Equal(all, []string{"lapsed"}) {
				t.Errorf("suspended by A %v and by B %v, want lapsed once", doneA, doneB)
			}
			if st, n := status(t, f, "lapsed"), suspensions(t, f, "lapsed"); st != identity.StatusSuspended || n != 1 {
				t.Errorf("lapsed is %s with %d suspension events, want suspended and 1", st, n)
			}
		})
	}

	t.Run("concurrently", func(t *testing.T) {
		f := newFixture(t)
		var ids []string
		for i := range 10 {
			id := fmt.Sprintf("lapsed-%02d", i)
			f.seed(t, id, "team-a", "prod", t0.Add(-200*day))
			ids = append(ids, id)
		}
		var (
			wg    sync.WaitGroup
			dones [2][]string
			errs  [2]error
		)
		for i := range 2 {
			// Separate services over one store, as on two nodes.
			inv := *f.inv
			rv := *f.rv
			rv.Inventory = &inv
			wg.Go(func() { dones[i], errs[i] = rv.Sweep(ctx, f.now) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Errorf("sweeps failed: %v; %v", errs[0], errs[1])
		}
		all := slices.Sorted(slices.Values(slices.Concat(dones[0], dones[1])))
		if !slices.Equal(all, ids) {
			t.Errorf("suspended %v, want each of %v once", all, ids)
		}
		for _, id := range ids {
			if n := suspensions(t, f, id); n != 1 {
				t.Errorf("%s has %d suspension events, want 1", id, n)
			}
		}
	})
}
