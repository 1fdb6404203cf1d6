package revocation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

type countingLookup struct {
	calls  int
	status identity.Status
	fail   bool
}

func (c *countingLookup) GetClient(_ context.Context, id string) (*identity.Client, error) {
	c.calls++
	if c.fail {
		return nil, errors.New("store down")
	}
	if id == "missing" {
		return nil, store.ErrNotFound
	}
	return &identity.Client{ID: id, Status: c.status}, nil
}

func TestClientsCache(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	src := &countingLookup{status: identity.StatusActive}
	cc := NewClients(src, time.Second, func() time.Time { return now })
	ctx := context.Background()

	get := func() identity.Status {
		t.Helper()
		c, err := cc.GetClient(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return c.Status
	}
	if get() != identity.StatusActive || get() != identity.StatusActive || src.calls != 1 {
		t.Fatalf("want one store read for two lookups, got %d", src.calls)
	}
	if h, m := cc.Stats(); h != 1 || m != 1 {
		t.Errorf("Stats = %d hits, %d misses; want 1 and 1", h, m)
	}
	// Another node suspends: seen once the entry is a TTL old.
	src.status = identity.StatusSuspended
	now = now.Add(999 * time.Millisecond)
	if get() != identity.StatusActive {
		t.Fatal("entry refreshed before its TTL")
	}
	now = now.Add(time.Millisecond)
	if get() != identity.StatusSuspended {
		t.Fatal("suspension not seen after the TTL")
	}
	// A change in this process is visible at once.
	src.status = identity.StatusRevoked
	cc.Invalidate("a")
	if get() != identity.StatusRevoked {
		t.Fatal("invalidate did not force a re-read")
	}
	// Errors are not cached and fail closed each time.
	src.fail = true
	now = now.Add(2 * time.Second)
	if _, err := cc.GetClient(ctx, "a"); err == nil {
		t.Fatal("store error hidden by the cache")
	}
	calls := src.calls
	if _, err := cc.GetClient(ctx, "a"); err == nil || src.calls != calls+1 {
		t.Fatal("error was cached")
	}
	src.fail = false
	if _, err := cc.GetClient(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

// hookLookup runs during before answering, as a change made while a
// lookup is in flight.
type hookLookup struct {
	status identity.Status
	during func()
}

func (h *hookLookup) GetClient(_ context.Context, id string) (*identity.Client, error) {
	c := &identity.Client{ID: id, Status: h.status}
	if h.during != nil {
		h.during()
		h.during = nil
	}
	return c, nil
}

// TestClientsInvalidateDuringLookup: a suspension made in this process
// while another request's lookup is reading the store must apply to the
// next request, not after the TTL.
func TestClientsInvalidateDuringLookup(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	src := &hookLookup{status: identity.StatusActive}
	cc := NewClients(src, time.Minute, func() time.Time { return now })
	src.during = func() {
		// The admin API suspends and invalidates after the read above.
		src.status = identity.StatusSuspended
		cc.Invalidate("a")
	}
	c, err := cc.GetClient(context.Background(), "a")
	if err != nil || c.Status != identity.StatusActive {
		t.Fatalf("racing lookup = %+v, %v; want the registration it read", c, err)
	}
	c, err = cc.GetClient(context.Background(), "a")
	if err != nil || c.Status != identity.StatusSuspended {
		t.Fatalf("next lookup = %+v, %v; want the suspension at once", c, err)
	}
}
