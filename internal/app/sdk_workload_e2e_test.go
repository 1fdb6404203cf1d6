package app_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/workloadapi"
	"github.com/keybound/keybound/sdk"
)

// minuteCerts makes the workload CA issue the shortest certificates it
// allows, one minute.
func minuteCerts(c *config.Config) {
	c.WorkloadCA.CertLifetime = time.Minute
	c.WorkloadCA.MaxCertLifetime = time.Minute
}

// sdkWorkload is a workload using the SDK: its renewing certificate source
// and the client paired with it.
type sdkWorkload struct {
	id  string
	src *sdk.CertificateSource
	hc  *http.Client
}

// enrollSDK registers an identity with reg, enrolls it through the SDK (by
// private_key_jwt when withKey, else with a join token) and makes its
// client; dpopOn asks for DPoP-bound tokens.
func (g *gwHarness) enrollSDK(reg inventory.Registration, withKey, dpopOn bool) sdkWorkload {
	g.t.Helper()
	cc := &sdk.CertificateConfig{Issuer: g.issuer, Lifetime: time.Minute, HTTPClient: g.httpClient(nil)}
	tc := &sdk.Config{TokenURL: g.issuer + "/oauth2/token", Scopes: strings.Fields(reg.Scope), DPoP: dpopOn, HTTPClient: g.httpClient(nil)}
	var id string
	if withKey {
		ck := g.newKeyClient(reg)
		id = ck.id
		cc.ClientID, cc.Key, cc.KeyID = ck.id, ck.key, ck.kid
		tc.Key, tc.KeyID = ck.key, ck.kid
	} else {
		reg.AuthMethod = "tls_client_auth"
		id = g.register(reg).ClientID
		cc.JoinToken = g.joinToken(id)
	}
	src, err := sdk.NewCertificateSource(context.Background(), cc)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { src.Close() })
	if src.ClientID() != id {
		g.t.Fatalf("certificate issued to %q; want %q", src.ClientID(), id)
	}
	hc, err := src.Client(context.Background(), tc)
	if err != nil {
		g.t.Fatal(err)
	}
	return sdkWorkload{id: id, src: src, hc: hc}
}

func (g *gwHarness) sdkGet(c *http.Client, path string) (int, string, error) {
	resp, err := c.Get(g.gw + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), nil
}

// TestSDKWorkloadRenewalUnderTraffic renews the SDK's one-minute workload
// certificate five times while four goroutines call an mTLS-bound (or
// DPoP-bound) gateway route without pause: every request must succeed, the
// inventory must hold every renewal, and the gateway must have seen the
// binding the identity registered. Token, certificate and connections are
// swapped together, so no request carries a token for another certificate.
func TestSDKWorkloadRenewalUnderTraffic(t *testing.T) {
	g := startGateway(t, minuteCerts)
	tests := []struct {
		name        string
		reg         inventory.Registration
		withKey     bool
		dpop        bool
		wantBinding string
	}{
		{"tls_client_auth, workload certificates only, join token, mTLS-bound", inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false, "mtls"},
		{"private_key_jwt enrollment and auth, mTLS-bound", inventory.Registration{Scope: "invoices:read", MTLSBound: true}, true, false, "mtls"},
		{"tls_client_auth with the certificate for client auth only, DPoP-bound", inventory.Registration{Scope: "invoices:read", DPoPBound: true}, false, true, "dpop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := g.enrollSDK(tt.reg, tt.withKey, tt.dpop)
			first := w.src.Leaf()
			if got := time.Until(first.NotAfter); got > time.Minute || got < 50*time.Second {
				t.Fatalf("certificate lifetime %s; want the one-minute minimum", got)
			}
			var (
				stop     atomic.Bool
				ok, sent atomic.Int64
				mu       sync.Mutex
				failures []string
				wg       sync.WaitGroup
			)
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; !stop.Load(); n++ {
						sent.Add(1)
						status, body, err := g.sdkGet(w.hc, fmt.Sprintf("/invoices/%d-%d", i, n))
						if err == nil && status == 200 {
							ok.Add(1)
							continue
						}
						mu.Lock()
						if len(failures) < 10 {
							failures = append(failures, fmt.Sprintf("%d %s %v", status, body, err))
						}
						mu.Unlock()
					}
				}()
			}
			const renewals = 5
			for range renewals {
				time.Sleep(150 * time.Millisecond)
				if err := w.src.Renew(context.Background()); err != nil {
					t.Errorf("Renew: %v", err)
				}
			}
			time.Sleep(150 * time.Millisecond)
			stop.Store(true)
			wg.Wait()
			if len(failures) > 0 || ok.Load() != sent.Load() {
				t.Errorf("%d of %d requests failed, e.g. %q", sent.Load()-ok.Load(), sent.Load(), failures)
			}
			t.Logf("%d requests through the gateway, %d renewals", sent.Load(), w.src.Renewals())
			if sent.Load() < 4*renewals {
				t.Errorf("only %d requests sent", sent.Load())
			}
			if w.src.Renewals() != renewals || w.src.Leaf().SerialNumber.Cmp(first.SerialNumber) == 0 || w.src.Err() != nil {
				t.Errorf("Renewals() = %d, Err() = %v", w.src.Renewals(), w.src.Err())
			}
			cs := g.certs(w.id)
			renewed := 0
			for _, c := range cs {
				if c.Via == "renewal" {
					renewed++
				}
			}
			if len(cs) != renewals+1 || renewed != renewals || cs[0].Serial != w.src.Leaf().SerialNumber.Text(16) {
				t.Errorf("inventory holds %d certificates, %d renewals; want %d and %d, newest first", len(cs), renewed, renewals+1, renewals)
			}
			in := g.up.last()
			if in.Header.Get("X-Keybound-Client-Id") != w.id || in.Header.Get("X-Keybound-Binding") != tt.wantBinding {
				t.Errorf("upstream saw client %q binding %q; want %q %q", in.Header.Get("X-Keybound-Client-Id"), in.Header.Get("X-Keybound-Binding"), w.id, tt.wantBinding)
			}
		})
	}
}

