package main

// Bringing up what is measured: the upstream, keybound with its gateway
// configured as in production (info-level JSON logs, audit to the store and
// to a JSON-lines file, a rate limit on every route, the DPoP replay cache),
// the plain proxy, and one registered client per gateway mode with its
// access token fetched up front.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

// Route paths. Bearer tokens may only reach internal data; DPoP and
// mTLS-bound tokens go to a confidential route, whose sensitivity floor
// keybound checks on every request.
const (
	pathInternal     = "/internal/items/42"
	pathConfidential = "/confidential/items/42"
	benchScope       = "bench:read"
	// tokenLifetime is asked for at registration (tokens.max_lifetime, 1 h
	// by default, bounds it) so that one token per client lasts the run.
	tokenLifetime = time.Hour
	// serverKeyFile is the server key's name in DATA_DIR/tls; package ca
	// does not export it. The plain proxy serves the same key pair.
	serverKeyFile = "server-key.pem"
)

// gatewayConfig is keybound's configuration file for the benchmark. Every
// route has a per-identity rate limit far above any rate this machine can
// reach: the limiter runs on every request but never refuses.
func gatewayConfig(dataDir, serverAddr, gwAddr, upstream, auditFile string) string {
	return fmt.Sprintf(`# gatewaybench: keybound under load, configured as in production.
data_dir: %q
server:
  addr: %q
tokens:
  max_lifetime: 1h
gateway:
  addr: %q
  external_url: %q
  audit:
    file: %q          # and always the store
  routes:
    - name: bench-internal
      path: /internal/items/{id}
      methods: [GET]
      upstream: %q
      scopes: [%s]
      sensitivity: internal
      rate_limit: {per_identity: "1000000/s", burst: 1000000}
    - name: bench-confidential
      path: /confidential/items/{id}
      methods: [GET]
      upstream: %q
      scopes: [%s]
      sensitivity: confidential
      rate_limit: {per_identity: "1000000/s", burst: 1000000}
`, dataDir, serverAddr, gwAddr, "https://"+gwAddr, auditFile, upstream, benchScope, upstream, benchScope)
}

// startAll starts the upstream, keybound and the plain proxy, in that order
// (keybound's routes name the upstream; the proxy serves keybound's
// certificate).
func (b *bench) startAll(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var upAddr string
	b.upstream, upAddr, err = startProc(ctx, "upstream", self, []string{"upstream"}, nil, filepath.Join(b.tmp, "upstream.log"), true)
	if err != nil {
		return err
	}
	b.upstreamURL = "http://" + upAddr

	bin, err := benchkit.BuildKeybound(ctx, "gatewaybench", b.tmp)
	if err != nil {
		return err
	}
	p1, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	p2, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	serverAddr, gwAddr := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	b.dataDir = filepath.Join(b.tmp, "data")
	b.auditFile = filepath.Join(b.tmp, "audit.jsonl")
	b.gatewayURL = "https://" + gwAddr
	cfgText := gatewayConfig(b.dataDir, serverAddr, gwAddr, b.upstreamURL, b.auditFile)
	// Check the file with keybound's own decoder first: a mistake here is
	// then reported by key rather than as a server that will not start.
	cfg := config.Default()
	if err := cfg.LoadYAML([]byte(cfgText)); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfgFile := filepath.Join(b.tmp, "keybound.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		return err
	}
	// Info-level JSON logs to a file: every access line is paid for, as in
	// production.
	b.keybound, _, err = startProc(ctx, "keybound", bin,
		[]string{"serve", "--config", cfgFile, "--data-dir", b.dataDir, "--log-level", "info", "--log-format", "json"},
		b.opts.keyboundEnv, filepath.Join(b.tmp, "keybound.log"), false)
	if err != nil {
		return err
	}
	logf("keybound pid %d: token service https://%s, gateway %s", b.keybound.pid(), serverAddr, b.gatewayURL)
	if err := b.waitReady(ctx, serverAddr, gwAddr); err != nil {
		return err
	}

	tlsDir := filepath.Join(b.dataDir, "tls")
	var pxAddr string
	b.proxy, pxAddr, err = startProc(ctx, "proxy", self,
		[]string{"proxy", "-upstream", b.upstreamURL, "-cert", filepath.Join(tlsDir, ca.ServerCertFile), "-key", filepath.Join(tlsDir, serverKeyFile), "-flush-interval", b.opts.proxyFlush.String()},
		nil, filepath.Join(b.tmp, "proxy.log"), true)
	if err != nil {
		return err
	}
	b.proxyURL = "https://" + pxAddr
	return nil
}

