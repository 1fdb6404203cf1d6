package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// clientColumns is the column list shared by every client SELECT, in the
// order scanClient reads them.
const clientColumns = `id, name, owner, purpose, environment, vendor, status,
	created_at, updated_at, expires_at, scopes, audiences, auth_method, jwks,
	tls_subject_dn, tls_san_uri, tls_san_dns, secret_salt, secret_hash,
	secret_lookup, binding, token_lifetime, tags, previous, prev_secret_lookup`

const getClientSQL = `SELECT ` + clientColumns + ` FROM clients WHERE id = ?`

// clientArgs returns the column values of c, id last, in the order of
// clientColumns minus id: the shape both INSERT and UPDATE take.
func clientArgs(c *identity.Client) ([]any, error) {
	created, err := encodeTime("created_at", c.CreatedAt)
	if err != nil {
		return nil, err
	}
	updated, err := encodeTime("updated_at", c.UpdatedAt)
	if err != nil {
		return nil, err
	}
	expires, err := encodeTime("expires_at", c.ExpiresAt)
	if err != nil {
		return nil, err
	}
	scopes, err := encodeStrings(c.Scopes)
	if err != nil {
		return nil, fmt.Errorf("sqlite: encode scopes: %w", err)
	}
	audiences, err := encodeStrings(c.Audiences)
	if err != nil {
		return nil, fmt.Errorf("sqlite: encode audiences: %w", err)
	}
	var salt, hash, lookup any
	if c.Secret != nil {
		if len(c.Secret.Salt) == 0 || len(c.Secret.Hash) == 0 {
			// A half-empty hash could never verify; storing it would hide
			// the caller's bug until the client failed to authenticate.
			return nil, errors.New("sqlite: client secret hash has an empty salt or hash")
		}
		salt, hash = c.Secret.Salt, c.Secret.Hash
		if len(c.Secret.Lookup) > 0 {
			lookup = c.Secret.Lookup
		}
	}
	tags, err := encodeStrings(c.Tags)
	if err != nil {
		return nil, fmt.Errorf("sqlite: encode tags: %w", err)
	}
	prev, prevLookup, err := encodePrevious(c.Previous)
	if err != nil {
		return nil, err
	}
	return []any{
		c.Name, c.Owner, c.Purpose, c.Environment, c.Vendor, string(c.Status),
		created, updated, expires, scopes, audiences, string(c.AuthMethod), nilIfEmpty(c.JWKS),
		c.TLSSubjectDN, c.TLSSANURI, c.TLSSANDNS, salt, hash,
		lookup, string(c.Binding), int64(c.TokenLifetime), tags, prev, prevLookup,
		c.ID,
	}, nil
}

// previousJSON is the stored form of identity.PreviousCredential: unlike
// the domain type's JSON (which API responses use), it keeps the credential
// itself. A secret appears only as its salted hash and lookup digest.
type previousJSON struct {
	JWKS         json.RawMessage      `json:"jwks,omitempty"`
	TLSSubjectDN string               `json:"tls_subject_dn,omitempty"`
	TLSSANURI    string               `json:"tls_san_uri,omitempty"`
	TLSSANDNS    string               `json:"tls_san_dns,omitempty"`
	Secret       *identity.SecretHash `json:"secret,omitempty"`
	RotatedAt    time.Time            `json:"rotated_at"`
	RetiresAt    time.Time            `json:"retires_at"`
}

func encodePrevious(p *identity.PreviousCredential) (prev, lookup any, err error) {
	if p == nil {
		return nil, nil, nil
	}
	if p.RetiresAt.IsZero() || p.RotatedAt.IsZero() {
		// A previous credential without an end would be accepted forever.
		return nil, nil, errors.New("sqlite: previous credential needs rotated_at and retires_at")
	}
	if p.Secret != nil && (len(p.Secret.Salt) == 0 || len(p.Secret.Hash) == 0) {
		return nil, nil, errors.New("sqlite: previous secret hash has an empty salt or hash")
	}
	b, err := json.Marshal(previousJSON{JWKS: p.JWKS, TLSSubjectDN: p.TLSSubjectDN, TLSSANURI: p.TLSSANURI,
		TLSSANDNS: p.TLSSANDNS, Secret: p.Secret, RotatedAt: p.RotatedAt.UTC(), RetiresAt: p.RetiresAt.UTC()})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: encode previous credential: %w", err)
	}
	if p.Secret != nil && len(p.Secret.Lookup) > 0 {
		lookup = p.Secret.Lookup
	}
	return string(b), lookup, nil
}

func decodePrevious(s sql.NullString) (*identity.PreviousCredential, error) {
	if !s.Valid {
		return nil, nil
	}
	var p previousJSON
	if err := json.Unmarshal([]byte(s.String), &p); err != nil {
		return nil, fmt.Errorf("sqlite: decode previous credential: %w", err)
	}
	return &identity.PreviousCredential{JWKS: p.JWKS, TLSSubjectDN: p.TLSSubjectDN, TLSSANURI: p.TLSSANURI,
		TLSSANDNS: p.TLSSANDNS, Secret: p.Secret, RotatedAt: p.RotatedAt, RetiresAt: p.RetiresAt}, nil
}

