package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestForwardedCerts(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "workload"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	header := url.QueryEscape(certPEM)

	var f forwardedCerts
	c := f.parse(header)
	if c == nil || c.Subject.CommonName != "workload" {
		t.Fatalf("parsed %v, want the workload certificate", c)
	}
	if again := f.parse(header); again != c {
		t.Error("the same header was parsed again instead of coming from the cache")
	}

	bad := []struct{ name, v string }{
		{"bad escape", "%zz" + header},
		{"not PEM", url.QueryEscape("MIIB...")},
		{"another PEM type", url.QueryEscape(strings.Replace(certPEM, "CERTIFICATE", "PUBLIC KEY", 2))},
		{"corrupt DER", url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[:len(der)/2]})))},
	}
	for _, tt := range bad {
		for range 2 { // refused the same way when it comes again
			if c := f.parse(tt.v); c != nil {
				t.Errorf("%s: parsed %v, want nil", tt.name, c.Subject)
			}
		}
	}
	if len(f.m) != 1 {
		t.Errorf("cache holds %d entries after refusals, want only the good one", len(f.m))
	}

	// Distinct header values (trailing line breaks after the block) for
	// the same certificate: the cache never holds more than its bound.
	for i := range maxForwardedCerts + 10 {
		if f.parse(header+strings.Repeat("%0A", i+1)) == nil {
			t.Fatalf("variant %d was not parsed", i)
		}
		if len(f.m) > maxForwardedCerts {
			t.Fatalf("cache holds %d entries, bound %d", len(f.m), maxForwardedCerts)
		}
	}
}
