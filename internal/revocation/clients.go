package revocation

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// ClientLookup reads a client's current registration from the store.
type ClientLookup interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
}

// MaxCachedClients bounds the client cache; past it, half of the entries
// (arbitrary ones) are dropped; they are re-read on next use.
const MaxCachedClients = 100_000

// Clients caches client registrations for request paths that must check a
// client's status on every call (the gateway, the admin API). An entry is
// at most TTL old, so a suspension or revocation made on another node is
// seen within TTL; Invalidate makes a change made in this process visible at
// once. Lookup errors are not cached, so a store outage fails closed on every
// request rather than for a whole TTL.
type Clients struct {
	src ClientLookup
	ttl time.Duration
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]clientEntry
	// gen counts Invalidate calls. A lookup caches what it read only if
	// no invalidation happened while it read: otherwise a read that began
	// before a suspension could store the old registration after
	// Invalidate, and the suspension would wait out the TTL.
	gen uint64

	hits, misses atomic.Uint64
}

// Stats returns how many lookups were answered from the cache (hits) and
// how many read the store (misses).
func (cc *Clients) Stats() (hits, misses uint64) { return cc.hits.Load(), cc.misses.Load() }

type clientEntry struct {
	c       *identity.Client
	fetched time.Time
}

// NewClients returns a cache over src with the given TTL (default 1s).
func NewClients(src ClientLookup, ttl time.Duration, now func() time.Time) *Clients {
	if ttl <= 0 {
		ttl = time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Clients{src: src, ttl: ttl, now: now, entries: map[string]clientEntry{}}
}

// GetClient returns the cached registration, reading the store when the
// entry is missing or older than the TTL. The returned client is shared:
// callers must not modify it.
func (cc *Clients) GetClient(ctx context.Context, id string) (*identity.Client, error) {
	now := cc.now()
	cc.mu.RLock()
	e, ok := cc.entries[id]
	gen := cc.gen
	cc.mu.RUnlock()
	if ok && now.Sub(e.fetched) < cc.ttl {
		cc.hits.Add(1)
		return e.c, nil
	}
	cc.misses.Add(1)
	c, err := cc.src.GetClient(ctx, id)
	if err != nil {
		cc.Invalidate(id)
		return nil, err
	}
	cc.mu.Lock()
	if cc.gen != gen {
		// Changed while we read: answer this request with what was read
		// (it began before the change), but leave the cache to the next.
		cc.mu.Unlock()
		return c, nil
	}
	if len(cc.entries) >= MaxCachedClients {
		n := 0
		for k := range cc.entries {
			delete(cc.entries, k)
			if n++; n >= MaxCachedClients/2 {
				break
			}
		}
	}
	cc.entries[id] = clientEntry{c: c, fetched: now}
	cc.mu.Unlock()
	return c, nil
}

// Invalidate drops id so its next lookup reads the store.
func (cc *Clients) Invalidate(id string) {
	cc.mu.Lock()
	delete(cc.entries, id)
	cc.gen++
	cc.mu.Unlock()
}
