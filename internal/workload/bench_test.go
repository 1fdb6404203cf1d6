package workload_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/workload"
)

// BenchmarkIssue measures certificate issuance from a CSR with its
// baseline in the same run:
//
//   - service: Service.Issue end to end: parse and check the CSR, read the
//     identity, count its live certificates, sign, and record the
//     certificate with its admin event in SQLite (one transaction);
//   - csr_and_sign: parse and check the CSR, then sign (no store);
//   - x509_baseline: x509.CreateCertificate alone, with the same CA key,
//     the same leaf key and an equivalent template.
func BenchmarkIssue(b *testing.B) {
	ctx := context.Background()
	iss := sharedIssuer(b)
	leafKey := newKey(b)
	csr := csrPEM(b, leafKey, nil)
	u, _ := url.Parse("spiffe://example.org/client/kb-bench")
	template := func() *x509.Certificate {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		return &x509.Certificate{
			SerialNumber:          n.Add(n, big.NewInt(1)),
			Subject:               pkix.Name{CommonName: "kb-bench", Organization: []string{"keybound workload"}, OrganizationalUnit: []string{"prod"}},
			URIs:                  []*url.URL{u},
			NotBefore:             t0.Add(-time.Minute),
			NotAfter:              t0.Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			CRLDistributionPoints: []string{"https://kb.example/workload/v1/crl"},
		}
	}

	b.Run("service", func(b *testing.B) {
		st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "kb.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		svc, err := workload.New(st, iss, workload.Config{TrustDomain: td, CRLURL: "https://kb.example/workload/v1/crl"}, func() time.Time { return t0 })
		if err != nil {
			b.Fatal(err)
		}
		// A new identity every few issuances keeps under the live limit.
		client, n := "", 0
		newClient := func() {
			client = fmt.Sprintf("kb-bench-%d", n)
			c := &identity.Client{ID: client, Name: client, Owner: "o", Purpose: "p", Environment: "prod", Status: identity.StatusActive,
				CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour), AuthMethod: identity.AuthPrivateKeyJWT, Binding: identity.BindingMTLS}
			if err := st.CreateClient(ctx, c, store.AdminEvent{Time: t0, Actor: "bench", Action: "client.create", Target: client}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%(workload.MaxLiveCertsPerClient-1) == 0 {
				b.StopTimer()
				n++
				newClient()
				b.StartTimer()
			}
			if _, err := svc.Issue(ctx, workload.Request{ClientID: client, CSR: csr, Via: workload.ViaPrivateKeyJWT, Actor: client}); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("csr_and_sign", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			req, err := workload.ParseCSR(csr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := iss.Issue(template(), req.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("x509_baseline", func(b *testing.B) {
		caKey := loadIssuerKey(b)
		b.ReportAllocs()
		for range b.N {
			if _, err := x509.CreateCertificate(rand.Reader, template(), iss.Cert, leafKey.Public(), caKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// loadIssuerKey reads the intermediate's key the shared issuer wrote: the
// very key the service signs with.
func loadIssuerKey(b *testing.B) any {
	b.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(issuerDir, "workload-ca-key.pem"))
	if err != nil {
		b.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	return k
}
