package clientauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
)

var (
	t0          = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	errNotFound = errors.New("store: not found")
)

const (
	issuer        = "https://auth.example.test"
	tokenEndpoint = "https://auth.example.test/oauth2/token"
)

// fakeClients is a hand-written Clients.
type fakeClients struct {
	m   map[string]*identity.Client
	err error // returned for every lookup when set
}

func (f *fakeClients) GetClient(_ context.Context, id string) (*identity.Client, error) {
	if f.err != nil {
		return nil, f.err
	}
	c, ok := f.m[id]
	if !ok {
		return nil, fmt.Errorf("get client %q: %w", id, errNotFound)
	}
	cp := *c
	return &cp, nil
}

// fakeReplay is a hand-written ReplayCache that records every claim.
type fakeReplay struct {
	mu   sync.Mutex
	seen map[[2]string]time.Time
	err  error
	// refuse answers every claim false, as the real cache does for a
	// claim whose end has passed.
	refuse bool
}

func newFakeReplay() *fakeReplay { return &fakeReplay{seen: map[[2]string]time.Time{}} }

func (f *fakeReplay) Claim(_ context.Context, clientID, jti string, until time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	if f.refuse {
		return false, nil
	}
	k := [2]string{clientID, jti}
	if _, ok := f.seen[k]; ok {
		return false, nil
	}
	f.seen[k] = until
	return true, nil
}

func (f *fakeReplay) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// fixture holds real keys, certificates and registered clients.
type fixture struct {
	ecKey, otherEC *ecdsa.PrivateKey
	edKey          ed25519.PrivateKey
	rsaKey         *rsa.PrivateKey

	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	leaf     *x509.Certificate // CA-issued client certificate
	leafKey  *ecdsa.PrivateKey
	selfCert *x509.Certificate // registered self-signed certificate
	selfKey  *ecdsa.PrivateKey
	secret   string

	clients map[string]*identity.Client
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
)

// loadFixture builds the fixture once per test binary: RSA key generation is
// slow enough to matter under -race.
func loadFixture(t testing.TB) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal = newFixture(t) })
	return fixtureVal
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{
		ecKey:   mustEC(t),
		otherEC: mustEC(t),
		caKey:   mustEC(t),
		leafKey: mustEC(t),
		selfKey: mustEC(t),
	}
	var err error
	if _, f.edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}

	f.caCert = mustCert(t, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Example Client CA", Organization: []string{"Example Corp"}},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              t0.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil, f.caKey, f.caKey)
	spiffe, _ := url.Parse("spiffe://example.test/payments")
	f.leaf = mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject: pkix.Name{
			CommonName:         "svc.payments",
			OrganizationalUnit: []string{"Payments"},
			Organization:       []string{"Example Corp"},
			Country:            []string{"US"},
		},
		NotBefore:   t0.Add(-time.Hour),
		NotAfter:    t0.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{spiffe},
		DNSNames:    []string{"svc.payments.example.test"},
	}, f.caCert, f.leafKey, f.caKey)
	f.selfCert = selfSigned(t, f.selfKey, 10)

	f.secret = "kbs_test-secret-value-0123456789"
	hash, err := identity.HashSecret(f.secret)
	if err != nil {
		t.Fatal(err)
	}

	jwks := mustJWKS(t,
		jose.JSONWebKey{Key: &f.ecKey.PublicKey, KeyID: "ec1", Use: "sig"},
		jose.JSONWebKey{Key: f.edKey.Public(), KeyID: "ed1"},
		jose.JSONWebKey{Key: &f.rsaKey.PublicKey, KeyID: "rsa1"},
	)
	selfJWKS := mustJWKS(t, jose.JSONWebKey{Key: &f.selfKey.PublicKey, KeyID: "tls1", Certificates: []*x509.Certificate{f.selfCert}})

	base := func(id string, m identity.AuthMethod) *identity.Client {
		return &identity.Client{ID: id, Status: identity.StatusActive, CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(365 * 24 * time.Hour), AuthMethod: m, Binding: identity.BindingDPoP}
	}
	f.clients = map[string]*identity.Client{}
	add := func(c *identity.Client) { f.clients[c.ID] = c }

	c := base("jwt-client", identity.AuthPrivateKeyJWT)
	c.JWKS = jwks
	add(c)
	for _, st := range []identity.Status{identity.StatusSuspended, identity.StatusRevoked} {
		c := base("jwt-"+string(st), identity.AuthPrivateKeyJWT)
		c.JWKS, c.Status = jwks, st
		add(c)
	}
	c = base("jwt-expired", identity.AuthPrivateKeyJWT)
	c.JWKS, c.ExpiresAt = jwks, t0.Add(-time.Second)
	add(c)
	c = base("tls-dn", identity.AuthTLSClient)
	c.TLSSubjectDN = "CN=svc.payments,OU=Payments,O=Example Corp,C=US"
	add(c)
	c = base("tls-dn-loose", identity.AuthTLSClient)
	c.TLSSubjectDN = "cn = SVC.payments , ou=payments,  O=Example  Corp,c=us"
	add(c)
	c = base("tls-dn-other", identity.AuthTLSClient)
	c.TLSSubjectDN = "CN=svc.billing,OU=Payments,O=Example Corp,C=US"
	add(c)
	c = base("tls-uri", identity.AuthTLSClient)
	c.TLSSANURI = "spiffe://example.test/payments"
	add(c)
	c = base("tls-dns", identity.AuthTLSClient)
	c.TLSSANDNS = "SVC.payments.example.test"
	add(c)
	c = base("self-client", identity.AuthSelfSignedTLSClient)
	c.JWKS = selfJWKS
	add(c)
	c = base("basic-client", identity.AuthClientSecretBasic)
	c.Secret = hash
	add(c)
	c = base("post-client", identity.AuthClientSecretPost)
	c.Secret = hash
	add(c)
	return f
}

func (f *fixture) authenticator() (*Authenticator, *fakeReplay) {
	r := newFakeReplay()
	pool := x509.NewCertPool()
	pool.AddCert(f.caCert)
	return &Authenticator{
		Clients:   &fakeClients{m: f.clients},
		NotFound:  errNotFound,
		Replay:    r,
		Audiences: []string{issuer, tokenEndpoint},
		ClientCAs: pool,
		Now:       func() time.Time { return t0 },
	}, r
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, key, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func selfSigned(t testing.TB, key *ecdsa.PrivateKey, serial int64) *x509.Certificate {
	return mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "self-client"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, nil, key, key)
}

func mustJWKS(t testing.TB, keys ...jose.JSONWebKey) json.RawMessage {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims returns a valid assertion claim set for client id, changed by mod.
func claims(id, jti string, mod func(map[string]any)) map[string]any {
	m := map[string]any{
		"iss": id, "sub": id, "aud": issuer, "jti": jti,
		"iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(),
	}
	if mod != nil {
		mod(m)
	}
	return m
}

// sign builds a client assertion with go-jose, the way the SDK will.
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, cl map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	for k, v := range extra {
		opts.ExtraHeaders[k] = v
	}
	if kid != "" {
		opts.ExtraHeaders["kid"] = kid
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(cl)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawJWS builds a compact JWS by hand, for what go-jose refuses to sign.
func rawJWS(header, cl map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(cl)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString(sig)
}

func assertionForm(assertion string) url.Values {
	return url.Values{paramClientAssertionType: {JWTBearerAssertionType}, paramClientAssertion: {assertion}}
}
