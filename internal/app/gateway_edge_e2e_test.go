package app_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
)

func proofWithNonce(t *testing.T, key *ecdsa.PrivateKey, method, u, tok, nonce string) string {
	t.Helper()
	s, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Proof(method, u, dpop.ProofOptions{AccessToken: tok, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// With server nonces on, the gateway answers a proof without one with
// use_dpop_nonce and a DPoP-Nonce to retry with (RFC 9449 section 9).
func TestGatewayDPoPNonce(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Tokens.DPoP.RequireNonce = true })
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey) // the SDK retries the token request with the nonce
	u := g.gw + "/invoices/3"
	before := g.up.count()
	r := g.send(nil, "GET", "/invoices/3", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, tok)})
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) || nonce == "" {
		t.Fatalf("proof without nonce: %d, WWW-Authenticate %q, DPoP-Nonce %q", r.status, r.header.Get("WWW-Authenticate"), nonce)
	}
	if g.up.count() != before {
		t.Error("the upstream saw the refused request")
	}
	if r := g.send(nil, "GET", "/invoices/3", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofWithNonce(t, dkey, "GET", u, tok, "not-the-nonce")}); r.status != 401 {
		t.Errorf("proof with a made-up nonce: %d", r.status)
	}
	if r := g.send(nil, "GET", "/invoices/3", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofWithNonce(t, dkey, "GET", u, tok, nonce)}); r.status != 200 {
		t.Fatalf("retry with the server's nonce: %d %s", r.status, r.body)
	}
}

// Behind a load balancer the client calls gateway.external_url, so that is
// the URL its proofs name, not the listener's own address.
func TestGatewayExternalURL(t *testing.T) {
	const ext = "https://api.example.com"
	g := startGateway(t, func(c *config.Config) { c.Gateway.ExternalURL = ext })
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	if r := g.send(nil, "GET", "/invoices/8", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", ext+"/invoices/8", tok)}); r.status != 200 {
		t.Fatalf("proof for the external URL: %d %s", r.status, r.body)
	}
	r := g.send(nil, "GET", "/invoices/8", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/8", tok)})
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
		t.Errorf("proof for the internal listener URL: %d %s", r.status, r.body)
	}
}

// A fronting proxy that terminates TLS may forward the client certificate
// in a header, which counts only when the proxy's address is trusted.
func TestGatewayForwardedClientCertificate(t *testing.T) {
	const header = "X-Forwarded-Client-Cert"
	for _, tt := range []struct {
		name    string
		trusted []string
		want    int
	}{
		{"from a trusted proxy", []string{"127.0.0.1/32"}, 200},
		{"from an untrusted peer", []string{"10.0.0.0/8"}, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, func(c *config.Config) {
				c.Gateway.ForwardedCertHeader = header
				c.Gateway.TrustedProxies = tt.trusted
			})
			cert, cf, kf := mtlsClientCert(t, g.harness, pkix.Name{CommonName: "svc-fwd", Organization: []string{"example"}})
			pair, err := tls.LoadX509KeyPair(cf, kf)
			if err != nil {
				t.Fatal(err)
			}
			v := g.register(inventory.Registration{Scope: "invoices:read", AuthMethod: "tls_client_auth", TLSSubjectDN: "CN=svc-fwd,O=example", MTLSBound: true})
			r := g.postForm(g.httpClient([]tls.Certificate{pair}), "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}, nil)
			if r.status != 200 {
				t.Fatalf("token: %d %s", r.status, r.raw)
			}
			tok := r.body["access_token"].(string)
			fwd := url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})))
			before := g.up.count()
			got := g.send(nil, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok, header: fwd})
			if got.status != tt.want {
				t.Fatalf("status %d, want %d: %s", got.status, tt.want, got.body)
			}
			if tt.want != 200 {
				if g.up.count() != before {
					t.Error("the upstream saw the refused request")
				}
				return
			}
			if h := g.up.last().Header.Get(header); h != "" {
				t.Error("the forwarded certificate header reached the upstream")
			}
			if got := g.send(nil, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok, header: "garbage"}); got.status != 401 {
				t.Errorf("unparseable forwarded certificate: %d", got.status)
			}
		})
	}
}
