// Package protect checks that a request to a protected resource carries a
// valid access token and, on that very request, proves possession of the key
// or certificate the token is bound to (RFC 6750, RFC 9449 section 7,
// RFC 8705 section 3). The admin API uses it today; the gateway builds on
// the same steps.
//
// It fails closed: every doubt is a refusal carrying the RFC 6750/9449
// error code and WWW-Authenticate challenge. It does not decide scopes
// beyond RequireScope, and never logs a token.
package protect

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// MaxAuthorizationBytes bounds the Authorization header; tokens we issue are
// well under 2 KiB.
const MaxAuthorizationBytes = 8 << 10

// TokenVerifier verifies an access token's signature and registered claims.
type TokenVerifier interface {
	Verify(token string) (*accesstoken.Claims, error)
}

// ProofVerifier checks a DPoP proof.
type ProofVerifier interface {
	Verify(proof string, r dpop.Request) (*dpop.Proof, error)
}

// ClientLookup returns a client's current registration.
type ClientLookup interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
}

// CertificateStatus reports whether a client certificate may still be used:
// CheckCert returns an error for one that was revoked or has expired.
type CertificateStatus interface {
	CheckCert(cert *x509.Certificate, now time.Time) error
}

// Checker is the protected-resource check. All fields but Nonces and Now are
// required.
type Checker struct {
	Tokens  TokenVerifier
	Proofs  ProofVerifier
	Revoked func(jti string) bool
	Clients ClientLookup
	// Audience, when set, must appear in the token's aud.
	Audience string
	// Realm is sent in challenges.
	Realm string
	// DPoPAlgorithms are advertised in DPoP challenges (RFC 9449 section 7.1).
	DPoPAlgorithms []string
	// Nonces, when set, supplies the DPoP-Nonce sent with use_dpop_nonce.
	Nonces interface{ Current() string }
	// Certs, when set, is asked about the certificate of every
	// certificate-bound request (the workload CA's revocations and
	// expiry); nil checks only the thumbprint.
	Certs CertificateStatus
	Now   func() time.Time
}

// Caller.Binding values: how the caller proved its credential on this
// request. BindingStaticKey is in statickey.go.
const (
	BindingDPoP   = "dpop"
	BindingMTLS   = "mtls"
	BindingBearer = "bearer"
)

// Caller is who made an accepted request.
type Caller struct {
	Claims *accesstoken.Claims
	Client *identity.Client
	// Binding is dpop, mtls, bearer or static_key.
	Binding string
}

// SenderConstrained reports whether the caller proved possession of the
// key or certificate its token is bound to. Anything else (a bearer token,
// a static key, a binding this version does not know) is not.
func (c *Caller) SenderConstrained() bool {
	return c.Binding == BindingDPoP || c.Binding == BindingMTLS
}

