package sqlite

import (
	"context"
	"database/sql"
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
	const op = "set clients status"
	// Check and encode everything before taking the write lock.
	changes := make([]clientChange, len(cs))
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		switch c.Status {
		case identity.StatusActive, identity.StatusSuspended, identity.StatusRevoked:
		default:
			return fmt.Errorf("sqlite: %s: change %d (%s): unknown status %q", op, i, c.ID, c.Status)
		}
		ch, err := encodeClientChange(op, i, seen, c.ID, string(c.Status), c.UpdatedAt, c.PrevUpdatedAt)
		if err != nil {
			return err
		}
		changes[i] = ch
	}
	evArgs, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := applyClientChanges(ctx, tx, op, "status", changes); err != nil {
			return err
		}
		return s.insertEvents(ctx, tx, evArgs...)
	})
}
