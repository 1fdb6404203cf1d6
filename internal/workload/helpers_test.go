package workload_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/workload"
)

const td = "example.org"

var t0 = time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)

// clock is an injectable, advanceable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	svc   *workload.Service
	st    *sqlite.Store
	clock *clock
	dir   string
}

// issuers caches one CA hierarchy per test binary: creating keys is not
// what these tests are about.
var (
	issuerOnce sync.Once
	issuerDir  string
	issuer     *ca.Issuer
)

func sharedIssuer(t testing.TB) *ca.Issuer {
	issuerOnce.Do(func() {
		dir, err := osTempDir()
		if err != nil {
			panic(err)
		}
		issuerDir = dir
		issuer, err = ca.LoadOrCreateWorkload(dir, td, t0)
		if err != nil {
			panic(err)
		}
	})
	return issuer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "kb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: t0}
	svc, err := workload.New(st, sharedIssuer(t), workload.Config{TrustDomain: td, MaxLifetime: 48 * time.Hour, CRLURL: "https://kb.example/workload/v1/crl"}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, svc: svc, st: st, clock: c, dir: dir}
}

// client registers an identity directly in the store.
func (f *fixture) client(id string, mutate func(*identity.Client)) *identity.Client {
	f.t.Helper()
	c := &identity.Client{
		ID: id, Name: id, Owner: "team", Purpose: "tests", Environment: "prod",
		Status: identity.StatusActive, CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour),
		AuthMethod: identity.AuthPrivateKeyJWT, Binding: identity.BindingMTLS,
	}
	if mutate != nil {
		mutate(c)
	}
	if err := f.st.CreateClient(context.Background(), c, store.AdminEvent{Time: t0, Actor: "test", Action: "client.create", Target: id}); err != nil {
		f.t.Fatal(err)
	}
	return c
}

// state is what a refusal must leave untouched.
type state struct {
	certs  int
	events int
}

func (f *fixture) state() state {
	f.t.Helper()
	cs, err := f.st.ListCertificates(context.Background(), store.CertificateFilter{})
	if err != nil {
		f.t.Fatal(err)
	}
	evs, err := f.st.ListAdminEvents(context.Background(), "", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return state{certs: len(cs), events: len(evs)}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrPEM makes a CSR for key with tmpl (nil: no names).
func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func subject(cn string) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
}
