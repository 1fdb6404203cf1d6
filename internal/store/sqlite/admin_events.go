package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/keybound/keybound/internal/store"
)

// eventArgs encodes ev for insertEvent. It runs before the transaction
// starts, so an unencodable event costs no time holding the write lock.
// ev.ID is ignored: the database assigns it.
func eventArgs(ev store.AdminEvent) ([]any, error) {
	t, err := encodeTime("admin event time", ev.Time)
	if err != nil {
		return nil, err
	}
	var changes any
	if len(ev.Changes) > 0 {
		b, err := json.Marshal(ev.Changes)
		if err != nil {
			return nil, fmt.Errorf("sqlite: encode admin event changes: %w", err)
		}
		changes = string(b)
	}
	return []any{t, ev.Actor, ev.Action, ev.Target, changes}, nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, args []any) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO admin_events (time, actor, action, target, changes) VALUES (?, ?, ?, ?, ?)`, args...); err != nil {
		return wrap("append admin event", err)
	}
	return nil
}

// AppendAdminEvent appends ev on its own. The table refuses updates and
// deletes (triggers in the schema), so the log is append-only.
func (s *Store) AppendAdminEvent(ctx context.Context, ev store.AdminEvent) error {
	args, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, args) })
}

// ListAdminEvents returns events newest first, that is in reverse order of
// appending (by ID, not by the caller-supplied Time, which a skewed clock
// could reorder). target "" matches every target; limit <= 0 means no limit.
func (s *Store) ListAdminEvents(ctx context.Context, target string, limit int) ([]store.AdminEvent, error) {
	q := `SELECT id, time, actor, action, target, changes FROM admin_events`
	var args []any
	if target != "" {
		q += ` WHERE target = ?`
		args = append(args, target)
	}
	q += ` ORDER BY id DESC`
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list admin events", err)
	}
	defer rows.Close()
	var out []store.AdminEvent
	for rows.Next() {
		var (
			ev      store.AdminEvent
			t       sql.NullInt64
			changes sql.NullString
		)
		if err := rows.Scan(&ev.ID, &t, &ev.Actor, &ev.Action, &ev.Target, &changes); err != nil {
			return nil, wrap("list admin events", err)
		}
		ev.Time = decodeTime(t)
		if changes.Valid {
			if err := json.Unmarshal([]byte(changes.String), &ev.Changes); err != nil {
				return nil, fmt.Errorf("sqlite: decode admin event %d changes: %w", ev.ID, err)
			}
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list admin events", err)
	}
	return out, nil
}
