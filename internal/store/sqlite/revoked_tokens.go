package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// RevokeToken records t. Revoking a JTI again is not an error and changes
// nothing: the first revocation's times stand.
//
// A revocation without a JTI or an expiry is refused rather than stored:
// RevokedSince lists only unexpired tokens, so a revocation with no expiry
// would silently drop out of every revocation view, failing open.
func (s *Store) RevokeToken(ctx context.Context, t store.RevokedToken) error {
	if t.JTI == "" || t.RevokedAt.IsZero() || t.ExpiresAt.IsZero() {
		return errors.New("sqlite: revoke token: JTI, RevokedAt and ExpiresAt are required")
	}
	revoked, err := encodeTime("revoked_at", t.RevokedAt)
	if err != nil {
		return err
	}
	expires, err := encodeTime("expires_at", t.ExpiresAt)
	if err != nil {
		return err
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, client_id, revoked_at, expires_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (jti) DO NOTHING`, t.JTI, t.ClientID, revoked, expires); err != nil {
		return wrap("revoke token", err)
	}
	return nil
}

// RevokedSince lists revocations with RevokedAt at or after since whose
// token has not expired at now (ExpiresAt after now), oldest revocation
// first.
func (s *Store) RevokedSince(ctx context.Context, since, now time.Time) ([]store.RevokedToken, error) {
	sinceV, err := encodeBound("since", since)
	if err != nil {
		return nil, err
	}
	nowV, err := encodeBound("now", now)
	if err != nil {
		return nil, err
	}
	return collect(ctx, s.read, "revoked since", `SELECT jti, client_id, revoked_at, expires_at FROM revoked_tokens
		WHERE revoked_at >= ? AND expires_at > ? ORDER BY revoked_at, jti`, []any{sinceV, nowV}, scanRevokedToken)
}

func scanRevokedToken(r scanner) (store.RevokedToken, error) {
	var (
		t                store.RevokedToken
		revoked, expires int64
	)
	if err := r.Scan(&t.JTI, &t.ClientID, &revoked, &expires); err != nil {
		return store.RevokedToken{}, err
	}
	t.RevokedAt, t.ExpiresAt = time.Unix(0, revoked).UTC(), time.Unix(0, expires).UTC()
	return t, nil
}

// PurgeExpired deletes revocations whose token expired before now
// (ExpiresAt strictly before now) and returns how many it removed.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (int, error) {
	if now.IsZero() {
		// Nothing expired before the zero time; and a NULL bound would match
		// nothing anyway. Say so rather than pretend.
		return 0, nil
	}
	nowV, err := encodeTime("now", now)
	if err != nil {
		return 0, err
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM revoked_tokens WHERE expires_at < ?`, nowV)
	if err != nil {
		return 0, wrap("purge expired", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("purge expired", err)
	}
	return int(n), nil
}

// Compile-time proof that *Store implements the contract.
var _ store.Store = (*Store)(nil)
