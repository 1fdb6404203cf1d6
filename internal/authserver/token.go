package authserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// tokenResponse is RFC 6749 section 5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	resp, err := s.token(r, w)
	if err != nil {
		s.fail(w, r, "token", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(resp)
	s.Metrics.observeToken(time.Since(start))
}

// token runs the issuance steps in the order docs/architecture.md gives.
func (s *Server) token(r *http.Request, w http.ResponseWriter) (*tokenResponse, error) {
	form, err := readForm(w, r)
	if err != nil {
		return nil, err
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return nil, oauth.New(oauth.CodeInvalidRequest, "grant_type is required; machine clients use client_credentials")
	default:
		return nil, oauth.New(oauth.CodeUnsupportedGrantType, "grant_type "+safeName(gt)+" is not supported; use client_credentials")
	}

	// The DPoP header is checked for shape before authentication so a
	// malformed request costs no signature verification.
	proofs := r.Header.Values("DPoP")
	if len(proofs) > 1 {
		return nil, dpopError(oauth.CodeInvalidDPoPProof, "send exactly one DPoP header")
	}

	user, pass, hasBasic, err := basicAuth(r)
	if err != nil {
		return nil, err
	}
	areq := clientauth.Request{Form: form, HasBasic: hasBasic, BasicUser: user, BasicPass: pass}
	if r.TLS != nil {
		areq.PeerCertificates = r.TLS.PeerCertificates
	}
	// The assertion is not spent yet: res.Commit below, once every check
	// passed, so a client told use_dpop_nonce (RFC 9449 section 8) or
	// invalid_scope may retry with the same assertion.
	res, err := s.Auth.Prepare(r.Context(), areq)
	if err != nil {
		return nil, err
	}
	c := res.Client

	scopes, err := grantScopes(c, form.Get("scope"))
	if err != nil {
		return nil, err
	}
	aud, err := s.audiences(c, form["resource"])
	if err != nil {
		return nil, err
	}

	cnf, tokenType, err := s.bind(r, c, res, proofs)
	if err != nil {
		return nil, err
	}

	now := s.now().UTC().Truncate(time.Second)
	life := s.Settings.DefaultLifetime
	if c.TokenLifetime > 0 {
		life = c.TokenLifetime
	}
	life = min(life, s.Settings.MaxLifetime)
	key, err := s.Keys.Current()
	if err != nil {
		return nil, oauth.Wrap(oauth.CodeServerError, "no signing key is available; try again shortly", err)
	}
	claims := accesstoken.Claims{
		Issuer:       s.Settings.Issuer,
		Subject:      c.ID,
		ClientID:     c.ID,
		Audience:     aud,
		Scope:        scopes,
		JTI:          newJTI(),
		IssuedAt:     now,
		NotBefore:    now,
		Expiry:       now.Add(life),
		Confirmation: cnf,
		AuthMethod:   string(res.Method),
		StaticSecret: res.Method.IsStaticSecret(),
	}
	tok, err := accesstoken.Issue(key, claims)
	if errors.Is(err, accesstoken.ErrTooLarge) {
		// The grant, not the server, is at fault: the client can ask for
		// less (RFC 6749 section 5.2, invalid_scope).
		return nil, oauth.Wrap(oauth.CodeInvalidScope, "the granted scopes and audiences make a token larger than resource servers accept; request fewer scope values or resource parameters", err)
	}
	if err != nil {
		return nil, oauth.Wrap(oauth.CodeServerError, "the token could not be signed; try again", err)
	}
	// Last step before the token leaves: spend the assertion. Of two
	// requests carrying it, only one gets here; the signed token of the
	// other is dropped unseen.
	if err := res.Commit(r.Context()); err != nil {
		return nil, err
	}
	binding := "bearer"
	if cnf != nil && cnf.JKT != "" {
		binding = "dpop"
	} else if cnf != nil {
		binding = "mtls"
	}
	s.Metrics.issued(string(res.Method), binding)
	// The issuance record: who got which token, how they proved it, and
	// whether a static secret was involved. Never the token itself.
	s.Log.LogAttrs(r.Context(), slog.LevelInfo, "token issued",
		requestAttr(r),
		slog.String("client_id", c.ID),
		slog.String("jti", claims.JTI),
		slog.String("auth_method", string(res.Method)),
		slog.String("binding", binding),
		slog.Bool("static_secret", claims.StaticSecret),
		slog.String("scope", strings.Join(scopes, " ")),
		slog.Time("exp", claims.Expiry),
	)
	return &tokenResponse{AccessToken: tok, TokenType: tokenType, ExpiresIn: int64(life / time.Second), Scope: strings.Join(scopes, " ")}, nil
}

// grantScopes returns the requested scopes if the client holds them all, or
// every granted scope when none is requested (RFC 6749 section 3.3).
func grantScopes(c *identity.Client, requested string) ([]string, error) {
	want, err := identity.ParseScope(requested)
	if err != nil {
		return nil, oauth.Wrap(oauth.CodeInvalidScope, strings.TrimPrefix(err.Error(), "identity: "), err)
	}
	if len(want) == 0 {
		return slices.Clone(c.Scopes), nil
	}
	for _, sc := range want {
		if !slices.Contains(c.Scopes, sc) {
			return nil, oauth.New(oauth.CodeInvalidScope, "scope "+safeName(sc)+" is not granted to this client; request only registered scopes")
		}
	}
	return want, nil
}

// audiences returns the requested resources (RFC 8707) if all are allowed,
// else the client's registered audiences, else the issuer itself.
func (s *Server) audiences(c *identity.Client, requested []string) ([]string, error) {
	if len(requested) > identity.MaxAudiences {
		return nil, oauth.New(oauth.CodeInvalidTarget, "too many resource parameters")
	}
	if len(requested) == 0 {
		if len(c.Audiences) == 0 {
			return []string{s.Settings.Issuer}, nil
		}
		return slices.Clone(c.Audiences), nil
	}
	var out []string
	for _, res := range requested {
		if !slices.Contains(c.Audiences, res) && !(res == s.Settings.Issuer && len(c.Audiences) == 0) {
			return nil, oauth.New(oauth.CodeInvalidTarget, "resource "+safeName(res)+" is not an audience registered for this client")
		}
		if !slices.Contains(out, res) {
			out = append(out, res)
		}
	}
	return out, nil
}

// bind chooses the token's confirmation (cnf) from the client's registered
// binding and what the request proves. Any doubt refuses.
func (s *Server) bind(r *http.Request, c *identity.Client, res *clientauth.Result, proofs []string) (*accesstoken.Confirmation, string, error) {
	var proof *dpop.Proof
	if len(proofs) == 1 {
		p, err := s.Proofs.Verify(proofs[0], dpop.Request{Method: r.Method, URL: s.TokenURL()})
		if err != nil {
			return nil, "", s.proofError(err)
		}
		proof = p
	}
	switch c.Binding {
	case identity.BindingDPoP:
		if proof == nil {
			return nil, "", dpopError(oauth.CodeInvalidDPoPProof, "this client is registered for DPoP-bound tokens (dpop_bound_access_tokens); send a DPoP proof (RFC 9449 section 4)")
		}
		return &accesstoken.Confirmation{JKT: proof.JKT}, "DPoP", nil
	case identity.BindingMTLS:
		if proof != nil {
			return nil, "", oauth.New(oauth.CodeInvalidRequest, "this client is registered for certificate-bound tokens; do not send a DPoP proof")
		}
		if res.CertThumbprint == "" {
			return nil, "", oauth.New(oauth.CodeInvalidRequest, "this client is registered for certificate-bound tokens (RFC 8705 section 3); present its client certificate on the TLS connection")
		}
		return &accesstoken.Confirmation{X5TS256: res.CertThumbprint}, "Bearer", nil
	case identity.BindingBearer:
		// An explicitly allowed bearer client that still sends a proof gets
		// the stronger, bound token.
		if proof != nil {
			return &accesstoken.Confirmation{JKT: proof.JKT}, "DPoP", nil
		}
		return nil, "Bearer", nil
	default:
		return nil, "", oauth.Wrap(oauth.CodeServerError, "the client's registration is inconsistent", errors.New("unknown binding "+string(c.Binding)))
	}
}

// proofError maps a DPoP verification failure to RFC 9449's token endpoint
// errors (400 with invalid_dpop_proof or use_dpop_nonce, section 5 and 8).
// Only what the client can fix is answered as its fault: a proof that is
// invalid (replays included), or a missing nonce when there is a nonce to
// send. Anything else (a verifier without a replay cache, a replay cache
// that cannot remember, a nonce demanded with no nonce source to hand one
// out) is the server's: server_error, logged, and never a description
// that sends the client off to rebuild a proof that was fine.
func (s *Server) proofError(err error) error {
	if errors.Is(err, dpop.ErrUseNonce) {
		if nonce := s.currentNonce(); nonce != "" {
			e := dpopError(oauth.CodeUseDPoPNonce, "the authorization server requires a DPoP nonce; retry with the nonce in the DPoP-Nonce header")
			e.Nonce = nonce
			e.Cause = err
			return e
		}
		return oauth.Wrap(oauth.CodeServerError, "the DPoP proof could not be checked; try again later", fmt.Errorf("authserver: the proof verifier requires a nonce but no nonce source is configured: %w", err))
	}
	if errors.Is(err, dpop.ErrUnavailable) {
		e := oauth.Wrap(oauth.CodeServerError, "the server cannot check DPoP proofs for reuse right now: its replay cache is full; this is a server capacity problem, not a fault in the request; retry later", err)
		e.Status = http.StatusServiceUnavailable
		return e
	}
	if !errors.Is(err, dpop.ErrInvalidProof) {
		return oauth.Wrap(oauth.CodeServerError, "the DPoP proof could not be checked; try again later", err)
	}
	e := dpopError(oauth.CodeInvalidDPoPProof, strings.TrimPrefix(err.Error(), "dpop: "))
	e.Cause = err
	return e
}

// currentNonce is the nonce to send with use_dpop_nonce, "" when there is
// none to send.
func (s *Server) currentNonce() string {
	if s.Nonces == nil {
		return ""
	}
	return s.Nonces.Current()
}

func dpopError(code, desc string) *oauth.Error {
	e := oauth.New(code, desc)
	e.Status = http.StatusBadRequest
	return e
}

func newJTI() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("authserver: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
