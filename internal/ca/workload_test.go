package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func leafTemplate(uri string, notAfter time.Time) *x509.Certificate {
	u, _ := url.Parse(uri)
	return &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "w"},
		URIs:         []*url.URL{u},
		NotBefore:    t0.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func verifyLeaf(iss *Issuer, leaf *x509.Certificate, at time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range iss.Chain {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: iss.Pool(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

func TestLoadOrCreateWorkload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	iss, err := LoadOrCreateWorkload(dir, "example.org", t0)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{workloadRootKey: 0o600, workloadIssuerKey: 0o600, WorkloadRootFile: 0o644, WorkloadIssuerFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	root, inter := iss.Roots[0], iss.Cert
	if !root.IsCA || !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("hierarchy: root CA %v, intermediate CA %v with path len %d", root.IsCA, inter.IsCA, inter.MaxPathLen)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Error("root key is not ECDSA P-256")
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Errorf("intermediate not signed by root: %v", err)
	}
	if !slices.Equal(inter.PermittedURIDomains, []string{"example.org"}) {
		t.Errorf("intermediate URI constraints = %v", inter.PermittedURIDomains)
	}
	if !strings.Contains(string(iss.BundlePEM()), "BEGIN CERTIFICATE") || string(iss.ChainPEM()) == string(iss.BundlePEM()) {
		t.Error("bundle and chain PEM")
	}
	if s := iss.String(); strings.Contains(s, "PRIVATE") {
		t.Errorf("String leaks: %s", s)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := iss.Issue(leafTemplate("spiffe://example.org/client/w", t0.Add(time.Hour)), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLeaf(iss, leaf, t0); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if !iss.IssuedBy(leaf) {
		t.Error("IssuedBy(own leaf) = false")
	}
	// The name constraint refuses a leaf outside the trust domain even if
	// the CA were made to sign it.
	stray, err := iss.Issue(leafTemplate("spiffe://evil.example/client/w", t0.Add(time.Hour)), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLeaf(iss, stray, t0); err == nil {
		t.Error("a leaf outside the trust domain verified")
	}
	if _, err := iss.Issue(leafTemplate("spiffe://example.org/client/w", inter.NotAfter.Add(time.Second)), key.Public()); err == nil {
		t.Error("a leaf outliving its issuer was signed")
	}

	// Reload: same root and intermediate.
	again, err := LoadOrCreateWorkload(dir, "example.org", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(inter) || !again.Roots[0].Equal(root) {
		t.Error("reload created a new hierarchy")
	}

	// The root key is needed only to re-issue the intermediate.
	if err := os.Rename(filepath.Join(dir, workloadRootKey), filepath.Join(dir, "offline")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateWorkload(dir, "example.org", t0.Add(time.Hour)); err != nil {
		t.Errorf("root key offline, intermediate valid: %v", err)
	}
	late := inter.NotAfter.Add(-IntermediateRenewBefore + time.Hour)
	if _, err := LoadOrCreateWorkload(dir, "example.org", late); err == nil || !strings.Contains(err.Error(), "root key") {
		t.Errorf("intermediate due for renewal without the root key: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, "offline"), filepath.Join(dir, workloadRootKey)); err != nil {
		t.Fatal(err)
	}

	// Near expiry: a new intermediate under the same root; old leaves still
	// verify against the unchanged bundle.
	renewed, err := LoadOrCreateWorkload(dir, "example.org", late)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Cert.Equal(inter) || !renewed.Roots[0].Equal(root) {
		t.Error("near expiry: intermediate not re-issued under the same root")
	}
	if !renewed.Cert.NotAfter.After(inter.NotAfter) {
		t.Error("re-issued intermediate does not live longer")
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: renewed.Pool(), Intermediates: func() *x509.CertPool { p := x509.NewCertPool(); p.AddCert(inter); return p }(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Errorf("old leaf with its old intermediate no longer verifies: %v", err)
	}

	// Another trust domain: a new intermediate constrained to it.
	other, err := LoadOrCreateWorkload(dir, "other.example", late)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(other.Cert.PermittedURIDomains, []string{"other.example"}) {
		t.Errorf("trust domain change: constraints %v", other.Cert.PermittedURIDomains)
	}
	if _, err := LoadOrCreateWorkload(dir, "", t0); err == nil {
		t.Error("empty trust domain accepted")
	}
}

// operatorCA writes a root and an intermediate as an operator's tooling
// would (SEC 1 key) and returns the paths.
func operatorCA(t *testing.T, mutate func(*x509.Certificate)) (certFile, keyFile string, root *x509.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corp root"}, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * 365 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	root, _ = x509.ParseCertificate(rootDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "corp workload CA"}, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * 90 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	b := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})...)
	if err := os.WriteFile(certFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, root
}

func TestLoadWorkloadIssuer(t *testing.T) {
	certFile, keyFile, root := operatorCA(t, nil)
	iss, err := LoadWorkloadIssuer(certFile, keyFile, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Roots[0].Equal(root) || len(iss.Chain) != 1 || !iss.Chain[0].Equal(iss.Cert) {
		t.Errorf("operator CA: roots %d chain %d", len(iss.Roots), len(iss.Chain))
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := iss.Issue(leafTemplate("spiffe://corp.example/client/w", t0.Add(time.Hour)), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLeaf(iss, leaf, t0); err != nil {
		t.Errorf("leaf of the operator CA does not verify: %v", err)
	}
	if _, err := iss.CreateCRL(&x509.RevocationList{Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)}); err != nil {
		t.Errorf("CRL: %v", err)
	}

	otherCert, otherKey, _ := operatorCA(t, nil)
	noCRL, noCRLKey, _ := operatorCA(t, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign })
	notCA, notCAKey, _ := operatorCA(t, func(c *x509.Certificate) { c.IsCA = false })
	tests := []struct {
		name, cert, key string
		at              time.Time
		want            string
	}{
		{"key of another CA", certFile, otherKey, t0, "does not hold the key"},
		{"cert of another CA", otherCert, keyFile, t0, "does not hold the key"},
		{"no cRLSign", noCRL, noCRLKey, t0, "cRLSign"},
		{"not a CA", notCA, notCAKey, t0, "not a CA"},
		{"expired", certFile, keyFile, t0.Add(100 * 24 * time.Hour), "not valid now"},
		{"missing key", certFile, filepath.Join(t.TempDir(), "nope"), t0, "no such file"},
		{"key file is a certificate", certFile, certFile, t0, "unsupported PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadWorkloadIssuer(tt.cert, tt.key, tt.at)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadWorkloadIssuer = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
