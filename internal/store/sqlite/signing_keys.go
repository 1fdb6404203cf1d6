package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// PutSigningKey inserts k, or replaces every field of the stored key with
// the same KID: the key ring writes a key once, then again as it is retired
// and scheduled for removal.
func (s *Store) PutSigningKey(ctx context.Context, k store.SigningKey) error {
	if k.KID == "" || len(k.PrivatePKCS8) == 0 {
		return errors.New("sqlite: put signing key: KID and private key are required")
	}
	args := []any{k.KID, k.Algorithm, k.PrivatePKCS8}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"created_at", k.CreatedAt}, {"activates_at", k.ActivatesAt}, {"retired_at", k.RetiredAt}, {"remove_at", k.RemoveAt}} {
		v, err := encodeTime("signing key "+f.name, f.t)
		if err != nil {
			return err
		}
		args = append(args, v)
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO signing_keys (kid, algorithm, private_pkcs8, created_at, activates_at, retired_at, remove_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kid) DO UPDATE SET
			algorithm = excluded.algorithm, private_pkcs8 = excluded.private_pkcs8,
			created_at = excluded.created_at, activates_at = excluded.activates_at,
			retired_at = excluded.retired_at, remove_at = excluded.remove_at`, args...); err != nil {
		return wrap("put signing key", err)
	}
	return nil
}

// ListSigningKeys returns every stored key, oldest first (by CreatedAt, then
// KID). Retired keys are included: the key ring decides what to publish.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return collect(ctx, s.read, "list signing keys", `SELECT kid, algorithm, private_pkcs8, created_at, activates_at, retired_at, remove_at
		FROM signing_keys ORDER BY created_at, kid`, nil, func(r scanner) (store.SigningKey, error) {
		var (
			k                                   store.SigningKey
			created, activates, retired, remove sql.NullInt64
		)
		if err := r.Scan(&k.KID, &k.Algorithm, &k.PrivatePKCS8, &created, &activates, &retired, &remove); err != nil {
			return store.SigningKey{}, err
		}
		k.CreatedAt, k.ActivatesAt, k.RetiredAt, k.RemoveAt = decodeTime(created), decodeTime(activates), decodeTime(retired), decodeTime(remove)
		return k, nil
	})
}
