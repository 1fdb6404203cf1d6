package workload_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/workload"
)

func osTempDir() (string, error) { return os.MkdirTemp("", "keybound-workload-test") }

func TestMain(m *testing.M) {
	code := m.Run()
	if issuerDir != "" {
		os.RemoveAll(issuerDir)
	}
	os.Exit(code)
}

func verify(t *testing.T, f *fixture, is *workload.Issued, at time.Time) {
	t.Helper()
	rest := is.ChainPEM
	var chain []*x509.Certificate
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) != 2 || !chain[0].Equal(is.Cert) {
		t.Fatalf("chain PEM holds %d certificates; want the leaf then the intermediate", len(chain))
	}
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := is.Cert.Verify(x509.VerifyOptions{Roots: f.svc.Issuer.Pool(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
}

func TestIssue(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	key := newKey(t)
	is, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
	if err != nil {
		t.Fatal(err)
	}
	c := is.Cert
	want := "spiffe://example.org/client/kb-svc"
	switch {
	case len(c.URIs) != 1 || c.URIs[0].String() != want:
		t.Errorf("URI SANs = %v; want exactly %s", c.URIs, want)
	case len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0:
		t.Error("certificate carries names beyond the SPIFFE ID")
	case c.Subject.CommonName != "kb-svc":
		t.Errorf("CN = %q", c.Subject.CommonName)
	case c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}):
		t.Errorf("usage: CA %v, key usage %v, ext %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	case !c.NotAfter.Equal(t0.Add(workload.DefaultLifetime)) || !c.NotBefore.Equal(t0.Add(-time.Minute)):
		t.Errorf("validity %s to %s; want the default 24h from now (1m back-dated)", c.NotBefore, c.NotAfter)
	case !slices.Equal(c.CRLDistributionPoints, []string{"https://kb.example/workload/v1/crl"}):
		t.Errorf("CRL DP = %v", c.CRLDistributionPoints)
	case !key.PublicKey.Equal(c.PublicKey):
		t.Error("the certificate is not for the CSR's key")
	}
	verify(t, f, is, t0)
	if id, ok := f.svc.ClientOf(c); !ok || id != "kb-svc" {
		t.Errorf("ClientOf = %q, %v", id, ok)
	}

	rec, err := f.st.GetCertificate(context.Background(), is.Record.Serial)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Raw)
	if rec.ClientID != "kb-svc" || rec.SPIFFEID != want || rec.Via != workload.ViaPrivateKeyJWT || rec.Thumbprint != base64.RawURLEncoding.EncodeToString(sum[:]) || !rec.NotAfter.Equal(c.NotAfter) {
		t.Errorf("stored record = %+v", rec)
	}
	evs, _ := f.st.ListAdminEvents(context.Background(), "kb-svc", 1)
	if len(evs) != 1 || evs[0].Action != workload.ActionIssue || evs[0].Actor != "kb-svc" || evs[0].Changes["serial"] != rec.Serial || evs[0].Changes["via"] != "private_key_jwt" {
		t.Errorf("admin event = %+v", evs)
	}

	// A requested lifetime within the maximum; and never beyond the
	// identity's own expiry.
	is2, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, subject("kb-svc")), Lifetime: 10 * time.Minute, Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil || !is2.Cert.NotAfter.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("10m certificate: %v", err)
	}
	f.client("kb-short", func(c *identity.Client) { c.ExpiresAt = t0.Add(2 * time.Hour) })
	is3, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-short", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil || !is3.Cert.NotAfter.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("certificate outlives its identity: %v %v", err, is3)
	}
	// The CSR may name exactly the identity it enrolls as.
	u, _ := url.Parse(want)
	if _, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{u}, Subject: pkix.Name{CommonName: want}}), Via: workload.ViaAdmin, Actor: "admin"}); err != nil {
		t.Errorf("CSR naming its own SPIFFE ID: %v", err)
	}
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssueRefusals(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	f.client("kb-other", nil)
	f.client("kb-suspended", func(c *identity.Client) { c.Status = identity.StatusSuspended })
	f.client("kb-revoked", func(c *identity.Client) { c.Status = identity.StatusRevoked })
	f.client("kb-expired", func(c *identity.Client) { c.ExpiresAt = t0 })
	f.client("kb-secret", func(c *identity.Client) { c.AuthMethod = identity.AuthClientSecretBasic })
	f.client("kb-selfsigned", func(c *identity.Client) { c.AuthMethod = identity.AuthSelfSignedTLSClient })
	key := newKey(t)
	good := csrPEM(t, key, nil)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tampered := func() []byte {
		blk, _ := pem.Decode(good)
		der := append([]byte(nil), blk.Bytes...)
		der[len(der)-5] ^= 0xff // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}()
	otherURI, _ := url.Parse("spiffe://example.org/client/kb-other")
	foreignTD, _ := url.Parse("spiffe://evil.example/client/kb-svc")
	tests := []struct {
		name     string
		clientID string
		csr      []byte
		lifetime time.Duration
		want     error
		detail   string
	}{
		{"empty CSR", "kb-svc", nil, 0, workload.ErrBadRequest, "empty"},
		{"not a CSR", "kb-svc", []byte("hello"), 0, workload.ErrBadRequest, "not a valid PKCS#10"},
		{"too large", "kb-svc", make([]byte, workload.MaxCSRBytes+1), 0, workload.ErrBadRequest, "larger than"},
		{"certificate PEM", "kb-svc", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), 0, workload.ErrBadRequest, "send a CERTIFICATE REQUEST"},
		{"two CSRs", "kb-svc", append(append([]byte{}, good...), good...), 0, workload.ErrBadRequest, "exactly one"},
		{"broken PEM", "kb-svc", []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"), 0, workload.ErrBadRequest, "not valid PEM"},
		{"signature does not verify", "kb-svc", tampered, 0, workload.ErrBadRequest, "signature"},
		{"RSA 1024 key", "kb-svc", csrPEM(t, rsaKey(t, 1024), nil), 0, workload.ErrWeakKey, "1024 bits"},
		{"P-224 key", "kb-svc", csrPEM(t, p224, nil), 0, workload.ErrWeakKey, "P-256"},
		{"another identity's SPIFFE ID", "kb-svc", csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{otherURI}}), 0, workload.ErrIdentityMismatch, "kb-other"},
		{"another trust domain", "kb-svc", csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{foreignTD}}), 0, workload.ErrIdentityMismatch, "evil.example"},
		{"another common name", "kb-svc", csrPEM(t, key, subject("kb-other")), 0, workload.ErrIdentityMismatch, "kb-other"},
		{"a DNS name", "kb-svc", csrPEM(t, key, &x509.CertificateRequest{DNSNames: []string{"api.example.org"}}), 0, workload.ErrIdentityMismatch, "DNS name"},
		{"an IP address", "kb-svc", csrPEM(t, key, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), 0, workload.ErrIdentityMismatch, "IP address"},
		{"lifetime too long", "kb-svc", good, 49 * time.Hour, workload.ErrBadRequest, "lifetime"},
		{"lifetime too short", "kb-svc", good, 30 * time.Second, workload.ErrBadRequest, "lifetime"},
		{"unknown identity", "kb-nobody", good, 0, workload.ErrNotFound, "no identity"},
		{"client id outside the SPIFFE grammar", "kb/../x", good, 0, workload.ErrNotFound, "no identity"},
		{"suspended identity", "kb-suspended", good, 0, workload.ErrClientNotUsable, "suspended"},
		{"revoked identity", "kb-revoked", good, 0, workload.ErrClientNotUsable, "revoked"},
		{"expired identity", "kb-expired", good, 0, workload.ErrClientNotUsable, "expired"},
		{"static secret identity", "kb-secret", good, 0, workload.ErrMethod, "client_secret_basic"},
		{"self-signed identity", "kb-selfsigned", good, 0, workload.ErrMethod, "self_signed"},
	}
	before := f.state()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is, err := f.svc.Issue(context.Background(), workload.Request{ClientID: tt.clientID, CSR: tt.csr, Lifetime: tt.lifetime, Via: workload.ViaPrivateKeyJWT, Actor: tt.clientID})
			if !errors.Is(err, tt.want) || is != nil {
				t.Fatalf("Issue = %v, %v; want %v", is, err, tt.want)
			}
			status, _, _, detail, _, ok := workload.Problem(err)
			if !ok || status < 400 || status >= 500 || !strings.Contains(detail, tt.detail) {
				t.Errorf("problem: %d %q; want a 4xx whose detail mentions %q", status, detail, tt.detail)
			}
			if after := f.state(); after != before {
				t.Errorf("a refused issuance changed state: %+v -> %+v", before, after)
			}
		})
	}
}