func scanClient(r scanner) (*identity.Client, error) {
	var (
		c                         identity.Client
		status, authMethod, bind  string
		created, updated, expires sql.NullInt64
		scopes, audiences         string
		jwks, salt, hash, lookup  []byte
		lifetime                  int64
		tags                      string
		prev                      sql.NullString
		prevLookup                []byte
	)
	if err := r.Scan(&c.ID, &c.Name, &c.Owner, &c.Purpose, &c.Environment, &c.Vendor, &status,
		&created, &updated, &expires, &scopes, &audiences, &authMethod, &jwks,
		&c.TLSSubjectDN, &c.TLSSANURI, &c.TLSSANDNS, &salt, &hash,
		&lookup, &bind, &lifetime, &tags, &prev, &prevLookup); err != nil {
		return nil, err
	}
	var err error
	if c.Scopes, err = decodeStrings("scopes", scopes); err != nil {
		return nil, err
	}
	if c.Audiences, err = decodeStrings("audiences", audiences); err != nil {
		return nil, err
	}
	if c.Tags, err = decodeStrings("tags", tags); err != nil {
		return nil, err
	}
	if c.Previous, err = decodePrevious(prev); err != nil {
		return nil, err
	}
	c.Status = identity.Status(status)
	c.AuthMethod = identity.AuthMethod(authMethod)
	c.Binding = identity.Binding(bind)
	c.CreatedAt, c.UpdatedAt, c.ExpiresAt = decodeTime(created), decodeTime(updated), decodeTime(expires)
	if len(jwks) > 0 {
		c.JWKS = jwks
	}
	if salt != nil || hash != nil {
		c.Secret = &identity.SecretHash{Salt: salt, Hash: hash, Lookup: lookup}
	}
	c.TokenLifetime = time.Duration(lifetime)
	return &c, nil
}

// CreateClient inserts c and ev in one transaction. A client with the same
// ID already stored yields store.ErrConflict, and then no event is written.
func (s *Store) CreateClient(ctx context.Context, c *identity.Client, ev store.AdminEvent) error {
	if c == nil {
		return errors.New("sqlite: create client: nil client")
	}
	args, err := clientArgs(c)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, s.insertClientStmt).ExecContext(ctx, args...); err != nil {
			return wrap("create client", err)
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// GetClient returns the client with id, or store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*identity.Client, error) {
	c, err := scanClient(s.getClient.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get client: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get client", err)
	}
	return c, nil
}

