package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/sdk"
)

// upstream records what reached it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"path":"`+r.URL.Path+`"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[len(u.seen)-1]
}

// gwHarness is a keybound with its gateway in front of one upstream.
type gwHarness struct {
	*harness
	gw        string // gateway base URL
	up        *upstream
	auditFile string // the JSON-lines audit sink
}

func testRoutes(up string) []route.Spec {
	return []route.Spec{
		{Name: "invoices", Path: "/invoices/{id}", Methods: []string{"GET", "POST"}, Upstream: up,
			Scopes: route.ScopeSpec{ByMethod: map[string][]string{"GET": {"invoices:read"}, "POST": {"invoices:write"}}}, Sensitivity: "confidential"},
		{Name: "status", Path: "/status", Upstream: up, Sensitivity: "public"},
		{Name: "reports", Path: "/reports/{id}", Methods: []string{"GET"}, Upstream: up, Scopes: route.ScopeSpec{All: []string{"reports:read"}}, Sensitivity: "internal",
			RateLimit: &route.RateSpec{PerIdentity: "1/m", Burst: 2}},
		{Name: "payroll", Path: "/payroll/{id}", Methods: []string{"GET"}, Upstream: up, Scopes: route.ScopeSpec{All: []string{"payroll:read"}}, Sensitivity: "restricted"},
	}
}

// startGateway starts a server with the test routes on its gateway; opts
// go to app.New after the gateway listener.
func startGateway(t *testing.T, mutate func(*config.Config), opts ...app.Option) *gwHarness {
	t.Helper()
	up := newUpstream(t)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gwHarness{up: up, gw: "https://" + gl.Addr().String(), auditFile: filepath.Join(t.TempDir(), "audit.jsonl")}
	g.harness = startApp(t, func(c *config.Config) {
		c.Gateway.Addr = gl.Addr().String()
		c.Gateway.Routes = testRoutes(up.URL)
		c.Gateway.Audit.File = g.auditFile
		if mutate != nil {
			mutate(c)
		}
	}, append([]app.Option{app.WithGatewayListener(gl)}, opts...)...)
	return g
}

// dpopClient registers a DPoP client and returns an HTTP client that sends
// a fresh proof with every request, plus its keys.
func (g *gwHarness) dpopClient(scope string) (*http.Client, clientKey, *ecdsa.PrivateKey) {
	g.t.Helper()
	ck := g.newKeyClient(inventory.Registration{Scope: scope})
	dkey := newEC(g.t)
	cfg := &sdk.Config{TokenURL: g.issuer + "/oauth2/token", ClientID: ck.id, Key: ck.key, KeyID: ck.kid, DPoP: true, DPoPKey: dkey, HTTPClient: g.httpClient(nil)}
	return cfg.Client(context.Background()), ck, dkey
}

func (g *gwHarness) tokenFor(ck clientKey, dkey *ecdsa.PrivateKey) string {
	g.t.Helper()
	cfg := &sdk.Config{TokenURL: g.issuer + "/oauth2/token", ClientID: ck.id, Key: ck.key, KeyID: ck.kid, DPoP: dkey != nil, DPoPKey: dkey, HTTPClient: g.httpClient(nil)}
	tok, err := cfg.TokenSource(context.Background()).Token()
	if err != nil {
		g.t.Fatal(err)
	}
	return tok.AccessToken
}