// TestSDKWorkloadRevokedCertificate revokes the SDK's current certificate
// with a reason code: renewal stops with an error that says the
// certificate was revoked, the gateway refuses the client, and the CRL
// entry carries the code. Revoking the identity puts its other
// certificates on the CRL as cessation-of-operation.
func TestSDKWorkloadRevokedCertificate(t *testing.T) {
	g := startGateway(t, minuteCerts)
	w := g.enrollSDK(inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false)
	if status, body, err := g.sdkGet(w.hc, "/invoices/1"); err != nil || status != 200 {
		t.Fatalf("before revocation: %d %s %v", status, body, err)
	}
	serial := w.src.Leaf().SerialNumber.Text(16)

	// A reason that is not an RFC 5280 reason keybound accepts is refused.
	if code, b := g.adminDo("POST", "/certificates/"+serial+"/revoke", adminapi.RevokeRequest{ReasonCode: "lost"}); code != 400 || !strings.Contains(string(b), "key-compromise") {
		t.Errorf("revoke with a bad reason code: %d %s", code, b)
	}
	code, b := g.adminDo("POST", "/certificates/"+serial+"/revoke", adminapi.RevokeRequest{ReasonCode: "key-compromise", Reason: "key copied to a laptop"})
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	var v adminapi.CertView
	_ = json.Unmarshal(b, &v)
	if v.Status != "revoked" || v.RevocationReasonCode != "key-compromise" || v.RevocationReason != "key copied to a laptop" {
		t.Errorf("revoked view: %+v", v)
	}

	err := w.src.Renew(context.Background())
	var ce *sdk.CertificateError
	if !errors.Is(err, sdk.ErrCertificateRevoked) || !errors.As(err, &ce) || ce.StatusCode != 401 || ce.Code != "invalid_client" || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("Renew after revocation = %v; want a certificate-revoked refusal", err)
	}
	if !errors.Is(w.src.Err(), sdk.ErrCertificateRevoked) || w.src.Renewals() != 0 {
		t.Errorf("Err() = %v, Renewals() = %d", w.src.Err(), w.src.Renewals())
	}
	if status, _, err := g.sdkGet(w.hc, "/invoices/2"); err != nil || status != 401 {
		t.Errorf("gateway with the revoked certificate: %d %v", status, err)
	}
	if n := len(g.certs(w.id)); n != 1 {
		t.Errorf("renewal with a revoked certificate issued %d certificates", n-1)
	}

	// Revoking an identity: its live certificates go on the CRL as
	// cessation-of-operation; a plain revocation stays unspecified.
	other := g.enrollSDK(inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false)
	plain := g.enrollSDK(inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false)
	if code, b := g.adminDo("POST", "/clients/"+other.id+"/revoke", map[string]string{"reason": "decommissioned"}); code != 200 {
		t.Fatalf("revoke identity: %d %s", code, b)
	}
	if code, b := g.adminDo("POST", "/certificates/"+plain.src.Leaf().SerialNumber.Text(16)+"/revoke", map[string]string{"reason": "free text only"}); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	crl := g.crlReasons(intermediateFromSource(t, w.src))
	want := map[string]int{serial: 1, other.src.Leaf().SerialNumber.Text(16): 5, plain.src.Leaf().SerialNumber.Text(16): 0}
	for s, code := range want {
		got, ok := crl[s]
		if !ok || got != code {
			t.Errorf("CRL entry for %s: reason %d (listed %t); want %d", s, got, ok, code)
		}
	}
	cs := g.certs(plain.id)
	if len(cs) != 1 || cs[0].RevocationReasonCode != "unspecified" || cs[0].RevocationReason != "free text only" {
		t.Errorf("plain revocation view: %+v", cs)
	}
}

