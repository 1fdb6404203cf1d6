package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Import brings existing static API keys into the inventory: each row names
// an identity (owner, purpose, environment, expiry) and the secret its
// callers already use. Every row is validated first with the same rules as
// a registration; if any row is bad nothing is stored, and every problem of
// every row is returned at once. Otherwise all identities are created in
// one store transaction, each with a client.import admin event.
//
// An imported identity authenticates with client_secret_basic (a legacy
// static secret, counted as such by every report) and its tokens are
// DPoP-bound: once its callers move from presenting the key to getting
// tokens, those tokens are sender-constrained without a second change of
// registration. The secret is stored only as identity.HashSecret(secret).

// Bounds of an import.
const (
	// MaxImportRows bounds one import: one transaction, one request.
	MaxImportRows = 10000
	// MinImportSecretLen refuses secrets too short to be API keys (a
	// password or a PIN typed into the wrong column).
	MinImportSecretLen = 16
	// MaxImportSecretLen matches the longest static API key the gateway
	// accepts (protect.MaxStaticKeyBytes).
	MaxImportSecretLen = 512
)

// ActionImport is the admin event action of each imported identity.
const ActionImport = "client.import"

// Import field names, as the import file's header names them.
const (
	FieldName        = "name"
	FieldOwner       = "owner"
	FieldPurpose     = "purpose"
	FieldEnvironment = "environment"
	FieldExpiresAt   = "expires_at"
	FieldSecret      = "secret"
	FieldVendor      = "vendor"
	FieldScope       = "scope"
)

// ImportFields lists every field an import row may have, the required
// ones first; RequiredImportFields is how many of them are required.
var ImportFields = []string{FieldName, FieldOwner, FieldPurpose, FieldEnvironment, FieldExpiresAt, FieldSecret, FieldVendor, FieldScope}

// RequiredImportFields is the number of leading ImportFields every row needs.
const RequiredImportFields = 6

// ImportRow is one identity to import. Every field is text, so a value of
// the wrong shape is reported on its row instead of failing the request.
// It redacts its secret when printed or logged.
type ImportRow struct {
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Purpose     string `json:"purpose"`
	Environment string `json:"environment"`
	// ExpiresAt is an RFC 3339 time or a YYYY-MM-DD date (midnight UTC).
	ExpiresAt string `json:"expires_at"`
	Secret    string `json:"secret"`
	Vendor    string `json:"vendor,omitempty"`
	// Scope is space-separated (RFC 6749 section 3.3).
	Scope string `json:"scope,omitempty"`
}

// String keeps the secret out of fmt output.
func (r ImportRow) String() string {
	return fmt.Sprintf("{name:%q owner:%q environment:%q expires_at:%q secret:[redacted]}", r.Name, r.Owner, r.Environment, r.ExpiresAt)
}

// LogValue keeps the secret out of logs.
func (r ImportRow) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", r.Name), slog.String("owner", r.Owner), slog.String("secret", "[redacted]"))
}

// RowError is one problem of one row. Row is the row's index in the
// import, from 0; -1 means the import as a whole.
type RowError struct {
	Row    int
	Field  string
	Detail string
}

// ImportError lists every problem found in an import; nothing was stored.
// Details never contain a secret.
type ImportError struct{ Problems []RowError }

func (e *ImportError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = "row " + strconv.Itoa(p.Row) + " " + p.Field + ": " + p.Detail
	}
	return "inventory: import refused, nothing was stored: " + strings.Join(parts, "; ")
}

// ParseExpiry reads an import's expires_at: an RFC 3339 time, or a
// YYYY-MM-DD date meaning midnight UTC at its start.
func ParseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("is not a date: use RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD")
}

