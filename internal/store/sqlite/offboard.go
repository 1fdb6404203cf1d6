package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// SetClientsStatus applies every status change and appends every event in
// one transaction. Each UPDATE compares updated_at with the change's
// PrevUpdatedAt under the same BEGIN IMMEDIATE transaction, so a client
// changed since it was read fails the whole batch with store.ErrStale.
func (s *Store) SetClientsStatus(ctx context.Context, cs []store.StatusChange, evs []store.AdminEvent) error {
	if len(cs) == 0 && len(evs) == 0 {
		return nil
	}
	// Check and encode everything before taking the write lock.
	type row struct{ status, updated, prev any }
	rows := make([]row, len(cs))
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		switch c.Status {
		case identity.StatusActive, identity.StatusSuspended, identity.StatusRevoked:
		default:
			return fmt.Errorf("sqlite: set clients status: change %d (%s): unknown status %q", i, c.ID, c.Status)
		}
		if seen[c.ID] {
			return fmt.Errorf("sqlite: set clients status: client %s is named twice", c.ID)
		}
		seen[c.ID] = true
		if c.UpdatedAt.IsZero() {
			return fmt.Errorf("sqlite: set clients status: change %d (%s) has no UpdatedAt", i, c.ID)
		}
		updated, err := encodeTime("updated_at", c.UpdatedAt)
		if err != nil {
			return err
		}
		prev, err := encodeTime("previous updated_at", c.PrevUpdatedAt)
		if err != nil {
			return err
		}
		rows[i] = row{string(c.Status), updated, prev}
	}
	evArgs := make([][]any, len(evs))
	for i, ev := range evs {
		a, err := eventArgs(ev)
		if err != nil {
			return err
		}
		evArgs[i] = a
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE clients SET status = ?, updated_at = ? WHERE id = ? AND updated_at IS ?`)
		if err != nil {
			return wrap("set clients status", err)
		}
		defer stmt.Close()
		for i, r := range rows {
			res, err := stmt.ExecContext(ctx, r.status, r.updated, cs[i].ID, r.prev)
			if err != nil {
				return wrap("set clients status", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return wrap("set clients status", err)
			}
			if n > 0 {
				continue
			}
			var one int
			err = tx.QueryRowContext(ctx, `SELECT 1 FROM clients WHERE id = ?`, cs[i].ID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: set clients status: client %s: %w", cs[i].ID, store.ErrNotFound)
			}
			if err != nil {
				return wrap("set clients status", err)
			}
			return fmt.Errorf("sqlite: set clients status: client %s: %w", cs[i].ID, store.ErrStale)
		}
		for _, a := range evArgs {
			if err := insertEvent(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
}