// crlReasons fetches and checks the CRL and returns serial -> reason code.
func (h *harness) crlReasons(issuerCert *x509.Certificate) map[string]int {
	h.t.Helper()
	r := h.do(nil, "GET", workloadapi.PathCRL, "", nil, nil)
	if r.status != 200 {
		h.t.Fatalf("CRL: %d", r.status)
	}
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(issuerCert); err != nil {
		h.t.Fatalf("CRL signature: %v", err)
	}
	out := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	return out
}

func intermediateFromSource(t *testing.T, src *sdk.CertificateSource) *x509.Certificate {
	t.Helper()
	c, err := src.Certificate()
	if err != nil || len(c.Certificate) < 2 {
		// Past expiry or revocation the chain is still what was issued.
		t.Fatalf("certificate chain: %v", err)
	}
	ic, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	return ic
}

// TestSDKWorkloadOnlyClientAuth registers a tls_client_auth identity with
// no subject, which means "keybound workload certificates only": its own
// workload certificate authenticates it; a certificate from another CA the
// token service trusts for tls_client_auth is refused even when it carries
// the identity's SPIFFE ID, and so is another identity's workload
// certificate. A registration with two subjects is still refused.
func TestSDKWorkloadOnlyClientAuth(t *testing.T) {
	caKey := newEC(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(c *config.Config) { minuteCerts(c); c.Server.ClientCAFile = caFile })

	if code, b := g.adminDo("POST", "/clients", inventory.Registration{Name: "x", Owner: "team-a@example.com", Purpose: "tests", Environment: "dev",
		ExpiresAt: time.Now().Add(time.Hour), Scope: "invoices:read", AuthMethod: "tls_client_auth", MTLSBound: true,
		TLSSubjectDN: "CN=x", TLSSANDNS: "x.example.com"}); code != 400 || !strings.Contains(string(b), "at most one") {
		t.Errorf("two subjects: %d %s", code, b)
	}
	w := g.enrollSDK(inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false)
	neighbour := g.enrollSDK(inventory.Registration{Scope: "invoices:read", MTLSBound: true}, false, false)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {w.id}}

	own, err := w.src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if tr := g.postForm(g.httpClient([]tls.Certificate{*own}), "/oauth2/token", form, nil); tr.status != 200 {
		t.Fatalf("own workload certificate: %d %s", tr.status, tr.raw)
	}

	// A partner-CA certificate that copies the identity's SPIFFE ID.
	leafKey := newEC(t)
	caCert, _ := x509.ParseCertificate(caDER)
	u, _ := url.Parse("spiffe://keybound.local/client/" + w.id)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: w.id}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	foreign := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	neighbourCert, err := neighbour.src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cert   tls.Certificate
		detail string
	}{
		"partner CA certificate with the identity's SPIFFE ID": {foreign, "only keybound workload certificates"},
		"another identity's workload certificate":              {*neighbourCert, "issued to another client"},
	} {
		tr := g.postForm(g.httpClient([]tls.Certificate{tc.cert}), "/oauth2/token", form, nil)
		if tr.status != 401 || tr.body["error"] != "invalid_client" || !strings.Contains(tr.raw, tc.detail) {
			t.Errorf("%s: %d %s; want invalid_client mentioning %q", name, tr.status, tr.raw, tc.detail)
		}
	}
}
