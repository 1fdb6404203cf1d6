package cli_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/route"
)

// seenRequest is what the upstream received.
type seenRequest struct {
	method, path string
	header       http.Header
	body         string
}

// recordingUpstream is an API behind the gateway that records every request.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: string(b)})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, `{"path":"`+r.URL.Path+`"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// gatewayServer is a keybound server with its gateway in front of up.
type gatewayServer struct {
	*server
	gw string // gateway base URL
	up *recordingUpstream
}

// startGatewayServer starts keybound as startServer does, plus a gateway on
// its own loopback listener, with DPoP nonces required so that every call
// exercises the nonce retry.
func startGatewayServer(t *testing.T) *gatewayServer {
	t.Helper()
	up := newRecordingUpstream(t)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(cfg *config.Config) {
		cfg.Tokens.DPoP.RequireNonce = true
		cfg.Gateway.Addr = gl.Addr().String()
		cfg.Gateway.Routes = []route.Spec{
			{Name: "invoices", Path: "/invoices/{id}", Methods: []string{"GET", "POST"}, Upstream: up.URL,
				Scopes:      route.ScopeSpec{ByMethod: map[string][]string{"GET": {"invoices:read"}, "POST": {"invoices:write"}}},
				Sensitivity: "confidential"},
		}
	}, app.WithGatewayListener(gl))
	return &gatewayServer{server: s, gw: "https://" + gl.Addr().String(), up: up}
}

// requestJSON is `request -o json` output.
type requestJSON struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    json.RawMessage     `json:"body"`
}

// assertNoSecrets fails if stdout or stderr of r holds a JWT (the token, a
// proof or an assertion) or any private key material.
func assertNoSecrets(t *testing.T, r result, keyFiles ...string) {
	t.Helper()
	all := r.stdout + r.stderr
	if strings.Contains(all, "eyJ") {
		t.Errorf("output holds a JWT:\n%s", r)
	}
	if strings.Contains(all, "PRIVATE KEY") || strings.Contains(all, `"d":`) {
		t.Errorf("output holds private key material:\n%s", r)
	}
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line) {
				t.Errorf("output holds a line of %s:\n%s", f, r)
			}
		}
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	s := startGatewayServer(t)
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "k")
	dpopKey, _ := keygen(t, dir, "d")
	id := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "billing-sync", "--owner", "team-billing@example.com",
		"--purpose", "nightly invoice export", "--environment", "prod", "--expires-in", "30d",
		"--scope", "invoices:read invoices:write", "--jwks-file", jwks, "--dpop", "-o", "json")).ClientID
	readOnly := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "billing-reader", "--owner", "team-billing@example.com",
		"--purpose", "invoice reader", "--environment", "prod", "--expires-in", "30d",
		"--scope", "invoices:read", "--jwks-file", jwks, "--dpop", "-o", "json")).ClientID

	t.Run("DPoP POST with a body, json output", func(t *testing.T) {
		before := len(s.up.requests())
		r := s.cli(t, "request", "post", s.gw+"/invoices/7", "--client-id", id, "--key", key, "--dpop-key", dpopKey,
			"--scope", "invoices:write", "-H", "X-Trace: abc", "-H", "X-Keybound-Client-Id: spoofed", "-d", `{"amount":12}`, "-o", "json")
		if r.code != 0 {
			t.Fatalf("request:\n%s", r)
		}
		assertNoSecrets(t, r, key, dpopKey)
		out := decodeJSON[requestJSON](t, r.stdout)
		if out.Status != 200 || out.Headers["X-Upstream"][0] != "yes" || !strings.Contains(string(out.Body), `"/invoices/7"`) {
			t.Errorf("output %+v", out)
		}
		seen := s.up.requests()
		if len(seen) != before+1 {
			t.Fatalf("upstream saw %d requests, want 1", len(seen)-before)
		}
		got := seen[len(seen)-1]
		if got.method != "POST" || got.path != "/invoices/7" || got.body != `{"amount":12}` {
			t.Errorf("upstream saw %s %s %q", got.method, got.path, got.body)
		}
		if got.header.Get("X-Keybound-Client-Id") != id || got.header.Get("X-Keybound-Binding") != "dpop" ||
			!strings.Contains(got.header.Get("X-Keybound-Scopes"), "invoices:write") {
			t.Errorf("upstream identity headers: %v", got.header)
		}
		if got.header.Get("X-Trace") != "abc" || got.header.Get("Content-Type") != "application/json" {
			t.Errorf("upstream request headers: %v", got.header)
		}
	})

	t.Run("GET with a generated DPoP key and a body from a file, raw output", func(t *testing.T) {
		f := filepath.Join(dir, "body.txt")
		if err := os.WriteFile(f, []byte("hello upstream"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.cli(t, "request", "GET", s.gw+"/invoices/8", "--client-id", id, "--key", key, "--scope", "invoices:read", "-d", "@"+f)
		if r.code != 0 || r.stdout != `{"path":"/invoices/8"}` || r.stderr != "" {
			t.Fatalf("request:\n%s", r)
		}
		assertNoSecrets(t, r, key)
		seen := s.up.requests()
		if got := seen[len(seen)-1]; got.body != "hello upstream" || got.header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("upstream saw body %q, Content-Type %q", got.body, got.header.Get("Content-Type"))
		}
	})

	t.Run("missing scope exits 1 with the problem detail", func(t *testing.T) {
		before := len(s.up.requests())
		r := s.cli(t, "request", "POST", s.gw+"/invoices/9", "--client-id", readOnly, "--key", key, "--dpop-key", dpopKey, "-d", "x")
		checkFailure(t, r, 1, "POST "+s.gw+"/invoices/9", "403", "invoices:write")
		assertNoSecrets(t, r, key, dpopKey)
		if !strings.Contains(r.stdout, "insufficient-scope") {
			t.Errorf("stdout does not hold the problem body:\n%s", r)
		}
		if len(s.up.requests()) != before {
			t.Error("the upstream saw a refused request")
		}
		rj := s.cli(t, "request", "POST", s.gw+"/invoices/9", "--client-id", readOnly, "--key", key, "-o", "json")
		checkFailure(t, rj, 1, "403")
		if out := decodeJSON[requestJSON](t, rj.stdout); out.Status != 403 || !strings.Contains(string(out.Body), "insufficient-scope") {
			t.Errorf("json output %+v", out)
		}
	})

	t.Run("token endpoint refusal", func(t *testing.T) {
		r := s.cli(t, "request", "GET", s.gw+"/invoices/1", "--client-id", id, "--key", key, "--scope", "payroll:read")
		checkFailure(t, r, 1, "invalid_scope")
		assertNoSecrets(t, r, key)
	})

	t.Run("bad flags", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"no args", []string{"request"}, "accepts 2 arg"},
			{"no client id", []string{"request", "GET", s.gw + "/invoices/1", "--key", key}, "--client-id"},
			{"no key", []string{"request", "GET", s.gw + "/invoices/1", "--client-id", id}, "--key"},
			{"cert without key", []string{"request", "GET", s.gw + "/invoices/1", "--client-id", id, "--cert", "c.pem"}, "--cert-key"},
			{"bad method", []string{"request", "G T", s.gw + "/invoices/1", "--client-id", id, "--key", key}, "METHOD"},
			{"relative url", []string{"request", "GET", "/invoices/1", "--client-id", id, "--key", key}, "absolute"},
			{"bad header", []string{"request", "GET", s.gw + "/invoices/1", "--client-id", id, "--key", key, "-H", "NoColon"}, "Name: value"},
			{"authorization header", []string{"request", "GET", s.gw + "/invoices/1", "--client-id", id, "--key", key, "-H", "Authorization: Bearer x"}, "Authorization"},
			{"bad output", []string{"request", "GET", s.gw + "/invoices/1", "--client-id", id, "--key", key, "-o", "table"}, "--output"},
			{"no token url", []string{"--data-dir", t.TempDir(), "request", "GET", s.gw + "/invoices/1", "--client-id", id, "--key", key}, "--token-url"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				args := tc.args
				if args[0] == "request" {
					args = append([]string{"--data-dir", s.dataDir}, args...)
				}
				r := run(t, args...)
				checkFailure(t, r, 2, tc.want)
				assertNoSecrets(t, r, key)
			})
		}
		checkFailure(t, s.cli(t, "request", "GET", s.gw+"/invoices/1", "--client-id", id, "--key", filepath.Join(dir, "missing.pem")), 1, "missing.pem")
		checkFailure(t, s.cli(t, "request", "GET", s.gw+"/invoices/1", "--client-id", id, "--key", key, "-d", "@"+filepath.Join(dir, "nobody.json")), 1, "nobody.json")
	})
}

