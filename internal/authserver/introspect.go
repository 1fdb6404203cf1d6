package authserver

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/store"
)

// introspection is the RFC 7662 section 2.2 response.
type introspection struct {
	Active    bool                      `json:"active"`
	Scope     string                    `json:"scope,omitempty"`
	ClientID  string                    `json:"client_id,omitempty"`
	TokenType string                    `json:"token_type,omitempty"`
	Exp       int64                     `json:"exp,omitempty"`
	Iat       int64                     `json:"iat,omitempty"`
	Nbf       int64                     `json:"nbf,omitempty"`
	Sub       string                    `json:"sub,omitempty"`
	Aud       []string                  `json:"aud,omitempty"`
	Iss       string                    `json:"iss,omitempty"`
	JTI       string                    `json:"jti,omitempty"`
	Cnf       *accesstoken.Confirmation `json:"cnf,omitempty"`
	// keybound's own members: how the token's client authenticated.
	AuthMethod   string `json:"kb_auth_method,omitempty"`
	StaticSecret bool   `json:"kb_static_secret,omitempty"`
}

// authenticateCaller authenticates the client calling introspection or
// revocation with the same methods as the token endpoint. Its assertion is
// spent at once: these endpoints have no refusal a client cures by sending
// the same assertion again.
func (s *Server) authenticateCaller(w http.ResponseWriter, r *http.Request) (*clientauth.Result, map[string][]string, error) {
	form, err := readForm(w, r)
	if err != nil {
		return nil, nil, err
	}
	user, pass, hasBasic, err := basicAuth(r)
	if err != nil {
		return nil, nil, err
	}
	areq := clientauth.Request{Form: form, HasBasic: hasBasic, BasicUser: user, BasicPass: pass}
	if r.TLS != nil {
		areq.PeerCertificates = r.TLS.PeerCertificates
	}
	res, err := s.Auth.Prepare(r.Context(), areq)
	if err != nil {
		return nil, nil, err
	}
	if err := res.Commit(r.Context()); err != nil {
		return nil, nil, err
	}
	return res, form, nil
}

func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	res, form, err := s.authenticateCaller(w, r)
	if err != nil {
		s.fail(w, r, "introspect", err)
		return
	}
	if !slices.Contains(res.Client.Scopes, ScopeIntrospect) && !slices.Contains(res.Client.Scopes, ScopeAdmin) {
		s.fail(w, r, "introspect", oauth.New(oauth.CodeUnauthorizedClient, "introspection needs the "+ScopeIntrospect+" scope in the caller's registration"))
		return
	}
	tok := first(form["token"])
	if tok == "" {
		s.fail(w, r, "introspect", oauth.New(oauth.CodeInvalidRequest, "token is required"))
		return
	}
	out := s.inspect(r, tok)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// inspect answers active only for a token that verifies, is within its
// validity period, is not revoked, and whose client is still usable; every
// doubt is inactive.
func (s *Server) inspect(r *http.Request, tok string) introspection {
	c, err := s.Tokens.Verify(tok)
	if err != nil {
		return introspection{}
	}
	// The verifier allows TokenLeeway of clock skew for resource servers
	// whose clocks may differ from ours. The authorization server is the
	// clock of record (RFC 7662 section 2.2: active means not expired and
	// valid per nbf), so its own answer takes none.
	now := s.now()
	if !now.Before(c.Expiry) || (!c.NotBefore.IsZero() && now.Before(c.NotBefore)) {
		return introspection{}
	}
	if s.Revocations.Revoked(c.JTI) {
		return introspection{}
	}
	cl, err := s.Clients.GetClient(r.Context(), c.ClientID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Log.LogAttrs(r.Context(), slog.LevelError, "introspection client lookup failed", requestAttr(r), slog.String("cause", err.Error()))
		}
		return introspection{}
	}
	if cl.Usable(s.now()) != nil {
		return introspection{}
	}
	tt := "Bearer"
	if c.Confirmation != nil && c.Confirmation.JKT != "" {
		tt = "DPoP"
	}
	// A scope removed from the client since the token was issued is not
	// reported: resource servers relying on introspection stop honouring
	// it at once, as the gateway does.
	var scope []string
	for _, sc := range c.Scope {
		if slices.Contains(cl.Scopes, sc) {
			scope = append(scope, sc)
		}
	}
	out := introspection{
		Active: true, Scope: strings.Join(scope, " "), ClientID: c.ClientID, TokenType: tt,
		Exp: c.Expiry.Unix(), Iat: c.IssuedAt.Unix(),
		Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer, JTI: c.JTI, Cnf: c.Confirmation,
		AuthMethod: c.AuthMethod, StaticSecret: c.StaticSecret,
	}
	// A token without nbf has none to report; the zero time's Unix()
	// would be year 1.
	if !c.NotBefore.IsZero() {
		out.Nbf = c.NotBefore.Unix()
	}
	return out
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	res, form, err := s.authenticateCaller(w, r)
	if err != nil {
		s.fail(w, r, "revoke", err)
		return
	}
	tok := first(form["token"])
	if tok == "" {
		s.fail(w, r, "revoke", oauth.New(oauth.CodeInvalidRequest, "token is required"))
		return
	}
	// RFC 7009 section 2.2: an invalid or expired token is answered 200, as
	// there is nothing left to revoke.
	c, err := s.Tokens.Verify(tok)
	if err == nil {
		if c.ClientID != res.Client.ID && !slices.Contains(res.Client.Scopes, ScopeAdmin) {
			s.fail(w, r, "revoke", oauth.New(oauth.CodeUnauthorizedClient, "this token was not issued to the calling client; only its own client or an admin may revoke it"))
			return
		}
		// Kept until no verifier would accept the token any more, leeway
		// included (TokenLeeway): not merely until its exp.
		until := c.Expiry.Add(TokenLeeway + revocationMargin)
		if err := s.Revocations.Revoke(r.Context(), store.RevokedToken{JTI: c.JTI, ClientID: c.ClientID, RevokedAt: s.now().UTC(), ExpiresAt: until}); err != nil {
			s.fail(w, r, "revoke", oauth.Wrap(oauth.CodeServerError, "the revocation could not be stored; try again", err))
			return
		}
		s.Log.LogAttrs(r.Context(), slog.LevelInfo, "token revoked", requestAttr(r), slog.String("jti", c.JTI), slog.String("client_id", c.ClientID), slog.String("by", res.Client.ID))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// authMethodsSupported lists the methods metadata advertises.
func (s *Server) authMethodsSupported() []string {
	var out []string
	for _, m := range identity.AuthMethods {
		if m.IsStaticSecret() && !s.Settings.StaticSecretsAllowed {
			continue
		}
		out = append(out, string(m))
	}
	return out
}
