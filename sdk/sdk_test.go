package sdk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/oauth"
)

const testClientID = "svc-billing"

// clock is an injectable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// replayCache is a hand-written dpop.ReplayCache.
type replayCache struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *replayCache) Claim(key string, _ time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[key] {
		return false
	}
	r.seen[key] = true
	return true
}

// nonceSource is a hand-written dpop.NonceSource. With rotate set, every
// Current call issues a new nonce and only the newest is valid, which is a
// server that always demands a new nonce.
type nonceSource struct {
	mu     sync.Mutex
	n      int
	cur    string
	rotate bool
}

func (s *nonceSource) Valid(n string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return n != "" && n == s.cur && !s.rotate
}

func (s *nonceSource) Current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == "" || s.rotate {
		s.n++
		s.cur = fmt.Sprintf("nonce-%d", s.n)
	}
	return s.cur
}

// recorder keeps the bytes of every request a fake server received.
type recorder struct {
	mu   sync.Mutex
	reqs [][]byte
}

func (r *recorder) record(t testing.TB, req *http.Request) []byte {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Errorf("read body: %v", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		t.Errorf("dump request: %v", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.reqs = append(r.reqs, dump)
	r.mu.Unlock()
	return body
}

func (r *recorder) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// fakeAS is a token endpoint that checks what the SDK sends as the keybound
// server would: the form, the client assertion's signature and claims, and
// the DPoP proof.
type fakeAS struct {
	t         testing.TB
	srv       *httptest.Server
	clock     *clock
	clientPub crypto.PublicKey // nil: expect tls_client_auth
	kid       string
	scopes    string
	resources []string
	dpop      *dpop.Verifier // nil: expect no DPoP header
	expiresIn int64
	issueType string // token_type to issue; default DPoP when dpop is set
	fail      *oauth.Error
	rawFail   func(w http.ResponseWriter) // a non-OAuth failure
	hold      chan struct{}               // when set, responses wait for it

	rec      recorder
	requests atomic.Int64
	tokens   atomic.Int64
	mu       sync.Mutex
	jtis     map[string]bool
	jkts     []string
}

func newFakeAS(t testing.TB, c *clock, clientPub crypto.PublicKey, kid string) *fakeAS {
	as := &fakeAS{t: t, clock: c, clientPub: clientPub, kid: kid, expiresIn: 300, jtis: map[string]bool{}}
	as.srv = httptest.NewTLSServer(http.HandlerFunc(as.serve))
	t.Cleanup(as.srv.Close)
	return as
}

func (as *fakeAS) tokenURL() string { return as.srv.URL + "/oauth/token" }

func (as *fakeAS) withDPoP(nonces dpop.NonceSource) *fakeAS {
	as.dpop = &dpop.Verifier{Replay: &replayCache{}, Now: as.clock.Now, Nonce: nonces}
	return as
}

func (as *fakeAS) serve(w http.ResponseWriter, r *http.Request) {
	t := as.t
	as.requests.Add(1)
	body := as.rec.record(t, r)
	if as.hold != nil {
		<-as.hold
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
		t.Errorf("token request %s %s", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", ct)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Errorf("form: %v", err)
	}
	if got := form.Get("grant_type"); got != "client_credentials" {
		t.Errorf("grant_type = %q", got)
	}
	if got := form.Get("client_id"); got != testClientID {
		t.Errorf("client_id = %q", got)
	}
	if got := form.Get("scope"); got != as.scopes {
		t.Errorf("scope = %q, want %q", got, as.scopes)
	}
	if got := form["resource"]; !slices.Equal(got, as.resources) {
		t.Errorf("resource = %q, want %q", got, as.resources)
	}
	if as.clientPub != nil {
		as.checkAssertion(form)
	} else {
		if form.Has("client_assertion") || form.Has("client_assertion_type") {
			t.Errorf("mTLS request carries an assertion")
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) != 1 {
			t.Errorf("mTLS request without a client certificate")
		}
	}

	tokenType := "Bearer"
	if as.dpop != nil {
		tokenType = "DPoP"
		proof := r.Header.Get("DPoP")
		p, err := as.dpop.Verify(proof, dpop.Request{Method: r.Method, URL: "https://" + r.Host + r.URL.Path})
		switch {
		case errors.Is(err, dpop.ErrUseNonce):
			oauth.WriteJSON(w, &oauth.Error{Code: oauth.CodeUseDPoPNonce, Description: "send the nonce", Status: http.StatusBadRequest, Nonce: as.dpop.Nonce.Current()})
			return
		case err != nil:
			t.Errorf("token endpoint DPoP proof: %v", err)
			oauth.WriteJSON(w, oauth.New(oauth.CodeInvalidDPoPProof, err.Error()))
			return
		}
		as.mu.Lock()
		as.jkts = append(as.jkts, p.JKT)
		as.mu.Unlock()
	} else if r.Header.Get("DPoP") != "" {
		t.Errorf("DPoP proof sent although DPoP is off")
	}
	if as.issueType != "" {
		tokenType = as.issueType
	}
	if as.fail != nil {
		oauth.WriteJSON(w, as.fail)
		return
	}
	if as.rawFail != nil {
		as.rawFail(w)
		return
	}
	n := as.tokens.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": fmt.Sprintf("at-%d", n),
		"token_type":   tokenType,
		"expires_in":   as.expiresIn,
		"scope":        as.scopes,
	})
}

func (as *fakeAS) checkAssertion(form url.Values) {
	t := as.t
	if got := form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Errorf("client_assertion_type = %q", got)
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256})
	if err != nil {
		t.Errorf("assertion: %v", err)
		return
	}
	h := tok.Headers[0]
	if h.KeyID != as.kid {
		t.Errorf("assertion kid = %q, want %q", h.KeyID, as.kid)
	}
	if want, _ := algorithmFor(as.clientPub); h.Algorithm != string(want) {
		t.Errorf("assertion alg = %q, want %q", h.Algorithm, want)
	}
	var c jwt.Claims
	if err := tok.Claims(as.clientPub, &c); err != nil {
		t.Errorf("assertion signature: %v", err)
		return
	}
	now := as.clock.Now()
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testClientID, Subject: testClientID, AnyAudience: jwt.Audience{as.tokenURL()}, Time: now}, 0); err != nil {
		t.Errorf("assertion claims: %v", err)
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) != 60*time.Second || !c.IssuedAt.Time().Equal(now) {
		t.Errorf("assertion iat/exp = %v/%v, want now and now+60s", c.IssuedAt, c.Expiry)
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if c.ID == "" || as.jtis[c.ID] {
		t.Errorf("assertion jti %q empty or reused", c.ID)
	}
	as.jtis[c.ID] = true
}

