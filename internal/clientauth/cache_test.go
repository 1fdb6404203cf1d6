package clientauth

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
)

// TestChainCacheNeverOutlivesTheCertificate: a chain verified while valid is
// refused once the leaf expires, even though it is in the cache.
func TestChainCacheNeverOutlivesTheCertificate(t *testing.T) {
	f := loadFixture(t)
	a, _ := f.authenticator()
	now := t0
	a.Now = func() time.Time { return now }
	req := Request{Form: url.Values{"client_id": {"tls-dn"}}, PeerCertificates: []*x509.Certificate{f.leaf}}
	for i := 0; i < 2; i++ {
		if _, err := a.Authenticate(context.Background(), req); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	now = f.leaf.NotAfter.Add(time.Second)
	if _, err := a.Authenticate(context.Background(), req); err == nil {
		t.Fatal("expired certificate accepted from the chain cache")
	}
}

// TestKeySetCacheFollowsRotation: after a client's JWKS is replaced, the old
// key no longer verifies and the new one does, though the old set was
// cached.
func TestKeySetCacheFollowsRotation(t *testing.T) {
	f := loadFixture(t)
	a, _ := f.authenticator()
	c := *f.clients["jwt-client"]
	clients := &fakeClients{m: f.clientsWith(&c)}
	a.Clients = clients
	auth := func(key any, kid string) error {
		as := sign(t, key, jose.ES256, kid, claims("jwt-client", randomJTI(t), nil), nil)
		_, err := a.Authenticate(context.Background(), Request{Form: assertionForm(as)})
		return err
	}
	if err := auth(f.ecKey, "ec1"); err != nil {
		t.Fatal(err)
	}
	c.JWKS = mustJWKS(t, jose.JSONWebKey{Key: &f.otherEC.PublicKey, KeyID: "ec1", Use: "sig"})
	if err := auth(f.ecKey, "ec1"); err == nil {
		t.Fatal("the rotated-out key still verifies")
	}
	if err := auth(f.otherEC, "ec1"); err != nil {
		t.Fatalf("the new key does not verify: %v", err)
	}
}

// clientsWith returns the fixture's clients with c in place of its id.
func (f *fixture) clientsWith(c *identity.Client) map[string]*identity.Client {
	m := make(map[string]*identity.Client, len(f.clients))
	for k, v := range f.clients {
		m[k] = v
	}
	m[c.ID] = c
	return m
}

func randomJTI(t *testing.T) string {
	t.Helper()
	return rand.Text()
}
