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
	"time"

	"github.com/keybound/keybound/internal/expiring"
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
// the view then refuses further revocations rather than forget old ones,
// and if other nodes' revocations still overflow it, it treats every token
// as revoked until they fit (see expiring.Set).
const MaxEntries = 1 << 20

// View is safe for concurrent use. The zero value is not usable; use New.
type View struct {
	st  Store
	now func() time.Time
	set *expiring.Set // jti -> token expiry
}

// New returns an empty view over st; call Sync to load it.
func New(st Store, now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	load := func(ctx context.Context, since, now time.Time) ([]expiring.Entry, error) {
		list, err := st.RevokedSince(ctx, since, now)
		if err != nil {
			return nil, err
		}
		out := make([]expiring.Entry, len(list))
		for i, t := range list {
			out[i] = expiring.Entry{Key: t.JTI, Expires: t.ExpiresAt}
		}
		return out, nil
	}
	return &View{st: st, now: now, set: expiring.New("revocation: view", load, MaxEntries, now)}
}

// Revoked reports whether jti was revoked. While more revocations are live
// than the view can hold, it reports every jti as revoked (fail closed).
func (v *View) Revoked(jti string) bool { return v.set.Has(jti) }

// Revoke records a revocation in the store and then in the view, so it takes
// effect in this process before Revoke returns. A full view refuses before
// the store is written.
func (v *View) Revoke(ctx context.Context, t store.RevokedToken) error {
	if t.RevokedAt.IsZero() {
		t.RevokedAt = v.now().UTC()
	}
	if v.set.Full() {
		return fmt.Errorf("revocation: view holds %d entries; refusing to grow further", MaxEntries)
	}
	if err := v.st.RevokeToken(ctx, t); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	return v.set.Add(t.JTI, t.ExpiresAt)
}

// Sync loads revocations made since the last sync (by any node) and drops
// entries whose token has expired. The first call loads everything live.
func (v *View) Sync(ctx context.Context) error { return v.set.Sync(ctx) }

// Len returns the number of live revocations held.
func (v *View) Len() int { return v.set.Len() }
