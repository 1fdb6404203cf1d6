// Package store is the storage contract: the interfaces every backend
// implements, the filters they take and the sentinel errors callers branch
// on. It holds no SQL; backends live in sub-packages (sqlite) and every one
// must pass the shared suite in storetest.
//
// Why one contract instead of consumer-side interfaces? Backends are swapped
// whole (SQLite on one node, PostgreSQL on many), and one conformance suite
// is the only way to know a new backend behaves like the old one.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// Sentinel errors. Backends wrap their own errors; these are the ones callers
// may branch on with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: already exists")
	// ErrStale is returned by an optimistic write (UpdateClient,
	// SetClientsStatus, UpdateOwner, AppendReview, UpdateNotification, ...)
	// when the stored row changed since it was read: read it again and
	// decide anew.
	ErrStale = errors.New("store: modified concurrently; read it again")
)

// AdminEvent is one entry of the append-only admin audit log: who changed
// what, when. Changes never contains a secret or private key.
type AdminEvent struct {
	ID      int64             `json:"id"`
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Target  string            `json:"target"`
	Changes map[string]string `json:"changes,omitempty"`
}

// ClientFilter narrows ListClients. Zero fields match everything.
type ClientFilter struct {
	Owner       string
	Environment string
	Status      identity.Status
	// WithPrevious keeps only clients holding a rotated-out credential
	// (identity.Client.Previous), whether or not its overlap has ended.
	WithPrevious bool
	Limit        int
}

// SigningKey is one key of the token-signing key ring. PrivatePKCS8 is the
// DER private key; backends store it as given and never log it.
type SigningKey struct {
	KID          string
	Algorithm    string
	PrivatePKCS8 []byte
	CreatedAt    time.Time
	// ActivatesAt is when the key may start signing: publication comes first,
	// so verifiers that cache the JWKS learn it before they meet it.
	ActivatesAt time.Time
	// RetiredAt, when set, is when the key stopped signing.
	RetiredAt time.Time
	// RemoveAt, when set, is when the key leaves the JWKS: after every token
	// it signed has expired.
	RemoveAt time.Time
}

// RevokedToken is one revoked access token (RFC 7009), kept until ExpiresAt.
type RevokedToken struct {
	JTI       string
	ClientID  string
	RevokedAt time.Time
	ExpiresAt time.Time
}

// AuditEvent is one gateway decision (allow or deny), as the audit trail
// keeps it. It never holds a token or a secret: the token appears only as
// its jti. The JSON names are the stable wire names of the audit stream
// (the JSONL sink writes them); renaming one breaks every consumer.
type AuditEvent struct {
	// ID is assigned by the store on append and ignored when appending; it
	// is zero on events that have not been stored.
	ID        int64     `json:"id,omitempty"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	ClientID  string    `json:"client_id"`
	Owner     string    `json:"owner"`
	// CredentialType is how the caller proved possession: dpop, mtls,
	// bearer, static_key or none.
	CredentialType string `json:"credential_type"`
	TokenJTI       string `json:"token_jti,omitempty"`
	// Scopes are the token's scopes, each an RFC 6749 section 3.3
	// scope-token (no spaces, not empty). Record them in a canonical order:
	// SummarizeAudit groups by the list as given.
	Scopes        []string `json:"scopes,omitempty"`
	Route         string   `json:"route"`
	Method        string   `json:"method"`
	PathTemplate  string   `json:"path_template"`
	ObjectID      string   `json:"object_id,omitempty"`
	Status        int      `json:"status"`
	BytesIn       int64    `json:"bytes_in"`
	BytesOut      int64    `json:"bytes_out"`
	LatencyMicros int64    `json:"latency_micros"`
	SourceAddr    string   `json:"source_addr"`
	// Decision is allow or deny.
	Decision string `json:"decision"`
	// Reason is a bounded code (invalid_token, insufficient_scope,
	// rate_limited, ok, ...), never free text from the request.
	Reason string `json:"reason"`
}

// AuditFilter narrows ListAuditEvents and SummarizeAudit. Zero fields match
// everything. Since is inclusive and Until exclusive (Since <= Time < Until).
// A Limit of zero or less means no limit.
type AuditFilter struct {
	ClientID string
	Route    string
	Decision string
	// Reason keeps only events with this reason code (client_expired, ...).
	Reason string
	Since  time.Time
	Until  time.Time
	Limit  int
}

// AuditSummaryRow answers "which identity called which endpoint, with what
// scope, how often": the events matching a filter, grouped by client, route,
// method, scopes and decision.
type AuditSummaryRow struct {
	ClientID string
	Route    string
	Method   string
	// Scopes is the event's scope list in RFC 6749 section 3.3 form: the
	// scopes in recorded order, separated by single spaces; "" for none.
	Scopes   string
	Decision string
	Count    int64
	// First and Last are the earliest and latest event Time in the group.
	First, Last time.Time
}

// Store is everything keybound persists. Implementations are safe for
// concurrent use. Every mutating call that takes an AdminEvent writes the
// change and the event in one transaction: both or neither.
type Store interface {
	CertificateStore
	ClientImporter
	ClientOffboarder
	UsageStore
	NotificationStore
	ReviewStore
	CreateClient(ctx context.Context, c *identity.Client, ev AdminEvent) error
	GetClient(ctx context.Context, id string) (*identity.Client, error)
	// GetClientBySecretLookup finds the client whose secret has the given
	// lookup digest (identity.SecretLookup): how a static API key, sent
	// without a client id, is resolved. ErrNotFound when none has.
	GetClientBySecretLookup(ctx context.Context, lookup []byte) (*identity.Client, error)
	ListClients(ctx context.Context, f ClientFilter) ([]*identity.Client, error)
	// UpdateClient replaces the stored client whose UpdatedAt equals
	// prevUpdatedAt; otherwise it returns ErrStale (or ErrNotFound).
	UpdateClient(ctx context.Context, c *identity.Client, prevUpdatedAt time.Time, ev AdminEvent) error

	AppendAdminEvent(ctx context.Context, ev AdminEvent) error
	// ListAdminEvents returns events newest first; target "" matches all.
	ListAdminEvents(ctx context.Context, target string, limit int) ([]AdminEvent, error)

	PutSigningKey(ctx context.Context, k SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)

	// RevokeToken records a revocation; revoking twice is not an error.
	RevokeToken(ctx context.Context, t RevokedToken) error
	// RevokedSince lists revocations made at or after since whose token has
	// not expired at now, for revocation views to load and refresh.
	RevokedSince(ctx context.Context, since, now time.Time) ([]RevokedToken, error)
	// PurgeExpired deletes revocations of tokens that expired before now.
	PurgeExpired(ctx context.Context, now time.Time) (int, error)

	// AppendAuditEvents appends the batch in one transaction: every event or
	// none. An empty batch is a no-op. Each event needs a non-zero Time (an
	// event without one could never be found by a time range) and scopes in
	// RFC 6749 form; otherwise the whole batch is refused.
	AppendAuditEvents(ctx context.Context, evs []AuditEvent) error
	// ListAuditEvents returns the events matching f, newest Time first; events
	// with the same Time come newest append first.
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// SummarizeAudit groups the events matching f (Limit bounds the rows) by
	// client, route, method, scopes and decision, most frequent first; ties
	// are ordered by ClientID, Route, Method, Scopes, then Decision.
	SummarizeAudit(ctx context.Context, f AuditFilter) ([]AuditSummaryRow, error)

	Close() error
}