func TestLiveCertificateLimit(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	csr := csrPEM(t, newKey(t), nil)
	for range workload.MaxLiveCertsPerClient {
		if _, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	before := f.state()
	if _, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"}); !errors.Is(err, workload.ErrLimit) {
		t.Fatalf("issuance past the limit: %v", err)
	}
	if f.state() != before {
		t.Error("the refused issuance stored something")
	}
	// Expiry frees the slots.
	f.clock.Advance(workload.DefaultLifetime)
	if _, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"}); err != nil {
		t.Errorf("after the others expired: %v", err)
	}
}

func TestJoinTokens(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	jt, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(jt.Token, "kbjt.") || !jt.Record.ExpiresAt.Equal(t0.Add(workload.DefaultJoinTokenLifetime)) {
		t.Errorf("join token %s expires %s", jt, jt.Record.ExpiresAt)
	}
	if strings.Contains(jt.String(), jt.Token) {
		t.Error("String shows the token")
	}
	// Only the hash of the secret is stored; the admin log names the id.
	stored, err := f.st.GetJoinToken(ctx, jt.Record.ID)
	if err != nil {
		t.Fatal(err)
	}
	secret := jt.Token[strings.LastIndexByte(jt.Token, '.')+1:]
	if sum := sha256.Sum256([]byte(secret)); string(stored.Hash) != string(sum[:]) || strings.Contains(string(stored.Hash), secret) {
		t.Error("stored join token is not the SHA-256 of its secret")
	}
	evs, _ := f.st.ListAdminEvents(ctx, "", 0)
	for _, ev := range evs {
		for _, v := range ev.Changes {
			if strings.Contains(v, secret) {
				t.Errorf("admin event %s holds the join token secret", ev.Action)
			}
		}
	}

	key := newKey(t)
	bad := csrPEM(t, rsaKey(t, 1024), nil)
	// A bad CSR is refused and does not consume the token.
	before := f.state()
	if _, err := f.svc.EnrollWithJoinToken(ctx, jt.Token, bad, 0); !errors.Is(err, workload.ErrWeakKey) {
		t.Fatalf("weak CSR with a good token: %v", err)
	}
	if f.state() != before {
		t.Error("a refused enrollment stored something")
	}
	is, err := f.svc.EnrollWithJoinToken(ctx, jt.Token, csrPEM(t, key, nil), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if is.Record.ClientID != "kb-svc" || is.Record.Via != workload.ViaJoinToken || !is.Cert.NotAfter.Equal(t0.Add(time.Hour)) {
		t.Errorf("enrolled: %+v", is.Record)
	}
	verify(t, f, is, t0)
	if evs, _ := f.st.ListAdminEvents(ctx, "kb-svc", 1); evs[0].Changes["join_token"] != jt.Record.ID {
		t.Errorf("issuance event does not name the join token: %+v", evs[0])
	}

	expiring, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	forSuspended, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := jt.Token[:len(jt.Token)-4] + "AAAA"
	tests := []struct {
		name  string
		token string
		at    time.Duration
		setup func()
		want  error
	}{
		{"reused token", jt.Token, 0, nil, workload.ErrJoinTokenUsed},
		{"right id, wrong secret", wrongSecret, 0, nil, workload.ErrJoinToken},
		{"unknown token", "kbjt.aaaaaaaaaaaaaaaa." + strings.Repeat("A", 43), 0, nil, workload.ErrJoinToken},
		{"malformed", "kbjt.short.x", 0, nil, workload.ErrJoinToken},
		{"too long", strings.Repeat("k", workload.MaxJoinTokenBytes+1), 0, nil, workload.ErrJoinToken},
		{"empty", "", 0, nil, workload.ErrJoinToken},
		{"expired token", expiring.Token, time.Minute, nil, workload.ErrJoinTokenExpired},
		{"identity suspended after the token was made", forSuspended.Token, 0, func() {
			c, _ := f.st.GetClient(ctx, "kb-svc")
			next := *c
			next.Status, next.UpdatedAt = identity.StatusSuspended, c.UpdatedAt.Add(time.Second)
			if err := f.st.UpdateClient(ctx, &next, c.UpdatedAt, store.AdminEvent{Time: t0, Action: "client.suspend", Target: "kb-svc"}); err != nil {
				t.Fatal(err)
			}
		}, workload.ErrClientNotUsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			f.clock.Advance(tt.at)
			before := f.state()
			is, err := f.svc.EnrollWithJoinToken(ctx, tt.token, csrPEM(t, key, nil), 0)
			if !errors.Is(err, tt.want) || is != nil {
				t.Fatalf("EnrollWithJoinToken = %v; want %v", err, tt.want)
			}
			if status, _, _, _, code, _ := workload.Problem(err); (status != 400 || code != "invalid_grant") && tt.want != workload.ErrClientNotUsable {
				t.Errorf("wire: %d %s; want 400 invalid_grant", status, code)
			}
			if f.state() != before {
				t.Error("a refused enrollment stored something")
			}
		})
	}
	if tok, _ := f.st.GetJoinToken(ctx, forSuspended.Record.ID); !tok.UsedAt.IsZero() {
		t.Error("a refused enrollment consumed the join token")
	}
}

