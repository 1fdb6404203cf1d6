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

// ErrClientNotUsable is returned by CreateCertificate when the client is
// not active (suspended, revoked) or its registration has expired at
// c.IssuedAt. Nothing is written.
var ErrClientNotUsable = errors.New("store: client is not active or its registration has expired")

// ErrRenewedFromRevoked is returned by CreateCertificate for a renewal whose
// certificate c.RenewedFrom is revoked, not on record, or another client's.
// Nothing is written.
var ErrRenewedFromRevoked = errors.New("store: the renewed certificate is revoked, unknown or of another client")

// ErrLimit is returned by CreateCertificate and CreateJoinToken when the
// client already holds as many live certificates or unused join tokens as
// the caller allows. Nothing is written.
var ErrLimit = errors.New("store: limit reached")

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
	// CreateCertificate stores c. Every check below is made in the write
	// transaction that stores c, at c.IssuedAt, because a check made before
	// it races with an admin revoking the client or the certificate being
	// renewed: that revocation revokes the live certificates it sees, and a
	// certificate stored after it would be missing from the CRL.
	//
	//   - The client must exist (else ErrNotFound), be active, and its
	//     registration must not have expired (else ErrClientNotUsable).
	//   - When c.RenewedFrom is set, that certificate must be on record,
	//     belong to c.ClientID and not be revoked (else
	//     ErrRenewedFromRevoked).
	//   - When joinTokenID is not empty the join token is consumed: it must
	//     exist (else ErrNotFound), be bound to c.ClientID, be unused and not
	//     expired at c.IssuedAt (else ErrJoinTokenSpent).
	//   - When maxLive is positive, the client must hold fewer than maxLive
	//     live certificates (CountLiveCertificates at c.IssuedAt), else
	//     ErrLimit; concurrent calls cannot together exceed it. Zero or less
	//     sets no limit.
	//
	// A serial stored before is ErrConflict.
	CreateCertificate(ctx context.Context, c *WorkloadCertificate, joinTokenID string, maxLive int, ev AdminEvent) error
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
	// an unknown client). When maxLive is positive and the client already
	// has maxLive live join tokens (CountLiveJoinTokens at t.CreatedAt) it
	// is ErrLimit, counted in the same transaction so concurrent calls
	// cannot together exceed it; zero or less sets no limit.
	CreateJoinToken(ctx context.Context, t *JoinToken, maxLive int, ev AdminEvent) error
	GetJoinToken(ctx context.Context, id string) (*JoinToken, error)
	// CountLiveJoinTokens counts clientID's join tokens that are unused and
	// not expired at now.
	CountLiveJoinTokens(ctx context.Context, clientID string, now time.Time) (int, error)
}
