package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// The owner directory and the access-review history (migration 0008).
// Like the rest of this package, it stores what it is given: who may
// attest, and when a review is due, are decided by the callers.

const ownerColumns = `name, contact, status, created_at, updated_at, departed_at`

func ownerArgs(o store.Owner) ([]any, error) {
	if o.Name == "" {
		return nil, errors.New("sqlite: owner has no name")
	}
	switch o.Status {
	case store.OwnerActive, store.OwnerDeparted:
	default:
		return nil, fmt.Errorf("sqlite: owner %s: unknown status %q", o.Name, o.Status)
	}
	if (o.Status == store.OwnerDeparted) != !o.DepartedAt.IsZero() {
		// The schema's CHECK says the same; failing here names the cause.
		return nil, fmt.Errorf("sqlite: owner %s: departed_at must be set exactly when the owner is departed", o.Name)
	}
	created, err := encodeTime("owner created_at", o.CreatedAt)
	if err != nil {
		return nil, err
	}
	updated, err := encodeTime("owner updated_at", o.UpdatedAt)
	if err != nil {
		return nil, err
	}
	departed, err := encodeTime("owner departed_at", o.DepartedAt)
	if err != nil {
		return nil, err
	}
	return []any{o.Contact, string(o.Status), created, updated, departed, o.Name}, nil
}

func scanOwner(r scanner) (store.Owner, error) {
	var (
		o                          store.Owner
		status                     string
		created, updated, departed sql.NullInt64
	)
	if err := r.Scan(&o.Name, &o.Contact, &status, &created, &updated, &departed); err != nil {
		return store.Owner{}, err
	}
	o.Status = store.OwnerStatus(status)
	o.CreatedAt, o.UpdatedAt, o.DepartedAt = decodeTime(created), decodeTime(updated), decodeTime(departed)
	return o, nil
}

// CreateOwner inserts o and ev in one transaction; an owner of the same
// name is store.ErrConflict and then no event is written.
func (s *Store) CreateOwner(ctx context.Context, o store.Owner, ev store.AdminEvent) error {
	args, err := ownerArgs(o)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO owners (contact, status, created_at, updated_at, departed_at, name) VALUES (?, ?, ?, ?, ?, ?)`, args...); err != nil {
			return wrap("create owner", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// GetOwner returns the owner named name, or store.ErrNotFound.
func (s *Store) GetOwner(ctx context.Context, name string) (store.Owner, error) {
	o, err := scanOwner(s.read.QueryRowContext(ctx, `SELECT `+ownerColumns+` FROM owners WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Owner{}, fmt.Errorf("sqlite: get owner: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Owner{}, wrap("get owner", err)
	}
	return o, nil
}

// ListOwners returns every owner ordered by name.
func (s *Store) ListOwners(ctx context.Context) ([]store.Owner, error) {
	return collect(ctx, s.read, "list owners", `SELECT `+ownerColumns+` FROM owners ORDER BY name`, nil, scanOwner)
}