// fakeRS is a resource server that checks the Authorization and DPoP headers
// and, when nonces is set, demands a DPoP nonce.
type fakeRS struct {
	t        testing.TB
	srv      *httptest.Server
	dpop     *dpop.Verifier
	rec      recorder
	requests atomic.Int64
	mu       sync.Mutex
	bodies   []string
	auth     []string
}

func newFakeRS(t testing.TB, c *clock, nonces dpop.NonceSource) *fakeRS {
	rs := &fakeRS{t: t, dpop: &dpop.Verifier{Replay: &replayCache{}, Now: c.Now, Nonce: nonces}}
	rs.srv = httptest.NewTLSServer(http.HandlerFunc(rs.serve))
	t.Cleanup(rs.srv.Close)
	return rs
}

func (rs *fakeRS) serve(w http.ResponseWriter, r *http.Request) {
	rs.requests.Add(1)
	body := rs.rec.record(rs.t, r)
	authz := r.Header.Get("Authorization")
	rs.mu.Lock()
	rs.bodies = append(rs.bodies, string(body))
	rs.auth = append(rs.auth, authz)
	rs.mu.Unlock()
	scheme, token, _ := strings.Cut(authz, " ")
	switch scheme {
	case "Bearer":
		if r.Header.Get("DPoP") != "" {
			rs.t.Errorf("Bearer request carries a DPoP proof")
		}
	case "DPoP":
		_, err := rs.dpop.Verify(r.Header.Get("DPoP"), dpop.Request{Method: r.Method, URL: "https://" + r.Host + r.URL.Path, AccessToken: token})
		if errors.Is(err, dpop.ErrUseNonce) {
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			w.Header().Set("DPoP-Nonce", rs.dpop.Nonce.Current())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err != nil {
			rs.t.Errorf("resource DPoP proof: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	default:
		rs.t.Errorf("Authorization = %q", authz)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	io.WriteString(w, "ok "+token)
}

// setup is one client against one fake AS.
type setup struct {
	clock *clock
	key   *ecdsa.PrivateKey
	as    *fakeAS
	cfg   *Config
}

func newSetup(t testing.TB, dpopOn bool, asNonces dpop.NonceSource) *setup {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := newClock()
	as := newFakeAS(t, c, key.Public(), "k1")
	as.scopes = "invoices:read invoices:write"
	as.resources = []string{"https://api.example.com/", "https://files.example.com/"}
	if dpopOn {
		as.withDPoP(asNonces)
	}
	cfg := &Config{
		TokenURL:   as.tokenURL(),
		ClientID:   testClientID,
		Key:        key,
		KeyID:      "k1",
		Scopes:     []string{"invoices:read", "invoices:write"},
		Resources:  as.resources,
		DPoP:       dpopOn,
		HTTPClient: as.srv.Client(),
		Now:        c.Now,
	}
	return &setup{clock: c, key: key, as: as, cfg: cfg}
}

func TestTokenFetchedAndCached(t *testing.T) {
	for _, dpopOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("dpop=%v", dpopOn), func(t *testing.T) {
			s := newSetup(t, dpopOn, nil)
			ts := s.cfg.TokenSource(context.Background())
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			wantType := map[bool]string{false: "Bearer", true: "DPoP"}[dpopOn]
			if tok.AccessToken != "at-1" || tok.TokenType != wantType || !tok.Expiry.Equal(s.clock.Now().Add(300*time.Second)) {
				t.Errorf("token = %q %q %v", tok.AccessToken, tok.TokenType, tok.Expiry)
			}
			if got := tok.Extra("scope"); got != "invoices:read invoices:write" {
				t.Errorf("scope extra = %v", got)
			}
			s.clock.Advance(200 * time.Second)
			tok2, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok2.AccessToken != "at-1" {
				t.Errorf("second token = %q, want the cached at-1", tok2.AccessToken)
			}
			if n := s.as.requests.Load(); n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
		})
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn int64
		cachedAt  time.Duration // still cached at this age
		refreshAt time.Duration // refreshed at this age
	}{
		{"long token refreshes 30s early", 3600, 3569 * time.Second, 3571 * time.Second},
		{"short token refreshes at 90% of lifetime", 60, 53 * time.Second, 54 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, false, nil)
			s.as.expiresIn = tt.expiresIn
			ts := s.cfg.TokenSource(context.Background())
			if _, err := ts.Token(); err != nil {
				t.Fatal(err)
			}
			s.clock.Advance(tt.cachedAt)
			if tok, _ := ts.Token(); tok.AccessToken != "at-1" {
				t.Errorf("at %v: token = %q, want cached at-1", tt.cachedAt, tok.AccessToken)
			}
			s.clock.Advance(tt.refreshAt - tt.cachedAt)
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "at-2" {
				t.Errorf("at %v: token = %q, want refreshed at-2", tt.refreshAt, tok.AccessToken)
			}
			if n := s.as.requests.Load(); n != 2 {
				t.Errorf("token requests = %d, want 2", n)
			}
		})
	}
}

