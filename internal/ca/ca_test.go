package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	a, err := LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, caKeyFile: 0o600, CACertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%q mode = %o, want %o", name, got, want)
		}
	}
	b, err := LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert.Equal(b.Cert) {
		t.Error("reload created a new CA")
	}

	tc, err := a.ServerCertificate(dir, []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Leaf.Verify(x509.VerifyOptions{Roots: a.Pool(), DNSName: "127.0.0.1", CurrentTime: now}); err != nil {
		t.Errorf("server cert does not verify: %v", err)
	}
	again, _ := a.ServerCertificate(dir, []string{"localhost", "127.0.0.1"}, now)
	if !again.Leaf.Equal(tc.Leaf) {
		t.Error("valid server certificate was re-issued")
	}
	other, _ := a.ServerCertificate(dir, []string{"keybound.internal"}, now)
	if other.Leaf.Equal(tc.Leaf) {
		t.Error("certificate not re-issued for new host")
	}
	late, _ := a.ServerCertificate(dir, []string{"keybound.internal"}, now.Add(serverLifetime-time.Hour))
	if late.Leaf.Equal(other.Leaf) {
		t.Error("certificate near expiry was not renewed")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cc, err := a.IssueClientCertificate(key.Public(), pkix.Name{CommonName: "svc"}, nil, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: a.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert does not verify: %v", err)
	}
}