// waitReady waits for the CA file, /readyz on the token service and a TLS
// handshake on the gateway listener.
func (b *bench) waitReady(ctx context.Context, serverAddr, gwAddr string) error {
	caFile := filepath.Join(b.dataDir, "tls", ca.CACertFile)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := b.keybound.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("keybound not ready after 60s; log:\n%s", benchkit.TailFile(b.keybound.log, 20))
		}
		if b.pool == nil {
			if p, err := app.CAPool(caFile); err == nil {
				b.pool = p
			}
		}
		if b.pool != nil {
			c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}}
			resp, err := c.Get("https://" + serverAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", gwAddr, &tls.Config{RootCAs: b.pool})
					if err == nil {
						conn.Close()
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// register creates the three clients through the admin API, acting as the
// admin identity keybound made on first start, and fetches one access token
// for each.
func (b *bench) register(ctx context.Context) error {
	d, err := app.LoadAdmin(b.dataDir)
	if err != nil {
		return err
	}
	b.tokenURL = d.TokenEndpoint
	key, err := sdk.LoadPrivateKey(d.KeyFile)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}}
	admin := (&sdk.Config{TokenURL: d.TokenEndpoint, ClientID: d.ClientID, Key: key, KeyID: d.KeyID, Scopes: []string{"keybound:admin"}, DPoP: true, HTTPClient: hc}).Client(ctx)

	post := func(reg inventory.Registration) (string, error) {
		reg.Owner, reg.Purpose, reg.Environment = "bench@example.com", "gateway load benchmark", "dev"
		// Beyond the longest expiry-warning lead time (14 days), so the
		// log carries no warnings about the benchmark's own identities.
		reg.ExpiresAt = time.Now().Add(30 * 24 * time.Hour)
		reg.Scope = benchScope
		reg.AccessTokenLifetime = int64(tokenLifetime / time.Second)
		return benchkit.RegisterClient(ctx, admin, d.Issuer, reg)
	}
	token := func(c sdk.Config, wantType string) (string, error) {
		c.TokenURL, c.Scopes = d.TokenEndpoint, []string{benchScope}
		if c.HTTPClient == nil {
			c.HTTPClient = hc
		}
		tok, err := c.TokenSource(ctx).Token()
		if err != nil {
			return "", fmt.Errorf("token for %s: %w", c.ClientID, err)
		}
		if !strings.EqualFold(tok.TokenType, wantType) {
			return "", fmt.Errorf("token for %s: type %q, want %q", c.ClientID, tok.TokenType, wantType)
		}
		if left := time.Until(tok.Expiry); !tok.Expiry.IsZero() && left < 10*time.Minute {
			return "", fmt.Errorf("token for %s lives only %s; the run needs longer", c.ClientID, left.Round(time.Second))
		}
		return tok.AccessToken, nil
	}

	// bearer: private_key_jwt, unbound token (allowed explicitly).
	bk, err := sdk.GenerateKey()
	if err != nil {
		return err
	}
	set, err := sdk.PublicJWKS(bk, "k1")
	if err != nil {
		return err
	}
	id, err := post(inventory.Registration{Name: "gatewaybench-bearer", AuthMethod: "private_key_jwt", JWKS: set, AllowBearer: true})
	if err != nil {
		return err
	}
	if b.bearerToken, err = token(sdk.Config{ClientID: id, Key: bk, KeyID: "k1"}, sdk.TokenTypeBearer); err != nil {
		return err
	}

	// dpop: private_key_jwt, token bound to a separate proof key.
	ck, err := sdk.GenerateKey()
	if err != nil {
		return err
	}
	if set, err = sdk.PublicJWKS(ck, "k1"); err != nil {
		return err
	}
	if id, err = post(inventory.Registration{Name: "gatewaybench-dpop", AuthMethod: "private_key_jwt", JWKS: set, DPoPBound: true}); err != nil {
		return err
	}
	b.dpopKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if b.dpopToken, err = token(sdk.Config{ClientID: id, Key: ck, KeyID: "k1", DPoP: true, DPoPKey: b.dpopKey}, sdk.TokenTypeDPoP); err != nil {
		return err
	}

	// mtls: tls_client_auth with a certificate from keybound's own CA,
	// certificate-bound token.
	authority, err := ca.LoadOrCreate(filepath.Join(b.dataDir, "tls"), time.Now())
	if err != nil {
		return err
	}
	mk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	cert, err := authority.IssueClientCertificate(mk.Public(), pkix.Name{CommonName: "gatewaybench"}, nil, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	b.clientCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: mk, Leaf: cert}
	if id, err = post(inventory.Registration{Name: "gatewaybench-mtls", AuthMethod: "tls_client_auth", TLSSubjectDN: "CN=gatewaybench", MTLSBound: true}); err != nil {
		return err
	}
	mc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool, Certificates: []tls.Certificate{b.clientCert}}}}
	if b.mtlsToken, err = token(sdk.Config{ClientID: id, HTTPClient: mc}, sdk.TokenTypeBearer); err != nil {
		return err
	}
	logf("registered bearer, dpop and mtls clients; one token each")
	return nil
}
