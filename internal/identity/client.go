// Package identity holds the domain types of machine identities: a Client
// (one registered machine identity with its owner, purpose, environment and
// expiry), its authentication method, the binding its tokens must carry, and
// the rules that decide whether a client may be used at a given instant.
//
// It is vocabulary only: no I/O, no storage, no crypto beyond what the
// secret-hash rule needs.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// AuthMethod is a token endpoint authentication method (RFC 7591 section 2,
// RFC 8705 section 2).
type AuthMethod string

const (
	AuthPrivateKeyJWT       AuthMethod = "private_key_jwt"
	AuthTLSClient           AuthMethod = "tls_client_auth"
	AuthSelfSignedTLSClient AuthMethod = "self_signed_tls_client_auth"
	AuthClientSecretBasic   AuthMethod = "client_secret_basic"
	AuthClientSecretPost    AuthMethod = "client_secret_post"
)

// AuthMethods lists every method keybound implements, strongest first.
var AuthMethods = []AuthMethod{AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLSClient, AuthClientSecretBasic, AuthClientSecretPost}

// IsStaticSecret reports whether m authenticates with a shared secret: the
// legacy migration path that reports count.
func (m AuthMethod) IsStaticSecret() bool {
	return m == AuthClientSecretBasic || m == AuthClientSecretPost
}

// IsCertificate reports whether m authenticates with a TLS client certificate.
func (m AuthMethod) IsCertificate() bool {
	return m == AuthTLSClient || m == AuthSelfSignedTLSClient
}

// Valid reports whether m is one of AuthMethods.
func (m AuthMethod) Valid() bool { return slices.Contains(AuthMethods, m) }

// Binding is the proof-of-possession binding a client's access tokens carry.
type Binding string

const (
	// BindingDPoP binds tokens to a DPoP key (RFC 9449, cnf.jkt).
	BindingDPoP Binding = "dpop"
	// BindingMTLS binds tokens to the client certificate (RFC 8705 section 3,
	// cnf["x5t#S256"]).
	BindingMTLS Binding = "mtls"
	// BindingBearer issues unbound bearer tokens. Only allowed when a client
	// is registered with it explicitly; reports count every such token.
	BindingBearer Binding = "bearer"
)

// Valid reports whether b is a known binding.
func (b Binding) Valid() bool { return b == BindingDPoP || b == BindingMTLS || b == BindingBearer }

// Status is a client's lifecycle state.
type Status string

const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	// StatusRevoked is final: a revoked client never becomes active again.
	StatusRevoked Status = "revoked"
)

