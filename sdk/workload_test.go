package sdk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keybound/keybound/internal/dpop"
)

// fakeWorkloadAPI is keybound's workload API, token endpoint and an
// mTLS-bound resource in one TLS server. Its CA issues certificates for
// testClientID; the token endpoint authenticates by the presented
// certificate and issues "tok-SERIAL"; /api accepts a token only over a
// connection presenting the certificate it was issued for, as the gateway
// checks cnf x5t#S256.
type fakeWorkloadAPI struct {
	t        testing.TB
	srv      *httptest.Server
	caKey    *ecdsa.PrivateKey
	caCert   *x509.Certificate
	lifetime time.Duration
	joinTok  string
	assertPK crypto.PublicKey // private_key_jwt enrollment key

	rec       recorder
	mu        sync.Mutex
	revoked   map[string]bool
	failRenew int // answer this many renewals with 503
	refuse    func(w http.ResponseWriter) bool
	issued    int
	serials   map[string]int // serial -> API requests served with it
	apiBad    atomic.Int64
	dpop      *dpop.Verifier
}

func newFakeWorkloadAPI(t testing.TB, lifetime time.Duration) *fakeWorkloadAPI {
	caKey, _ := GenerateKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake workload CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	f := &fakeWorkloadAPI{t: t, caKey: caKey, caCert: ca, lifetime: lifetime, joinTok: "kbjt.test." + rand.Text(),
		revoked: map[string]bool{}, serials: map[string]int{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// client trusts the server and nothing else.
func (f *fakeWorkloadAPI) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

func (f *fakeWorkloadAPI) problem(w http.ResponseWriter, status int, typ, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "urn:keybound:problem:" + typ, "status": status, "error": code, "detail": detail})
}

// verified returns the presented certificate if this CA issued it and it
// is valid and not revoked.
func (f *fakeWorkloadAPI) verified(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	leaf := r.TLS.PeerCertificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(f.caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil
	}
	return leaf
}

func (f *fakeWorkloadAPI) isRevoked(leaf *x509.Certificate) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[leaf.SerialNumber.Text(16)]
}

