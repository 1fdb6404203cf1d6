// Package clientauth authenticates OAuth clients at the token endpoint: it
// decides which client a token request comes from and whether the request
// proves it, by the one method the client registered: private_key_jwt
// (RFC 7523 section 2.2, RFC 7521 section 4.2), tls_client_auth and
// self_signed_tls_client_auth (RFC 8705 section 2), or a legacy shared secret
// (client_secret_basic or client_secret_post, RFC 6749 section 2.3.1) when
// the server still allows those.
//
// It does not parse HTTP (the caller hands it the parsed form, the Basic
// credentials and the peer certificates), it does not decide scopes,
// audiences or token binding, and it never logs: every refusal is an
// *oauth.Error whose Description tells the client what to fix and whose Cause
// keeps the internal reason for the one place that logs.
package clientauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// Clients looks up a registered client by its client_id.
type Clients interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
}

// ReplayCache remembers the jti of every accepted client assertion until the
// assertion expires (RFC 7523 section 3, item 7). Claim records (clientID,
// jti) and reports true if it was not already recorded; it must be atomic
// across every server that shares the cache. The pair is passed apart so
// that no client can collide with another client's jti by choosing its id.
// An error refuses the request.
type ReplayCache interface {
	Claim(ctx context.Context, clientID, jti string, until time.Time) (bool, error)
}

// ReplayChecker is a ReplayCache that can also tell, without claiming,
// whether a jti is already spent. Prepare uses it when the cache has it,
// so a replayed assertion is refused before the request's other checks
// run: otherwise their answers (a scope or an audience the client lacks)
// would tell whoever replays a captured assertion what the client holds.
type ReplayChecker interface {
	Seen(ctx context.Context, clientID, jti string) bool
}

// Request is what the token endpoint read from one HTTP request.
//
// It holds secrets (the Basic password, client_secret and client_assertion in
// Form); LogValue redacts them.
type Request struct {
	// Form is the parsed application/x-www-form-urlencoded body.
	Form url.Values
	// HasBasic is true when an Authorization: Basic header was sent;
	// BasicUser and BasicPass are its client_id and client_secret, already
	// form-URL-decoded as RFC 6749 section 2.3.1 requires.
	HasBasic             bool
	BasicUser, BasicPass string
	// PeerCertificates is the certificate chain the client presented in the
	// TLS handshake, leaf first, as tls.ConnectionState.PeerCertificates
	// holds it. The listener must request a certificate without verifying it
	// (tls.RequestClientCert), so that self-signed certificates reach this
	// package; tls_client_auth verifies the chain here against
	// Authenticator.ClientCAs.
	PeerCertificates []*x509.Certificate
}

// LogValue keeps secrets out of logs: it reports which parameters were sent,
// never their values.
func (r Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("basic", r.HasBasic),
		slog.Bool("client_secret", r.Form.Has("client_secret")),
		slog.Bool("client_assertion", r.Form.Has("client_assertion")),
		slog.Int("peer_certificates", len(r.PeerCertificates)),
	)
}

// Result is an authenticated client.
type Result struct {
	Client *identity.Client
	Method identity.AuthMethod
	// AssertionJTI is the jti of the accepted private_key_jwt assertion.
	AssertionJTI string
	// CertThumbprint is the base64url SHA-256 of the leaf certificate's DER
	// (RFC 8705 section 3.1, x5t#S256), set whenever the client presented a
	// certificate, whatever the method, so mTLS-bound tokens can be issued.
	CertThumbprint string

	// pending is the assertion jti Prepare accepted but did not record; nil
	// once Commit recorded it, and for methods without one.
	pending *pendingClaim
}

// pendingClaim is a replay-cache claim Prepare deferred to Commit.
type pendingClaim struct {
	replay        ReplayCache
	clientID, jti string
	until         time.Time
	now           func() time.Time
}