// TestRequestMTLS follows the README: register a tls_client_auth identity,
// enroll a workload certificate with a join token, call through the gateway.
func TestRequestMTLS(t *testing.T) {
	t.Parallel()
	s := startGatewayServer(t)
	dir := t.TempDir()
	wid := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "billing-worker", "--owner", "team-billing@example.com",
		"--purpose", "invoice worker", "--environment", "prod", "--expires-in", "30d", "--scope", "invoices:read",
		"--auth", "tls_client_auth", "--tls-san-uri", "spiffe://keybound.local/billing-worker", "--mtls-bound", "-o", "json")).ClientID
	join := strings.TrimSpace(s.cliOK(t, "cert", "join-token", "--client", wid, "--lifetime", "15m"))
	key := filepath.Join(dir, "worker.key")
	runOK(t, "keygen", "--key", key)
	crt := filepath.Join(dir, "worker.pem")
	s.cliOK(t, "cert", "enroll", "--key", key, "--join-token", join, "--out", crt)

	r := s.cli(t, "request", "GET", s.gw+"/invoices/3", "--client-id", wid, "--cert", crt, "--cert-key", key, "-o", "json")
	if r.code != 0 {
		t.Fatalf("request:\n%s", r)
	}
	assertNoSecrets(t, r, key)
	if out := decodeJSON[requestJSON](t, r.stdout); out.Status != 200 {
		t.Errorf("output %+v", out)
	}
	seen := s.up.requests()
	if got := seen[len(seen)-1]; got.header.Get("X-Keybound-Client-Id") != wid || got.header.Get("X-Keybound-Binding") != "mtls" {
		t.Errorf("upstream identity headers: %v", got.header)
	}
}
