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

const notificationColumns = `id, kind, client_id, expires_at, lead, created_at, status, attempts, last_error, last_attempt_at, next_attempt_at, delivered_at`

// checkNotificationState refuses a status, error or schedule the row could
// not faithfully mean: a pending row without a next attempt would never be
// delivered, and an unbounded error could carry a whole response body.
func checkNotificationState(op string, status store.NotificationStatus, attempts int, lastErr string, next time.Time) error {
	switch {
	case !status.Valid():
		return fmt.Errorf("sqlite: %s: unknown status %q", op, status)
	case status == store.NotificationPending && next.IsZero():
		return fmt.Errorf("sqlite: %s: a pending notification needs NextAttemptAt", op)
	case status != store.NotificationPending && !next.IsZero():
		return fmt.Errorf("sqlite: %s: only a pending notification has a NextAttemptAt", op)
	case attempts < 0:
		return fmt.Errorf("sqlite: %s: negative attempts", op)
	case len(lastErr) > store.MaxNotificationError:
		return fmt.Errorf("sqlite: %s: LastError is %d bytes, more than %d", op, len(lastErr), store.MaxNotificationError)
	}
	return nil
}

func scanNotification(r scanner) (*store.Notification, error) {
	var (
		n                                 store.Notification
		status                            string
		lead                              int64
		expires, created, last, next, dlv sql.NullInt64
	)
	if err := r.Scan(&n.ID, &n.Kind, &n.ClientID, &expires, &lead, &created, &status, &n.Attempts, &n.LastError, &last, &next, &dlv); err != nil {
		return nil, err
	}
	n.Status = store.NotificationStatus(status)
	n.Lead = time.Duration(lead)
	n.ExpiresAt, n.CreatedAt = decodeTime(expires), decodeTime(created)
	n.LastAttemptAt, n.NextAttemptAt, n.DeliveredAt = decodeTime(last), decodeTime(next), decodeTime(dlv)
	return &n, nil
}

// CreateNotification stores n unless its (kind, client, expiry, lead) is
// stored already. The check and the insert are one statement (INSERT ... ON
// CONFLICT DO NOTHING on the unique key), so two nodes racing to record the
// same warning store it once and exactly one of them learns it did.
func (s *Store) CreateNotification(ctx context.Context, n *store.Notification) (bool, error) {
	const op = "create notification"
	if n == nil || n.ID == "" || n.Kind == "" || n.ClientID == "" || n.ExpiresAt.IsZero() || n.CreatedAt.IsZero() || n.Lead < 0 {
		return false, fmt.Errorf("sqlite: %s: ID, Kind, ClientID, ExpiresAt and CreatedAt are required and Lead must not be negative", op)
	}
	if err := checkNotificationState(op, n.Status, n.Attempts, n.LastError, n.NextAttemptAt); err != nil {
		return false, err
	}
	ts, err := encodeTimes([]string{"expires_at", "created_at", "last_attempt_at", "next_attempt_at", "delivered_at"},
		n.ExpiresAt, n.CreatedAt, n.LastAttemptAt, n.NextAttemptAt, n.DeliveredAt)
	if err != nil {
		return false, err
	}
	var created bool
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		if err := clientExists(ctx, tx, n.ClientID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO notifications (`+notificationColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (kind, client_id, expires_at, lead) DO NOTHING`,
			n.ID, n.Kind, n.ClientID, ts[0], int64(n.Lead), ts[1], string(n.Status), n.Attempts, n.LastError, ts[2], ts[3], ts[4])
		if err != nil {
			return wrap(op, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return wrap(op, err)
		}
		created = k == 1
		return nil
	})
	return created, err
}

// GetNotification returns the notification id, or store.ErrNotFound.
func (s *Store) GetNotification(ctx context.Context, id string) (*store.Notification, error) {
	n, err := scanNotification(s.read.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: notification %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get notification", err)
	}
	return n, nil
}