// Commit records the accepted assertion's jti (RFC 7523 section 3, item 7),
// after which the assertion can never authenticate again. A caller of
// Prepare calls it once the request has passed every check of its own and
// before it acts on the result (issues a token): a request refused for a
// reason the client can cure by retrying, above all use_dpop_nonce (RFC
// 9449 section 8), must not burn an assertion the client may resend.
//
// The claim is atomic, so of two requests carrying one assertion at most
// one commits; the other gets invalid_client with ErrReplayed as the cause.
// A replay-cache failure is a server_error. Commit does nothing for a
// Result with no assertion or one already committed. It must not be called
// concurrently on one Result.
func (r *Result) Commit(ctx context.Context) error {
	p := r.pending
	if p == nil {
		return nil
	}
	fresh, err := p.replay.Claim(ctx, p.clientID, p.jti, p.until)
	switch {
	case errors.Is(err, ErrReplayCapacity):
		e := oauth.Wrap(oauth.CodeServerError, "the server cannot record client assertions right now: its replay cache is full; this is a server capacity problem, not a fault in the request; retry later", err)
		e.Status = http.StatusServiceUnavailable
		return e
	case err != nil:
		return serverError(fmt.Errorf("clientauth: claim jti: %w", err))
	case !fresh && !p.now().Before(p.until):
		// Prepare accepted it at its last moment and the request took
		// longer than the cache's margin: an expiry, not a replay.
		return invalidClient("the assertion expired while the request was served; sign a new assertion", ErrBadCredential)
	case !fresh:
		return invalidClient("assertion jti was already used; sign a new assertion with a fresh jti for every request", ErrReplayed)
	}
	r.pending = nil
	return nil
}

// Sentinel causes. They are the Cause (possibly wrapped) of the *oauth.Error
// Authenticate returns, so callers can branch and count with errors.Is.
var (
	ErrUnknownClient = errors.New("clientauth: unknown client")
	ErrReplayed      = errors.New("clientauth: assertion jti was already used")
	ErrMethod        = errors.New("clientauth: client used a method it did not register")
	ErrSecretsOff    = errors.New("clientauth: static client secrets are disabled")
	ErrBadCredential = errors.New("clientauth: credential does not prove the client")
	// ErrReplayCapacity is what a ReplayCache with no room left returns
	// (wrapped) from Claim: the jti cannot be remembered, so the assertion
	// is refused, as a server capacity problem (503), not as a replay.
	ErrReplayCapacity = errors.New("clientauth: the assertion replay cache is full")
)

// WorkloadCerts is keybound's workload CA as client authentication sees it.
type WorkloadCerts interface {
	// ClientOf returns the client a certificate of the workload CA was
	// issued to, and false for any other certificate. It checks no
	// signature: it is asked only about certificates whose verified chain
	// IssuedBy accepted.
	ClientOf(cert *x509.Certificate) (string, bool)
	// IssuedBy reports whether a verified chain (leaf first, root last) is
	// the workload CA's. A chain through another trusted CA
	// (client_ca_file) is not, whatever issuer name it carries.
	IssuedBy(chain []*x509.Certificate) bool
	// CheckCert returns an error for a certificate that was revoked or is
	// outside its validity period, nil otherwise.
	CheckCert(cert *x509.Certificate, now time.Time) error
}

// Authenticator authenticates token-endpoint clients.
//
// The zero value fails closed: with no Clients it refuses every request;
// with no Replay or no Audiences it refuses private_key_jwt; with no
// ClientCAs it refuses tls_client_auth; and static secrets are off unless
// AllowStaticSecrets is set. Fields must not change after first use;
// Authenticate is then safe for concurrent use.
type Authenticator struct {
	Clients Clients
	// NotFound is the error Clients returns (possibly wrapped) for an unknown
	// client id; such a lookup is answered invalid_client. Any other lookup
	// error is answered server_error. Both refuse.
	NotFound error
	Replay   ReplayCache
	// Audiences lists the values accepted in a client assertion's aud: the
	// issuer identifier and the token endpoint URL(s) (RFC 7523 section 3,
	// item 3). Empty refuses every assertion.
	Audiences []string
	// Algorithms is the JWS alg allow-list for client assertions. Nil means
	// DefaultAlgorithms. Anything outside the asymmetric algorithms this
	// package implements (none, HS256, ...) is ignored, so a client's public
	// key can never be used as an HMAC secret.
	Algorithms []string
	// MaxAssertionLifetime bounds exp-now and exp-iat of an assertion.
	// Zero means DefaultMaxAssertionLifetime.
	MaxAssertionLifetime time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; negative means none.
	Leeway time.Duration
	// ClientCAs are the roots tls_client_auth chains must verify to. Nil
	// refuses tls_client_auth.
	ClientCAs *x509.CertPool
	// AllowStaticSecrets is the server-wide switch for client_secret_basic
	// and client_secret_post. False refuses them even for clients registered
	// with them.
	AllowStaticSecrets bool
	// Workload, when set, is keybound's workload CA: a certificate it
	// issued authenticates (tls_client_auth) the client it was issued to
	// and no other, and a revoked or expired one is refused whatever the
	// method. Nil: no workload CA.
	Workload WorkloadCerts
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	keySets  keySetCache
	chains   chainCache
	subjects subjectCache
}

