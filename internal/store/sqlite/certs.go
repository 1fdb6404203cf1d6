package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

const certColumns = `serial, client_id, spiffe_id, thumbprint, issued_at, not_before, not_after, via, renewed_from, der, revoked_at, revocation_reason`

// certArgs encodes c in certColumns order. It refuses a certificate without
// a serial, client, DER or validity: such a row could never be checked or
// listed, so storing it would fail open.
func certArgs(c *store.WorkloadCertificate) ([]any, error) {
	if c.Serial == "" || c.ClientID == "" || len(c.DER) == 0 || c.IssuedAt.IsZero() || c.NotBefore.IsZero() || c.NotAfter.IsZero() {
		return nil, errors.New("sqlite: create certificate: Serial, ClientID, DER, IssuedAt, NotBefore and NotAfter are required")
	}
	var times [4]any
	for i, f := range []struct {
		name string
		t    time.Time
	}{{"issued_at", c.IssuedAt}, {"not_before", c.NotBefore}, {"not_after", c.NotAfter}, {"revoked_at", c.RevokedAt}} {
		v, err := encodeTime(f.name, f.t)
		if err != nil {
			return nil, err
		}
		times[i] = v
	}
	return []any{c.Serial, c.ClientID, c.SPIFFEID, c.Thumbprint, times[0], times[1], times[2], c.Via, c.RenewedFrom, c.DER, times[3], c.RevocationReason}, nil
}

func scanCert(r scanner) (*store.WorkloadCertificate, error) {
	var (
		c                               store.WorkloadCertificate
		issued, notBefore, notAfter, rv sql.NullInt64
	)
	if err := r.Scan(&c.Serial, &c.ClientID, &c.SPIFFEID, &c.Thumbprint, &issued, &notBefore, &notAfter, &c.Via, &c.RenewedFrom, &c.DER, &rv, &c.RevocationReason); err != nil {
		return nil, err
	}
	c.IssuedAt, c.NotBefore, c.NotAfter, c.RevokedAt = decodeTime(issued), decodeTime(notBefore), decodeTime(notAfter), decodeTime(rv)
	return &c, nil
}