func TestJoinTokenCreationRefusals(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	f.client("kb-suspended", func(c *identity.Client) { c.Status = identity.StatusSuspended })
	f.client("kb-secret", func(c *identity.Client) { c.AuthMethod = identity.AuthClientSecretPost })
	ctx := context.Background()
	tests := []struct {
		name, client string
		ttl          time.Duration
		want         error
	}{
		{"unknown identity", "kb-nobody", 0, workload.ErrNotFound},
		{"suspended identity", "kb-suspended", 0, workload.ErrClientNotUsable},
		{"secret identity", "kb-secret", 0, workload.ErrMethod},
		{"lifetime too long", "kb-svc", 25 * time.Hour, workload.ErrBadRequest},
		{"lifetime too short", "kb-svc", time.Second, workload.ErrBadRequest},
	}
	before := f.state()
	for _, tt := range tests {
		if _, err := f.svc.CreateJoinToken(ctx, "admin", tt.client, tt.ttl); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}
	if f.state() != before {
		t.Error("refused join tokens wrote admin events")
	}
	for range workload.MaxLiveJoinTokensPerClient {
		if _, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", 0); !errors.Is(err, workload.ErrLimit) {
		t.Errorf("join token past the limit: %v", err)
	}
}

// chainOf returns what a workload presents: the leaf and the intermediate.
func chainOf(f *fixture, is *workload.Issued) []*x509.Certificate {
	return append([]*x509.Certificate{is.Cert}, f.svc.Issuer.Chain...)
}