func TestFailedEarlyRefreshKeepsValidToken(t *testing.T) {
	s := newSetup(t, false, nil)
	ts := s.cfg.TokenSource(context.Background())
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	s.as.fail = oauth.New(oauth.CodeServerError, "down")
	s.clock.Advance(280 * time.Second) // in the margin, still valid
	tok, err := ts.Token()
	if err != nil || tok.AccessToken != "at-1" {
		t.Fatalf("Token() = %v, %v; want the still-valid at-1", tok, err)
	}
	if _, err := ts.Token(); err != nil { // within refreshRetryDelay: no request
		t.Fatal(err)
	}
	if n := s.as.requests.Load(); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
	s.clock.Advance(30 * time.Second) // expired
	if _, err := ts.Token(); err == nil {
		t.Error("Token() after expiry with a failing server succeeded")
	}
}

func TestTokenEndpointNonceRetry(t *testing.T) {
	nonces := &nonceSource{}
	s := newSetup(t, true, nonces)
	ts := s.cfg.TokenSource(context.Background())
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" {
		t.Errorf("token_type = %q", tok.TokenType)
	}
	if n := s.as.requests.Load(); n != 2 {
		t.Errorf("token requests = %d, want 2 (one refused for the nonce, one retried)", n)
	}
	// The nonce is remembered: the next refresh needs no retry.
	s.clock.Advance(290 * time.Second)
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if n := s.as.requests.Load(); n != 3 {
		t.Errorf("token requests = %d, want 3", n)
	}
	// Every proof used the same DPoP key, and not the assertion key.
	assertionJKT, _ := dpop.Thumbprint(s.key.Public())
	for _, jkt := range s.as.jkts {
		if jkt != s.as.jkts[0] || jkt == assertionJKT {
			t.Errorf("proof keys %q (assertion key %q)", s.as.jkts, assertionJKT)
		}
	}
}

