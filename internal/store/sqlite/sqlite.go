// Package sqlite is the embedded store.Store backend: one SQLite file on one
// node, opened with the pure-Go modernc.org/sqlite driver so the binary
// needs no cgo. It owns its schema through embedded, numbered migrations.
//
// It must not hold business rules: what a valid client is, who may change
// it and what the admin event says are decided by the callers; this package
// stores what it is given, atomically, and fails closed on anything it
// cannot store faithfully (a time outside the int64 nanosecond range, a
// revocation without an expiry).
//
// Concurrency: SQLite admits one writer at a time. Rather than let writers
// race for the file lock and surface SQLITE_BUSY, a Store keeps two
// database/sql pools over the same file: a write pool of exactly one
// connection, so writers queue in Go (honouring their contexts), and a
// read pool whose connections are query_only and, thanks to WAL, never wait
// for the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const (
	// driverName is the name modernc.org/sqlite registers with database/sql.
	driverName = "sqlite"

	// defaultBusyTimeout is how long a connection waits for a lock held by
	// another process (a backup tool, a second keybound by mistake) before
	// SQLite gives up. Within one process writers never contend: they queue
	// on the single write connection.
	defaultBusyTimeout = 5 * time.Second

	// minReadConns is the smallest read pool; reads are short, so a few
	// connections per CPU is plenty and bounds open file descriptors.
	minReadConns = 4

	// fileMode is the mode of a new database file. The file holds signing
	// private keys and secret hashes, so only the service user may read it.
	// SQLite gives the -wal and -shm files the same mode as the database.
	fileMode fs.FileMode = 0o600
)

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer keybound than this one. Opening it anyway could corrupt data the
// newer schema relies on; run the newer binary, or restore a backup.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this binary supports; upgrade keybound or restore a backup")

// ErrInsecureFile is returned by Open when an existing database file can be
// read or written by group or others.
var ErrInsecureFile = errors.New("sqlite: database file is accessible to group or others; chmod 600 it")

// Option configures Open.
type Option func(*config)

type config struct {
	busyTimeout time.Duration
	readConns   int
	now         func() time.Time
}

// WithBusyTimeout sets how long a connection waits on a lock held by another
// process before failing. The default is 5s.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) { c.busyTimeout = d }
}

// WithReadConns sets the size of the read pool. The default is the larger of
// 4 and GOMAXPROCS.
func WithReadConns(n int) Option {
	return func(c *config) { c.readConns = n }
}

// WithClock sets the clock used to stamp applied migrations. The store never
// reads the clock for data: every stored time comes from the caller.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// Store is the SQLite implementation of store.Store. It is safe for
// concurrent use. The zero value is not usable; call Open.
type Store struct {
	// write has exactly one connection: SQLite's single writer, made explicit
	// so concurrent writers wait in database/sql instead of on the file lock.
	write *sql.DB
	// read is the pool for single-statement reads. Its connections are
	// query_only, so a bug cannot route a write around the write queue.
	read *sql.DB
	// getClient is prepared once: GetClient runs on every token request, and
	// parsing its SQL was 40% of its cost. database/sql re-prepares it
	// lazily on each read connection and caches it there.
	getClient *sql.Stmt
	// insertEventStmt, insertClientStmt and insertAuditStmt are prepared
	// once on the write connection: every mutation appends an admin event,
	// and imports and audit batches insert row after row. Transactions use
	// them through tx.StmtContext, which reuses the connection's prepared
	// statement instead of parsing the SQL again.
	insertEventStmt, insertClientStmt, insertAuditStmt *sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database file at path, applies any
// pending migrations and returns a ready Store. The parent directory must
// exist. A new file is created with mode 0600; an existing file readable by
// group or others is refused with ErrInsecureFile. A database migrated by a
// newer binary is refused with ErrSchemaTooNew.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{
		busyTimeout: defaultBusyTimeout,
		readConns:   max(minReadConns, runtime.GOMAXPROCS(0)),
		now:         time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.busyTimeout < 0 || cfg.readConns < 1 || cfg.now == nil {
		return nil, errors.New("sqlite: invalid option: busy timeout must be >= 0, read conns >= 1 and the clock non-nil")
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}

	write, err := sql.Open(driverName, dsn(path, cfg.busyTimeout, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, write, cfg.now); err != nil {
		write.Close()
		return nil, err
	}

	read, err := sql.Open(driverName, dsn(path, cfg.busyTimeout, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(cfg.readConns)
	read.SetMaxIdleConns(cfg.readConns)
	if err := read.PingContext(ctx); err != nil {
		read.Close()
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{write: write, read: read}
	for _, p := range []struct {
		db  *sql.DB
		q   string
		dst **sql.Stmt
	}{
		{read, getClientSQL, &s.getClient},
		{write, insertEventSQL, &s.insertEventStmt},
		{write, insertClientSQL, &s.insertClientStmt},
		{write, insertAuditSQL, &s.insertAuditStmt},
	} {
		if *p.dst, err = p.db.PrepareContext(ctx, p.q); err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	return s, nil
}

// Close closes the prepared statements and both pools. It is safe to call
// more than once; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, st := range []*sql.Stmt{s.getClient, s.insertEventStmt, s.insertClientStmt, s.insertAuditStmt} {
			if st != nil { // Open failed before preparing it
				errs = append(errs, st.Close())
			}
		}
		s.closeErr = errors.Join(append(errs, s.read.Close(), s.write.Close())...)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// prepareFile checks path and creates the database file with fileMode
// before SQLite sees it: SQLite would create it with the umask's default,
// typically world-readable.
func prepareFile(path string) error {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return fmt.Errorf("sqlite: database path %q must be a plain file path (no \"file:\" URI, no '?', not :memory:)", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("sqlite: database directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("sqlite: database directory %s is not a directory", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sqlite: database file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("sqlite: database file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o", ErrInsecureFile, path, fi.Mode().Perm())
	}
	return nil
}

// dsn builds the modernc.org/sqlite data source name. The pragmas are part
// of the DSN, not run once after Open, so every connection database/sql
// opens later (after an idle close, say) gets them too.
func dsn(path string, busy time.Duration, write bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	// NORMAL is durable across application crashes in WAL mode; a power
	// loss may roll back the last transactions but never corrupts the file.
	q.Add("_pragma", "synchronous(NORMAL)")
	if write {
		// WAL lets readers proceed while the writer commits. It is a property
		// of the file, so setting it on the writer is enough.
		q.Add("_pragma", "journal_mode(WAL)")
		// BEGIN IMMEDIATE takes the write lock at the start of a transaction,
		// so a transaction that reads then writes can never fail with
		// SQLITE_BUSY midway (a deferred one cannot upgrade its lock if
		// another process wrote in between).
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return path + "?" + q.Encode()
}

// withTx runs fn in a write transaction (BEGIN IMMEDIATE on the single write
// connection) and commits if fn returns nil.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface{ Scan(dest ...any) error }

// collect runs the query q on db and returns every row as scan reads it.
// Every failure, the query's, a row's or the iteration's, is wrapped for op.
func collect[T any](ctx context.Context, db *sql.DB, op, q string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// rowExists reports whether q, a SELECT 1 inside tx, finds a row: how an
// optimistic write that matched nothing tells a missing row from a stale one.
func rowExists(ctx context.Context, tx *sql.Tx, q string, args ...any) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