// clientExists reports whether the client row exists, inside tx.
func clientExists(ctx context.Context, tx *sql.Tx, id string) error {
	exists, err := rowExists(ctx, tx, clientRow.existsSQL, id)
	switch {
	case err != nil:
		return wrap("look up client", err)
	case !exists:
		return fmt.Errorf("sqlite: client %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// usableClient checks, inside tx, that the client exists (else
// ErrNotFound), is active and has not expired at at (else
// ErrClientNotUsable). The same rule as identity.Client.Usable, repeated
// here because only a check inside the issuing transaction is ordered
// against a concurrent revocation.
func usableClient(ctx context.Context, tx *sql.Tx, id string, at int64) error {
	var (
		status  string
		expires sql.NullInt64
	)
	err := tx.QueryRowContext(ctx, `SELECT status, expires_at FROM clients WHERE id = ?`, id).Scan(&status, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: client %q: %w", id, store.ErrNotFound)
	case err != nil:
		return wrap("look up client", err)
	case status != string(identity.StatusActive) || !expires.Valid || expires.Int64 <= at:
		return fmt.Errorf("sqlite: client %q is %s: %w", id, status, store.ErrClientNotUsable)
	}
	return nil
}

// liveRenewedFrom checks, inside tx, that serial is clientID's certificate
// and is not revoked.
func liveRenewedFrom(ctx context.Context, tx *sql.Tx, serial, clientID string) error {
	var (
		owner   string
		revoked sql.NullInt64
	)
	err := tx.QueryRowContext(ctx, `SELECT client_id, revoked_at FROM workload_certificates WHERE serial = ?`, serial).Scan(&owner, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: renewed certificate %q is not on record: %w", serial, store.ErrRenewedFromRevoked)
	case err != nil:
		return wrap("look up renewed certificate", err)
	case owner != clientID || revoked.Valid:
		return fmt.Errorf("sqlite: renewed certificate %q: %w", serial, store.ErrRenewedFromRevoked)
	}
	return nil
}

// underLimit checks, inside tx, that the count query q (with args) is
// below maxLive; maxLive <= 0 means no limit. Inside the write transaction
// (BEGIN IMMEDIATE on the one write connection) no other writer can add a
// row between the count and the insert that follows.
func underLimit(ctx context.Context, tx *sql.Tx, what string, maxLive int, q string, args ...any) error {
	if maxLive <= 0 {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return wrap("count "+what, err)
	}
	if n >= maxLive {
		return fmt.Errorf("sqlite: %d live %s, the limit is %d: %w", n, what, maxLive, store.ErrLimit)
	}
	return nil
}

const (
	countLiveCertsSQL      = `SELECT COUNT(*) FROM workload_certificates WHERE client_id = ? AND revoked_at IS NULL AND not_after > ?`
	countLiveJoinTokensSQL = `SELECT COUNT(*) FROM join_tokens WHERE client_id = ? AND used_at IS NULL AND expires_at > ?`
)

// CreateCertificate stores c and, when joinTokenID is set, consumes that
// join token, with ev, in one transaction that first checks the client,
// the renewed certificate and the live certificate limit (see
// store.CertificateStore).
func (s *Store) CreateCertificate(ctx context.Context, c *store.WorkloadCertificate, joinTokenID string, maxLive int, ev store.AdminEvent) error {
	args, err := certArgs(c)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	issued := c.IssuedAt.UnixNano()
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := usableClient(ctx, tx, c.ClientID, issued); err != nil {
			return err
		}
		if c.RenewedFrom != "" {
			if err := liveRenewedFrom(ctx, tx, c.RenewedFrom, c.ClientID); err != nil {
				return err
			}
		}
		if joinTokenID != "" {
			res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET used_at = ?
				WHERE id = ? AND client_id = ? AND used_at IS NULL AND expires_at > ?`, issued, joinTokenID, c.ClientID, issued)
			if err != nil {
				return wrap("consume join token", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return wrap("consume join token", err)
			} else if n != 1 {
				exists, err := rowExists(ctx, tx, `SELECT 1 FROM join_tokens WHERE id = ?`, joinTokenID)
				switch {
				case err != nil:
					return wrap("consume join token", err)
				case !exists:
					return fmt.Errorf("sqlite: join token %q: %w", joinTokenID, store.ErrNotFound)
				}
				return store.ErrJoinTokenSpent
			}
		}
		if err := underLimit(ctx, tx, "certificates", maxLive, countLiveCertsSQL, c.ClientID, issued); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO workload_certificates (`+certColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...); err != nil {
			return wrap("create certificate", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// GetCertificate returns the certificate with serial, or ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial string) (*store.WorkloadCertificate, error) {
	c, err := scanCert(s.read.QueryRowContext(ctx, `SELECT `+certColumns+` FROM workload_certificates WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: certificate %q: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get certificate", err)
	}
	return c, nil
}

// ListCertificates returns the certificates matching f, newest first.
func (s *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*store.WorkloadCertificate, error) {
	q := `SELECT ` + certColumns + ` FROM workload_certificates WHERE 1 = 1`
	var args []any
	if f.ClientID != "" {
		q += ` AND client_id = ?`
		args = append(args, f.ClientID)
	}
	if !f.LiveAt.IsZero() {
		v, err := encodeTime("live_at", f.LiveAt)
		if err != nil {
			return nil, err
		}
		q += ` AND revoked_at IS NULL AND not_after > ?`
		args = append(args, v)
	}
	q += ` ORDER BY issued_at DESC, serial`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.read, "list certificates", q, args, scanCert)
}

// RevokeCertificate marks serial revoked with ev, once.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, ev store.AdminEvent) error {
	if at.IsZero() {
		return errors.New("sqlite: revoke certificate: the revocation time is required")
	}
	atV, err := encodeTime("revoked_at", at)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM workload_certificates WHERE serial = ?`, serial).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: certificate %q: %w", serial, store.ErrNotFound)
		}
		if err != nil {
			return wrap("revoke certificate", err)
		}
		if revoked.Valid {
			return fmt.Errorf("sqlite: certificate %q is already revoked: %w", serial, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE workload_certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?`, atV, reason, serial); err != nil {
			return wrap("revoke certificate", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// CertificatesRevokedSince lists revocations at or after since of
// certificates still valid at now, oldest revocation first.
func (s *Store) CertificatesRevokedSince(ctx context.Context, since, now time.Time) ([]*store.WorkloadCertificate, error) {
	sinceV, err := encodeBound("since", since)
	if err != nil {
		return nil, err
	}
	nowV, err := encodeBound("now", now)
	if err != nil {
		return nil, err
	}
	return collect(ctx, s.read, "certificates revoked since", `SELECT `+certColumns+` FROM workload_certificates
		WHERE revoked_at IS NOT NULL AND revoked_at >= ? AND not_after > ? ORDER BY revoked_at, serial`, []any{sinceV, nowV}, scanCert)
}

// CountLiveCertificates counts clientID's unrevoked, unexpired
// certificates.
func (s *Store) CountLiveCertificates(ctx context.Context, clientID string, now time.Time) (int, error) {
	v, err := encodeBound("now", now)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.read.QueryRowContext(ctx, countLiveCertsSQL, clientID, v).Scan(&n); err != nil {
		return 0, wrap("count certificates", err)
	}
	return n, nil
}

// PurgeCertificates deletes certificates and join tokens that expired
// before before.
func (s *Store) PurgeCertificates(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, nil
	}
	v, err := encodeTime("before", before)
	if err != nil {
		return 0, err
	}
	total := 0
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{`DELETE FROM workload_certificates WHERE not_after < ?`, `DELETE FROM join_tokens WHERE expires_at < ?`} {
			res, err := tx.ExecContext(ctx, q, v)
			if err != nil {
				return wrap("purge certificates", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return wrap("purge certificates", err)
			}
			total += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

// CreateJoinToken stores t with ev, counting the client's live join tokens
// against maxLive in the same transaction.
func (s *Store) CreateJoinToken(ctx context.Context, t *store.JoinToken, maxLive int, ev store.AdminEvent) error {
	if t.ID == "" || t.ClientID == "" || len(t.Hash) == 0 || t.CreatedAt.IsZero() || t.ExpiresAt.IsZero() {
		return errors.New("sqlite: create join token: ID, ClientID, Hash, CreatedAt and ExpiresAt are required")
	}
	created, err := encodeTime("created_at", t.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := encodeTime("expires_at", t.ExpiresAt)
	if err != nil {
		return err
	}
	used, err := encodeTime("used_at", t.UsedAt)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := clientExists(ctx, tx, t.ClientID); err != nil {
			return err
		}
		if err := underLimit(ctx, tx, "join tokens", maxLive, countLiveJoinTokensSQL, t.ClientID, created); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (id, client_id, hash, created_at, expires_at, used_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.ClientID, t.Hash, created, expires, used, t.CreatedBy); err != nil {
			return wrap("create join token", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// GetJoinToken returns the join token with id, or ErrNotFound.
func (s *Store) GetJoinToken(ctx context.Context, id string) (*store.JoinToken, error) {
	var (
		t                      store.JoinToken
		created, expires, used sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx, `SELECT id, client_id, hash, created_at, expires_at, used_at, created_by FROM join_tokens WHERE id = ?`, id).
		Scan(&t.ID, &t.ClientID, &t.Hash, &created, &expires, &used, &t.CreatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: join token %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get join token", err)
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = decodeTime(created), decodeTime(expires), decodeTime(used)
	return &t, nil
}

// CountLiveJoinTokens counts clientID's unused, unexpired join tokens.
func (s *Store) CountLiveJoinTokens(ctx context.Context, clientID string, now time.Time) (int, error) {
	v, err := encodeBound("now", now)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.read.QueryRowContext(ctx, countLiveJoinTokensSQL, clientID, v).Scan(&n); err != nil {
		return 0, wrap("count join tokens", err)
	}
	return n, nil
}