func TestTokenEndpointNonceRetriedOnlyOnce(t *testing.T) {
	s := newSetup(t, true, &nonceSource{rotate: true})
	_, err := s.cfg.TokenSource(context.Background()).Token()
	var e *Error
	if !errors.As(err, &e) || e.Code != "use_dpop_nonce" || e.StatusCode != 400 {
		t.Fatalf("err = %v, want *Error use_dpop_nonce", err)
	}
	if n := s.as.requests.Load(); n != 2 {
		t.Errorf("token requests = %d, want exactly 2", n)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	tests := []struct {
		name    string
		dpop    bool
		fail    *oauth.Error
		raw     func(w http.ResponseWriter)
		issue   string
		wantErr string
		want    *Error
		wantIs  error
	}{
		{
			name:    "invalid_client",
			fail:    &oauth.Error{Code: "invalid_client", Description: "no key in the registered JWKS has kid k1", Status: 401},
			want:    &Error{StatusCode: 401, Code: "invalid_client", Description: "no key in the registered JWKS has kid k1"},
			wantErr: "keybound: token endpoint: invalid_client: no key in the registered JWKS has kid k1",
		},
		{
			name:    "invalid_scope without description",
			fail:    &oauth.Error{Code: "invalid_scope", Status: 400},
			want:    &Error{StatusCode: 400, Code: "invalid_scope"},
			wantErr: "keybound: token endpoint: invalid_scope",
		},
		{
			name: "not an OAuth body",
			raw: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html>bad gateway</html>")
			},
			want:    &Error{StatusCode: 502},
			wantErr: "keybound: token endpoint: HTTP 502",
		},
		{
			name:    "DPoP requested, Bearer issued",
			dpop:    true,
			issue:   "Bearer",
			wantIs:  ErrDPoPDowngrade,
			wantErr: ErrDPoPDowngrade.Error(),
		},
		{
			name:    "unknown token type",
			issue:   "mac",
			wantErr: `keybound: token endpoint: unsupported token_type "mac"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, tt.dpop, nil)
			s.as.fail, s.as.rawFail, s.as.issueType = tt.fail, tt.raw, tt.issue
			tok, err := s.cfg.TokenSource(context.Background()).Token()
			if err == nil {
				t.Fatalf("Token() = %v, want an error", tok)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("err = %q, want %q", err, tt.wantErr)
			}
			if tt.want != nil {
				var e *Error
				if !errors.As(err, &e) || *e != *tt.want {
					t.Errorf("err = %#v, want %#v", err, tt.want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestTransportAuthorization(t *testing.T) {
	for _, dpopOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("dpop=%v", dpopOn), func(t *testing.T) {
			s := newSetup(t, dpopOn, nil)
			rs := newFakeRS(t, s.clock, nil)
			client := s.cfg.Client(context.Background())
			for i := range 3 {
				resp, err := client.Get(rs.srv.URL + "/invoices/42?expand=lines#frag")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok at-1" {
					t.Errorf("request %d: %d %q", i, resp.StatusCode, b)
				}
			}
			want := "Bearer at-1"
			if dpopOn {
				want = "DPoP at-1"
			}
			for _, a := range rs.auth {
				if a != want {
					t.Errorf("Authorization = %q, want %q", a, want)
				}
			}
			if n := s.as.requests.Load(); n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
		})
	}
}

func TestTransportNonceRetry(t *testing.T) {
	tests := []struct {
		name      string
		newReq    func(url string) *http.Request
		wantCode  int
		wantReqs  int64
		wantBody  string
		wantTwice bool
	}{
		{
			name: "replayable body is sent again",
			newReq: func(u string) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"amount":42}`))
				return r
			},
			wantCode: 200, wantReqs: 2, wantBody: `{"amount":42}`, wantTwice: true,
		},
		{
			name: "no body",
			newReq: func(u string) *http.Request {
				r, _ := http.NewRequest(http.MethodGet, u, nil)
				return r
			},
			wantCode: 200, wantReqs: 2,
		},
		{
			name: "body that cannot be replayed is not retried",
			newReq: func(u string) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, u, io.NopCloser(strings.NewReader("stream")))
				return r
			},
			wantCode: 401, wantReqs: 1, wantBody: "stream",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, true, nil)
			rs := newFakeRS(t, s.clock, &nonceSource{})
			tr := &Transport{Source: s.cfg.TokenSource(context.Background()), Base: rs.srv.Client().Transport}
			req := tt.newReq(rs.srv.URL + "/payments")
			req.Header.Set("X-Caller", "1")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if n := rs.requests.Load(); n != tt.wantReqs {
				t.Errorf("resource requests = %d, want %d", n, tt.wantReqs)
			}
			if len(rs.bodies) == 0 || rs.bodies[0] != tt.wantBody || (tt.wantTwice && (len(rs.bodies) < 2 || rs.bodies[1] != tt.wantBody)) {
				t.Errorf("bodies = %q, want %q", rs.bodies, tt.wantBody)
			}
			// The caller's request is untouched.
			if len(req.Header) != 1 || req.Header.Get("X-Caller") != "1" {
				t.Errorf("caller's request headers changed: %v", req.Header)
			}
			// The nonce is remembered for the origin: no retry next time.
			resp, err = tr.RoundTrip(tt.newReq(rs.srv.URL + "/payments"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || rs.requests.Load() != tt.wantReqs+1 {
				t.Errorf("second request: status %d after %d requests", resp.StatusCode, rs.requests.Load())
			}
		})
	}
}