// Import validates rows and, unless dryRun or any row is bad, creates an
// identity for each in one transaction. It returns the identities (not
// stored when dryRun), or an *ImportError listing every problem.
func (s *Service) Import(ctx context.Context, actor string, rows []ImportRow, dryRun bool) ([]*identity.Client, error) {
	switch {
	case len(rows) == 0:
		return nil, &ImportError{Problems: []RowError{{Row: -1, Field: "rows", Detail: "the import has no rows: give at least one identity"}}}
	case len(rows) > MaxImportRows:
		return nil, &ImportError{Problems: []RowError{{Row: -1, Field: "rows", Detail: fmt.Sprintf("the import has %d rows; at most %d are allowed in one import", len(rows), MaxImportRows)}}}
	}
	now := s.now()
	var (
		problems []RowError
		clients  = make([]*identity.Client, len(rows))
		events   = make([]store.AdminEvent, 0, len(rows))
		firstRow = map[string]int{} // secret lookup digest -> first row with it
	)
	ownerCheck := s.cachedOwnerProblem(ctx) // owners.go
	for i, row := range rows {
		bad := func(field, format string, args ...any) {
			problems = append(problems, RowError{Row: i, Field: field, Detail: fmt.Sprintf(format, args...)})
		}
		reg := Registration{
			Name: row.Name, Owner: row.Owner, Purpose: row.Purpose, Environment: row.Environment,
			Vendor: row.Vendor, Scope: row.Scope,
			AuthMethod: identity.AuthClientSecretBasic, DPoPBound: true,
		}
		expiryParsed := true
		if strings.TrimSpace(row.ExpiresAt) != "" {
			t, err := ParseExpiry(row.ExpiresAt)
			if err != nil {
				bad(FieldExpiresAt, "%v", err)
				expiryParsed = false
			}
			reg.ExpiresAt = t
		}
		c, err := reg.toClient(now, s.Policy)
		var ve *ValidationError
		switch {
		case errors.As(err, &ve):
			for _, fe := range ve.Fields {
				field := fe.Field
				if field == "client_name" {
					field = FieldName
				}
				if field == FieldExpiresAt && !expiryParsed {
					continue // already reported: not a date
				}
				bad(field, "%s", fe.Detail)
			}
		case err != nil:
			return nil, fmt.Errorf("inventory: import: %w", err)
		}

		if owner := strings.TrimSpace(row.Owner); owner != "" {
			if p, err := ownerCheck(owner); err != nil {
				return nil, fmt.Errorf("inventory: import: %w", err)
			} else if p != "" {
				bad(FieldOwner, "%s", p)
			}
		}
		lookup, ok := checkImportSecret(row.Secret, bad)
		if ok {
			if j, dup := firstRow[string(lookup)]; dup {
				bad(FieldSecret, "is the same secret as rows[%d]: each identity needs its own secret", j)
			} else {
				firstRow[string(lookup)] = i
				owner, err := s.Store.GetClientBySecretLookup(ctx, lookup)
				switch {
				case err == nil:
					bad(FieldSecret, "is already the secret of registered identity %s (%s): it is in the inventory already", owner.ID, owner.Name)
				case !errors.Is(err, store.ErrNotFound):
					return nil, fmt.Errorf("inventory: import: %w", err)
				}
			}
		}
		if c == nil || !ok || len(problems) > 0 {
			continue // keep validating; nothing will be stored
		}
		c.ID = newClientID()
		if c.Secret, err = identity.HashSecret(row.Secret); err != nil {
			return nil, fmt.Errorf("inventory: import: %w", err)
		}
		clients[i] = c
		changes := describe(c)
		changes["secret_fingerprint"] = identity.SecretFingerprint(c.Secret.Lookup)
		events = append(events, store.AdminEvent{Time: now, Actor: actor, Action: ActionImport, Target: c.ID, Changes: changes})
	}
	if len(problems) > 0 {
		return nil, &ImportError{Problems: problems}
	}
	if dryRun {
		return clients, nil
	}
	if err := s.Store.CreateClients(ctx, clients, events); err != nil {
		return nil, fmt.Errorf("inventory: import: %w", err)
	}
	return clients, nil
}

// checkImportSecret reports what is wrong with secret, never the secret
// itself, and returns its lookup digest when it is acceptable.
func checkImportSecret(secret string, bad func(field, format string, args ...any)) ([]byte, bool) {
	switch {
	case secret == "":
		bad(FieldSecret, "is required: the static API key its callers use today")
	case len(secret) < MinImportSecretLen:
		bad(FieldSecret, "is %d characters long; an API key needs at least %d (a shorter one is guessable: register the identity with `keybound client create` and give its callers a new key)", len(secret), MinImportSecretLen)
	case len(secret) > MaxImportSecretLen:
		bad(FieldSecret, "is longer than %d bytes", MaxImportSecretLen)
	case strings.ContainsFunc(secret, func(r rune) bool { return r <= 0x20 || r >= 0x7f }):
		bad(FieldSecret, "must be printable ASCII without spaces (check for a stray space, quote or line break around it)")
	default:
		return identity.SecretLookup(secret), true
	}
	return nil, false
}
