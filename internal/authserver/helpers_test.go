package authserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/keys"
	"github.com/keybound/keybound/internal/replay"
	"github.com/keybound/keybound/internal/revocation"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/sdk"
)

const testIssuer = "https://as.example.test"

var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock shared by every component of a test server, so
// a test can move past a token's exp without sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// memKeys is an in-memory keys.Storage.
type memKeys struct {
	mu   sync.Mutex
	keys []store.SigningKey
}

func (m *memKeys) PutSigningKey(_ context.Context, k store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].KID == k.KID {
			m.keys[i] = k
			return nil
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.SigningKey(nil), m.keys...), nil
}

// memRevocations is an in-memory revocation.Store.
type memRevocations struct {
	mu   sync.Mutex
	list []store.RevokedToken
}

func (m *memRevocations) RevokeToken(_ context.Context, t store.RevokedToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = append(m.list, t)
	return nil
}

func (m *memRevocations) RevokedSince(_ context.Context, since, now time.Time) ([]store.RevokedToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.RevokedToken
	for _, t := range m.list {
		if !t.RevokedAt.Before(since) && t.ExpiresAt.After(now) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (m *memRevocations) PurgeExpired(_ context.Context, now time.Time) (int, error) {
	return 0, nil
}

func (m *memRevocations) all() []store.RevokedToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.RevokedToken(nil), m.list...)
}

// memClients serves both clientauth and introspection lookups.
type memClients struct{ m map[string]*identity.Client }

func (c memClients) GetClient(_ context.Context, id string) (*identity.Client, error) {
	cl, ok := c.m[id]
	if !ok {
		return nil, fmt.Errorf("client %q: %w", id, store.ErrNotFound)
	}
	cp := *cl
	return &cp, nil
}

// memAssertionReplay is a clientauth.ReplayCache.
type memAssertionReplay struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *memAssertionReplay) Claim(_ context.Context, clientID, jti string, _ time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	k := clientID + "\x00" + jti
	if r.seen[k] {
		return false, nil
	}
	r.seen[k] = true
	return true, nil
}

// syncBuffer is a log sink safe to read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a token service wired as app wires it, with real client
// authentication, DPoP verification, signing keys, token verification and
// revocation view, all on one settable clock.
type testServer struct {
	t       *testing.T
	clock   *clock
	srv     *Server
	handler http.Handler
	clients map[string]*identity.Client
	keys    map[string]*ecdsa.PrivateKey
	revs    *memRevocations
	view    *revocation.View
	tokens  *accesstoken.Verifier
	nonces  *dpop.Nonces
	logs    *syncBuffer
}

type serverOptions struct {
	requireNonce bool
}