func TestRenew(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	key := newKey(t)
	cur, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(20 * time.Hour)
	newKey := newKey(t)
	next, err := f.svc.Renew(ctx, chainOf(f, cur), csrPEM(t, newKey, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	if next.Record.RenewedFrom != cur.Record.Serial || next.Record.Via != workload.ViaRenewal || !newKey.PublicKey.Equal(next.Cert.PublicKey) || next.Record.SPIFFEID != cur.Record.SPIFFEID {
		t.Errorf("renewed: %+v", next.Record)
	}
	// The leaf alone is enough: the service knows its intermediate.
	if _, err := f.svc.Renew(ctx, []*x509.Certificate{next.Cert}, csrPEM(t, newKey, nil), 0); err != nil {
		t.Errorf("renew with the leaf alone: %v", err)
	}

	toRevoke, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Revoke(ctx, "admin", toRevoke.Record.Serial, "test"); err != nil {
		t.Fatal(err)
	}
	// Signed by the workload CA but never recorded (not issued through the
	// service): refused.
	u, _ := url.Parse("spiffe://example.org/client/kb-svc")
	unrecorded, err := f.svc.Issuer.Issue(&x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "kb-svc"}, URIs: []*url.URL{u},
		NotBefore: t0, NotAfter: t0.Add(48 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := func() *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "kb-svc"}, URIs: []*url.URL{u}, NotBefore: t0, NotAfter: t0.Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		c, _ := x509.ParseCertificate(der)
		return c
	}()
	good := csrPEM(t, key, nil)
	tests := []struct {
		name  string
		chain []*x509.Certificate
		csr   []byte
		at    time.Duration
		want  error
	}{
		{"no certificate", nil, good, 0, workload.ErrCertificate},
		{"revoked certificate", chainOf(f, toRevoke), good, 0, workload.ErrCertRevoked},
		{"self-signed certificate", []*x509.Certificate{selfSigned}, good, 0, workload.ErrCertificate},
		{"unrecorded certificate", []*x509.Certificate{unrecorded}, good, 0, workload.ErrCertificate},
		{"chain too long", append(chainOf(f, next), next.Cert, next.Cert, next.Cert), good, 0, workload.ErrCertificate},
		{"CSR for another identity", chainOf(f, next), csrPEM(t, key, subject("kb-other")), 0, workload.ErrIdentityMismatch},
		{"weak key", chainOf(f, next), csrPEM(t, rsaKey(t, 1024), nil), 0, workload.ErrWeakKey},
		{"expired certificate", chainOf(f, next), good, workload.DefaultLifetime + time.Minute, workload.ErrCertExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Advance(tt.at)
			before := f.state()
			is, err := f.svc.Renew(ctx, tt.chain, tt.csr, 0)
			if !errors.Is(err, tt.want) || is != nil {
				t.Fatalf("Renew = %v; want %v", err, tt.want)
			}
			if f.state() != before {
				t.Error("a refused renewal stored something")
			}
		})
	}
}