func proofFor(t *testing.T, key *ecdsa.PrivateKey, method, u, tok string) string {
	t.Helper()
	s, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Proof(method, u, dpop.ProofOptions{AccessToken: tok})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type gwResult struct {
	status  int
	header  http.Header
	problem map[string]any
	body    string
}

func (g *gwHarness) send(c *http.Client, method, path string, hdr map[string]string) gwResult {
	g.t.Helper()
	req, _ := http.NewRequest(method, g.gw+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = g.httpClient(nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := gwResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &r.problem)
	return r
}

func TestGatewayAllowsProvenDPoPRequests(t *testing.T) {
	g := startGateway(t, nil)
	hc, ck, _ := g.dpopClient("invoices:read")
	req, _ := http.NewRequest("GET", g.gw+"/invoices/42", nil)
	req.Header.Set("X-Keybound-Client-Id", "spoofed-admin")
	req.Header.Set("X-Keybound-Scopes", "everything")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"/invoices/42"`) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	in := g.up.last()
	if got := in.Header.Get("X-Keybound-Client-Id"); got != ck.id {
		t.Errorf("upstream saw client id %q, want %q (spoofed header must be replaced)", got, ck.id)
	}
	if got := in.Header.Get("X-Keybound-Scopes"); got != "invoices:read" {
		t.Errorf("upstream saw scopes %q", got)
	}
	if in.Header.Get("X-Keybound-Binding") != "dpop" || in.Header.Get("X-Keybound-Owner") != "team-a@example.com" {
		t.Errorf("identity headers = %v", in.Header)
	}
	if in.Header.Get("Authorization") != "" || in.Header.Get("DPoP") != "" {
		t.Error("the caller's credentials reached the upstream")
	}
	// A second request with a fresh proof works too (proofs are per request).
	resp, err = hc.Get(g.gw + "/invoices/43")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second request: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	// The public route needs no token.
	if r := g.send(nil, "GET", "/status", nil); r.status != 200 {
		t.Errorf("public route: %d %s", r.status, r.body)
	}
}

func TestGatewayRejections(t *testing.T) {
	g := startGateway(t, nil)
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read reports:read payroll:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	u := g.gw + "/invoices/42"
	replayed := proofFor(t, dkey, "GET", u, tok)
	if r := g.send(nil, "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": replayed}); r.status != 200 {
		t.Fatalf("baseline: %d %s", r.status, r.body)
	}
	thief := newEC(t)
	bearerClient := g.newKeyClient(inventory.Registration{Scope: "invoices:read", AllowBearer: true})
	bearerTok := g.tokenFor(bearerClient, nil)

	tests := []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		wantStatus int
		wantError  string // OAuth error code in WWW-Authenticate and problem
		wantScheme string
	}{
		{"no token", "GET", "/invoices/42", nil, 401, "", "Bearer"},
		{"garbage token", "GET", "/invoices/42", map[string]string{"Authorization": "Bearer not-a-token"}, 401, "invalid_token", "Bearer"},
		{"DPoP token presented as Bearer", "GET", "/invoices/42", map[string]string{"Authorization": "Bearer " + tok}, 401, "invalid_token", "DPoP"},
		{"DPoP token without proof", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok}, 401, "invalid_dpop_proof", "DPoP"},
		{"replayed proof", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": replayed}, 401, "invalid_dpop_proof", "DPoP"},
		{"proof for another URL", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/43", tok)}, 401, "invalid_dpop_proof", "DPoP"},
		{"proof for another method", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "POST", u, tok)}, 401, "invalid_dpop_proof", "DPoP"},
		{"stolen token used with another key", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, thief, "GET", u, tok)}, 401, "invalid_dpop_proof", "DPoP"},
		{"proof for another token (ath)", "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, "other-token")}, 401, "invalid_dpop_proof", "DPoP"},
		{"missing scope for method", "POST", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "POST", u, tok)}, 403, "insufficient_scope", "DPoP"},
		{"bearer token on a confidential route", "GET", "/invoices/42", map[string]string{"Authorization": "Bearer " + bearerTok}, 403, "insufficient_scope", "Bearer"},
		{"no route", "GET", "/nothing/here", map[string]string{"Authorization": "DPoP " + tok}, 404, "", ""},
		{"method not allowed", "DELETE", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok}, 405, "", ""},
		{"path traversal", "GET", "/invoices/..%2F..%2Fadmin", map[string]string{"Authorization": "DPoP " + tok}, 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := g.up.count()
			r := g.send(nil, tt.method, tt.path, tt.hdr)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			if r.problem["status"] != float64(tt.wantStatus) || r.problem["title"] == "" {
				t.Errorf("problem body %v", r.problem)
			}
			wa := r.header.Get("WWW-Authenticate")
			if tt.wantScheme != "" && !strings.HasPrefix(wa, tt.wantScheme) {
				t.Errorf("WWW-Authenticate %q, want scheme %s", wa, tt.wantScheme)
			}
			if tt.wantError != "" {
				if !strings.Contains(wa, `error="`+tt.wantError+`"`) || r.problem["error"] != tt.wantError {
					t.Errorf("want error %s; WWW-Authenticate %q, problem %v", tt.wantError, wa, r.problem)
				}
			}
			if tt.wantStatus == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if g.up.count() != before {
				t.Error("the upstream saw a refused request")
			}
		})
	}

	t.Run("restricted route refuses a shared-secret client", func(t *testing.T) {
		v := g.register(inventory.Registration{Scope: "payroll:read", AuthMethod: "client_secret_basic", DPoPBound: true})
		form := url.Values{"grant_type": {"client_credentials"}}
		req, _ := http.NewRequest("POST", g.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(v.ClientID, v.ClientSecret)
		req.Header.Set("DPoP", proofFor(t, dkey, "POST", g.issuer+"/oauth2/token", ""))
		resp, err := g.httpClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tr map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		stok, _ := tr["access_token"].(string)
		if stok == "" {
			t.Fatalf("token: %v", tr)
		}
		before := g.up.count()
		r := g.send(nil, "GET", "/payroll/1", map[string]string{"Authorization": "DPoP " + stok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/payroll/1", stok)})
		if r.status != 403 || g.up.count() != before {
			t.Errorf("got %d %s", r.status, r.body)
		}
		r = g.send(nil, "GET", "/payroll/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/payroll/1", tok)})
		if r.status != 200 {
			t.Errorf("key-authenticated DPoP client on restricted route: %d %s", r.status, r.body)
		}
	})
}

func TestGatewayRateLimitAndAudit(t *testing.T) {
	g := startGateway(t, nil)
	hc, ck, _ := g.dpopClient("reports:read")
	var codes []int
	var last *http.Response
	for i := 0; i < 3; i++ {
		resp, err := hc.Get(g.gw + "/reports/7")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		last = resp
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("codes %v, want 200 200 429 (burst 2)", codes)
	}
	if ra := last.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// The audit trail answers who called what, with which scope.
	var evs []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs = g.auditEvents(ck.id)
		if len(evs) >= 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(evs) != 3 {
		t.Fatalf("audit events %d, want 3: %v", len(evs), evs)
	}
	allow, deny := 0, 0
	for _, e := range evs {
		switch e["decision"] {
		case "allow":
			allow++
			if e["route"] != "reports" || e["path_template"] != "/reports/{id}" || e["object_id"] != "7" || e["credential_type"] != "dpop" || e["status"] != float64(200) {
				t.Errorf("allow event %v", e)
			}
		case "deny":
			deny++
			if e["reason"] != "rate_limited" || e["status"] != float64(429) {
				t.Errorf("deny event %v", e)
			}
		}
	}
	if allow != 2 || deny != 1 {
		t.Errorf("allow %d deny %d", allow, deny)
	}
}

// auditEvents reads the stored audit trail of one client from the store file.
func (g *gwHarness) auditEvents(clientID string) []map[string]any {
	g.t.Helper()
	b, err := os.ReadFile(g.auditFile)
	if err != nil {
		return nil
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["client_id"] == clientID {
			out = append(out, e)
		}
	}
	return out
}

func TestGatewayRevocationTakesEffectUnderTraffic(t *testing.T) {
	g := startGateway(t, nil)
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	call := func() int {
		return g.send(nil, "GET", "/invoices/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/1", tok)}).status
	}
	for i := 0; i < 5; i++ {
		if c := call(); c != 200 {
			t.Fatalf("steady traffic: %d", c)
		}
	}
	if code, b := g.adminDo("POST", "/clients/"+ck.id+"/suspend", nil); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	// Suspension made in this process applies to the very next request.
	if c := call(); c != 401 {
		t.Fatalf("after suspend: %d", c)
	}
	g.adminDo("POST", "/clients/"+ck.id+"/resume", nil)
	if c := call(); c != 200 {
		t.Fatalf("after resume: %d", c)
	}
	// Token revocation (RFC 7009) by the client itself.
	r := g.postForm(nil, "/oauth2/revoke", url.Values{"token": {tok}, "client_id": {ck.id}, "client_assertion_type": {assertionType}, "client_assertion": {ck.assertion(t, g.issuer)}}, nil)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if c := call(); c != 401 {
		t.Fatalf("after token revocation: %d", c)
	}
}

func TestGatewayMTLSBoundTokens(t *testing.T) {
	g := startGateway(t, nil)
	certA, cfA, kfA := mtlsClientCert(t, g.harness, pkix.Name{CommonName: "svc-a", Organization: []string{"example"}})
	_, cfB, kfB := mtlsClientCert(t, g.harness, pkix.Name{CommonName: "svc-b", Organization: []string{"example"}})
	pairA, err := tls.LoadX509KeyPair(cfA, kfA)
	if err != nil {
		t.Fatal(err)
	}
	pairB, err := tls.LoadX509KeyPair(cfB, kfB)
	if err != nil {
		t.Fatal(err)
	}
	v := g.register(inventory.Registration{Scope: "invoices:read", AuthMethod: "tls_client_auth", TLSSubjectDN: "CN=svc-a,O=example", MTLSBound: true})
	ca := g.httpClient([]tls.Certificate{pairA})
	r := g.postForm(ca, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}, nil)
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	tok := r.body["access_token"].(string)
	if got := g.send(ca, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok}); got.status != 200 {
		t.Fatalf("with its certificate: %d %s", got.status, got.body)
	}
	before := g.up.count()
	cb := g.httpClient([]tls.Certificate{pairB})
	if got := g.send(cb, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok}); got.status != 401 || !strings.Contains(got.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("with another certificate: %d %s", got.status, got.body)
	}
	if got := g.send(nil, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok}); got.status != 401 {
		t.Errorf("with no certificate: %d", got.status)
	}
	// A forwarded certificate header from an untrusted peer is ignored.
	fwd := url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certA.Raw})))
	if got := g.send(nil, "GET", "/invoices/5", map[string]string{"Authorization": "Bearer " + tok, "X-Forwarded-Client-Cert": fwd}); got.status != 401 {
		t.Errorf("forwarded cert from untrusted peer accepted: %d", got.status)
	}
	if g.up.count() != before {
		t.Error("upstream saw refused requests")
	}
}

func TestGatewayRouteReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keybound.yaml")
	up := newUpstream(t)
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("gateway:\n  routes:\n    - {name: status, path: /status, upstream: " + up.URL + ", sensitivity: public}\n")
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := startWithOptions(t, func(c *config.Config) {
		c.Gateway.Addr = gl.Addr().String()
		if err := c.LoadFile(file); err != nil {
			t.Fatal(err)
		}
	}, gl, file)
	g := &gwHarness{harness: h, gw: "https://" + gl.Addr().String(), up: up}

	// Steady traffic during reloads: no request may fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []int
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := g.httpClient(nil)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get(g.gw + "/status")
			if err != nil {
				mu.Lock()
				failures = append(failures, -1)
				mu.Unlock()
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				mu.Lock()
				failures = append(failures, resp.StatusCode)
				mu.Unlock()
			}
		}
	}()

	if r := g.send(nil, "GET", "/health2", nil); r.status != 404 {
		t.Fatalf("before reload: %d", r.status)
	}
	write("gateway:\n  routes:\n    - {name: status, path: /status, upstream: " + up.URL + ", sensitivity: public}\n    - {name: health2, path: /health2, upstream: " + up.URL + ", sensitivity: public}\n")
	code, b := g.adminDo("POST", "/gateway/reload", nil)
	if code != 200 || !strings.Contains(string(b), `"routes":2`) {
		t.Fatalf("reload: %d %s", code, b)
	}
	if r := g.send(nil, "GET", "/health2", nil); r.status != 200 {
		t.Errorf("after reload: %d", r.status)
	}
	// A bad file is refused whole; the running routes stay.
	write("gateway:\n  routes:\n    - {name: broken, path: /x, upstream: ftp://nope, sensitivity: secret}\n")
	code, b = g.adminDo("POST", "/gateway/reload", nil)
	if code != 422 || !strings.Contains(string(b), "unchanged") {
		t.Errorf("bad reload: %d %s", code, b)
	}
	if r := g.send(nil, "GET", "/health2", nil); r.status != 200 {
		t.Errorf("routes lost after a refused reload: %d", r.status)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests failed during reloads: %v", len(failures), failures)
	}
}

func TestGatewayUpstreamDown(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		c.Gateway.Routes = append(c.Gateway.Routes, route.Spec{Name: "down", Path: "/down", Upstream: "http://127.0.0.1:1", Sensitivity: "public"})
	})
	r := g.send(nil, "GET", "/down", nil)
	if r.status != 502 || r.problem["status"] != float64(502) {
		t.Errorf("got %d %s", r.status, r.body)
	}
}