func TestTransportNonceRetriedOnlyOnce(t *testing.T) {
	s := newSetup(t, true, nil)
	rs := newFakeRS(t, s.clock, &nonceSource{rotate: true})
	resp, err := s.cfg.Client(context.Background()).Get(rs.srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || rs.requests.Load() != 2 {
		t.Errorf("status %d after %d requests, want 401 after 2", resp.StatusCode, rs.requests.Load())
	}
}

func TestConcurrentTokenMakesOneRequest(t *testing.T) {
	s := newSetup(t, true, nil)
	s.as.hold = make(chan struct{})
	ts := s.cfg.TokenSource(context.Background())
	const n = 20
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(n)
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			started.Done()
			tok, err := ts.Token()
			if err == nil && tok.AccessToken != "at-1" {
				err = fmt.Errorf("token %q", tok.AccessToken)
			}
			errs <- err
		})
	}
	started.Wait()
	close(s.as.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.as.requests.Load(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

func TestMTLSClientAuthentication(t *testing.T) {
	c := newClock()
	as := newFakeAS(t, c, nil, "")
	as.srv.Close()
	as.srv = httptest.NewUnstartedServer(http.HandlerFunc(as.serve))
	as.srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	as.srv.StartTLS()
	cert := selfSignedCert(t)
	client := as.srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	cfg := &Config{TokenURL: as.tokenURL(), ClientID: testClientID, HTTPClient: client, Now: c.Now}
	if _, err := cfg.TokenSource(context.Background()).Token(); err != nil {
		t.Fatal(err)
	}
}

func TestAssertionAlgorithms(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, key := range []crypto.Signer{p384, ed, rsaKey, opaqueSigner{rsaKey}} {
		t.Run(fmt.Sprintf("%T", key), func(t *testing.T) {
			c := newClock()
			kid, _ := thumbprint(key.Public())
			as := newFakeAS(t, c, key.Public(), kid)
			cfg := &Config{TokenURL: as.tokenURL(), ClientID: testClientID, Key: key, HTTPClient: as.srv.Client(), Now: c.Now}
			if _, err := cfg.TokenSource(context.Background()).Token(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// opaqueSigner hides the key type, as a KMS or HSM signer does.
type opaqueSigner struct{ crypto.Signer }

func TestPrivateKeysNeverSent(t *testing.T) {
	s := newSetup(t, true, &nonceSource{})
	dpopKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s.cfg.DPoPKey = dpopKey
	rs := newFakeRS(t, s.clock, &nonceSource{})
	client := s.cfg.Client(context.Background())
	for range 3 {
		resp, err := client.Post(rs.srv.URL+"/p", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s.clock.Advance(290 * time.Second)
	}
	reqs := append(s.as.rec.all(), rs.rec.all()...)
	if len(reqs) < 8 {
		t.Fatalf("only %d requests recorded", len(reqs))
	}
	for name, key := range map[string]*ecdsa.PrivateKey{"assertion key": s.key, "DPoP key": dpopKey} {
		d := key.D.FillBytes(make([]byte, 32))
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		sec1, _ := x509.MarshalECPrivateKey(key)
		secrets := []string{
			base64.RawURLEncoding.EncodeToString(d),
			base64.StdEncoding.EncodeToString(d),
			string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			base64.StdEncoding.EncodeToString(der)[:40],
			base64.StdEncoding.EncodeToString(sec1)[:40],
			string(d),
		}
		for i, r := range reqs {
			for _, sec := range secrets {
				if bytes.Contains(r, []byte(sec)) || bytes.Contains([]byte(url.QueryEscape(string(r))), []byte(url.QueryEscape(sec))) {
					t.Errorf("request %d contains the %s", i, name)
				}
			}
		}
	}
}

func TestNoKeyOrTokenInStrings(t *testing.T) {
	s := newSetup(t, true, nil)
	dk, _ := GenerateKey()
	s.cfg.DPoPKey = dk
	ts := s.cfg.TokenSource(context.Background())
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "cfg", s.cfg, "cfgv", *s.cfg, "ts", ts)
	out := fmt.Sprintf("%v %+v %#v %v %+v %#v %s", s.cfg, *s.cfg, *s.cfg, ts, ts, ts, logs.String())
	for _, secret := range []string{s.key.D.String(), dk.D.String(), tok.AccessToken} {
		if strings.Contains(out, secret) {
			t.Errorf("formatted output contains a secret %q: %s", secret, out)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	key, _ := GenerateKey()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty", Config{}, "TokenURL is empty; ClientID is empty"},
		{"plain http to a remote host", Config{TokenURL: "http://auth.example.com/token", ClientID: "a"}, "must use https"},
		{"relative URL", Config{TokenURL: "/token", ClientID: "a"}, "not an absolute"},
		{"scope with a space", Config{TokenURL: "https://a/t", ClientID: "a", Scopes: []string{"a b"}}, "Scopes[0]"},
		{"resource not absolute", Config{TokenURL: "https://a/t", ClientID: "a", Resources: []string{"api"}}, "Resources[0]"},
		{"small RSA key", Config{TokenURL: "https://a/t", ClientID: "a", Key: small}, "Key: keybound: unsupported key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.TokenSource(context.Background()).Token()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	ok := Config{TokenURL: "http://127.0.0.1:9/token", ClientID: "a", Key: key}
	if _, err := ok.validate(); err != nil {
		t.Errorf("loopback http: %v", err)
	}
	var zero TokenSource
	if _, err := zero.Token(); err == nil {
		t.Error("zero TokenSource returned a token")
	}
}

func TestLoadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	ec, _ := GenerateKey()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	pkcs8 := func(k any) []byte { der, _ := x509.MarshalPKCS8PrivateKey(k); return pemOf("PRIVATE KEY", der) }
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pubDER, _ := x509.MarshalPKIXPublicKey(ec.Public())
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: ec, KeyID: "k"})
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: ec.Public(), KeyID: "k"})
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec}}})
	ecParams := append(pemOf("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), pemOf("EC PRIVATE KEY", sec1)...)
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n")

	tests := []struct {
		name    string
		data    []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{"PKCS#8 EC", pkcs8(ec), ec.Public(), ""},
		{"SEC1 EC after EC PARAMETERS", ecParams, ec.Public(), ""},
		{"PKCS#1 RSA", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey.Public(), ""},
		{"PKCS#8 RSA", pkcs8(rsaKey), rsaKey.Public(), ""},
		{"PKCS#8 Ed25519", pkcs8(ed), ed.Public(), ""},
		{"private JWK", privJWK, ec.Public(), ""},
		{"public JWK", pubJWK, nil, "JWK is a public key"},
		{"JWK set", jwks, nil, "is a JWK set"},
		{"public PEM", pemOf("PUBLIC KEY", pubDER), nil, "found a PUBLIC KEY block"},
		{"encrypted", encrypted, nil, "encrypted"},
		{"RSA 1024", pkcs8(small), nil, "unsupported key"},
		{"garbage", []byte("hello"), nil, "no PEM private key block"},
		{"too large", bytes.Repeat([]byte("a"), maxKeyFileBytes+1), nil, "larger than"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := LoadPrivateKey(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.want) {
				t.Error("loaded a different key")
			}
		})
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestPublicJWKS(t *testing.T) {
	key, _ := GenerateKey()
	for _, kid := range []string{"k1", ""} {
		raw, err := PublicJWKS(key, kid)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(`"d"`)) {
			t.Errorf("JWKS holds a private member: %s", raw)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS %s: %v", raw, err)
		}
		k := set.Keys[0]
		wantKID := kid
		if kid == "" {
			wantKID, _ = dpop.Thumbprint(key.Public())
		}
		if !k.IsPublic() || k.KeyID != wantKID || k.Algorithm != "ES256" || k.Use != "sig" || !key.PublicKey.Equal(k.Key) {
			t.Errorf("JWKS key = %+v", k)
		}
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	raw, _ := PublicJWKS(ed, "e")
	if !bytes.Contains(raw, []byte(`"alg":"EdDSA"`)) {
		t.Errorf("Ed25519 JWKS = %s", raw)
	}
}

func TestChallengeError(t *testing.T) {
	tests := []struct {
		values []string
		want   string
	}{
		{[]string{`DPoP error="use_dpop_nonce", error_description="need nonce"`}, "use_dpop_nonce"},
		{[]string{`Bearer realm="api", DPoP algs="ES256 PS256", error="use_dpop_nonce"`}, "use_dpop_nonce"},
		{[]string{`Bearer error="invalid_token"`, `dpop error=use_dpop_nonce`}, "use_dpop_nonce"},
		{[]string{`Bearer error="use_dpop_nonce"`}, ""},
		{[]string{`DPoP error_description="a, error=\"use_dpop_nonce\"", error="invalid_token"`}, "invalid_token"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := challengeError(tt.values); got != tt.want {
			t.Errorf("challengeError(%q) = %q, want %q", tt.values, got, tt.want)
		}
	}
}

func TestRedirectsNotFollowedAcrossOrigins(t *testing.T) {
	s := newSetup(t, false, nil)
	rs := newFakeRS(t, s.clock, nil)
	other := httptest.NewTLSServer(http.RedirectHandler(rs.srv.URL+"/stolen", http.StatusFound))
	defer other.Close()
	resp, err := s.cfg.Client(context.Background()).Get(other.URL + "/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || rs.requests.Load() != 0 {
		t.Errorf("status %d, %d requests reached the other origin", resp.StatusCode, rs.requests.Load())
	}
}

// TestImports keeps the rule that sdk pulls in no server code.
func TestImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"internal/dpop", "internal/oauth", "internal/identity"}
	for _, p := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(p, "github.com/keybound/keybound/")
		if ok && rest != "sdk" && !slices.Contains(allowed, rest) {
			t.Errorf("sdk depends on %s", p)
		}
	}
}

// selfSignedCert is a fresh key and a self-signed client certificate for it.
func selfSignedCert(t testing.TB) tls.Certificate {
	key, _ := GenerateKey()
	return tls.Certificate{Certificate: [][]byte{selfSigned(t, key, x509.ExtKeyUsageClientAuth).Raw}, PrivateKey: key}
}

func TestClientAssertion(t *testing.T) {
	key, _ := GenerateKey()
	now := newClock().Now()
	a, err := ClientAssertion(key, "", testClientID, "https://auth.example.com/oauth/token", now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := dpop.Thumbprint(key.Public()); tok.Headers[0].KeyID != want {
		t.Errorf("kid = %q, want the thumbprint %q", tok.Headers[0].KeyID, want)
	}
	var c jwt.Claims
	if err := tok.Claims(key.Public(), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testClientID, Subject: testClientID, AnyAudience: jwt.Audience{"https://auth.example.com/oauth/token"}, Time: now}, 0); err != nil {
		t.Error(err)
	}
}

// TestTransportNoCredentialsAcrossOrigins: a caller's own http.Client
// follows a redirect to another origin; the Transport must not put the
// token (or a proof) on that request. A same-origin redirect keeps them.
func TestTransportNoCredentialsAcrossOrigins(t *testing.T) {
	for _, dpopOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("dpop=%v", dpopOn), func(t *testing.T) {
			s := newSetup(t, dpopOn, nil)
			var gotAuth, gotProof atomic.Value
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth.Store(r.Header.Get("Authorization"))
				gotProof.Store(r.Header.Get("DPoP"))
			}))
			t.Cleanup(other.Close)
			// Another origin: the same server reached under another host name.
			otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
			var sameAuth atomic.Value
			first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/away":
					http.Redirect(w, r, otherURL+"/landing", http.StatusFound)
				case "/here":
					http.Redirect(w, r, "/landed", http.StatusFound)
				default:
					sameAuth.Store(r.Header.Get("Authorization"))
				}
			}))
			t.Cleanup(first.Close)
			hc := &http.Client{Transport: &Transport{Source: s.cfg.TokenSource(context.Background())}}
			resp, err := hc.Get(first.URL + "/away")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if a, p := gotAuth.Load(), gotProof.Load(); a != "" || p != "" {
				t.Errorf("the other origin got Authorization %q, DPoP %q; want neither", a, p)
			}
			resp, err = hc.Get(first.URL + "/here")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if a, _ := sameAuth.Load().(string); !strings.HasSuffix(a, " at-1") {
				t.Errorf("a same-origin redirect got Authorization %q, want the token", a)
			}
		})
	}
}

