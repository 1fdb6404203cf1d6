// Package expiring holds an in-memory set of keys, each until its expiry,
// kept fresh from a store: the revoked-token view and the revoked
// workload-certificate view are both this, over different store methods.
//
// It answers only "is this key in the set?". It is authoritative for keys
// added in this process (the caller writes its store first, then Add) and
// eventually consistent, within one Sync interval, for keys other nodes
// write. Its size is bounded, and it fails closed at the bound: when a Sync
// brings more live keys than the set may hold, Has reports every key as
// present until a later Sync fits, since a revocation it dropped would
// otherwise be honoured nowhere.
package expiring

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one key and the time after which it may be forgotten.
type Entry struct {
	Key     string
	Expires time.Time
}

// LoadFunc returns the entries written since since (inclusive) that are
// still live at now. The zero since means all of them.
type LoadFunc func(ctx context.Context, since, now time.Time) ([]Entry, error)

// Set is safe for concurrent use. The zero value is not usable; use New.
type Set struct {
	name string // for errors: "revocation view"
	load LoadFunc
	max  int
	now  func() time.Time

	mu       sync.RWMutex
	m        map[string]time.Time
	syncedTo time.Time
	// overflow is set while the store holds more live keys than max, so Has
	// fails closed.
	overflow bool
	// gen changes whenever a key is added, so derived artefacts (a CRL)
	// know to be rebuilt.
	gen atomic.Uint64
}

// New returns an empty set named name (it prefixes errors) holding at most
// max keys, loaded by load; call Sync to fill it. now nil means time.Now.
func New(name string, load LoadFunc, max int, now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	return &Set{name: name, load: load, max: max, now: now, m: map[string]time.Time{}}
}

// Has reports whether key is in the set, or true for every key while the
// set has overflowed.
func (s *Set) Has(key string) bool {
	s.mu.RLock()
	_, ok := s.m[key]
	over := s.overflow
	s.mu.RUnlock()
	return ok || over
}

// Full reports whether Add of a new key would be refused. A caller checks
// it before writing its store, so that a write the set cannot follow is
// not made.
func (s *Set) Full() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m) >= s.max
}

// Add puts key in the set until expires. It refuses a new key when the set
// is full.
func (s *Set) Add(key string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= s.max {
		return s.fullError()
	}
	s.m[key] = expires
	s.gen.Add(1)
	return nil
}

// Sync drops expired keys and loads the keys written since the last Sync
// (by any node). The first call loads every live key. When the new keys do
// not fit, it keeps those that do, marks the set overflowed (see Has) and
// returns an error; the next Sync loads the same span again.
func (s *Set) Sync(ctx context.Context) error {
	now := s.now().UTC()
	s.mu.RLock()
	since := s.syncedTo
	s.mu.RUnlock()
	// Overlap by a second, so a key stamped slightly earlier by another
	// node's clock is not missed.
	if !since.IsZero() {
		since = since.Add(-time.Second)
	}
	list, err := s.load(ctx, since, now)
	if err != nil {
		return fmt.Errorf("%s: sync: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, exp := range s.m {
		if !exp.After(now) {
			delete(s.m, k)
		}
	}
	added := false
	for _, e := range list {
		if _, ok := s.m[e.Key]; !ok {
			if len(s.m) >= s.max {
				s.overflow = true
				if added {
					s.gen.Add(1)
				}
				return s.fullError()
			}
			added = true
		}
		s.m[e.Key] = e.Expires
	}
	if added {
		s.gen.Add(1)
	}
	s.overflow = false
	s.syncedTo = now
	return nil
}

// Len returns the number of keys held.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Gen changes whenever a key is added.
func (s *Set) Gen() uint64 { return s.gen.Load() }

func (s *Set) fullError() error {
	return fmt.Errorf("%s holds %d entries; refusing to grow further", s.name, s.max)
}