// Check verifies r against url, the absolute URL the client called (the DPoP
// htu). cert is the client certificate of the connection (or one forwarded
// by a trusted proxy), nil if none. It returns the caller or an *oauth.Error
// ready to render.
func (c *Checker) Check(r *http.Request, url string, cert *x509.Certificate) (*Caller, error) {
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		return nil, c.challenge("Bearer", nil)
	}
	if len(authz) > 1 || len(authz[0]) > MaxAuthorizationBytes {
		return nil, c.challenge("Bearer", oauth.New(oauth.CodeInvalidRequest, "send one Authorization header with one access token"))
	}
	scheme, tok, _ := strings.Cut(authz[0], " ")
	tok = strings.TrimSpace(tok)
	isDPoP := strings.EqualFold(scheme, "DPoP")
	if !isDPoP && !strings.EqualFold(scheme, "Bearer") {
		// An unknown scheme carries no credentials this resource accepts:
		// RFC 6750 section 3.1 answers that like a missing token.
		return nil, c.challenge("Bearer", nil)
	}
	if tok == "" {
		return nil, c.challenge("Bearer", oauth.New(oauth.CodeInvalidRequest, "the Authorization header has no token; use Authorization: DPoP <token> or Bearer <token>"))
	}
	sch := "Bearer"
	if isDPoP {
		sch = "DPoP"
	}
	claims, err := c.Tokens.Verify(tok)
	if err != nil {
		return nil, c.challenge(sch, oauth.Wrap(oauth.CodeInvalidToken, strings.TrimPrefix(err.Error(), "accesstoken: "), err))
	}
	if c.Audience != "" && !slices.Contains(claims.Audience, c.Audience) {
		return nil, c.challenge(sch, oauth.New(oauth.CodeInvalidToken, "the token's audience does not include "+c.Audience+"; request a token with resource="+c.Audience))
	}
	if c.Revoked(claims.JTI) {
		return nil, c.challenge(sch, oauth.New(oauth.CodeInvalidToken, "the token has been revoked"))
	}

	caller := &Caller{Claims: claims, Binding: BindingBearer}
	cnf := claims.Confirmation
	switch {
	case cnf != nil && cnf.JKT != "":
		if !isDPoP {
			return nil, c.challenge("DPoP", oauth.New(oauth.CodeInvalidToken, "this token is DPoP-bound; send it as Authorization: DPoP with a DPoP proof"))
		}
		proofs := r.Header.Values("DPoP")
		if len(proofs) != 1 {
			return nil, c.challenge("DPoP", oauth.New(oauth.CodeInvalidDPoPProof, "send exactly one DPoP proof header"))
		}
		// JKT makes the verifier refuse a proof by any other key before it
		// claims the proof's jti: the replay cache is shared by every
		// client, and a token alone must not let anyone fill it.
		p, err := c.Proofs.Verify(proofs[0], dpop.Request{Method: r.Method, URL: url, AccessToken: tok, JKT: cnf.JKT})
		switch {
		case err == nil:
		case errors.Is(err, dpop.ErrUseNonce):
			e := oauth.Wrap(oauth.CodeUseDPoPNonce, "retry with the nonce in the DPoP-Nonce header", err)
			if c.Nonces != nil {
				e.Nonce = c.Nonces.Current()
			}
			return nil, c.challenge("DPoP", e)
		case errors.Is(err, dpop.ErrKeyMismatch):
			return nil, c.challenge("DPoP", oauth.Wrap(oauth.CodeInvalidDPoPProof, wrongKey, err))
		case errors.Is(err, dpop.ErrUnavailable):
			return nil, replayUnavailable(err)
		default:
			return nil, c.challenge("DPoP", oauth.Wrap(oauth.CodeInvalidDPoPProof, strings.TrimPrefix(err.Error(), "dpop: "), err))
		}
		// Checked again: a ProofVerifier other than dpop.Verifier may
		// ignore Request.JKT.
		if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(cnf.JKT)) != 1 {
			return nil, c.challenge("DPoP", oauth.New(oauth.CodeInvalidDPoPProof, wrongKey))
		}
		caller.Binding = BindingDPoP
	case cnf != nil && cnf.X5TS256 != "":
		if isDPoP {
			return nil, c.challenge("Bearer", oauth.New(oauth.CodeInvalidToken, "this token is certificate-bound; send it as Authorization: Bearer over mTLS"))
		}
		if cert == nil {
			return nil, c.challenge("Bearer", oauth.New(oauth.CodeInvalidToken, "this token is certificate-bound; present the client certificate it was issued to"))
		}
		sum := sha256.Sum256(cert.Raw)
		got := base64.RawURLEncoding.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(got), []byte(cnf.X5TS256)) != 1 {
			return nil, c.challenge("Bearer", oauth.New(oauth.CodeInvalidToken, "the client certificate on this connection is not the one the token is bound to"))
		}
		if c.Certs != nil {
			if err := c.Certs.CheckCert(cert, c.now()); err != nil {
				return nil, c.challenge("Bearer", oauth.Wrap(oauth.CodeInvalidToken, "the client certificate this token is bound to has been revoked or has expired", err))
			}
		}
		caller.Binding = BindingMTLS
	default:
		if isDPoP {
			return nil, c.challenge("DPoP", oauth.New(oauth.CodeInvalidToken, "this token is not DPoP-bound; send it as Bearer"))
		}
	}

	cl, err := c.Clients.GetClient(r.Context(), claims.ClientID)
	if err != nil {
		return nil, c.challenge(sch, oauth.Wrap(oauth.CodeInvalidToken, "the token's client is not registered", err))
	}
	if err := cl.Usable(c.now()); err != nil {
		return nil, c.challenge(sch, oauth.Wrap(oauth.CodeInvalidToken, "the token's client is "+usableWord(err),
			&UnusableClient{ClientID: cl.ID, Owner: cl.Owner, Err: err}))
	}
	caller.Client = cl
	return caller, nil
}

// wrongKey describes a DPoP proof by a key other than the token's.
const wrongKey = "the proof is signed by a key other than the one the token is bound to"

