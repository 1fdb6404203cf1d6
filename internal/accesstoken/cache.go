package accesstoken

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// TokenVerifier is what Cache wraps: normally a *Verifier.
type TokenVerifier interface {
	Verify(token string) (*Claims, error)
}

// cacheShards spreads lock contention; a power of two.
const cacheShards = 32

// Cache remembers tokens that verified, keyed by their SHA-256, until they
// expire, so a resource server that sees the same token many times pays the
// signature check once. Only successes are cached: a token that failed is
// checked in full every time. Revocation and client status are not the
// cache's business; callers check them on every request.
//
// Cache is safe for concurrent use. Its size is bounded: a full shard is
// cleared of expired entries, and if still full, emptied.
type Cache struct {
	next   TokenVerifier
	now    func() time.Time
	max    int
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*Claims
	// hits and misses are per shard so that counting does not become one
	// contended cache line.
	hits, misses atomic.Uint64
}

// CacheStats counts lookups since the cache was made.
type CacheStats struct {
	Hits, Misses uint64
}

// Stats sums the shards' counters.
func (c *Cache) Stats() CacheStats {
	var s CacheStats
	for i := range c.shards {
		s.Hits += c.shards[i].hits.Load()
		s.Misses += c.shards[i].misses.Load()
	}
	return s
}

// NewCache wraps next with a cache of at most maxEntries tokens.
func NewCache(next TokenVerifier, maxEntries int, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	if maxEntries < cacheShards {
		maxEntries = cacheShards
	}
	c := &Cache{next: next, now: now, max: maxEntries / cacheShards}
	for i := range c.shards {
		c.shards[i].m = map[[32]byte]*Claims{}
	}
	return c
}

// Verify returns the cached claims of a token that verified before and has
// not expired, or verifies it now. The returned Claims are shared: callers
// must not modify them.
func (c *Cache) Verify(token string) (*Claims, error) {
	sum := sha256.Sum256(readOnlyBytes(token))
	sh := &c.shards[sum[0]%cacheShards]
	now := c.now()
	sh.mu.RLock()
	cl, ok := sh.m[sum]
	sh.mu.RUnlock()
	if ok {
		if now.Before(cl.Expiry) {
			sh.hits.Add(1)
			return cl, nil
		}
		sh.mu.Lock()
		delete(sh.m, sum)
		sh.mu.Unlock()
	}
	sh.misses.Add(1)
	cl, err := c.next.Verify(token)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	if len(sh.m) >= c.max {
		for k, v := range sh.m {
			if !now.Before(v.Expiry) {
				delete(sh.m, k)
			}
		}
		if len(sh.m) >= c.max {
			clear(sh.m)
		}
	}
	sh.m[sum] = cl
	sh.mu.Unlock()
	return cl, nil
}

// readOnlyBytes views s as bytes without copying it, for sha256.Sum256,
// which only reads its input. []byte(token) copied the whole token, about
// 640 bytes of garbage on every cache hit, that is on every gateway
// request. The result must never be written to. dpop has the same helper
// (for ath and the proof signature); the import tiers keep the two
// packages apart, and a package for one line is not worth its tier.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
