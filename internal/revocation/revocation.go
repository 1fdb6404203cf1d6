// Package revocation keeps a fast, in-memory view of revoked access tokens,
// loaded from the store at start and kept fresh from it, so that checking a
// token on the request path never touches the database.
//
// It only answers "is this jti revoked?"; it decides nothing else. The view
// is authoritative for revocations made in this process (Revoke writes the
// store first, then the view) and eventually consistent, within one Sync
// interval, for revocations made by other nodes.
package revocation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// Store is the part of the storage contract the view reads and writes.
type Store interface {
	RevokeToken(ctx context.Context, t store.RevokedToken) error
	RevokedSince(ctx context.Context, since, now time.Time) ([]store.RevokedToken, error)
	PurgeExpired(ctx context.Context, now time.Time) (int, error)
}

// MaxEntries bounds the view. Revocations are kept only until the token
// expires (minutes), so reaching this means something is revoking in bulk;
// the view then refuses further revocations rather than forget old ones.
const MaxEntries = 1 << 20

// View is safe for concurrent use. The zero value is not usable; use New.
type View struct {
	st  Store
	now func() time.Time

	mu       sync.RWMutex
	revoked  map[string]time.Time // jti -> token expiry
	syncedTo time.Time
}

// New returns an empty view over st; call Sync to load it.
func New(st Store, now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	return &View{st: st, now: now, revoked: map[string]time.Time{}}
}

// Revoked reports whether jti was revoked.
func (v *View) Revoked(jti string) bool {
	v.mu.RLock()
	_, ok := v.revoked[jti]
	v.mu.RUnlock()
	return ok
}

// Revoke records a revocation in the store and then in the view, so it takes
// effect in this process before Revoke returns.
func (v *View) Revoke(ctx context.Context, t store.RevokedToken) error {
	if t.RevokedAt.IsZero() {
		t.RevokedAt = v.now().UTC()
	}
	v.mu.RLock()
	full := len(v.revoked) >= MaxEntries
	v.mu.RUnlock()
	if full {
		return fmt.Errorf("revocation: view holds %d entries; refusing to grow further", MaxEntries)
	}
	if err := v.st.RevokeToken(ctx, t); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	v.mu.Lock()
	v.revoked[t.JTI] = t.ExpiresAt
	v.mu.Unlock()
	return nil
}

// Sync loads revocations made since the last sync (by any node) and drops
// entries whose token has expired. The first call loads everything live.
func (v *View) Sync(ctx context.Context) error {
	now := v.now().UTC()
	v.mu.RLock()
	since := v.syncedTo
	v.mu.RUnlock()
	// Overlap by a second so a revocation committed with a slightly older
	// timestamp by another node is not missed.
	if !since.IsZero() {
		since = since.Add(-time.Second)
	}
	list, err := v.st.RevokedSince(ctx, since, now)
	if err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range list {
		v.revoked[t.JTI] = t.ExpiresAt
	}
	for jti, exp := range v.revoked {
		if !exp.After(now) {
			delete(v.revoked, jti)
		}
	}
	v.syncedTo = now
	return nil
}

// Len returns the number of live revocations held.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.revoked)
}