// GetClientBySecretLookup returns the client whose secret has the lookup
// digest (identity.SecretLookup), or store.ErrNotFound.
func (s *Store) GetClientBySecretLookup(ctx context.Context, lookup []byte) (*identity.Client, error) {
	if len(lookup) == 0 {
		return nil, fmt.Errorf("sqlite: get client by secret: %w", store.ErrNotFound)
	}
	c, err := scanClient(s.read.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE secret_lookup = ? OR prev_secret_lookup = ?`, lookup, lookup))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get client by secret: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get client by secret", err)
	}
	return c, nil
}

// ListClients returns the clients matching f, ordered by CreatedAt then ID
// so pages and reports are stable. A Limit of zero or less means no limit.
func (s *Store) ListClients(ctx context.Context, f store.ClientFilter) ([]*identity.Client, error) {
	var (
		where []string
		args  []any
	)
	if f.Owner != "" {
		where, args = append(where, "owner = ?"), append(args, f.Owner)
	}
	if f.Environment != "" {
		where, args = append(where, "environment = ?"), append(args, f.Environment)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.WithPrevious {
		where = append(where, "previous IS NOT NULL")
	}
	q := `SELECT ` + clientColumns + ` FROM clients`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.read, "list clients", q, args, scanClient)
}

// UpdateClient replaces the stored client c.ID if its UpdatedAt still equals
// prevUpdatedAt, and appends ev, in one transaction. Otherwise it returns
// store.ErrStale, or store.ErrNotFound when no such client exists, and
// writes nothing. The compare and the write run under one BEGIN IMMEDIATE
// transaction, so two updaters holding the same prevUpdatedAt cannot both win.
func (s *Store) UpdateClient(ctx context.Context, c *identity.Client, prevUpdatedAt time.Time, ev store.AdminEvent) error {
	if c == nil {
		return errors.New("sqlite: update client: nil client")
	}
	args, err := clientArgs(c)
	if err != nil {
		return err
	}
	prev, err := encodeTime("previous updated_at", prevUpdatedAt)
	if err != nil {
		return err
	}
	evArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		// "IS" rather than "=" so a zero (NULL) UpdatedAt compares equal to
		// a zero prevUpdatedAt.
		if err := updateIfUnchanged(ctx, tx, "update client", `UPDATE clients SET
			name = ?, owner = ?, purpose = ?, environment = ?, vendor = ?, status = ?,
			created_at = ?, updated_at = ?, expires_at = ?, scopes = ?, audiences = ?, auth_method = ?, jwks = ?,
			tls_subject_dn = ?, tls_san_uri = ?, tls_san_dns = ?, secret_salt = ?, secret_hash = ?,
			secret_lookup = ?, binding = ?, token_lifetime = ?, tags = ?, previous = ?, prev_secret_lookup = ?
			WHERE id = ? AND updated_at IS ?`, append(args, prev), clientRow, c.ID); err != nil {
			return err
		}
		return s.insertEvents(ctx, tx, evArgs)
	})
}

// rowKind is a table's rows as optimistic writes name them: what an error
// calls one, and the SELECT 1 that finds one by its key.
type rowKind struct{ name, existsSQL string }

var (
	clientRow       = rowKind{"client", `SELECT 1 FROM clients WHERE id = ?`}
	ownerRow        = rowKind{"owner", `SELECT 1 FROM owners WHERE name = ?`}
	notificationRow = rowKind{"notification", `SELECT 1 FROM notifications WHERE id = ?`}
)

// updateIfUnchanged runs an optimistic UPDATE of the k row key, whose WHERE
// compares the row's version (updated_at, or a claim), and tells a row that
// changed since it was read (store.ErrStale) from one that does not exist
// (store.ErrNotFound).
func updateIfUnchanged(ctx context.Context, tx *sql.Tx, op, updateSQL string, args []any, k rowKind, key any) error {
	res, err := tx.ExecContext(ctx, updateSQL, args...)
	return updatedOne(ctx, tx, op, k, key, res, err)
}

// updatedOne checks the outcome of an optimistic UPDATE of the k row key:
// nil if it changed the row, else why it did not (missingOrStale).
func updatedOne(ctx context.Context, tx *sql.Tx, op string, k rowKind, key any, res sql.Result, err error) error {
	if err != nil {
		return wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap(op, err)
	}
	if n > 0 {
		return nil
	}
	return missingOrStale(ctx, tx, op, k, key)
}

// missingOrStale tells why a compare on the k row key's version matched no
// row: the row is gone (store.ErrNotFound) or changed (store.ErrStale).
func missingOrStale(ctx context.Context, tx *sql.Tx, op string, k rowKind, key any) error {
	exists, err := rowExists(ctx, tx, k.existsSQL, key)
	switch {
	case err != nil:
		return wrap(op, err)
	case !exists:
		return fmt.Errorf("sqlite: %s: %s %v: %w", op, k.name, key, store.ErrNotFound)
	}
	return fmt.Errorf("sqlite: %s: %s %v: %w", op, k.name, key, store.ErrStale)
}

// clientChange is one client's change in a batch (SetClientsStatus,
// SetClientsOwner), checked and encoded before the write lock is taken:
// value is the one column the batch sets besides updated_at.
type clientChange struct {
	id                   string
	value, updated, prev any
}

// encodeClientChange checks what every batch change needs, a client named
// once in the batch (seen collects the ids) and a new UpdatedAt, and
// encodes the change; change i of op is named in the errors.
func encodeClientChange(op string, i int, seen map[string]bool, id string, value any, updatedAt, prevUpdatedAt time.Time) (clientChange, error) {
	if seen[id] {
		return clientChange{}, fmt.Errorf("sqlite: %s: client %s is named twice", op, id)
	}
	seen[id] = true
	if updatedAt.IsZero() {
		return clientChange{}, fmt.Errorf("sqlite: %s: change %d (%s) has no UpdatedAt", op, i, id)
	}
	updated, err := encodeTime("updated_at", updatedAt)
	if err != nil {
		return clientChange{}, err
	}
	prev, err := encodeTime("previous updated_at", prevUpdatedAt)
	if err != nil {
		return clientChange{}, err
	}
	return clientChange{id: id, value: value, updated: updated, prev: prev}, nil
}

// applyClientChanges sets column and updated_at of every change inside tx,
// each only if the client's updated_at is still the one it was read with.
// The first change that matches no row fails the batch with store.ErrStale
// or store.ErrNotFound. column is a constant of the caller, never input.
func applyClientChanges(ctx context.Context, tx *sql.Tx, op, column string, cs []clientChange) error {
	stmt, err := tx.PrepareContext(ctx, `UPDATE clients SET `+column+` = ?, updated_at = ? WHERE id = ? AND updated_at IS ?`)
	if err != nil {
		return wrap(op, err)
	}
	defer stmt.Close()
	for _, c := range cs {
		res, err := stmt.ExecContext(ctx, c.value, c.updated, c.id, c.prev)
		if err := updatedOne(ctx, tx, op, clientRow, c.id, res, err); err != nil {
			return err
		}
	}
	return nil
}