func TestRenewSuspendedIdentity(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	key := newKey(t)
	cur, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.st.GetClient(ctx, "kb-svc")
	next := *c
	next.Status, next.UpdatedAt = identity.StatusSuspended, c.UpdatedAt.Add(time.Second)
	if err := f.st.UpdateClient(ctx, &next, c.UpdatedAt, store.AdminEvent{Time: t0, Action: "client.suspend", Target: "kb-svc"}); err != nil {
		t.Fatal(err)
	}
	before := f.state()
	if _, err := f.svc.Renew(ctx, chainOf(f, cur), csrPEM(t, key, nil), 0); !errors.Is(err, workload.ErrClientNotUsable) {
		t.Errorf("renewal for a suspended identity: %v", err)
	}
	if f.state() != before {
		t.Error("the refused renewal stored something")
	}
}

func TestRevokeAndView(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	key := newKey(t)
	is, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CheckCert(is.Cert, t0); err != nil {
		t.Fatalf("fresh certificate: %v", err)
	}
	// A second node's view, synced from the same store.
	other := workload.NewView(f.st, f.clock.Now)
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Any spelling of the serial an operator may paste.
	colons := strings.ToUpper(is.Record.Serial)
	rec, err := f.svc.Revoke(ctx, "admin", "0x"+colons, "key compromise")
	if err != nil {
		t.Fatal(err)
	}
	if rec.RevokedAt.IsZero() || rec.RevocationReason != "key compromise" {
		t.Errorf("revoked record = %+v", rec)
	}
	if err := f.svc.CheckCert(is.Cert, t0); !errors.Is(err, workload.ErrCertRevoked) {
		t.Errorf("CheckCert right after Revoke = %v; want ErrCertRevoked (same process, no sync)", err)
	}
	if other.Revoked(is.Record.Serial) {
		t.Error("the other node knew before syncing")
	}
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !other.Revoked(is.Record.Serial) {
		t.Error("the other node did not learn the revocation on sync")
	}
	evs, _ := f.st.ListAdminEvents(ctx, "kb-svc", 1)
	if evs[0].Action != workload.ActionRevoke || evs[0].Actor != "admin" || evs[0].Changes["reason"] != "key compromise" {
		t.Errorf("revocation event = %+v", evs[0])
	}
	before := f.state()
	for name, tc := range map[string]struct {
		serial string
		want   error
	}{
		"twice":     {is.Record.Serial, workload.ErrAlreadyRevoked},
		"unknown":   {"abcdef", workload.ErrNotFound},
		"not hex":   {"xyz", workload.ErrBadRequest},
		"zero":      {"0", workload.ErrBadRequest},
		"too long":  {strings.Repeat("a", 65), workload.ErrBadRequest},
		"empty":     {"", workload.ErrBadRequest},
		"negative?": {"-1", workload.ErrBadRequest},
	} {
		if _, err := f.svc.Revoke(ctx, "admin", tc.serial, ""); !errors.Is(err, tc.want) {
			t.Errorf("revoke %s: %v; want %v", name, err, tc.want)
		}
	}
	if f.state() != before {
		t.Error("refused revocations wrote something")
	}

	// Expiry: a certificate of this CA is refused outside its validity; a
	// foreign one is not this CA's to judge.
	live, _ := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err := f.svc.CheckCert(live.Cert, live.Cert.NotAfter.Add(time.Second)); !errors.Is(err, workload.ErrCertExpired) {
		t.Errorf("expired certificate: %v", err)
	}
	foreign := &x509.Certificate{SerialNumber: big.NewInt(9), RawIssuer: []byte("other"), NotAfter: t0}
	if err := f.svc.CheckCert(foreign, t0.Add(time.Hour)); err != nil {
		t.Errorf("foreign expired certificate: %v", err)
	}
	if _, ok := f.svc.ClientOf(foreign); ok {
		t.Error("ClientOf accepted a foreign certificate")
	}
	// A chain is this CA's when it ends at one of its roots.
	own := append([]*x509.Certificate{live.Cert}, append(f.svc.Issuer.Chain, f.svc.Issuer.Roots...)...)
	if !f.svc.IssuedBy(own) {
		t.Error("a chain of this CA's own leaf is not IssuedBy it")
	}
	if f.svc.IssuedBy([]*x509.Certificate{live.Cert, f.svc.Issuer.Cert}) || f.svc.IssuedBy([]*x509.Certificate{foreign}) {
		t.Error("a chain not ending at a root of this CA is IssuedBy it")
	}
}

