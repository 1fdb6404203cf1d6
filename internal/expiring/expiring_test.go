package expiring

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// source is a store stand-in: entries with the time they were written.
type source struct {
	mu      sync.Mutex
	entries []struct {
		Entry
		at time.Time
	}
	fail  error
	calls []time.Time // since of each load
}

func (s *source) put(key string, at, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, struct {
		Entry
		at time.Time
	}{Entry{key, expires}, at})
}

func (s *source) load(_ context.Context, since, now time.Time) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, since)
	if s.fail != nil {
		return nil, s.fail
	}
	var out []Entry
	for _, e := range s.entries {
		if !e.at.Before(since) && e.Expires.After(now) {
			out = append(out, e.Entry)
		}
	}
	return out, nil
}

func TestSetAddSyncExpire(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src := &source{}
	s := New("test view", src.load, 10, clock)
	ctx := context.Background()

	if err := s.Add("local", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !s.Has("local") || s.Has("other") {
		t.Fatal("a local Add is not visible at once, or an absent key is")
	}
	g := s.Gen()

	// Another node's key arrives with the next Sync; the first Sync loads
	// everything.
	src.put("remote", now, now.Add(2*time.Minute))
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Has("remote") || s.Gen() == g {
		t.Fatalf("Sync missed remote (has %v) or did not change Gen", s.Has("remote"))
	}
	// Later syncs ask from a second before the last one.
	now = now.Add(10 * time.Second)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-10*time.Second - time.Second); !src.calls[1].Equal(want) {
		t.Errorf("second sync asked since %v, want %v", src.calls[1], want)
	}
	// Expired keys leave, live ones stay.
	now = now.Add(90 * time.Second)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Has("local") || !s.Has("remote") || s.Len() != 1 {
		t.Errorf("after local's expiry: local %v remote %v len %d", s.Has("local"), s.Has("remote"), s.Len())
	}

	// A failed load changes nothing and names the set.
	src.fail = errors.New("database is locked")
	if err := s.Sync(ctx); err == nil || !strings.HasPrefix(err.Error(), "test view: sync: ") {
		t.Errorf("Sync with a failing store = %v", err)
	}
	if !s.Has("remote") || s.Has("local") {
		t.Error("a failed Sync changed the set")
	}
}

// TestSetOverflowFailsClosed: a full set refuses new local keys; when a
// Sync brings more live keys than it may hold, every key reads as present
// until the keys fit again.
func TestSetOverflowFailsClosed(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src := &source{}
	s := New("test view", src.load, 3, clock)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Add(k, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Full() {
		t.Fatal("Full = false with max keys held")
	}
	if err := s.Add("d", now.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "refusing to grow") {
		t.Fatalf("Add into a full set = %v", err)
	}
	if err := s.Add("a", now.Add(2*time.Minute)); err != nil {
		t.Errorf("re-adding a held key into a full set: %v", err)
	}
	if s.Has("unrelated") {
		t.Fatal("a full set that has not overflowed reports an absent key")
	}

	// Other nodes revoked two more, live for 5 minutes: they don't fit.
	src.put("x", now, now.Add(5*time.Minute))
	src.put("y", now, now.Add(5*time.Minute))
	if err := s.Sync(ctx); err == nil {
		t.Fatal("Sync past the bound returned no error")
	}
	if !s.Has("unrelated") || !s.Has("y") {
		t.Fatal("an overflowed set must report every key as present (fail closed)")
	}

	// Once a, b and c expire there is room: the next Sync loads x and y
	// and the set answers exactly again.
	now = now.Add(3 * time.Minute)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Has("x") || !s.Has("y") || s.Has("unrelated") || s.Len() != 2 {
		t.Errorf("after room freed: x %v y %v unrelated %v len %d", s.Has("x"), s.Has("y"), s.Has("unrelated"), s.Len())
	}
}
