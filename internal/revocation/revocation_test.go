package revocation

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// fakeStore is an in-memory stand-in; the real backends are covered by the
// store conformance suite.
type fakeStore struct {
	mu   sync.Mutex
	list []store.RevokedToken
	fail error
}

func (f *fakeStore) RevokeToken(_ context.Context, t store.RevokedToken) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.list = append(f.list, t)
	return nil
}

func (f *fakeStore) RevokedSince(_ context.Context, since, now time.Time) ([]store.RevokedToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.RevokedToken
	for _, t := range f.list {
		if !t.RevokedAt.Before(since) && t.ExpiresAt.After(now) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *fakeStore) PurgeExpired(context.Context, time.Time) (int, error) { return 0, nil }

func TestView(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := &fakeStore{}
	v := New(st, clock)
	ctx := context.Background()

	if err := v.Revoke(ctx, store.RevokedToken{JTI: "a", ExpiresAt: now.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if !v.Revoked("a") || v.Revoked("b") {
		t.Fatal("local revocation not visible at once")
	}

	// Another node revokes b; a second view sees it after Sync.
	other := New(st, clock)
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !other.Revoked("a") {
		t.Error("sync did not load a")
	}
	st.list = append(st.list, store.RevokedToken{JTI: "b", RevokedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !other.Revoked("b") {
		t.Error("incremental sync missed b")
	}

	// After expiry entries are dropped.
	now = now.Add(2 * time.Minute)
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if other.Revoked("b") || !other.Revoked("a") || other.Len() != 1 {
		t.Errorf("after expiry: b=%v a=%v len=%d", other.Revoked("b"), other.Revoked("a"), other.Len())
	}

	// A failed store write is not recorded in the view.
	st.fail = errors.New("disk full")
	if err := v.Revoke(ctx, store.RevokedToken{JTI: "c", ExpiresAt: now.Add(time.Minute)}); err == nil || v.Revoked("c") {
		t.Error("revocation recorded despite store failure")
	}
}