// replayUnavailable is the answer to a request whose DPoP proof could not
// be checked for replay because the server's replay cache is full (cause
// wraps dpop.ErrUnavailable): 503 server_error, with no challenge, since
// the credentials may be fine. It says plainly that this is the server's
// capacity, so that a client retries later instead of minting fresh proofs
// and an operator does not go looking for a replay attack.
func replayUnavailable(cause error) *oauth.Error {
	e := oauth.Wrap(oauth.CodeServerError, "the server cannot check DPoP proofs for reuse right now: its replay cache is full. This is a server capacity problem, not a fault in the request; retry later", cause)
	e.Status = http.StatusServiceUnavailable
	return e
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// RequireScope refuses a caller lacking any of scopes (RFC 6750 section 3.1).
func (c *Checker) RequireScope(caller *Caller, scopes ...string) error {
	if s := MissingScope(caller, scopes); s != "" {
		return c.Refuse(caller, http.StatusForbidden, oauth.CodeInsufficientScope, ScopeRefusal(caller, s, "this endpoint needs the "+s+" scope"))
	}
	return nil
}

// Refuse is the refusal of a caller Check accepted but the resource will
// not serve (a scope, audience or assurance floor it lacks): the error with
// status and the same challenge, realm and DPoP algs included, that Check's
// own refusals carry, in the scheme the caller used.
func (c *Checker) Refuse(caller *Caller, status int, code, desc string) *oauth.Error {
	sch := "Bearer"
	if caller.Binding == BindingDPoP {
		sch = "DPoP"
	}
	e := c.challenge(sch, oauth.New(code, desc))
	e.Status = status
	return e
}

// MissingScope returns the first of want that the caller may not use, or
// "". A scope must be in the token and, when the caller's client is known,
// still granted to it: a scope removed from an identity (downscoping)
// stops working at once, not when the tokens carrying it expire.
func MissingScope(caller *Caller, want []string) string {
	for _, s := range want {
		if !slices.Contains(caller.Claims.Scope, s) || caller.Client != nil && !slices.Contains(caller.Client.Scopes, s) {
			return s
		}
	}
	return ""
}

// ScopeRefusal is the error description for a scope MissingScope named:
// need when the token lacks it, or that it was removed from the identity.
func ScopeRefusal(caller *Caller, scope, need string) string {
	if slices.Contains(caller.Claims.Scope, scope) {
		return "the " + scope + " scope has been removed from this identity since the token was issued"
	}
	return need
}

// ReasonClientExpired is the audit reason of a request whose credential
// was genuine but whose identity had expired: the "expired but still
// used" signal the posture report counts.
const ReasonClientExpired = "client_expired"

// UnusableClient is the cause of a refusal whose credential was genuine
// but whose client may not be used (suspended, revoked or expired): the
// audit trail records who tried, so expired-but-still-used identities
// and callers of suspended ones can be found. Err wraps the identity
// sentinel (identity.ErrExpired, ...).
type UnusableClient struct {
	ClientID string
	Owner    string
	Err      error
}

func (e *UnusableClient) Error() string { return "client " + e.ClientID + ": " + e.Err.Error() }
func (e *UnusableClient) Unwrap() error { return e.Err }

func usableWord(err error) string {
	switch {
	case errors.Is(err, identity.ErrSuspended):
		return "suspended"
	case errors.Is(err, identity.ErrRevoked):
		return "revoked"
	case errors.Is(err, identity.ErrExpired):
		return "expired"
	}
	return "not usable"
}

// challenge attaches a WWW-Authenticate header to e (RFC 6750 section 3,
// RFC 9449 section 7.1). A nil e is a request with no credentials, which
// RFC 6750 says gets a challenge without an error code.
func (c *Checker) challenge(scheme string, e *oauth.Error) *oauth.Error {
	if e == nil {
		e = &oauth.Error{Status: http.StatusUnauthorized}
	}
	if e.Status == 0 || e.Status == http.StatusBadRequest && e.Code != oauth.CodeInvalidRequest {
		e.Status = http.StatusUnauthorized
	}
	var params []string
	if scheme == "DPoP" && len(c.DPoPAlgorithms) > 0 {
		params = []string{"algs", strings.Join(c.DPoPAlgorithms, " ")}
	}
	e.WWWAuthenticate = oauth.Challenge(scheme, c.Realm, e, params...)
	return e
}

// PeerCertificate returns the leaf client certificate of r's TLS connection,
// or nil.
func PeerCertificate(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}
