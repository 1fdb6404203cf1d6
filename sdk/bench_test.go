package sdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/dpop"
)

// BenchmarkPerRequestOverhead measures what the SDK adds to one request
// against a plain client in the same run, all over TLS on loopback to a
// server that asks for (but does not need) a client certificate:
//
//   - plain: http.Client, no client certificate, no token;
//   - plain-mtls: http.Client presenting a client certificate;
//   - bearer: Transport with a cached Bearer token (header only);
//   - dpop: Transport with a cached DPoP token: a fresh ES256 proof with
//     ath signed for every request;
//   - workload-mtls: CertificateSource.Client with a cached mTLS-bound
//     token over the workload certificate's connection.
//
// Tokens are cached for the whole run, so the figures are the per-request
// cost, not token fetches. Connections are kept alive in every case.
func BenchmarkPerRequestOverhead(b *testing.B) {
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	api.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	api.StartTLS()
	defer api.Close()
	url := api.URL + "/invoices/42?x=1"
	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())
	plainTransport := func(certs ...tls.Certificate) *http.Transport {
		return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}
	}
	get := func(b *testing.B, c *http.Client) {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	run := func(b *testing.B, c *http.Client) {
		get(b, c) // warm the connection and the token cache
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			get(b, c)
		}
	}

	b.Run("plain", func(b *testing.B) { run(b, &http.Client{Transport: plainTransport()}) })
	b.Run("plain-mtls", func(b *testing.B) { run(b, &http.Client{Transport: plainTransport(selfSignedCert(b))}) })
	for _, dpopOn := range []bool{false, true} {
		b.Run(map[bool]string{false: "bearer", true: "dpop"}[dpopOn], func(b *testing.B) {
			s := newSetup(b, dpopOn, nil)
			s.as.expiresIn = 1 << 30 // cached for the whole run
			ts := s.cfg.TokenSource(context.Background())
			run(b, &http.Client{Transport: &Transport{Source: ts, Base: plainTransport()}})
		})
	}
	b.Run("workload-mtls", func(b *testing.B) {
		f := newFakeWorkloadAPI(b, time.Hour)
		cc := f.joinConfig()
		// The fake CA's server and the API server are different: trust both.
		both := pool.Clone()
		both.AddCert(f.srv.Certificate())
		cc.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: both}}}
		src, err := NewCertificateSource(context.Background(), cc)
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		tc := f.tokenConfig()
		tc.HTTPClient = cc.HTTPClient
		hc, err := src.Client(context.Background(), tc)
		if err != nil {
			b.Fatal(err)
		}
		run(b, hc)
	})
}

// BenchmarkDPoPProof is the proof alone (ES256 signature with ath), the
// floor of the dpop row above.
func BenchmarkDPoPProof(b *testing.B) {
	key, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	s, err := dpop.NewSigner(key)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Proof("GET", "https://api.example.com/invoices/42", dpop.ProofOptions{AccessToken: "tok", Now: now}); err != nil {
			b.Fatal(err)
		}
	}
}
