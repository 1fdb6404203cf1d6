package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
)

var _ accesstoken.KeyLookup = (*Remote)(nil)

// jwksServer is an issuer's JWKS endpoint over real TLS on loopback. What it
// answers can be changed between requests; hits counts requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32

	mu           sync.Mutex
	status       int
	body         func() []byte
	cacheControl string
	gate         chan struct{} // when set, requests wait for it to close
	arrived      chan struct{} // when set, receives once per request before the gate
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: func() []byte { return body }, cacheControl: "public, max-age=60"}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body, cc, gate, arrived := s.status, s.body, s.cacheControl, s.gate, s.arrived
		s.mu.Unlock()
		if arrived != nil {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, func() []byte { return body }
}

func (s *jwksServer) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// newTestRemote builds a Remote for srv on clock c.
func newTestRemote(t *testing.T, srv *jwksServer, c *clock, mutate func(*RemoteConfig)) *Remote {
	t.Helper()
	cfg := RemoteConfig{URL: srv.URL + "/oauth2/jwks", RootCAs: srv.pool(), Now: c.Now}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := NewRemote(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitIdle(r) })
	return r
}

// waitIdle waits for the fetch in progress, if any, without starting one.
func waitIdle(r *Remote) {
	r.mu.Lock()
	f := r.flight
	r.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

func testECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ecJWK is the public JWK of k as a map, with extra members merged in.
func ecJWK(t *testing.T, kid string, k *ecdsa.PrivateKey, extra map[string]any) map[string]any {
	t.Helper()
	x, y, err := ecCoordinates(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func jwkSet(t *testing.T, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRefresh(t *testing.T, r *Remote) {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func hasKey(r *Remote, kid string) bool {
	_, _, ok := r.PublicKey(kid)
	return ok
}

// TestRemoteRotationPickedUpOnUnknownKid is the issuer rotating its signing
// key: a token signed by the new key verifies through Remote without a
// restart, and the old key's tokens still verify.
func TestRemoteRotationPickedUpOnUnknownKid(t *testing.T) {
	issuerClock, c := newClock(), newClock()
	ring := mustOpen(t, newMemStorage(), testConfig(issuerClock))
	srv := newJWKSServer(t, nil)
	srv.mu.Lock()
	srv.body = ring.JWKS
	srv.cacheControl = "public, max-age=900"
	srv.mu.Unlock()
	remote := newTestRemote(t, srv, c, nil)
	mustRefresh(t, remote)
	v := &accesstoken.Verifier{Keys: remote, Issuer: "https://issuer.example", Leeway: 30 * time.Second, Now: c.Now}
	issue := func() string {
		t.Helper()
		now := c.Now()
		tok, err := accesstoken.Issue(mustCurrent(t, ring), accesstoken.Claims{
			Issuer: "https://issuer.example", Subject: "svc", ClientID: "svc", Audience: []string{"https://api.example"},
			JTI: fmt.Sprint(now.UnixNano()), IssuedAt: now, Expiry: now.Add(5 * time.Minute),
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old := issue()
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("token of the first key: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches after start and one verify: %d, want 1", got)
	}

	// The issuer rotates and, a publication lead later, the new key signs.
	// The gateway's cached set is still fresh (max-age 900s on its clock)
	// but does not hold the new kid.
	if _, err := ring.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	issuerClock.Advance(time.Hour)
	if err := ring.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	newTok := issue()
	if decodeKID(t, old) == decodeKID(t, newTok) {
		t.Fatal("rotation did not change the kid")
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches: %d, want 2 (one refresh on the unknown kid)", got)
	}
	if _, err := v.Verify(old); err != nil {
		t.Errorf("token of the retired key, still published: %v", err)
	}
	if st := remote.Stats(); st.Fetches != 2 || st.Failures != 0 || st.Keys != 2 {
		t.Errorf("stats %+v", st)
	}
}

// decodeKID reads the kid of a compact JWS.
func decodeKID(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// TestRemoteUnknownKidRefreshIsRateLimited: a flood of made-up kids costs the
// issuer one request per MinRefresh, and fails closed.
func TestRemoteUnknownKidRefreshIsRateLimited(t *testing.T) {
	c := newClock()
	k := testECKey(t)
	srv := newJWKSServer(t, jwkSet(t, ecJWK(t, "a", k, nil)))
	remote := newTestRemote(t, srv, c, func(rc *RemoteConfig) { rc.MinRefresh = 10 * time.Second })
	mustRefresh(t, remote)

	for i := range 50 {
		if hasKey(remote, fmt.Sprintf("garbage-%d", i)) {
			t.Fatal("made-up kid accepted")
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches after 50 unknown kids: %d, want 2 (start, then one refresh)", got)
	}
	if !hasKey(remote, "a") {
		t.Error("known kid refused during the flood")
	}
	c.Advance(9 * time.Second)
	hasKey(remote, "garbage-x")
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("refresh before MinRefresh: %d fetches", got)
	}
	// A key published meanwhile is found once the interval has passed.
	k2 := testECKey(t)
	srv.set(http.StatusOK, jwkSet(t, ecJWK(t, "a", k, nil), ecJWK(t, "b", k2, nil)))
	if hasKey(remote, "b") {
		t.Error("new kid found inside the rate limit: a fetch happened")
	}
	c.Advance(time.Second)
	if !hasKey(remote, "b") {
		t.Error("new kid not found once MinRefresh had passed")
	}
	if got := srv.hits.Load(); got != 3 {
		t.Errorf("fetches: %d, want 3", got)
	}
	if kid := strings.Repeat("x", maxRemoteKIDBytes+1); hasKey(remote, kid) || srv.hits.Load() != 3 {
		t.Error("an over-long kid caused a fetch or was accepted")
	}
}

// TestRemoteConcurrentMissesShareOneFetch: lookups that miss while a fetch
// runs wait for it instead of starting their own.
func TestRemoteConcurrentMissesShareOneFetch(t *testing.T) {
	c := newClock()
	ka, kb := testECKey(t), testECKey(t)
	srv := newJWKSServer(t, jwkSet(t, ecJWK(t, "a", ka, nil)))
	remote := newTestRemote(t, srv, c, nil)
	mustRefresh(t, remote)
	srv.set(http.StatusOK, jwkSet(t, ecJWK(t, "a", ka, nil), ecJWK(t, "b", kb, nil)))
	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	srv.mu.Lock()
	srv.gate, srv.arrived = gate, arrived
	srv.mu.Unlock()

	const n = 32
	var wg sync.WaitGroup
	var found atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if hasKey(remote, "b") {
				found.Add(1)
			}
		}()
	}
	<-arrived // the one fetch is at the server, held there
	close(gate)
	wg.Wait()
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches: %d, want 2 (start, then one shared refresh)", got)
	}
	if found.Load() != n {
		t.Errorf("%d of %d lookups found the new key", found.Load(), n)
	}
}

// TestRemoteRefusesBadSets: every refused answer keeps the last good set,
// counts a failure and wraps ErrRemoteJWKS.
func TestRemoteRefusesBadSets(t *testing.T) {
	ka := testECKey(t)
	good := jwkSet(t, ecJWK(t, "a", ka, nil))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	manyKeys := make([]map[string]any, MaxRemoteKeys+1)
	for i := range manyKeys {
		manyKeys[i] = ecJWK(t, fmt.Sprint("k", i), ka, nil)
	}
	oversized := append(jwkSet(t, ecJWK(t, "a", ka, nil)), []byte(strings.Repeat(" ", MaxRemoteJWKSBytes))...)

	tests := []struct {
		name   string
		status int
		body   []byte
		want   string
	}{
		{"server error", 500, good, "HTTP status 500"},
		{"not found", 404, []byte("not here"), "HTTP status 404"},
		{"garbage", 200, []byte("<html>hello</html>"), "not a JWK Set"},
		{"empty body", 200, nil, "not a JWK Set"},
		{"trailing data", 200, append(jwkSet(t), []byte(`{}`)...), "not a JWK Set"},
		{"no keys member", 200, []byte(`{"kid":"a"}`), `no "keys" member`},
		{"keys not an array", 200, []byte(`{"keys":"a"}`), "not a JWK Set"},
		{"key not an object", 200, []byte(`{"keys":[1]}`), "key 0 is not a JSON object"},
		{"oversized body", 200, oversized, "over 262144 bytes"},
		{"too many keys", 200, jwkSet(t, manyKeys...), "101 keys"},
		{"EC private key", 200, jwkSet(t, ecJWK(t, "a", ka, map[string]any{"d": b64(ka.D.FillBytes(make([]byte, 32)))})), `private member "d"`},
		{"private key beside a good one", 200, jwkSet(t, ecJWK(t, "a", ka, nil), ecJWK(t, "b", ka, map[string]any{"d": b64(ka.D.FillBytes(make([]byte, 32))), "use": "enc"})), `private member "d"`},
		{"symmetric key", 200, jwkSet(t, map[string]any{"kty": "oct", "kid": "s", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}), `private member "k"`},
		{"RSA private key", 200, jwkSet(t, map[string]any{"kty": "RSA", "kid": "r", "n": b64(rsaKey.N.Bytes()), "e": "AQAB", "p": b64(rsaKey.Primes[0].Bytes())}), `private member "p"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			srv := newJWKSServer(t, good)
			remote := newTestRemote(t, srv, c, nil)
			mustRefresh(t, remote)
			srv.set(tt.status, tt.body)
			err := remote.Refresh(context.Background())
			if !errors.Is(err, ErrRemoteJWKS) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Refresh: %v, want ErrRemoteJWKS containing %q", err, tt.want)
			}
			if st := remote.Stats(); st.Fetches != 2 || st.Failures != 1 || st.Keys != 1 {
				t.Errorf("stats %+v", st)
			}
			if !hasKey(remote, "a") {
				t.Error("the last good set was dropped")
			}
			if hasKey(remote, "b") || hasKey(remote, "k5") {
				t.Error("a key of the refused set is in use")
			}
		})
	}
}

// TestRemoteTransportFailures: timeouts, plain-HTTP redirects and untrusted
// certificates are fetch failures.
func TestRemoteTransportFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		srv := newJWKSServer(t, jwkSet(t))
		srv.mu.Lock()
		srv.gate = make(chan struct{}) // never opens
		srv.mu.Unlock()
		remote := newTestRemote(t, srv, newClock(), func(rc *RemoteConfig) { rc.Timeout = 50 * time.Millisecond })
		if err := remote.Refresh(context.Background()); !errors.Is(err, ErrRemoteJWKS) {
			t.Errorf("Refresh: %v", err)
		}
	})
	t.Run("redirect to http", func(t *testing.T) {
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwkSet(t)) }))
		defer plain.Close()
		srv := httptest.NewTLSServer(http.RedirectHandler(plain.URL, http.StatusFound))
		defer srv.Close()
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		remote, err := NewRemote(RemoteConfig{URL: srv.URL, RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Refresh(context.Background()); !errors.Is(err, ErrRemoteJWKS) || !strings.Contains(err.Error(), "https") {
			t.Errorf("Refresh: %v", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := newJWKSServer(t, jwkSet(t))
		remote, err := NewRemote(RemoteConfig{URL: srv.URL, RootCAs: x509.NewCertPool()})
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Refresh(context.Background()); !errors.Is(err, ErrRemoteJWKS) {
			t.Errorf("Refresh: %v", err)
		}
		if srv.hits.Load() != 0 {
			t.Error("request reached a server whose certificate is not trusted")
		}
	})
}

// TestRemoteKeepsOnlyUsableKeys: keys the verifier cannot use are skipped,
// not fatal (RFC 7517 section 5).
func TestRemoteKeepsOnlyUsableKeys(t *testing.T) {
	k := testECKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x384, y384 := b64(p384.X.FillBytes(make([]byte, 48))), b64(p384.Y.FillBytes(make([]byte, 48)))
	set := jwkSet(t,
		ecJWK(t, "good", k, nil),
		ecJWK(t, "no-alg-no-use", testECKey(t), map[string]any{"alg": nil, "use": nil}),
		ecJWK(t, "verify-op", testECKey(t), map[string]any{"use": nil, "key_ops": []string{"verify"}}),
		ecJWK(t, "enc", testECKey(t), map[string]any{"use": "enc"}),
		ecJWK(t, "sign-only", testECKey(t), map[string]any{"use": nil, "key_ops": []string{"sign"}}),
		ecJWK(t, "wrong-alg", testECKey(t), map[string]any{"alg": "ES384"}),
		ecJWK(t, "", testECKey(t), nil),
		ecJWK(t, "off-curve", testECKey(t), map[string]any{"y": b64(make([]byte, 32))}),
		ecJWK(t, "short-x", testECKey(t), map[string]any{"x": b64([]byte{1, 2, 3})}),
		ecJWK(t, "dup", testECKey(t), nil),
		ecJWK(t, "dup", testECKey(t), nil),
		ecJWK(t, "dup", testECKey(t), nil),
		map[string]any{"kty": "EC", "crv": "P-384", "kid": "p384", "x": x384, "y": y384},
		map[string]any{"kty": "RSA", "kid": "rsa", "n": b64(rsaKey.N.Bytes()), "e": "AQAB", "alg": "RS256"},
		map[string]any{"kty": "OKP", "crv": "X448", "kid": "x448", "x": b64(make([]byte, 56))},
		map[string]any{"kty": 7, "kid": "wrong-type"},
	)
	srv := newJWKSServer(t, set)
	remote := newTestRemote(t, srv, newClock(), nil)
	mustRefresh(t, remote)
	for _, kid := range []string{"good", "no-alg-no-use", "verify-op"} {
		pk, alg, ok := remote.PublicKey(kid)
		if !ok || alg != AlgES256 {
			t.Errorf("%s: not usable (%v %q)", kid, ok, alg)
			continue
		}
		if pub, _ := pk.(*ecdsa.PublicKey); kid == "good" && !pub.Equal(&k.PublicKey) {
			t.Error("good: wrong key")
		}
	}
	if st := remote.Stats(); st.Keys != 3 {
		t.Errorf("%d keys kept, want 3", st.Keys)
	}
}

// TestRemoteStaleServingThenFailClosed: while the issuer fails, the last good
// set is served for MaxStale past its max-age, then nothing is.
func TestRemoteStaleServingThenFailClosed(t *testing.T) {
	c := newClock()
	k := testECKey(t)
	good := jwkSet(t, ecJWK(t, "a", k, nil))
	srv := newJWKSServer(t, good) // max-age=60
	remote := newTestRemote(t, srv, c, func(rc *RemoteConfig) { rc.MaxStale = 10 * time.Minute })
	mustRefresh(t, remote)
	srv.set(http.StatusServiceUnavailable, nil)

	c.Advance(30 * time.Second)
	if !hasKey(remote, "a") || srv.hits.Load() != 1 {
		t.Fatal("fresh set: key refused or fetched again")
	}
	// Past max-age: served at once, refreshed in the background.
	c.Advance(31 * time.Second)
	if !hasKey(remote, "a") {
		t.Fatal("stale set not served while the issuer fails")
	}
	waitIdle(remote)
	if st := remote.Stats(); st.Fetches != 2 || st.Failures != 1 {
		t.Fatalf("stats %+v, want one background refresh that failed", st)
	}
	// Further lookups within MinRefresh do not fetch again.
	hasKey(remote, "a")
	waitIdle(remote)
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("fetches: %d, want 2", got)
	}
	// Past max-age + MaxStale: fail closed, whatever kid.
	c.Advance(10 * time.Minute)
	if hasKey(remote, "a") {
		t.Fatal("a set past MaxStale was served")
	}
	// The issuer recovers: the next allowed fetch brings the keys back.
	srv.set(http.StatusOK, good)
	c.Advance(DefaultRemoteMinRefresh)
	if !hasKey(remote, "a") {
		t.Error("keys not back after the issuer recovered")
	}
}

// TestRemoteIssuerDownAtStart: no keys means every token fails closed until
// a fetch succeeds; nothing is cached from failures.
func TestRemoteIssuerDownAtStart(t *testing.T) {
	c := newClock()
	k := testECKey(t)
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusBadGateway, nil)
	remote := newTestRemote(t, srv, c, nil)
	if err := remote.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a failing issuer")
	}
	if hasKey(remote, "a") {
		t.Fatal("key served with no set")
	}
	srv.set(http.StatusOK, jwkSet(t, ecJWK(t, "a", k, nil)))
	if hasKey(remote, "a") {
		t.Error("fetched inside MinRefresh of the last miss")
	}
	c.Advance(DefaultRemoteMinRefresh)
	if !hasKey(remote, "a") {
		t.Error("key not served once the issuer is up")
	}
}

func TestRemoteMaxAge(t *testing.T) {
	tests := []struct {
		cc   []string
		want time.Duration
	}{
		{nil, DefaultRemoteMaxAge},
		{[]string{"public, max-age=120"}, 2 * time.Minute},
		{[]string{"max-age=\"300\""}, 5 * time.Minute},
		{[]string{"Max-Age=600, must-revalidate"}, 10 * time.Minute},
		{[]string{"max-age=5"}, MinRemoteMaxAge},
		{[]string{"max-age=0"}, MinRemoteMaxAge},
		{[]string{"max-age=86400"}, MaxRemoteMaxAge},
		{[]string{"max-age=99999999999999999999"}, DefaultRemoteMaxAge},
		{[]string{"max-age=-1"}, DefaultRemoteMaxAge},
		{[]string{"max-age=abc"}, DefaultRemoteMaxAge},
		{[]string{"no-store"}, MinRemoteMaxAge},
		{[]string{"max-age=600", "no-cache"}, MinRemoteMaxAge},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.cc {
			h.Add("Cache-Control", v)
		}
		if got := maxAge(h); got != tt.want {
			t.Errorf("%q: %s, want %s", tt.cc, got, tt.want)
		}
	}
}

func TestNewRemoteRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "http://issuer.example/jwks", "https:///jwks", "https://user:pw@issuer.example/jwks", "https://issuer.example/jwks#frag", "ftp://issuer.example"} {
		if _, err := NewRemote(RemoteConfig{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := NewRemote(RemoteConfig{URL: "https://issuer.example/jwks", MinRefresh: -time.Second}); err == nil {
		t.Error("negative MinRefresh accepted")
	}
}

func BenchmarkRemotePublicKey(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	r := &Remote{cfg: RemoteConfig{Now: time.Now}}
	now := time.Now()
	r.set.Store(&remoteSet{keys: map[string]*ecdsa.PublicKey{"a": &k.PublicKey}, fetchedAt: now, staleAt: now.Add(time.Hour), expiresAt: now.Add(2 * time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := r.PublicKey("a"); !ok {
			b.Fatal("miss")
		}
	}
}