// TestIssuedByOperatorCA: with an operator-supplied CA, whose root may sign
// other CAs, a chain counts only if the leaf's issuer holds the configured
// issuing CA's key: a sibling CA under the same root with the same name
// could otherwise mint workload identities.
func TestIssuedByOperatorCA(t *testing.T) {
	mk := func(tmpl, parent *x509.Certificate, signer *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		t.Helper()
		key := newKey(t)
		if parent == nil {
			parent, signer = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key
	}
	caTmpl := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour)}
	}
	root, rootKey := mk(caTmpl(1, "corp root"), nil, nil)
	issuing, issuingKey := mk(caTmpl(2, "workload CA"), root, rootKey)
	sibling, siblingKey := mk(caTmpl(3, "workload CA"), root, rootKey) // same name, other key
	u, _ := url.Parse("spiffe://corp.example/client/victim")
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "victim"}, URIs: []*url.URL{u},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	good, _ := mk(leafTmpl, issuing, issuingKey)
	forged, _ := mk(leafTmpl, sibling, siblingKey)

	svc := &workload.Service{Issuer: &ca.Issuer{Cert: issuing, Chain: []*x509.Certificate{issuing}, Roots: []*x509.Certificate{root}, External: true}}
	if !svc.IssuedBy([]*x509.Certificate{good, issuing, root}) {
		t.Error("a leaf of the configured issuing CA is not IssuedBy it")
	}
	if svc.IssuedBy([]*x509.Certificate{forged, sibling, root}) {
		t.Error("a leaf of a same-named sibling CA under the same root is IssuedBy the workload CA")
	}
	// keybound's own root signs only its intermediates: the root is proof.
	own := &workload.Service{Issuer: &ca.Issuer{Cert: issuing, Chain: []*x509.Certificate{issuing}, Roots: []*x509.Certificate{root}}}
	if !own.IssuedBy([]*x509.Certificate{forged, sibling, root}) {
		t.Error("with keybound's own CA, a chain to its root is not IssuedBy it")
	}
}

