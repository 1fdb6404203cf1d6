package app_test

import (
	"context"
	"crypto/ecdsa"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// TestGatewayVerifiesSeparateIssuerAcrossRotation runs the token service and
// the gateway as two keybound processes (two App instances here) on one
// store. The gateway verifies tokens with the issuer's JWK Set fetched over
// HTTPS from gateway.jwks_url, and picks up a key the issuer rotates in
// without a restart.
func TestGatewayVerifiesSeparateIssuerAcrossRotation(t *testing.T) {
	iss := start(t, nil)
	up := newUpstream(t)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The gateway node shares the issuer's data directory, hence its store:
	// client status and revocations are read from there.
	node := startWith(t, func(c *config.Config) {
		c.DataDir = iss.cfg.DataDir
		c.Gateway.Addr = gl.Addr().String()
		c.Gateway.Routes = testRoutes(up.URL)
		c.Gateway.Issuer = iss.issuer
		c.Gateway.JWKSURL = iss.issuer + "/oauth2/jwks"
		c.Gateway.IssuerCAFile = filepath.Join(iss.cfg.DataDir, "tls", "ca.pem")
	}, gl)
	if node.issuer == iss.issuer {
		t.Fatal("the two nodes must be different issuers for this test to mean anything")
	}
	g := &gwHarness{harness: iss, gw: "https://" + gl.Addr().String(), up: up}
	if n := remoteJWKSMetric(t, node, "keybound_gateway_jwks_fetches_total"); n != 1 {
		t.Fatalf("JWK Set fetches at start: %v, want 1", n)
	}

	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	call := func(tok string) gwResult {
		t.Helper()
		return g.send(nil, "GET", "/invoices/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/1", tok)})
	}
	tok1 := g.tokenFor(ck, dkey)
	kid1 := decodeHeader(t, tok1)["kid"]
	if r := call(tok1); r.status != 200 {
		t.Fatalf("token of the issuer's first key: %d %s", r.status, r.body)
	}

	// Rotate at the issuer. keys.publish_lead cannot be shorter than 15m (the
	// JWK Set cache age), so the test lets the lead pass by moving the new
	// key's activation to now in the shared store; the next rotation reloads
	// the ring, which activates it (and publishes a third key).
	code, b := iss.adminDo("POST", "/keys/rotate", nil)
	if code != 200 {
		t.Fatalf("rotate: %d %s", code, b)
	}
	kid2 := remoteJWKSKID(t, b)
	remoteJWKSActivateNow(t, iss.cfg.DataDir, kid2)
	if code, b := iss.adminDo("POST", "/keys/rotate", nil); code != 200 {
		t.Fatalf("second rotate: %d %s", code, b)
	}
	tok2 := g.tokenFor(ck, dkey)
	if got := decodeHeader(t, tok2)["kid"]; got != kid2 || got == kid1 {
		t.Fatalf("token after rotation has kid %v, want the rotated-in %s (first key %v)", got, kid2, kid1)
	}

	before := up.count()
	if r := call(tok2); r.status != 200 {
		t.Fatalf("token of the rotated-in key refused, the gateway did not pick up the rotation: %d %s", r.status, r.body)
	}
	if up.count() != before+1 {
		t.Error("the upstream did not see the allowed request")
	}
	if n := remoteJWKSMetric(t, node, "keybound_gateway_jwks_fetches_total"); n != 2 {
		t.Errorf("JWK Set fetches: %v, want 2 (start, then one on the unknown kid)", n)
	}
	if r := call(tok1); r.status != 200 {
		t.Errorf("token of the retired key, still published: %d %s", r.status, r.body)
	}

	// What the gateway must refuse, with the upstream seeing nothing.
	claims := decodeClaims(t, tok2)
	cnf, _ := claims["cnf"].(map[string]any)
	jkt, _ := cnf["jkt"].(string)
	var aud []string
	switch v := claims["aud"].(type) {
	case string:
		aud = []string{v}
	case []any:
		for _, a := range v {
			s, _ := a.(string)
			aud = append(aud, s)
		}
	}
	forge := func(kid, issuer string) string {
		t.Helper()
		now := time.Now()
		tok, err := accesstoken.Issue(remoteJWKSForgedKey{newEC(t), kid}, accesstoken.Claims{
			Issuer: issuer, Subject: ck.id, ClientID: ck.id, Audience: aud, Scope: []string{"invoices:read"},
			JTI: "forged-" + strconv.FormatInt(now.UnixNano(), 36), IssuedAt: now, Expiry: now.Add(5 * time.Minute),
			Confirmation: &accesstoken.Confirmation{JKT: jkt}, AuthMethod: "private_key_jwt",
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherIssuer := &gwHarness{harness: node, gw: g.gw, up: up}
	tests := []struct {
		name, tok  string
		wantDetail string
	}{
		{"signed by an unknown key", forge("unknown-kid", iss.issuer), "unknown key"},
		{"signed by another key under a published kid", forge(kid2, iss.issuer), "signature is invalid"},
		{"issued by another token service with the same keys", otherIssuer.tokenFor(ck, dkey), "another issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			r := call(tt.tok)
			if r.status != 401 {
				t.Fatalf("status %d, want 401: %s", r.status, r.body)
			}
			if wa := r.header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="invalid_token"`) || r.problem["error"] != "invalid_token" {
				t.Errorf("want invalid_token; WWW-Authenticate %q, problem %v", wa, r.problem)
			}
			if d, _ := r.problem["detail"].(string); !strings.Contains(d, tt.wantDetail) {
				t.Errorf("detail %q, want it to say %q", d, tt.wantDetail)
			}
			if up.count() != before {
				t.Error("the upstream saw a refused request")
			}
		})
	}
	if n := remoteJWKSMetric(t, node, "keybound_gateway_jwks_fetch_failures_total"); n != 0 {
		t.Errorf("JWK Set fetch failures: %v", n)
	}
}

// TestGatewaySeparateIssuerDownAtStart: an unreachable issuer does not stop
// the gateway from starting; it says so and refuses every token until it
// has keys.
func TestGatewaySeparateIssuerDownAtStart(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "https://" + dead.Addr().String() + "/oauth2/jwks"
	dead.Close()
	g := startGateway(t, func(c *config.Config) {
		c.Gateway.Issuer = c.IssuerURL()
		c.Gateway.JWKSURL = deadURL
	})
	if !strings.Contains(g.logs.String(), "could not be fetched at start") {
		t.Error("no warning that the issuer's keys could not be fetched")
	}
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	r := g.send(nil, "GET", "/invoices/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/1", tok)})
	if r.status != 401 || r.problem["error"] != "invalid_token" || g.up.count() != 0 {
		t.Errorf("token accepted with no issuer keys: %d %s", r.status, r.body)
	}
}

// remoteJWKSForgedKey signs like an issuer key, but no issuer published it.
type remoteJWKSForgedKey struct {
	*ecdsa.PrivateKey
	kid string
}

func (k remoteJWKSForgedKey) KID() string       { return k.kid }
func (k remoteJWKSForgedKey) Algorithm() string { return accesstoken.AlgES256 }

// remoteJWKSKID reads the kid of an admin API rotate answer.
func remoteJWKSKID(t *testing.T, body []byte) string {
	t.Helper()
	s := string(body)
	i := strings.Index(s, `"kid":"`)
	if i < 0 {
		t.Fatalf("rotate answer %s has no kid", body)
	}
	kid, _, _ := strings.Cut(s[i+len(`"kid":"`):], `"`)
	return kid
}

// remoteJWKSActivateNow moves kid's activation to its creation time in the
// store of dataDir, as if its publication lead had passed.
func remoteJWKSActivateNow(t *testing.T, dataDir, kid string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "keybound.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := st.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if k.KID == kid {
			k.ActivatesAt = k.CreatedAt
			if err := st.PutSigningKey(ctx, k); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("key %s is not in the store", kid)
}

// remoteJWKSMetric reads one unlabelled counter from h's /metrics.
func remoteJWKSMetric(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	r := h.do(nil, "GET", "/metrics", "", nil, nil)
	if r.status != 200 {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("metric %s not served", name)
	return 0
}