// Form parameters (RFC 6749 section 2.3.1, RFC 7521 section 4.2).
const (
	paramClientID            = "client_id"
	paramClientSecret        = "client_secret"
	paramClientAssertion     = "client_assertion"
	paramClientAssertionType = "client_assertion_type"
)

// JWTBearerAssertionType is the only client_assertion_type accepted
// (RFC 7523 section 2.2).
const JWTBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Authenticate identifies the client r comes from and checks its proof.
//
// Exactly one method may be used (RFC 6749 section 2.3): Basic credentials,
// a client_secret in the form, or a client_assertion. A presented TLS client
// certificate is not a method by itself: it authenticates the client only
// when no other method is used and the client registered a certificate
// method (RFC 8705 section 2, with client_id in the form), so a client may
// use private_key_jwt over mTLS to get certificate-bound tokens.
//
// The method must be the one the client registered, and the client must be
// usable now. Every refusal is an *oauth.Error: invalid_request for a
// malformed request, invalid_client (401, with a Basic challenge when Basic
// was used, RFC 6749 section 5.2) for failed authentication, server_error
// when the server cannot decide.
//
// Authenticate records a private_key_jwt assertion's jti before it returns,
// so the assertion is spent whatever the caller does next; it is Prepare
// followed by Result.Commit.
func (a *Authenticator) Authenticate(ctx context.Context, r Request) (*Result, error) {
	res, err := a.Prepare(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := res.Commit(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// Prepare is Authenticate without recording the assertion jti: every check
// is made, but the assertion stays usable until the caller calls
// Result.Commit. A caller that answers a request on the strength of an
// uncommitted Result lets one assertion be used many times; the token
// endpoint commits just before it issues, so that a refusal the client can
// cure by retrying with the same assertion (a DPoP nonce, a scope, a
// binding) does not spend it.
func (a *Authenticator) Prepare(ctx context.Context, r Request) (*Result, error) {
	res, err := a.authenticate(ctx, r)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) && oe.Code == oauth.CodeInvalidClient && r.HasBasic {
			oe.Challenge = "Basic"
		}
		return nil, err
	}
	if len(r.PeerCertificates) > 0 {
		// Checked on every request, after the proof, outside the chain
		// cache: a revocation applies at once, and a token is never bound
		// to a certificate that may no longer be used.
		if a.Workload != nil {
			if err := a.Workload.CheckCert(r.PeerCertificates[0], a.now()); err != nil {
				return nil, invalidClient("the client certificate has been revoked or has expired; renew it or enroll again", fmt.Errorf("%w: %w", ErrBadCredential, err))
			}
		}
		res.CertThumbprint = certThumbprint(r.PeerCertificates[0])
	}
	return res, nil
}

func (a *Authenticator) authenticate(ctx context.Context, r Request) (*Result, error) {
	if a.Clients == nil {
		return nil, serverError(errors.New("clientauth: no client store configured"))
	}
	formID, err := single(r.Form, paramClientID)
	if err != nil {
		return nil, err
	}
	secret, err := single(r.Form, paramClientSecret)
	if err != nil {
		return nil, err
	}
	assertion, err := single(r.Form, paramClientAssertion)
	if err != nil {
		return nil, err
	}
	assertionType, err := single(r.Form, paramClientAssertionType)
	if err != nil {
		return nil, err
	}
	if len(formID) > MaxClientIDLen {
		return nil, invalidRequest(fmt.Sprintf("client_id is longer than %d characters", MaxClientIDLen), nil)
	}

	methods := 0
	if r.HasBasic {
		methods++
	}
	if secret != "" {
		methods++
	}
	if assertion != "" || assertionType != "" {
		methods++
	}
	if methods > 1 {
		return nil, invalidRequest("the request uses more than one client authentication method; use exactly one (RFC 6749 section 2.3)", nil)
	}

	switch {
	case assertion != "" || assertionType != "":
		return a.privateKeyJWT(ctx, formID, assertionType, assertion)
	case r.HasBasic:
		return a.clientSecret(ctx, identity.AuthClientSecretBasic, formID, r.BasicUser, r.BasicPass)
	case secret != "":
		return a.clientSecret(ctx, identity.AuthClientSecretPost, formID, formID, secret)
	case formID == "":
		return nil, invalidClient("the request carries no client authentication; authenticate with private_key_jwt, or send client_id with a TLS client certificate", nil)
	default:
		return a.certificate(ctx, formID, r.PeerCertificates)
	}
}

// lookup returns the client id names and checks that it registered method.
func (a *Authenticator) lookup(ctx context.Context, id string, method identity.AuthMethod) (*identity.Client, error) {
	c, err := a.getClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.AuthMethod != method {
		return nil, invalidClient(fmt.Sprintf("the client is registered for %s and must authenticate with it, not %s", registered(c.AuthMethod), method),
			fmt.Errorf("%w: registered %q, used %q", ErrMethod, c.AuthMethod, method))
	}
	return c, nil
}

// getClient returns the client id names. It fails closed: a nil client is
// unknown, and a store failure is a server_error.
func (a *Authenticator) getClient(ctx context.Context, id string) (*identity.Client, error) {
	if len(id) > MaxClientIDLen {
		return nil, invalidClient(fmt.Sprintf("the client id is longer than %d characters", MaxClientIDLen), nil)
	}
	c, err := a.Clients.GetClient(ctx, id)
	switch {
	case err != nil && a.NotFound != nil && errors.Is(err, a.NotFound):
		return nil, invalidClient("the client is not registered", fmt.Errorf("%w: %w", ErrUnknownClient, err))
	case err != nil:
		return nil, serverError(fmt.Errorf("clientauth: look up client: %w", err))
	case c == nil:
		return nil, invalidClient("the client is not registered", ErrUnknownClient)
	}
	return c, nil
}

// usable reports a client that proved itself but may not get tokens now. It
// runs after the proof so that an unauthenticated caller learns nothing about
// a client's state.
func (a *Authenticator) usable(c *identity.Client) error {
	err := c.Usable(a.now())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, identity.ErrSuspended):
		return invalidClient("the client is suspended; ask its owner to reactivate it", err)
	case errors.Is(err, identity.ErrRevoked):
		return invalidClient("the client is revoked and cannot authenticate again; register a new client", err)
	case errors.Is(err, identity.ErrExpired):
		return invalidClient("the client registration has expired; ask its owner to renew it", err)
	default:
		return invalidClient("the client is not active", err)
	}
}

func registered(m identity.AuthMethod) string {
	if m == "" {
		return "no method"
	}
	return string(m)
}

// checkFormID enforces that a client_id in the form names the client the
// credential proved (RFC 6749 section 2.3.1, RFC 7521 section 4.2).
func checkFormID(formID, id string) error {
	if formID != "" && formID != id {
		return invalidClient("client_id does not name the client the credential authenticates", ErrBadCredential)
	}
	return nil
}

// single returns the one value of key, or "" when it is absent or empty
// (RFC 6749 section 3.1: a parameter without a value is treated as omitted).
// A repeated parameter is invalid_request (RFC 6749 section 3.2).
func single(form url.Values, key string) (string, error) {
	v := form[key]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	default:
		return "", invalidRequest(key+" is repeated; send it once", nil)
	}
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func certThumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func invalidClient(desc string, cause error) *oauth.Error {
	return oauth.Wrap(oauth.CodeInvalidClient, desc, cause)
}

func invalidRequest(desc string, cause error) *oauth.Error {
	return oauth.Wrap(oauth.CodeInvalidRequest, desc, cause)
}

func serverError(cause error) *oauth.Error {
	return oauth.Wrap(oauth.CodeServerError, "the server could not authenticate the client; try again later", cause)
}
