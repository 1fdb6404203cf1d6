// Package authserver is the token service edge: the OAuth 2.0 token endpoint
// for the client_credentials grant (RFC 6749 section 4.4) with
// proof-of-possession binding (RFC 9449 DPoP, RFC 8705 certificate-bound),
// introspection (RFC 7662), revocation (RFC 7009), authorization server
// metadata (RFC 8414) and the JWK Set.
//
// It wires mechanisms together and renders every refusal as an RFC 6749
// section 5.2 error in one place; it holds no crypto and no SQL of its own.
package authserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/keys"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/store"
)

// Paths of the endpoints, relative to the issuer.
const (
	PathToken      = "/oauth2/token"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"
	PathJWKS       = "/oauth2/jwks"
	PathMetadata   = "/.well-known/oauth-authorization-server"
)

// Scopes that unlock the token service's own protected endpoints.
const (
	// ScopeIntrospect lets a resource server introspect any token.
	ScopeIntrospect = "keybound:introspect"
	// ScopeAdmin is the admin identity's scope; it implies ScopeIntrospect.
	ScopeAdmin = "keybound:admin"
)

// Authenticator authenticates the client of a request. Prepare does not
// spend a client assertion; the server calls Result.Commit at the point the
// request succeeds (see clientauth.Authenticator.Prepare).
type Authenticator interface {
	Prepare(ctx context.Context, r clientauth.Request) (*clientauth.Result, error)
}

// TokenLeeway is the clock skew keybound's access-token verifiers allow
// past exp (accesstoken.Verifier.Leeway): the admin API and the gateway
// accept a token until exp + TokenLeeway. The token service is the clock of
// record and ignores it (introspection is inactive from exp on), but a
// revocation must outlive it: one forgotten at exp would let the revoked
// token through every verifier for the rest of the leeway. The verifiers
// must be built with this value.
const TokenLeeway = 30 * time.Second

// revocationMargin is kept on top of TokenLeeway so that a token checked by
// a verifier a moment before exp + TokenLeeway does not find its
// revocation already dropped by a sync running in between.
const revocationMargin = 5 * time.Second

// ProofVerifier checks a DPoP proof.
type ProofVerifier interface {
	Verify(proof string, r dpop.Request) (*dpop.Proof, error)
}

// KeyRing signs tokens and publishes the verification keys.
type KeyRing interface {
	Current() (*keys.SigningKey, error)
	JWKS() []byte
}

// TokenVerifier verifies access tokens this server issued.
type TokenVerifier interface {
	Verify(token string) (*accesstoken.Claims, error)
}

// Revocations records and answers token revocations.
type Revocations interface {
	Revoke(ctx context.Context, t store.RevokedToken) error
	Revoked(jti string) bool
}

// ClientLookup finds a client by id (for introspection's status check).
type ClientLookup interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
}

// NonceSource issues DPoP server nonces (RFC 9449 section 8).
type NonceSource interface {
	Current() string
}

// Settings are the token-issuance rules.
type Settings struct {
	// Issuer is the issuer identifier; endpoints live under it.
	Issuer          string
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
	// DPoPAlgorithms are advertised in metadata.
	DPoPAlgorithms []string
	// AssertionAlgorithms are advertised in metadata.
	AssertionAlgorithms []string
	// StaticSecretsAllowed controls whether client_secret_* is advertised.
	StaticSecretsAllowed bool
}

// Server serves the token service endpoints. All fields are required except
// Nonces (no server nonces) and Log (discard). It is safe for concurrent use
// once built.
type Server struct {
	Settings    Settings
	Auth        Authenticator
	Proofs      ProofVerifier
	Nonces      NonceSource
	Keys        KeyRing
	Tokens      TokenVerifier
	Revocations Revocations
	Clients     ClientLookup
	Metrics     *Metrics
	Log         *slog.Logger
	Now         func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// TokenURL is the absolute token endpoint URL, the htu of DPoP proofs.
func (s *Server) TokenURL() string { return s.Settings.Issuer + PathToken }

// Register adds the endpoints to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc(PathToken, s.handleToken)
	mux.HandleFunc(PathIntrospect, s.handleIntrospect)
	mux.HandleFunc(PathRevoke, s.handleRevoke)
	mux.HandleFunc("GET "+PathJWKS, s.handleJWKS)
	mux.HandleFunc("GET "+PathMetadata, s.handleMetadata)
	// RFC 8414 section 3.1: for an issuer with a path component the
	// metadata lives at the well-known path with the issuer's path
	// appended (https://host/.well-known/oauth-authorization-server/tenant).
	if u, err := url.Parse(s.Settings.Issuer); err == nil {
		if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
			mux.HandleFunc("GET "+PathMetadata+p, s.handleMetadata)
		}
	}
}

// fail renders e, counts it and logs it once with its internal cause.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	e := oauth.As(err)
	if e.Challenge != "" && e.WWWAuthenticate == "" {
		// RFC 7617 section 2: a Basic challenge must name its realm.
		e.WWWAuthenticate = oauth.Challenge(e.Challenge, s.Settings.Issuer, e)
	}
	s.Metrics.rejected(endpoint, e.Code)
	level := slog.LevelInfo
	switch {
	case e.Status == http.StatusServiceUnavailable:
		// A capacity refusal (a full replay cache): the app logs it once
		// per burst; a line per refused request would bury that one.
		level = slog.LevelDebug
	case e.Code == oauth.CodeServerError:
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("endpoint", endpoint), slog.String("error", e.Code), slog.String("error_description", e.Description)}
	if e.Cause != nil {
		attrs = append(attrs, slog.String("cause", e.Cause.Error()))
	}
	s.Log.LogAttrs(r.Context(), level, "request refused", append(attrs, requestAttr(r))...)
	oauth.WriteJSON(w, e)
}