func (f *fakeWorkloadAPI) serve(w http.ResponseWriter, r *http.Request) {
	body := f.rec.record(f.t, r)
	switch r.URL.Path {
	case workloadEnrollPath, workloadRenewPath:
		f.issue(w, r, body)
	case "/oauth/token":
		leaf := f.verified(r)
		if leaf == nil {
			f.problem(w, 401, "invalid-client", "invalid_client", "no certificate")
			return
		}
		if f.isRevoked(leaf) {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"invalid_client","error_description":"revoked"}`)
			return
		}
		typ := "Bearer"
		if r.Header.Get("DPoP") != "" {
			typ = "DPoP"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%s","token_type":%q,"expires_in":300}`, leaf.SerialNumber.Text(16), typ)
	case "/api":
		leaf := f.verified(r)
		auth := r.Header.Get("Authorization")
		_, tok, _ := strings.Cut(auth, " ")
		if leaf == nil {
			f.apiBad.Add(1)
			w.WriteHeader(401)
			return
		}
		serial := leaf.SerialNumber.Text(16)
		if strings.HasPrefix(auth, "DPoP ") {
			// DPoP: the token is bound to the proof key, not the certificate.
			if _, err := f.dpop.Verify(r.Header.Get("DPoP"), dpop.Request{Method: r.Method, URL: "https://" + r.Host + r.URL.Path, AccessToken: tok}); err != nil {
				f.apiBad.Add(1)
				w.WriteHeader(401)
				return
			}
		} else if tok != "tok-"+serial {
			f.apiBad.Add(1)
			w.WriteHeader(401)
			return
		}
		f.mu.Lock()
		f.serials[serial]++
		f.mu.Unlock()
		io.WriteString(w, "ok")
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeWorkloadAPI) issue(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		CSR                 string `json:"csr"`
		Lifetime            int64  `json:"lifetime"`
		JoinToken           string `json:"join_token"`
		ClientID            string `json:"client_id"`
		ClientAssertionType string `json:"client_assertion_type"`
		ClientAssertion     string `json:"client_assertion"`
	}
	if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &req) != nil {
		f.problem(w, 400, "invalid-request", "invalid_request", "bad JSON")
		return
	}
	f.mu.Lock()
	refuse, fail := f.refuse, f.failRenew > 0 && r.URL.Path == workloadRenewPath
	if fail {
		f.failRenew--
	}
	f.mu.Unlock()
	if refuse != nil && refuse(w) {
		return
	}
	if fail {
		f.problem(w, 503, "unavailable", "temporarily_unavailable", "try again")
		return
	}
	if r.URL.Path == workloadRenewPath {
		leaf := f.verified(r)
		if leaf == nil {
			f.problem(w, 401, "invalid-certificate", "invalid_client", "present the current workload certificate")
			return
		}
		if f.isRevoked(leaf) {
			f.problem(w, 401, "certificate-revoked", "invalid_client", "the presented certificate has been revoked; it cannot be renewed")
			return
		}
	} else {
		switch {
		case req.JoinToken != "":
			if req.JoinToken != f.joinTok || req.ClientID != "" {
				f.problem(w, 400, "invalid-join-token", "invalid_grant", "the join token is not valid")
				return
			}
			f.mu.Lock()
			f.joinTok = "spent"
			f.mu.Unlock()
		case req.ClientAssertionType == jwtBearerAssertionType:
			tok, err := jwt.ParseSigned(req.ClientAssertion, []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA})
			var cl jwt.Claims
			if err != nil || f.assertPK == nil || tok.Claims(f.assertPK, &cl) != nil || cl.Subject != req.ClientID ||
				!cl.Audience.Contains("https://"+r.Host+workloadEnrollPath) {
				f.problem(w, 401, "invalid-client", "invalid_client", "bad assertion")
				return
			}
		default:
			f.problem(w, 400, "invalid-request", "invalid_request", "no proof")
			return
		}
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil {
		f.problem(w, 400, "invalid-request", "invalid_request", "no CSR")
		return
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		f.problem(w, 400, "invalid-request", "invalid_request", "bad CSR")
		return
	}
	f.mu.Lock()
	f.issued++
	serial := big.NewInt(int64(1000 + f.issued))
	f.mu.Unlock()
	u, _ := url.Parse("spiffe://test/client/" + testClientID)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: testClientID}, URIs: []*url.URL{u},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(f.lifetime), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, csr.PublicKey, f.caKey)
	if err != nil {
		f.t.Errorf("issue: %v", err)
		w.WriteHeader(500)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	json.NewEncoder(w).Encode(map[string]any{"client_id": testClientID, "serial": serial.Text(16), "not_after": tmpl.NotAfter,
		"certificate_chain": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
}

func (f *fakeWorkloadAPI) revoke(serial *big.Int) {
	f.mu.Lock()
	f.revoked[serial.Text(16)] = true
	f.mu.Unlock()
}

func (f *fakeWorkloadAPI) servedSerials() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.serials)
}

func (f *fakeWorkloadAPI) joinConfig() *CertificateConfig {
	return &CertificateConfig{Issuer: f.srv.URL, JoinToken: f.joinTok, HTTPClient: f.client()}
}

func (f *fakeWorkloadAPI) tokenConfig() *Config {
	return &Config{TokenURL: f.srv.URL + "/oauth/token", HTTPClient: f.client()}
}

