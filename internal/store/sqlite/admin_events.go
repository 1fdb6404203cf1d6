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

// encodeEvents is eventArgs for every event of a batch.
func encodeEvents(evs []store.AdminEvent) ([][]any, error) {
	out := make([][]any, len(evs))
	for i, ev := range evs {
		a, err := eventArgs(ev)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

const insertEventSQL = `INSERT INTO admin_events (time, actor, action, target, changes) VALUES (?, ?, ?, ?, ?)`

// insertEvents appends events encoded by eventArgs inside tx, through the
// statement prepared at Open.
func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, evArgs ...[]any) error {
	stmt := tx.StmtContext(ctx, s.insertEventStmt)
	for _, a := range evArgs {
		if _, err := stmt.ExecContext(ctx, a...); err != nil {
			return wrap("append admin event", err)
		}
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
	return s.withTx(ctx, func(tx *sql.Tx) error { return s.insertEvents(ctx, tx, args) })
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
	return collect(ctx, s.read, "list admin events", q, args, scanEvent)
}

func scanEvent(r scanner) (store.AdminEvent, error) {
	var (
		ev      store.AdminEvent
		t       sql.NullInt64
		changes sql.NullString
	)
	if err := r.Scan(&ev.ID, &t, &ev.Actor, &ev.Action, &ev.Target, &changes); err != nil {
		return store.AdminEvent{}, err
	}
	ev.Time = decodeTime(t)
	if changes.Valid {
		if err := json.Unmarshal([]byte(changes.String), &ev.Changes); err != nil {
			return store.AdminEvent{}, fmt.Errorf("decode admin event %d changes: %w", ev.ID, err)
		}
	}
	return ev, nil
}
