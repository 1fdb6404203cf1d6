// Package ratelimit keeps keyed token buckets in memory with a hard bound on
// how many it holds, so the gateway can limit each identity's request rate.
//
// It decides only whether one more event fits a key's budget. It must not
// choose keys or rates (the gateway derives the key from the verified
// identity and the rate from the route), and it does no I/O: one Limiter
// limits one node.
//
// # Bounded memory
//
// A Limiter holds at most maxKeys buckets. When a new key arrives and its
// shard is full, the shard first drops a bucket that has refilled to its
// burst (such a bucket carries no state: a fresh one is identical), and
// otherwise drops its least recently used bucket. Dropping a bucket that has
// not refilled hands that key a fresh burst the next time it is seen, so
// under key pressure a caller can get a little more than its rate. That is
// accepted: the alternatives are unbounded memory (a flood of distinct keys
// exhausting the gateway) or refusing new keys (letting a flood of keys deny
// service to everyone else). The least recently used key is the one least
// likely to be mid-burst, and each such lossy eviction is counted by
// Evictions so an operator can see when maxKeys is too small.
//
// # A shared backend
//
// Several gateway nodes each limiting locally let a caller spread over them
// get up to N times its rate. A shared backend (for example Redis, with the
// bucket update in one script) will sit behind an interface the gateway
// declares next to its use, which *Limiter satisfies through a small adapter:
//
//	type limiter interface {
//		// Allow takes one token from key's bucket. err reports a backend
//		// failure; the gateway, not the backend, decides whether that
//		// fails open or closed for the route.
//		Allow(ctx context.Context, key string, rate float64, burst int) (ok bool, retryAfter time.Duration, err error)
//	}
//
// The context and error exist for the network call; this package needs
// neither, so its own method has no such parameters.
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxKeys is the bound New uses when given maxKeys <= 0. A bucket
// costs about 100 bytes plus its key, so a million buckets of 64-byte keys
// cost roughly 160 MiB at most.
const DefaultMaxKeys = 1 << 20

// maxShards splits the key space so that concurrent callers rarely wait on
// the same mutex; a power of two, so the shard index is a mask.
const maxShards = 64

// evictScan is how many buckets from the least recently used end a full
// shard inspects for one that has refilled before it drops the least
// recently used one; a constant, so an insert costs O(1).
const evictScan = 8

// Limiter holds token buckets keyed by string. Safe for concurrent use. The
// zero value is not usable; call New.
type Limiter struct {
	now       func() time.Time
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	evictions atomic.Uint64
}

type shard struct {
	mu    sync.Mutex
	m     map[string]*bucket
	lru   bucket // sentinel of a circular list, most recent first
	limit int
	_     [40]byte // keep each mutex on its own cache lines (size checked in a test)
}

// bucket is one key's state. tokens is as of last (Unix nanoseconds); rate
// and capacity are those of the latest call, so a full shard can tell which
// buckets have refilled.
type bucket struct {
	key            string
	tokens         float64
	last           int64
	rate, capacity float64
	prev, next     *bucket
}

// New returns a limiter that holds at most maxKeys buckets (maxKeys <= 0
// means DefaultMaxKeys); now nil means time.Now. The bound is split evenly
// over the shards, so eviction can start in one shard before the whole
// limiter is full.
func New(maxKeys int, now func() time.Time) *Limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	if now == nil {
		now = time.Now
	}
	n := maxShards
	for n > maxKeys {
		n /= 2
	}
	l := &Limiter{now: now, seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range l.shards {
		s := &l.shards[i]
		s.limit = maxKeys / n
		if i < maxKeys%n {
			s.limit++
		}
		s.m = make(map[string]*bucket)
		s.lru.prev, s.lru.next = &s.lru, &s.lru
	}
	return l
}

// Allow takes one token from key's bucket, which holds up to burst tokens
// and gains rate tokens per second. A key seen for the first time (or again
// after eviction) starts with a full bucket. When refused, retryAfter is how
// long until a token will be available; callers round it up to whole
// seconds for Retry-After.
//
// rate and burst are the route's current values and may change between
// calls (a reload); the bucket keeps its tokens, capped at the new burst.
// rate must be positive and finite and burst at least 1: otherwise Allow
// refuses (fails closed) with retryAfter 0, meaning no wait will help.
//
// Allow does not allocate for a key it already holds.
func (l *Limiter) Allow(key string, rate float64, burst int) (ok bool, retryAfter time.Duration) {
	if !(rate > 0) || math.IsInf(rate, 1) || burst < 1 {
		return false, 0
	}
	now := l.now().UnixNano()
	capacity := float64(burst)
	s := &l.shards[maphash.String(l.seed, key)&l.mask]
	s.mu.Lock()
	b := s.m[key]
	if b == nil {
		b = s.add(l, key, now, capacity)
	} else {
		s.unlink(b)
		if elapsed := now - b.last; elapsed > 0 {
			b.tokens = min(capacity, b.tokens+float64(elapsed)*rate/1e9)
			b.last = now
		} else {
			b.tokens = min(capacity, b.tokens) // the clock stood still or went back: no refill
		}
	}
	b.rate, b.capacity = rate, capacity
	s.pushFront(b)
	if b.tokens >= 1 {
		b.tokens--
		s.mu.Unlock()
		return true, 0
	}
	need := (1 - b.tokens) / rate * 1e9
	s.mu.Unlock()
	return false, time.Duration(math.Ceil(need))
}

// add makes a full bucket for key, first evicting one if the shard is full.
// Called with s.mu held.
func (s *shard) add(l *Limiter, key string, now int64, capacity float64) *bucket {
	if len(s.m) >= s.limit {
		victim := s.lru.prev // least recently used
		for i, b := 0, s.lru.prev; i < evictScan && b != &s.lru; i, b = i+1, b.prev {
			if b.full(now) {
				victim = b
				break
			}
		}
		if !victim.full(now) {
			l.evictions.Add(1)
		}
		s.unlink(victim)
		delete(s.m, victim.key)
	}
	b := &bucket{key: key, tokens: capacity, last: now}
	s.m[key] = b
	return b
}

// full reports whether b has refilled by now: dropping it loses nothing.
func (b *bucket) full(now int64) bool {
	elapsed := float64(max(now-b.last, 0))
	return b.tokens+elapsed*b.rate/1e9 >= b.capacity
}

func (s *shard) unlink(b *bucket) {
	b.prev.next = b.next
	b.next.prev = b.prev
	b.prev, b.next = nil, nil
}

func (s *shard) pushFront(b *bucket) {
	b.prev = &s.lru
	b.next = s.lru.next
	s.lru.next.prev = b
	s.lru.next = b
}

// Evictions reports how many buckets have been dropped before they refilled,
// each of which gave its key a fresh burst. Dropping a refilled bucket loses
// nothing and is not counted. A steadily rising count means maxKeys is too
// small for the number of active identities.
func (l *Limiter) Evictions() uint64 { return l.evictions.Load() }

// Len reports how many buckets are held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
