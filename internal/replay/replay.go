// Package replay remembers single-use keys until they expire, so that a DPoP
// proof jti or a private_key_jwt assertion jti is accepted once only.
//
// It decides nothing about tokens: callers check signatures and lifetimes
// first and claim last, so a rejected request leaves no entry behind. It
// holds keys in memory on one node; it must not be used where several nodes
// share a replay window (that needs a shared backend behind the same
// method). A full cache says so (ErrFull) rather than pass for a replay, so
// that callers can answer it as the server's problem.
package replay

import (
	"crypto/sha256"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxEntries is the bound New uses when given maxEntries <= 0. A
// gateway verifying 10,000 proofs a second with a 60 second window holds
// 600,000 live keys; at about 48 bytes per entry (a 32-byte digest, the
// expiry and map overhead) 1<<20 entries cost roughly 50 MiB at most.
const DefaultMaxEntries = 1 << 20

// numShards splits the key space so that 64 concurrent callers rarely wait on
// the same mutex. A power of two, so the shard index is a mask.
const numShards = 64

// evictProbes is how many entries an insert inspects for expiry. Probing a
// few on every insert keeps stale entries from piling up between the full
// sweeps that a full shard triggers, at a constant cost per call.
const evictProbes = 2

// Cache remembers keys until their expiry. Safe for concurrent use.
//
// The bound is enforced per shard (maxEntries/64, rounded up): when a key's
// shard is full of unexpired entries TryClaim returns ErrFull, failing
// closed rather than forgetting a key that may still be replayed. The zero
// value is not usable; call New.
type Cache struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [numShards]shard
}

// digest is the SHA-256 of a key.
type digest [sha256.Size]byte

type shard struct {
	mu sync.Mutex
	// m maps the SHA-256 digest of each key to its expiry (Unix
	// nanoseconds). Digests, not the key strings, so that the map holds no
	// pointers: the garbage collector then never scans it. At a few
	// thousand proofs a second the cache is most of a gateway's live heap
	// (one string per key, a quarter of a million of them), and marking
	// those strings made each GC cycle long enough to show in the
	// gateway's tail latency. A collision between two keys' digests could
	// only refuse a fresh key, never accept a replay.
	m map[digest]int64
	// minExp is a lower bound on the expiries in m. While now <= minExp no
	// entry can be expired, so a full shard refuses without sweeping; this
	// keeps a flood of fresh keys from costing a full sweep per call.
	minExp int64
	limit  int
	_      [128 - 32]byte // keep each mutex on its own cache lines (size checked in a test)
}

// New returns a cache that holds at most about maxEntries keys (see Cache).
// maxEntries <= 0 means DefaultMaxEntries; now nil means time.Now.
func New(maxEntries int, now func() time.Time) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if now == nil {
		now = time.Now
	}
	limit := (maxEntries + numShards - 1) / numShards
	c := &Cache{now: now, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[digest]int64)
		c.shards[i].limit = limit
	}
	return c
}

// ErrFull is TryClaim's answer when the key's shard is full of unexpired
// keys: the cache cannot record the key, so it cannot tell whether it is
// fresh. It is the server's capacity problem, not the client's fault, and
// callers answer it as a temporary server failure (503), never as a
// replay, which would tell a client to retry with a fresh id that fares
// no better.
var ErrFull = errors.New("replay: cache is full of unexpired keys")

// Margin is how long past the last moment its credential can be accepted a
// caller should hold a key. The cache reads its own clock a moment after
// the caller's check; an exp of exactly that last moment could already have
// passed, and the cache would then refuse a just-accepted credential as if
// replayed.
const Margin = time.Second

// TryClaim records key until exp. It returns (true, nil) on the key's first
// use and (false, nil) when the key is already held: a replay. A key whose
// exp has already passed is answered like a replay: it belongs to a
// credential that is no longer valid, and holding nothing for it would let
// it be claimed again and again (callers add Margin so that an honest one
// never meets this). It returns (false, ErrFull), failing closed, when the
// key's shard is full of unexpired entries.
//
// A key is held while now <= exp; once now > exp it may be claimed again.
func (c *Cache) TryClaim(key string, exp time.Time) (bool, error) {
	now := c.now().UnixNano()
	e := exp.UnixNano()
	if e < now {
		return false, nil
	}
	// The shard comes from a keyed hash, so that nobody can aim keys at
	// one shard and fill it; the map key is a digest (see shard.m).
	s := &c.shards[maphash.String(c.seed, key)&(numShards-1)]
	// Hashed from a stack buffer: the plain conversion allocates for any
	// key over 32 bytes, and keys are usually 60 to 80.
	var buf [128]byte
	d := digest(sha256.Sum256(append(buf[:0], key...)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[d]; ok {
		if old >= now {
			return false, nil
		}
		s.m[d] = e
		s.noteExp(e)
		return true, nil
	}
	s.probe(now)
	if len(s.m) >= s.limit {
		if now <= s.minExp || s.sweep(now) >= s.limit {
			return false, ErrFull
		}
	}
	s.m[d] = e
	s.noteExp(e)
	return true, nil
}

// Seen reports whether key is claimed and its claim has not ended. It
// claims nothing: a caller that defers its claim (the token endpoint spends
// an assertion only when it issues) can still refuse a known replay before
// doing anything else with the request.
func (c *Cache) Seen(key string) bool {
	now := c.now().UnixNano()
	s := &c.shards[maphash.String(c.seed, key)&(numShards-1)]
	var buf [128]byte
	d := digest(sha256.Sum256(append(buf[:0], key...)))
	s.mu.Lock()
	e, ok := s.m[d]
	s.mu.Unlock()
	return ok && e >= now
}

// Claim is TryClaim for callers that need only a yes or no: it reports true
// on the key's first use and false for a replay, a past exp or a full
// cache alike.
func (c *Cache) Claim(key string, exp time.Time) bool {
	ok, _ := c.TryClaim(key, exp)
	return ok
}

// Len reports the number of keys held, including expired keys not yet
// evicted.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (s *shard) noteExp(e int64) {
	if len(s.m) == 1 || e < s.minExp {
		s.minExp = e
	}
}

// probe deletes expired entries among the first evictProbes that map
// iteration yields; Go randomises the starting point, so over many calls
// every entry is inspected.
func (s *shard) probe(now int64) {
	i := 0
	for k, e := range s.m {
		if e < now {
			delete(s.m, k)
		}
		if i++; i == evictProbes {
			return
		}
	}
}

// sweep deletes every expired entry, sets minExp to the exact minimum of
// those left and returns how many are left.
func (s *shard) sweep(now int64) int {
	minExp := int64(0)
	first := true
	for k, e := range s.m {
		if e < now {
			delete(s.m, k)
			continue
		}
		if first || e < minExp {
			minExp, first = e, false
		}
	}
	s.minExp = minExp
	return len(s.m)
}