func TestClientChangedRevokesCertificates(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	key := newKey(t)
	var issued []*workload.Issued
	for range 2 {
		is, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, is)
	}
	if err := f.svc.ClientChanged(ctx, "kb-svc"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CheckCert(issued[0].Cert, t0); err != nil {
		t.Fatalf("an active identity's certificate was revoked: %v", err)
	}
	c, _ := f.st.GetClient(ctx, "kb-svc")
	next := *c
	next.Status, next.UpdatedAt = identity.StatusRevoked, c.UpdatedAt.Add(time.Second)
	if err := f.st.UpdateClient(ctx, &next, c.UpdatedAt, store.AdminEvent{Time: t0, Action: "client.revoke", Target: "kb-svc"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ClientChanged(ctx, "kb-svc"); err != nil {
		t.Fatal(err)
	}
	for _, is := range issued {
		if err := f.svc.CheckCert(is.Cert, t0); !errors.Is(err, workload.ErrCertRevoked) {
			t.Errorf("certificate of a revoked identity: %v", err)
		}
	}
	evs, _ := f.st.ListAdminEvents(ctx, "kb-svc", 2)
	for _, ev := range evs {
		if ev.Action != workload.ActionRevoke || ev.Actor != "keybound" {
			t.Errorf("event %+v; want a cert.revoke by keybound", ev)
		}
	}
	// Idempotent.
	if err := f.svc.ClientChanged(ctx, "kb-svc"); err != nil {
		t.Errorf("second call: %v", err)
	}
}

func TestCRL(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	key := newKey(t)
	var serials []string
	for range 3 {
		is, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaAdmin, Actor: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, is.Record.Serial)
	}
	empty, err := f.svc.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(der []byte) *x509.RevocationList {
		t.Helper()
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(f.svc.Issuer.Cert); err != nil {
			t.Errorf("CRL signature: %v", err)
		}
		return crl
	}
	if c := parse(empty); len(c.RevokedCertificateEntries) != 0 || !c.NextUpdate.After(c.ThisUpdate) {
		t.Errorf("empty CRL: %d entries, %s to %s", len(c.RevokedCertificateEntries), c.ThisUpdate, c.NextUpdate)
	}
	if again, _ := f.svc.CRL(ctx); string(again) != string(empty) {
		t.Error("the CRL was signed again with nothing new")
	}
	for _, s := range serials[:2] {
		if _, err := f.svc.Revoke(ctx, "admin", s, ""); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(time.Second)
	crl := parse(must(f.svc.CRL(ctx)))
	var got []string
	for _, e := range crl.RevokedCertificateEntries {
		got = append(got, workload.SerialHex(e.SerialNumber))
	}
	slices.Sort(got)
	want := slices.Clone(serials[:2])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("CRL lists %v; want %v", got, want)
	}
	if crl.Number.Cmp(parse(empty).Number) <= 0 {
		t.Error("CRL number did not grow")
	}
	// After the certificates expire they leave the CRL.
	f.clock.Advance(workload.DefaultLifetime)
	if c := parse(must(f.svc.CRL(ctx))); len(c.RevokedCertificateEntries) != 0 {
		t.Errorf("CRL still lists %d expired certificates", len(c.RevokedCertificateEntries))
	}
	if !strings.Contains(string(f.svc.Bundle()), "BEGIN CERTIFICATE") {
		t.Error("bundle is not PEM")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSPIFFEIDs(t *testing.T) {
	if id, err := workload.SPIFFEID(td, "kb-abc"); err != nil || id != "spiffe://example.org/client/kb-abc" {
		t.Errorf("SPIFFEID = %q, %v", id, err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "ü", strings.Repeat("a", 257)} {
		if _, err := workload.SPIFFEID(td, bad); err == nil {
			t.Errorf("SPIFFEID(%q) accepted", bad)
		}
	}
	tests := []struct {
		uri string
		id  string
		ok  bool
	}{
		{"spiffe://example.org/client/kb-abc", "kb-abc", true},
		{"spiffe://example.org/client/kb-abc/x", "", false},
		{"spiffe://example.org/client/", "", false},
		{"spiffe://example.org/client/..", "", false},
		{"spiffe://other.org/client/kb-abc", "", false},
		{"spiffe://example.org:443/client/kb-abc", "", false},
		{"spiffe://u@example.org/client/kb-abc", "", false},
		{"spiffe://example.org/client/kb-abc?x=1", "", false},
		{"spiffe://example.org/client/kb-abc#f", "", false},
		{"spiffe://example.org/client/kb%2Fabc", "", false},
		{"https://example.org/client/kb-abc", "", false},
		{"spiffe://example.org/svc/kb-abc", "", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := workload.ClientFromSPIFFEID(td, u); id != tt.id || ok != tt.ok {
			t.Errorf("ClientFromSPIFFEID(%s) = %q, %v", tt.uri, id, ok)
		}
	}
	for _, bad := range []string{"", "Example.org", "a/b", "ex ample", strings.Repeat("a", 256)} {
		if workload.ValidTrustDomain(bad) == nil {
			t.Errorf("ValidTrustDomain(%q) accepted", bad)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	iss := sharedIssuer(t)
	f := newFixture(t)
	for name, cfg := range map[string]workload.Config{
		"bad trust domain":     {TrustDomain: "Bad"},
		"default above max":    {TrustDomain: td, DefaultLifetime: 2 * time.Hour, MaxLifetime: time.Hour},
		"default below min":    {TrustDomain: td, DefaultLifetime: time.Second},
		"max above cap":        {TrustDomain: td, MaxLifetime: workload.MaxLifetimeCap + time.Hour},
		"join token too long":  {TrustDomain: td, JoinTokenLifetime: 48 * time.Hour},
		"join token too short": {TrustDomain: td, JoinTokenLifetime: time.Second},
	} {
		if _, err := workload.New(f.st, iss, cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := workload.New(nil, iss, workload.Config{TrustDomain: td}, nil); err == nil {
		t.Error("no store: accepted")
	}
}

// TestKeyCompromiseRevokesRenewals: whoever held a compromised key could
// renew its certificate into certificates for keys of their own; revoking
// the certificate for key compromise revokes its whole renewal line, and
// only that line. Another reason revokes the one certificate.
func TestKeyCompromiseRevokesRenewals(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	issue := func() *workload.Issued {
		t.Helper()
		is, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, newKey(t), nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	renew := func(from *workload.Issued) *workload.Issued {
		t.Helper()
		is, err := f.svc.Renew(ctx, chainOf(f, from), csrPEM(t, newKey(t), nil), 0)
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	a := issue()
	b := renew(a)    // the thief's renewal, for the thief's key
	c := renew(b)    // and its renewal
	other := issue() // another replica's line
	other2 := renew(other)

	// Revoked for another reason first: only that certificate.
	if _, err := f.svc.RevokeWithReason(ctx, "admin", a.Record.Serial, workload.ReasonSuperseded, "rotated"); err != nil {
		t.Fatal(err)
	}
	if f.svc.View.Revoked(b.Record.Serial) {
		t.Fatal("a superseded certificate's renewal was revoked")
	}
	// The key turns out to be compromised: the whole line goes.
	if _, err := f.svc.RevokeWithReason(ctx, "admin", a.Record.Serial, workload.ReasonKeyCompromise, "laptop lost"); !errors.Is(err, workload.ErrAlreadyRevoked) {
		t.Fatalf("second revocation of a = %v, want ErrAlreadyRevoked", err)
	}
	for _, is := range []*workload.Issued{b, c} {
		if !f.svc.View.Revoked(is.Record.Serial) {
			t.Errorf("renewal %s of the compromised certificate is not revoked", is.Record.Serial)
		}
		if _, err := f.svc.Renew(ctx, chainOf(f, is), csrPEM(t, newKey(t), nil), 0); !errors.Is(err, workload.ErrCertRevoked) {
			t.Errorf("renewing %s = %v, want ErrCertRevoked", is.Record.Serial, err)
		}
	}
	for _, is := range []*workload.Issued{other, other2} {
		if f.svc.View.Revoked(is.Record.Serial) {
			t.Errorf("certificate %s outside the compromised line was revoked", is.Record.Serial)
		}
	}
	rec, err := f.svc.Store.GetCertificate(ctx, c.Record.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.RevocationReason, a.Record.Serial) {
		t.Errorf("revocation reason %q does not name the compromised certificate", rec.RevocationReason)
	}
}
