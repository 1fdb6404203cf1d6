package store

import (
	"context"
	"errors"
	"time"
)

// ErrJoinTokenSpent is returned by CreateCertificate when the join token it
// was asked to consume was already used, has expired, or is bound to
// another client. Nothing is written.
var ErrJoinTokenSpent = errors.New("store: join token already used, expired or bound to another client")

// WorkloadCertificate is one X.509 client certificate issued by the workload
// CA: a credential with an expiry, like any other, kept for the inventory,
// the CRL and renewal checks. It holds the public certificate only; the
// private key never reaches keybound.
type WorkloadCertificate struct {
	// Serial is the certificate serial number in lower-case hex without
	// leading zeros (big.Int.Text(16)); unique.
	Serial   string
	ClientID string
	// SPIFFEID is the certificate's one URI SAN.
	SPIFFEID string
	// Thumbprint is the base64url SHA-256 of DER (x5t#S256, RFC 8705).
	Thumbprint string
	IssuedAt   time.Time
	NotBefore  time.Time
	NotAfter   time.Time
	// Via is how the workload proved itself: private_key_jwt, join_token,
	// renewal or admin.
	Via string
	// RenewedFrom is the serial of the certificate presented to renew, if any.
	RenewedFrom string
	// DER is the certificate as issued.
	DER []byte
	// RevokedAt is zero while the certificate is not revoked.
	RevokedAt        time.Time
	RevocationReason string
}

// JoinToken is a one-time enrollment credential bound to one client. Only
// the SHA-256 of its secret part is stored; the token itself is shown once,
// to the operator who created it.
type JoinToken struct {
	// ID is the public part of the token, used to find it.
	ID       string
	ClientID string
	// Hash is the SHA-256 of the secret part.
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is zero until the token is consumed.
	UsedAt    time.Time
	CreatedBy string
}

// CertificateFilter narrows ListCertificates. Zero fields match everything;
// a Limit of zero or less means no limit.
type CertificateFilter struct {
	ClientID string
	// LiveAt, when set, keeps only certificates that are not revoked and
	// whose NotAfter is after LiveAt.
	LiveAt time.Time
	Limit  int
}

// CertificateStore persists the workload CA's issued certificates and join
// tokens. Every mutating call that takes an AdminEvent writes the change and
// the event in one transaction: both or neither.
type CertificateStore interface {
	// CreateCertificate stores c. When joinTokenID is not empty it consumes
	// that join token in the same transaction: the token must exist (else
	// ErrNotFound), be bound to c.ClientID, be unused and not expired at
	// c.IssuedAt (else ErrJoinTokenSpent). A serial stored before is
	// ErrConflict; a client that does not exist is ErrNotFound.
	CreateCertificate(ctx context.Context, c *WorkloadCertificate, joinTokenID string, ev AdminEvent) error
	GetCertificate(ctx context.Context, serial string) (*WorkloadCertificate, error)
	// ListCertificates returns matches newest IssuedAt first, then by Serial.
	ListCertificates(ctx context.Context, f CertificateFilter) ([]*WorkloadCertificate, error)
	// RevokeCertificate marks the certificate revoked at at with reason.
	// ErrNotFound when no such serial; ErrConflict when it is already
	// revoked (the first revocation stands and nothing is written).
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, ev AdminEvent) error
	// CertificatesRevokedSince lists certificates revoked at or after since
	// whose NotAfter is after now, oldest revocation first, for revocation
	// views and the CRL.
	CertificatesRevokedSince(ctx context.Context, since, now time.Time) ([]*WorkloadCertificate, error)
	// CountLiveCertificates counts clientID's certificates that are not
	// revoked and whose NotAfter is after now.
	CountLiveCertificates(ctx context.Context, clientID string, now time.Time) (int, error)
	// PurgeCertificates deletes certificates whose NotAfter and join tokens
	// whose ExpiresAt are before before, and returns how many rows went. The
	// admin log keeps their issuance and revocation events.
	PurgeCertificates(ctx context.Context, before time.Time) (int, error)

	// CreateJoinToken stores t (ErrConflict for a known ID, ErrNotFound for
	// an unknown client).
	CreateJoinToken(ctx context.Context, t *JoinToken, ev AdminEvent) error
	GetJoinToken(ctx context.Context, id string) (*JoinToken, error)
	// CountLiveJoinTokens counts clientID's join tokens that are unused and
	// not expired at now.
	CountLiveJoinTokens(ctx context.Context, clientID string, now time.Time) (int, error)
}