// Client is one registered machine identity. The zero value is not usable:
// Validate refuses it, and Usable reports it unusable.
type Client struct {
	ID          string `json:"client_id"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	Purpose     string `json:"purpose"`
	Environment string `json:"environment"`
	Vendor      string `json:"vendor,omitempty"`
	// Tags name the applications or projects the identity serves, so
	// offboarding can act on all identities of one application.
	Tags []string `json:"tags,omitempty"`

	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ExpiresAt time.Time `json:"expires_at"`

	Scopes    []string `json:"scopes"`
	Audiences []string `json:"audiences"`

	AuthMethod AuthMethod `json:"token_endpoint_auth_method"`
	// JWKS is the client's public JSON Web Key Set, for private_key_jwt and
	// (with x5c) self_signed_tls_client_auth.
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// TLSSubjectDN is the expected certificate subject for tls_client_auth.
	TLSSubjectDN string `json:"tls_client_auth_subject_dn,omitempty"`
	// TLSSANURI and TLSSANDNS are the alternatives RFC 8705 section 2.1.2 gives.
	TLSSANURI string `json:"tls_client_auth_san_uri,omitempty"`
	TLSSANDNS string `json:"tls_client_auth_san_dns,omitempty"`
	// Secret is the salted hash of a legacy shared secret. Never the secret.
	Secret *SecretHash `json:"-"`

	Binding Binding `json:"binding"`
	// Previous is the credential the last rotation replaced, accepted
	// alongside the current one until Previous.RetiresAt. Nil when no
	// rotation overlap is open or recorded.
	Previous *PreviousCredential `json:"previous_credential,omitempty"`
	// TokenLifetime overrides the server's default access token lifetime; it
	// is capped by the server maximum at issue time. Zero means the default.
	TokenLifetime time.Duration `json:"-"`
}

// PreviousCredential is a credential replaced by a rotation. Only the
// authentication method's own field is set: JWKS for private_key_jwt and
// self_signed_tls_client_auth, the subject or SAN for tls_client_auth, the
// secret hash for a legacy secret.
type PreviousCredential struct {
	JWKS         json.RawMessage `json:"-"`
	TLSSubjectDN string          `json:"-"`
	TLSSANURI    string          `json:"-"`
	TLSSANDNS    string          `json:"-"`
	Secret       *SecretHash     `json:"-"`
	RotatedAt    time.Time       `json:"rotated_at"`
	RetiresAt    time.Time       `json:"retires_at"`
}

// PreviousAt returns the previous credential if it is still accepted at
// now, else nil: once its overlap ends it stops working everywhere, even
// before a sweep removes it from the store.
func (c *Client) PreviousAt(now time.Time) *PreviousCredential {
	if c.Previous == nil || !now.Before(c.Previous.RetiresAt) {
		return nil
	}
	return c.Previous
}

// WithPrevious returns a copy of c whose credential is the previous one, for
// checking a presented credential against it during a rotation overlap; nil
// when no previous credential is accepted at now.
func (c *Client) WithPrevious(now time.Time) *Client {
	p := c.PreviousAt(now)
	if p == nil {
		return nil
	}
	prev := *c
	prev.JWKS, prev.Secret = p.JWKS, p.Secret
	prev.TLSSubjectDN, prev.TLSSANURI, prev.TLSSANDNS = p.TLSSubjectDN, p.TLSSANURI, p.TLSSANDNS
	prev.Previous = nil
	return &prev
}

// VerifySecret checks a presented legacy secret against the current secret
// and, during a rotation overlap, the previous one.
func (c *Client) VerifySecret(secret string, now time.Time) error {
	err := c.Secret.Verify(secret)
	if err == nil {
		return nil
	}
	if p := c.PreviousAt(now); p != nil && p.Secret != nil && p.Secret.Verify(secret) == nil {
		return nil
	}
	return err
}

// Errors returned by Usable. Callers branch on them to pick a wire error.
var (
	ErrSuspended = errors.New("identity: client is suspended")
	ErrRevoked   = errors.New("identity: client is revoked")
	ErrExpired   = errors.New("identity: client has expired")
)

// Usable reports whether c may authenticate at now. It fails closed: any
// status other than active is refused.
func (c *Client) Usable(now time.Time) error {
	switch c.Status {
	case StatusActive:
	case StatusSuspended:
		return ErrSuspended
	case StatusRevoked:
		return ErrRevoked
	default:
		return fmt.Errorf("identity: client has unknown status %q", c.Status)
	}
	if c.ExpiresAt.IsZero() || !now.Before(c.ExpiresAt) {
		return ErrExpired
	}
	return nil
}

// HasScopes reports whether every scope in want is granted to c.
func (c *Client) HasScopes(want []string) bool {
	for _, s := range want {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// ParseScope splits an RFC 6749 section 3.3 scope string. It rejects
// characters the RFC forbids and returns scopes without duplicates, in order.
func ParseScope(s string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		for _, r := range tok {
			if r < 0x21 || r == 0x22 || r == 0x5c || r > 0x7e {
				return nil, fmt.Errorf("identity: scope %q contains a character RFC 6749 section 3.3 forbids", tok)
			}
		}
		if len(tok) > MaxScopeLen {
			return nil, fmt.Errorf("identity: scope %q is longer than %d characters", tok[:16]+"...", MaxScopeLen)
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	if len(out) > MaxScopes {
		return nil, fmt.Errorf("identity: %d scopes given; at most %d are allowed", len(out), MaxScopes)
	}
	return out, nil
}