func newTestServer(t *testing.T, o serverOptions) *testServer {
	t.Helper()
	clk := &clock{now: testStart}
	ring, err := keys.Open(context.Background(), &memKeys{}, keys.Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, clock: clk, clients: map[string]*identity.Client{}, keys: map[string]*ecdsa.PrivateKey{}, revs: &memRevocations{}, logs: &syncBuffer{}}
	ts.view = revocation.New(ts.revs, clk.Now)
	if err := ts.view.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clients := memClients{m: ts.clients}
	ts.tokens = &accesstoken.Verifier{Keys: ring, Issuer: testIssuer, Leeway: TokenLeeway, Now: clk.Now}
	proofs := &dpop.Verifier{Replay: replay.New(1024, clk.Now), Now: clk.Now}
	ts.srv = &Server{
		Settings: Settings{Issuer: testIssuer, DefaultLifetime: 5 * time.Minute, MaxLifetime: time.Hour},
		Auth: &clientauth.Authenticator{
			Clients:   clients,
			NotFound:  store.ErrNotFound,
			Replay:    &memAssertionReplay{},
			Audiences: []string{testIssuer, testIssuer + PathToken, testIssuer + PathIntrospect, testIssuer + PathRevoke},
			Now:       clk.Now,
		},
		Proofs:      proofs,
		Keys:        ring,
		Tokens:      ts.tokens,
		Revocations: ts.view,
		Clients:     clients,
		Log:         slog.New(slog.NewJSONHandler(ts.logs, nil)),
		Now:         clk.Now,
	}
	if o.requireNonce {
		ts.nonces, err = dpop.NewNonces(nil, time.Minute, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		proofs.Nonce = ts.nonces
		ts.srv.Nonces = ts.nonces
	}
	mux := http.NewServeMux()
	ts.srv.Register(mux)
	ts.handler = mux
	return ts
}

// addClient registers a private_key_jwt client with a fresh key.
func (ts *testServer) addClient(id string, binding identity.Binding, scopes ...string) {
	ts.t.Helper()
	key, err := sdk.GenerateKey()
	if err != nil {
		ts.t.Fatal(err)
	}
	set, err := sdk.PublicJWKS(key, "k1")
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.clients[id] = &identity.Client{
		ID: id, Name: id, Owner: "team@example.com", Purpose: "tests", Environment: "dev",
		Status: identity.StatusActive, CreatedAt: testStart.Add(-time.Hour), ExpiresAt: testStart.Add(24 * time.Hour),
		Scopes: scopes, AuthMethod: identity.AuthPrivateKeyJWT, JWKS: set, Binding: binding,
	}
	ts.keys[id] = key
}

// assertion signs a fresh client assertion for id at the current clock.
func (ts *testServer) assertion(id, aud string) string {
	ts.t.Helper()
	a, err := sdk.ClientAssertion(ts.keys[id], "k1", id, aud, ts.clock.Now())
	if err != nil {
		ts.t.Fatal(err)
	}
	return a
}

// tokenForm is a client_credentials request authenticated by assertion.
func tokenForm(id, assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_assertion_type": {clientauth.JWTBearerAssertionType}, "client_assertion": {assertion}}
}

// response is one answer as the client reads it.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// post sends form to path with extra headers.
func (ts *testServer) post(path, body string, hdr map[string]string) response {
	ts.t.Helper()
	req := httptest.NewRequest(http.MethodPost, testIssuer+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	ts.handler.ServeHTTP(rec, req)
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r
}

// token requests a bearer token for id and returns it.
func (ts *testServer) token(id string) string {
	ts.t.Helper()
	r := ts.post(PathToken, tokenForm(id, ts.assertion(id, testIssuer+PathToken)).Encode(), nil)
	tok, _ := r.body["access_token"].(string)
	if r.status != http.StatusOK || tok == "" {
		ts.t.Fatalf("token for %s: %d %s", id, r.status, r.raw)
	}
	return tok
}

// introspect asks about tok as caller, which must hold ScopeIntrospect.
func (ts *testServer) introspect(caller, tok string) map[string]any {
	ts.t.Helper()
	form := tokenForm(caller, ts.assertion(caller, testIssuer+PathIntrospect))
	form.Del("grant_type")
	form.Set("token", tok)
	r := ts.post(PathIntrospect, form.Encode(), nil)
	if r.status != http.StatusOK {
		ts.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r.body
}

// revoke revokes tok as its own client.
func (ts *testServer) revoke(caller, tok string) {
	ts.t.Helper()
	form := tokenForm(caller, ts.assertion(caller, testIssuer+PathRevoke))
	form.Del("grant_type")
	form.Set("token", tok)
	if r := ts.post(PathRevoke, form.Encode(), nil); r.status != http.StatusOK {
		ts.t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
}

// proof makes a DPoP proof for the token endpoint at the current clock.
func proof(t *testing.T, s *dpop.Signer, now time.Time, nonce string) string {
	t.Helper()
	p, err := s.Proof(http.MethodPost, testIssuer+PathToken, dpop.ProofOptions{Now: now, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// allowedDescriptionByte is RFC 6749 section 5.2's grammar for
// error_description: %x20-21 / %x23-5B / %x5D-7E.
func allowedDescriptionByte(c byte) bool {
	return c == 0x20 || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
}