// UpdateOwner replaces the owner if its updated_at still equals
// prevUpdatedAt, and appends ev, under one BEGIN IMMEDIATE transaction.
func (s *Store) UpdateOwner(ctx context.Context, o store.Owner, prevUpdatedAt time.Time, ev store.AdminEvent) error {
	args, err := ownerArgs(o)
	if err != nil {
		return err
	}
	prev, err := encodeTime("previous owner updated_at", prevUpdatedAt)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := updateIfUnchanged(ctx, tx, "update owner", `UPDATE owners SET contact = ?, status = ?, created_at = ?, updated_at = ?, departed_at = ?
			WHERE name = ? AND updated_at IS ?`, append(args, prev), ownerRow, o.Name); err != nil {
			return err
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

func reviewArgs(r store.Review) ([]any, error) {
	if r.ClientID == "" {
		return nil, errors.New("sqlite: review has no client id")
	}
	switch r.Kind {
	case store.ReviewAttest, store.ReviewTransfer:
	default:
		return nil, fmt.Errorf("sqlite: review of %s: unknown kind %q", r.ClientID, r.Kind)
	}
	if r.Time.IsZero() {
		// A review without a time could never start a schedule.
		return nil, fmt.Errorf("sqlite: review of %s has no time", r.ClientID)
	}
	t, err := encodeTime("review time", r.Time)
	if err != nil {
		return nil, err
	}
	return []any{r.ClientID, string(r.Kind), t, r.Actor, r.Owner, r.StillNeeded, r.PurposeOK, r.ScopesOK, r.Note}, nil
}

const insertReviewSQL = `INSERT INTO reviews (client_id, kind, time, actor, owner, still_needed, purpose_ok, scopes_ok, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

const reviewColumns = `id, client_id, kind, time, actor, owner, still_needed, purpose_ok, scopes_ok, note`

func scanReview(r scanner) (store.Review, error) {
	var (
		rv   store.Review
		kind string
		t    sql.NullInt64
	)
	if err := r.Scan(&rv.ID, &rv.ClientID, &kind, &t, &rv.Actor, &rv.Owner, &rv.StillNeeded, &rv.PurposeOK, &rv.ScopesOK, &rv.Note); err != nil {
		return store.Review{}, err
	}
	rv.Kind, rv.Time = store.ReviewKind(kind), decodeTime(t)
	return rv, nil
}

// SetClientsOwner changes the owner of every client in cs, appends every
// review and every event, in one transaction. Each UPDATE compares
// updated_at with PrevUpdatedAt under the same write lock, so a client
// changed since it was read fails the whole batch with store.ErrStale.
func (s *Store) SetClientsOwner(ctx context.Context, cs []store.OwnerChange, rs []store.Review, evs []store.AdminEvent) error {
	if len(cs) == 0 && len(rs) == 0 && len(evs) == 0 {
		return nil
	}
	const op = "set clients owner"
	changes := make([]clientChange, len(cs))
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		if strings.TrimSpace(c.Owner) == "" {
			return fmt.Errorf("sqlite: %s: change %d (%s) has no owner", op, i, c.ID)
		}
		ch, err := encodeClientChange(op, i, seen, c.ID, c.Owner, c.UpdatedAt, c.PrevUpdatedAt)
		if err != nil {
			return err
		}
		changes[i] = ch
	}
	rvArgs := make([][]any, len(rs))
	for i, r := range rs {
		a, err := reviewArgs(r)
		if err != nil {
			return err
		}
		rvArgs[i] = a
	}
	evArgs, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := applyClientChanges(ctx, tx, op, "owner", changes); err != nil {
			return err
		}
		for _, a := range rvArgs {
			if _, err := tx.ExecContext(ctx, insertReviewSQL, a...); err != nil {
				return wrap("append review", err)
			}
		}
		return s.insertEvents(ctx, tx, evArgs...)
	})
}

// AppendReview appends r and ev if the client is unchanged since it was
// read (updated_at compared under the write lock).
func (s *Store) AppendReview(ctx context.Context, r store.Review, clientUpdatedAt time.Time, ev store.AdminEvent) error {
	args, err := reviewArgs(r)
	if err != nil {
		return err
	}
	prev, err := encodeTime("client updated_at", clientUpdatedAt)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		unchanged, err := rowExists(ctx, tx, `SELECT 1 FROM clients WHERE id = ? AND updated_at IS ?`, r.ClientID, prev)
		switch {
		case err != nil:
			return wrap("append review", err)
		case !unchanged:
			return missingOrStale(ctx, tx, "append review", clientRow, r.ClientID)
		}
		// An owner who departed after the client was read cannot vouch for
		// it: the departure does not touch the client row, so check it here,
		// under the same write lock.
		departed, err := rowExists(ctx, tx, `SELECT 1 FROM clients c JOIN owners o ON o.name = c.owner
			WHERE c.id = ? AND o.status = ?`, r.ClientID, string(store.OwnerDeparted))
		switch {
		case err != nil:
			return wrap("append review", err)
		case departed:
			return fmt.Errorf("sqlite: append review: the owner of client %s has departed: %w", r.ClientID, store.ErrStale)
		}
		if _, err := tx.ExecContext(ctx, insertReviewSQL, args...); err != nil {
			return wrap("append review", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// LatestReviews returns the newest review of each kind of each client. The
// reviews_client index (client_id, kind, id) answers the grouping.
func (s *Store) LatestReviews(ctx context.Context) ([]store.Review, error) {
	return collect(ctx, s.read, "latest reviews", `SELECT `+reviewColumns+` FROM reviews
		WHERE id IN (SELECT MAX(id) FROM reviews GROUP BY client_id, kind)
		ORDER BY client_id, kind`, nil, scanReview)
}

// ListReviews returns one client's reviews, newest append first.
func (s *Store) ListReviews(ctx context.Context, clientID string, limit int) ([]store.Review, error) {
	q := `SELECT ` + reviewColumns + ` FROM reviews WHERE client_id = ? ORDER BY id DESC`
	args := []any{clientID}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return collect(ctx, s.read, "list reviews", q, args, scanReview)
}