func getOK(t testing.TB, c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// TestCertificateSourceRenewalUnderTraffic renews ten times while eight
// goroutines send requests: every request must succeed, because token,
// certificate and connection change together.
func TestCertificateSourceRenewalUnderTraffic(t *testing.T) {
	for _, dpopOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "mtls-bound", true: "dpop"}[dpopOn], func(t *testing.T) {
			f := newFakeWorkloadAPI(t, time.Hour)
			if dpopOn {
				f.dpop = &dpop.Verifier{Replay: &replayCache{seen: map[string]bool{}}}
			}
			src, err := NewCertificateSource(t.Context(), f.joinConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			cfg := f.tokenConfig()
			cfg.DPoP = dpopOn
			hc, err := src.Client(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var stop atomic.Bool
			var sent atomic.Int64
			errs := make(chan error, 100)
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						if err := getOK(t, hc, f.srv.URL+"/api"); err != nil {
							select {
							case errs <- err:
							default:
							}
						}
						sent.Add(1)
					}
				}()
			}
			const renewals = 10
			for range renewals {
				time.Sleep(20 * time.Millisecond)
				if err := src.Renew(t.Context()); err != nil {
					t.Fatalf("Renew: %v", err)
				}
			}
			time.Sleep(20 * time.Millisecond)
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("request failed: %v", err)
			}
			if src.Renewals() != renewals {
				t.Errorf("Renewals() = %d; want %d", src.Renewals(), renewals)
			}
			if n := f.servedSerials(); n < renewals/2 {
				t.Errorf("requests were served with %d certificates; want most of the %d", n, renewals+1)
			}
			if f.apiBad.Load() != 0 || sent.Load() < 50 {
				t.Errorf("%d of %d requests refused", f.apiBad.Load(), sent.Load())
			}
			// After Renew returns, new requests use the new certificate.
			if err := getOK(t, hc, f.srv.URL+"/api"); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			last := f.serials[src.Leaf().SerialNumber.Text(16)]
			f.mu.Unlock()
			if last == 0 {
				t.Error("the newest certificate served no request")
			}
		})
	}
}

