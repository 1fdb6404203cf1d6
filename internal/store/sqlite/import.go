package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// insertClientSQL inserts one client. It is built from clientColumns, with
// id moved last, so it takes clientArgs as they are and follows every
// column a later migration adds to both.
var insertClientSQL = func() string {
	var cols []string
	for _, c := range strings.Split(clientColumns, ",") {
		if c = strings.TrimSpace(c); c != "id" {
			cols = append(cols, c)
		}
	}
	cols = append(cols, "id")
	return `INSERT INTO clients (` + strings.Join(cols, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(cols)-1) + `)`
}()

// CreateClients inserts every client and every event in one transaction.
// A duplicate id or secret lookup digest, stored before or within cs, fails
// the unique constraints: store.ErrConflict, and the transaction is rolled
// back whole.
func (s *Store) CreateClients(ctx context.Context, cs []*identity.Client, evs []store.AdminEvent) error {
	if len(cs) == 0 && len(evs) == 0 {
		return nil
	}
	// Encode everything before taking the write lock.
	args := make([][]any, len(cs))
	for i, c := range cs {
		if c == nil {
			return fmt.Errorf("sqlite: create clients: client %d is nil", i)
		}
		a, err := clientArgs(c)
		if err != nil {
			return err
		}
		args[i] = a
	}
	evArgs, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertClientStmt)
		for i, a := range args {
			if _, err := stmt.ExecContext(ctx, a...); err != nil {
				if isUnique(err) {
					return fmt.Errorf("sqlite: create clients: client %d (%s): %w (%w)", i, cs[i].ID, store.ErrConflict, err)
				}
				return wrap("create clients", err)
			}
		}
		return s.insertEvents(ctx, tx, evArgs...)
	})
}