// TestTransportRefusesPlainHTTP: an access token is sent only over https,
// or plain http to a loopback host.
func TestTransportRefusesPlainHTTP(t *testing.T) {
	s := newSetup(t, false, nil)
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		t.Error("the request reached the network")
		return nil, errors.New("unreachable")
	})
	hc := &http.Client{Transport: &Transport{Source: s.cfg.TokenSource(context.Background()), Base: base}}
	_, err := hc.Get("http://api.example.com/invoices")
	if err == nil || !strings.Contains(err.Error(), "refusing to send an access token over http") {
		t.Fatalf("plain http to a remote host: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// panicOnce is a signer whose first Sign panics, as a faulty KMS client
// might.
type panicOnce struct {
	crypto.Signer
	n atomic.Int32
}

func (p *panicOnce) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if p.n.Add(1) == 1 {
		panic("signer exploded")
	}
	return p.Signer.Sign(r, d, o)
}

// TestTokenSourceSurvivesPanickingSigner: a fetch that panics must not
// leave the token source waiting forever on it; the next Token call makes
// a fresh request.
func TestTokenSourceSurvivesPanickingSigner(t *testing.T) {
	s := newSetup(t, false, nil)
	s.cfg.Key = &panicOnce{Signer: s.key}
	ts := s.cfg.TokenSource(context.Background())
	func() {
		defer func() {
			if p := recover(); p != "signer exploded" {
				t.Errorf("recovered %v, want the signer's panic passed on", p)
			}
		}()
		_, _ = ts.Token()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Token after the panic: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Token after a panicking fetch never returned")
	}
}

// TestTransportUnknownRedirectChain: a base RoundTripper that does not set
// Response.Request leaves the redirect chain unknown; the redirected
// request then goes without the token.
func TestTransportUnknownRedirectChain(t *testing.T) {
	s := newSetup(t, false, nil)
	var second http.Header
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == "first.example" {
			h := http.Header{"Location": {"https://other.example/landing"}}
			return &http.Response{StatusCode: http.StatusFound, Header: h, Body: io.NopCloser(strings.NewReader(""))}, nil // no Request
		}
		second = r.Header.Clone()
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	})
	hc := &http.Client{Transport: &Transport{Source: s.cfg.TokenSource(context.Background()), Base: base}}
	resp, err := hc.Get("https://first.example/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if second == nil || second.Get("Authorization") != "" || second.Get("DPoP") != "" {
		t.Errorf("the redirected request carried %v; want no credentials", second)
	}
}