// TestCertificateSourceRenewsInBackground: with 6-second certificates the
// source renews on its own, retrying through server failures.
func TestCertificateSourceRenewsInBackground(t *testing.T) {
	f := newFakeWorkloadAPI(t, 6*time.Second)
	f.failRenew = 1
	src, err := NewCertificateSource(t.Context(), f.joinConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hc, err := src.Client(t.Context(), f.tokenConfig())
	if err != nil {
		t.Fatal(err)
	}
	first := src.Leaf().SerialNumber
	deadline := time.Now().Add(20 * time.Second)
	for src.Renewals() < 2 && time.Now().Before(deadline) {
		if err := getOK(t, hc, f.srv.URL+"/api"); err != nil {
			t.Fatalf("request: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if src.Renewals() < 2 || src.Leaf().SerialNumber.Cmp(first) == 0 || src.Err() != nil {
		t.Fatalf("after 20s: %d renewals, err %v", src.Renewals(), src.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRenew != 0 {
		t.Error("the failing renewal was never tried")
	}
}

// TestCertificateSourceStopsWhenRevoked: a refused renewal stops renewal
// with an error that says why; the request fails once the certificate
// expires, with an error that says so.
func TestCertificateSourceStopsWhenRevoked(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	var offset atomic.Int64
	cfg := f.joinConfig()
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	src, err := NewCertificateSource(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hc, err := src.Client(t.Context(), f.tokenConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.revoke(src.Leaf().SerialNumber)
	err = src.Renew(t.Context())
	var ce *CertificateError
	if !errors.Is(err, ErrCertificateRevoked) || !errors.As(err, &ce) || ce.StatusCode != 401 || ce.Code != "invalid_client" ||
		!strings.Contains(err.Error(), "certificate-revoked") || !strings.Contains(err.Error(), "cannot be renewed") {
		t.Fatalf("Renew = %v; want a revoked-certificate error", err)
	}
	if !errors.Is(src.Err(), ErrCertificateRevoked) {
		t.Errorf("Err() = %v", src.Err())
	}
	if err := src.Renew(t.Context()); !errors.Is(err, ErrCertificateRevoked) {
		t.Errorf("a second Renew = %v; want the same refusal without asking again", err)
	}
	select {
	case <-src.done:
	case <-time.After(5 * time.Second):
		t.Error("the renewal loop did not stop")
	}
	offset.Store(int64(2 * time.Hour))
	_, err = hc.Get(f.srv.URL + "/api")
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "renewal stopped") {
		t.Errorf("request with an expired certificate: %v", err)
	}
	if _, err := src.Certificate(); err == nil {
		t.Error("Certificate() returned an expired certificate")
	}
}

// countingSigner hides its key's type, as a KMS or HSM handle does, and
// counts signatures.
type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (s countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(r, d, o)
}

func newCounting(t testing.TB) (countingSigner, *ecdsa.PrivateKey) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return countingSigner{k, new(atomic.Int64)}, k
}

// TestOpaqueSignersAndKeysNeverSent enrolls with private_key_jwt and uses
// DPoP, with every key a crypto.Signer that is not an *ecdsa.PrivateKey:
// each one signs (CSRs and TLS handshakes, the assertion, the proofs), and
// no request carries any private key in any encoding.
func TestOpaqueSignersAndKeysNeverSent(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	f.dpop = &dpop.Verifier{Replay: &replayCache{seen: map[string]bool{}}}
	certKey, certRaw := newCounting(t)
	enrollKey, enrollRaw := newCounting(t)
	dpopKey, dpopRaw := newCounting(t)
	f.assertPK = enrollRaw.Public()
	src, err := NewCertificateSource(t.Context(), &CertificateConfig{Issuer: f.srv.URL, ClientID: testClientID, Key: enrollKey, CertKey: certKey, HTTPClient: f.client()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cfg := f.tokenConfig()
	cfg.DPoP, cfg.DPoPKey = true, dpopKey
	hc, err := src.Client(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := getOK(t, hc, f.srv.URL+"/api"); err != nil {
			t.Fatal(err)
		}
		if err := src.Renew(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.Leaf().PublicKey.(*ecdsa.PublicKey); !got.Equal(certRaw.Public()) {
		t.Error("the supplied certificate key was not kept across renewals")
	}
	for name, n := range map[string]*atomic.Int64{"certificate key": certKey.n, "enrollment key": enrollKey.n, "DPoP key": dpopKey.n} {
		if n.Load() == 0 {
			t.Errorf("the %s never signed", name)
		}
	}
	// Generated certificate keys too: a second source with its own keys.
	f.joinTok = "kbjt.test." + rand.Text()
	src2, err := NewCertificateSource(t.Context(), f.joinConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	keys := map[string]*ecdsa.PrivateKey{"certificate key": certRaw, "enrollment key": enrollRaw, "DPoP key": dpopRaw}
	for i := range 3 {
		keys[fmt.Sprintf("generated key %d", i)] = src2.cur.Load().cert.PrivateKey.(*ecdsa.PrivateKey)
		hc2, _ := src2.Client(t.Context(), f.tokenConfig())
		if err := getOK(t, hc2, f.srv.URL+"/api"); err != nil {
			t.Fatal(err)
		}
		if err := src2.Renew(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	reqs := f.rec.all()
	if len(reqs) < 15 {
		t.Fatalf("only %d requests recorded", len(reqs))
	}
	for name, key := range keys {
		d := key.D.FillBytes(make([]byte, 32))
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		sec1, _ := x509.MarshalECPrivateKey(key)
		secrets := []string{
			base64.RawURLEncoding.EncodeToString(d),
			base64.StdEncoding.EncodeToString(d),
			fmt.Sprintf("%x", d),
			string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			base64.StdEncoding.EncodeToString(der)[:40],
			base64.StdEncoding.EncodeToString(sec1)[:40],
			string(d),
		}
		for i, r := range reqs {
			for _, sec := range secrets {
				if bytes.Contains(r, []byte(sec)) || bytes.Contains([]byte(url.QueryEscape(string(r))), []byte(url.QueryEscape(sec))) {
					t.Errorf("request %d contains the %s", i, name)
				}
			}
		}
	}
	// And the requests do hold what they should: CSRs, never "PRIVATE KEY".
	var csrs int
	for _, r := range reqs {
		csrs += bytes.Count(r, []byte("CERTIFICATE REQUEST-----"))
		if bytes.Contains(r, []byte("PRIVATE KEY")) {
			t.Error("a request holds a PEM private key block")
		}
	}
	if csrs < 8 {
		t.Errorf("only %d CSRs seen in %d requests", csrs, len(reqs))
	}
}

// TestCertificateSourceRefusals covers bad configuration and bad answers:
// each fails with an error that names the problem, and nothing is kept.
func TestCertificateSourceRefusals(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	other, _ := GenerateKey()
	tests := []struct {
		name   string
		cfg    func(*CertificateConfig)
		refuse func(w http.ResponseWriter) bool
		want   string
	}{
		{"no issuer", func(c *CertificateConfig) { c.Issuer = "" }, nil, "Issuer is empty"},
		{"plain http off loopback", func(c *CertificateConfig) { c.Issuer = "http://auth.example.com" }, nil, "https"},
		{"issuer with a query", func(c *CertificateConfig) { c.Issuer += "?x=1" }, nil, "query"},
		{"both proofs", func(c *CertificateConfig) { c.Key, c.ClientID = other, testClientID }, nil, "exactly one of Key"},
		{"no proof", func(c *CertificateConfig) { c.JoinToken = "" }, nil, "exactly one of Key"},
		{"key without client id", func(c *CertificateConfig) { c.JoinToken, c.Key = "", other }, nil, "ClientID is required"},
		{"fractional lifetime", func(c *CertificateConfig) { c.Lifetime = 1500 * time.Millisecond }, nil, "Lifetime"},
		{"transport that cannot be cloned", func(c *CertificateConfig) { c.HTTPClient = &http.Client{Transport: &Transport{}} }, nil, "*http.Transport"},
		{"join token refused", func(c *CertificateConfig) { c.JoinToken = "kbjt.bad" }, nil, "invalid-join-token (invalid_grant): the join token is not valid"},
		{"certificate for another key", nil, func(w http.ResponseWriter) bool {
			w.WriteHeader(201)
			io.WriteString(w, `{"client_id":"`+testClientID+`","certificate_chain":`+jsonString(pemOf(t, selfSigned(t, other, x509.ExtKeyUsageClientAuth)))+`}`)
			return true
		}, "for another key"},
		{"answer that is not JSON", nil, func(w http.ResponseWriter) bool { w.WriteHeader(201); io.WriteString(w, "<html>"); return true }, "not a certificate JSON object"},
		{"answer too large", nil, func(w http.ResponseWriter) bool {
			w.WriteHeader(201)
			w.Write(bytes.Repeat([]byte("a"), maxWorkloadResponseBytes+1))
			return true
		}, "larger than"},
		{"server error without a problem", nil, func(w http.ResponseWriter) bool { w.WriteHeader(502); return true }, "HTTP 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.refuse, f.joinTok = tt.refuse, "kbjt.test.ok"
			f.mu.Unlock()
			cfg := f.joinConfig()
			if tt.cfg != nil {
				tt.cfg(cfg)
			}
			src, err := NewCertificateSource(t.Context(), cfg)
			if err == nil {
				src.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestCertificateSourceIssuedForAnotherKeyAtRenewal: a renewal answer that
// certifies another key is refused and the current certificate is kept.
func TestCertificateSourceIssuedForAnotherKeyAtRenewal(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	src, err := NewCertificateSource(t.Context(), f.joinConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	before := src.Leaf()
	other, _ := GenerateKey()
	f.mu.Lock()
	f.refuse = func(w http.ResponseWriter) bool {
		w.WriteHeader(201)
		io.WriteString(w, `{"client_id":"`+testClientID+`","certificate_chain":`+jsonString(pemOf(t, selfSigned(t, other, x509.ExtKeyUsageClientAuth)))+`}`)
		return true
	}
	f.mu.Unlock()
	if err := src.Renew(t.Context()); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Renew = %v", err)
	}
	if src.Leaf() != before || src.Renewals() != 0 || src.Err() != nil {
		t.Error("a bad answer replaced the certificate or stopped renewal")
	}
}

// TestCertificateSourceRetriesAtLimit: keybound's limit-reached (too many
// live certificates) is refused now but can pass later, so renewal goes on
// and a later Renew succeeds; other client errors stop it.
func TestCertificateSourceRetriesAtLimit(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	src, err := NewCertificateSource(t.Context(), f.joinConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	before := src.Leaf()
	f.mu.Lock()
	f.refuse = func(w http.ResponseWriter) bool {
		f.problem(w, 409, "limit-reached", "", "the identity already holds 64 live certificates; revoke unused ones or let them expire")
		return true
	}
	f.mu.Unlock()
	err = src.Renew(t.Context())
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.StatusCode != 409 || !strings.Contains(err.Error(), "64 live certificates") {
		t.Fatalf("Renew = %v; want the limit-reached refusal", err)
	}
	if src.Err() != nil || src.Leaf() != before {
		t.Fatalf("limit-reached stopped renewal (Err %v) or replaced the certificate", src.Err())
	}
	f.mu.Lock()
	f.refuse = nil
	f.mu.Unlock()
	if err := src.Renew(t.Context()); err != nil {
		t.Fatalf("Renew once there is room: %v", err)
	}
	if src.Leaf() == before || src.Renewals() != 1 {
		t.Errorf("the certificate was not renewed (renewals %d)", src.Renewals())
	}

	// A conflict of another kind is still final.
	f.mu.Lock()
	f.refuse = func(w http.ResponseWriter) bool {
		f.problem(w, 409, "already-revoked", "", "the certificate is revoked already")
		return true
	}
	f.mu.Unlock()
	if err := src.Renew(t.Context()); err == nil || src.Err() == nil {
		t.Errorf("Renew = %v, Err = %v; want renewal stopped", err, src.Err())
	}
}

func TestRenewSchedule(t *testing.T) {
	got := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		life   time.Duration
		jitter time.Duration
		want   time.Duration
	}{
		{time.Minute, 0, 40 * time.Second},
		{time.Minute, 6 * time.Second, 34 * time.Second},
		{24 * time.Hour, 0, 16 * time.Hour},
		{0, 0, 0},
		{-time.Minute, 0, 0},
	}
	for _, tt := range tests {
		var asked time.Duration
		at := renewAt(got, got.Add(tt.life), func(d time.Duration) time.Duration { asked = d; return tt.jitter })
		if at.Sub(got) != tt.want {
			t.Errorf("lifetime %s, jitter %s: renew after %s; want %s", tt.life, tt.jitter, at.Sub(got), tt.want)
		}
		if tt.life > 0 && asked != tt.life/10 {
			t.Errorf("lifetime %s: jitter bound %s; want a tenth", tt.life, asked)
		}
	}
	for i := range 200 {
		if j := randomJitter(time.Second); j < 0 || j >= time.Second {
			t.Fatalf("jitter %s out of range", j)
		}
		n := i%20 + 1
		d := retryDelay(n)
		ceil := min(renewRetryMin<<(min(n, 16)-1), renewRetryMax)
		if d < ceil/2 || d > ceil {
			t.Fatalf("retryDelay(%d) = %s; want within [%s, %s]", n, d, ceil/2, ceil)
		}
	}
	if d := retryDelay(1000); d > renewRetryMax {
		t.Errorf("retryDelay(1000) = %s", d)
	}
}

// TestCertificateSourceStopsOnCancel: the renewal loop ends with its
// context and with Close.
func TestCertificateSourceStopsOnCancel(t *testing.T) {
	f := newFakeWorkloadAPI(t, time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	src, err := NewCertificateSource(ctx, f.joinConfig())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-src.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop outlived its context")
	}
	src.Close()
	src.Close() // twice is fine
	if _, err := src.Certificate(); err != nil {
		t.Errorf("the certificate is unusable after Close: %v", err)
	}
}

func TestCertificateConfigHasNoSecretsInStrings(t *testing.T) {
	k, _ := GenerateKey()
	c := CertificateConfig{Issuer: "https://a", JoinToken: "kbjt.abc.SECRETSECRET", CertKey: k}
	out := fmt.Sprintf("%v %+v %#v %s", c, c, c, c.LogValue())
	for _, s := range []string{"SECRETSECRET", k.D.String()} {
		if strings.Contains(out, s) {
			t.Errorf("formatted config holds a secret: %s", out)
		}
	}
}

func selfSigned(t testing.TB, key *ecdsa.PrivateKey, eku x509.ExtKeyUsage) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{eku}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func pemOf(t testing.TB, c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