// ListNotifications returns the matches of f, newest first.
func (s *Store) ListNotifications(ctx context.Context, f store.NotificationFilter) ([]*store.Notification, error) {
	q := `SELECT ` + notificationColumns + ` FROM notifications WHERE 1 = 1`
	var args []any
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	if f.ClientID != "" {
		q += ` AND client_id = ?`
		args = append(args, f.ClientID)
	}
	q += ` ORDER BY created_at DESC, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.read, "list notifications", q, args, scanNotification)
}

// DueNotifications returns pending notifications due at now.
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int) ([]*store.Notification, error) {
	v, err := encodeTime("now", now)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + notificationColumns + ` FROM notifications WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id`
	args := []any{v}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return collect(ctx, s.read, "due notifications", q, args, scanNotification)
}

// ClaimNotification moves a pending notification's next_attempt_at from due
// to until in one compare-and-set statement.
func (s *Store) ClaimNotification(ctx context.Context, id string, due, until time.Time) (bool, error) {
	if due.IsZero() || until.IsZero() {
		return false, errors.New("sqlite: claim notification: due and until are required")
	}
	ts, err := encodeTimes([]string{"due", "until"}, due, until)
	if err != nil {
		return false, err
	}
	// One statement, so it is atomic without a transaction of its own.
	res, err := s.write.ExecContext(ctx, `UPDATE notifications SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND next_attempt_at = ?`, ts[1], id, ts[0])
	if err != nil {
		return false, wrap("claim notification", err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, wrap("claim notification", err)
	}
	return k == 1, nil
}

// UpdateNotification writes u over a notification this caller claimed.
func (s *Store) UpdateNotification(ctx context.Context, id string, claimed time.Time, u store.NotificationUpdate) error {
	const op = "update notification"
	if claimed.IsZero() {
		return fmt.Errorf("sqlite: %s: claimed is required", op)
	}
	if err := checkNotificationState(op, u.Status, u.Attempts, u.LastError, u.NextAttemptAt); err != nil {
		return err
	}
	ts, err := encodeTimes([]string{"claimed", "last_attempt_at", "next_attempt_at", "delivered_at"}, claimed, u.LastAttemptAt, u.NextAttemptAt, u.DeliveredAt)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		return updateIfUnchanged(ctx, tx, op, `UPDATE notifications
			SET status = ?, attempts = ?, last_error = ?, last_attempt_at = ?, next_attempt_at = ?, delivered_at = ?
			WHERE id = ? AND status = 'pending' AND next_attempt_at = ?`,
			[]any{string(u.Status), u.Attempts, u.LastError, ts[1], ts[2], ts[3], id, ts[0]}, notificationRow, id)
	})
}

// CountNotifications counts the notifications with status.
func (s *Store) CountNotifications(ctx context.Context, status store.NotificationStatus) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM notifications WHERE status = ?`, string(status)).Scan(&n); err != nil {
		return 0, wrap("count notifications", err)
	}
	return n, nil
}

// PurgeNotifications deletes the notifications whose ExpiresAt is before
// expiredBefore.
func (s *Store) PurgeNotifications(ctx context.Context, expiredBefore time.Time) (int, error) {
	before, err := encodeTime("purge before", expiredBefore)
	if err != nil {
		return 0, err
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM notifications WHERE expires_at < ?`, before)
	if err != nil {
		return 0, wrap("purge notifications", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("purge notifications", err)
	}
	return int(n), nil
}

// ExpiringClients returns active clients expiring in [from, to).
func (s *Store) ExpiringClients(ctx context.Context, from, to time.Time, limit int) ([]*identity.Client, error) {
	const op = "expiring clients"
	ts, err := encodeTimes([]string{"from", "to"}, from, to)
	if err != nil {
		return nil, err
	}
	if ts[0] == nil || ts[1] == nil {
		return nil, fmt.Errorf("sqlite: %s: from and to are required", op)
	}
	q := `SELECT ` + clientColumns + ` FROM clients WHERE status = ? AND expires_at >= ? AND expires_at < ? ORDER BY expires_at, id`
	args := []any{string(identity.StatusActive), ts[0], ts[1]}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return collect(ctx, s.read, op, q, args, scanClient)
}
