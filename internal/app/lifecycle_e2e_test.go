package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/sdk"
)

// atDir makes start use dir as the data directory, so a test can stop a
// server and start another on the same state.
func atDir(dir string) func(*config.Config) {
	return func(c *config.Config) { c.DataDir = dir }
}

// jwksKIDs lists the key ids the JWK Set publishes, sorted.
func (h *harness) jwksKIDs() []string {
	h.t.Helper()
	r := h.do(nil, "GET", "/oauth2/jwks", "", nil, nil)
	if r.status != 200 {
		h.t.Fatalf("jwks: %d %s", r.status, r.body)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil {
		h.t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	slices.Sort(kids)
	return kids
}

// bearerToken gets a Bearer token for a private_key_jwt client.
func (h *harness) bearerToken(c clientKey) tokenResult {
	h.t.Helper()
	return h.postForm(nil, "/oauth2/token", tokenForm(c, h), nil)
}

// TestDataDirFirstStartAndRestart checks what the first start leaves on
// disk, and that a restart on the same directory keeps every identity.
func TestDataDirFirstStartAndRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	h1 := start(t, atDir(dir))

	mode := func(rel string) fs.FileMode {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		return fi.Mode().Perm()
	}
	for rel, want := range map[string]fs.FileMode{
		".":                   0o700,
		"tls":                 0o700,
		"tls/ca-key.pem":      0o600,
		"tls/server-key.pem":  0o600,
		"admin":               0o700,
		"admin/admin-key.pem": 0o600,
		"admin/admin.json":    0o600,
		"keybound.db":         0o600,
	} {
		if got := mode(rel); got != want {
			t.Errorf("%s has mode %04o, want %04o", rel, got, want)
		}
	}
	if _, err := app.CAPool(filepath.Join(dir, "tls", "ca.pem")); err != nil {
		t.Errorf("tls/ca.pem: %v", err)
	}
	// Nothing in the data dir other than certificates may be readable by
	// group or others: the SQLite WAL holds the same secrets as the file.
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "ca.pem") || strings.HasSuffix(path, "/server.pem") {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o, readable beyond the owner", path, fi.Mode().Perm())
		}
		return nil
	})

	caPEM1, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	kids1 := h1.jwksKIDs()
	kept := h1.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	gone := h1.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	if code, b := h1.adminDo("POST", "/clients/"+gone.id+"/revoke", nil); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	r := h1.bearerToken(kept)
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	kid1 := decodeHeader(t, r.body["access_token"].(string))["kid"]
	if err := h1.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	h2 := start(t, atDir(dir))
	if h2.issuer == h1.issuer {
		t.Fatal("second server on the same port; the test cannot tell the descriptor was updated")
	}
	caPEM2, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if !bytes.Equal(caPEM1, caPEM2) {
		t.Error("restart replaced the CA: every client pinning ca.pem breaks")
	}
	if h2.adminID != h1.adminID {
		t.Errorf("restart registered a new admin %s, had %s", h2.adminID, h1.adminID)
	}
	if ids := h2.clientIDs("?environment=admin"); !slices.Equal(ids, []string{h1.adminID}) {
		t.Errorf("admin identities after restart = %v", ids)
	}
	d, err := app.LoadAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Issuer != h2.issuer || d.TokenEndpoint != h2.issuer+"/oauth2/token" {
		t.Errorf("admin descriptor issuer %q token endpoint %q, want the new address %s", d.Issuer, d.TokenEndpoint, h2.issuer)
	}
	if kids2 := h2.jwksKIDs(); !slices.Equal(kids1, kids2) {
		t.Errorf("JWKS kids %v after restart, were %v", kids2, kids1)
	}
	r = h2.bearerToken(kept)
	if r.status != 200 {
		t.Fatalf("token after restart: %d %s", r.status, r.raw)
	}
	if kid2 := decodeHeader(t, r.body["access_token"].(string))["kid"]; kid2 != kid1 {
		t.Errorf("signing kid %v after restart, was %v", kid2, kid1)
	}
	if r := h2.bearerToken(gone); r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("revoked client after restart: %d %s", r.status, r.raw)
	}
	var created int
	for _, ev := range h2.events() {
		if ev.Action == "client.create" {
			created++
		}
	}
	if created != 3 {
		t.Errorf("%d client.create events after restart, want 3 (admin and two clients)", created)
	}
}

// TestHealthReadinessAndMetrics reads the operational endpoints.
func TestHealthReadinessAndMetrics(t *testing.T) {
	h := start(t, nil)
	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		r := h.do(nil, "GET", path, "", nil, nil)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, r.status, r.body, want)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("GET %s has no X-Request-Id", path)
		}
	}
	if r := h.do(nil, "GET", "/no-such-path", "", nil, nil); r.status != 404 {
		t.Errorf("unknown path: %d %s", r.status, r.body)
	}

	metrics := func() string {
		r := h.do(nil, "GET", "/metrics", "", nil, nil)
		if r.status != 200 {
			t.Fatalf("metrics: %d %s", r.status, r.body)
		}
		return string(r.body)
	}
	c := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	if r := h.bearerToken(c); r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	bad := tokenForm(c, h)
	bad.Set("client_assertion", "not-a-jwt")
	if r := h.postForm(nil, "/oauth2/token", bad, nil); r.status != 401 {
		t.Fatalf("bad assertion: %d %s", r.status, r.raw)
	}
	if r := h.postForm(nil, "/oauth2/token", url.Values{"grant_type": {"password"}}, nil); r.status != 400 {
		t.Fatalf("bad grant: %d %s", r.status, r.raw)
	}
	m := metrics()
	for _, line := range []string{
		`keybound_tokens_issued_total{auth_method="private_key_jwt",binding="bearer"} 1`,
		`keybound_token_requests_rejected_total{endpoint="token",reason="invalid_client"} 1`,
		`keybound_token_requests_rejected_total{endpoint="token",reason="unsupported_grant_type"} 1`,
		// The admin identity's own token, taken to register the client.
		`keybound_tokens_issued_total{auth_method="private_key_jwt",binding="dpop"} 1`,
		`keybound_token_issue_duration_seconds_count 2`,
	} {
		if !strings.Contains(m, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	// Labels are bounded: no client id ever becomes a label value.
	if strings.Contains(m, c.id) || strings.Contains(m, h.adminID) {
		t.Error("metrics carry a client id")
	}

	off := start(t, func(c *config.Config) { c.Server.Metrics = false })
	if r := off.do(nil, "GET", "/metrics", "", nil, nil); r.status != 404 {
		t.Errorf("metrics disabled but GET /metrics = %d", r.status)
	}
}

// TestGracefulShutdown stops the server while a token request is half
// sent: the request still completes, Serve returns nil, and the database is
// closed cleanly with everything in it.
func TestGracefulShutdown(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	addr := h.cfg.Server.Addr

	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// Expect: 100-continue makes the server answer once the token handler
	// starts reading the body, so the request is provably inside the
	// handler when shutdown begins.
	body := tokenForm(c, h).Encode()
	head := "POST /oauth2/token HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nExpect: 100-continue\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	cont, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cont.StatusCode != http.StatusContinue {
		t.Fatalf("got %d before the body was sent, want 100", cont.StatusCode)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	// Shutdown closes the listener first: wait until new connections fail.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}

	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != 200 || tok["access_token"] == nil {
		t.Errorf("in-flight request during shutdown: %d %v", resp.StatusCode, tok)
	}
	if !resp.Close {
		t.Error("response during shutdown does not close the connection")
	}

	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Serve after graceful shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last request finished")
	}

	st, err := sqlite.Open(context.Background(), filepath.Join(h.cfg.DataDir, "keybound.db"))
	if err != nil {
		t.Fatalf("reopen database after shutdown: %v", err)
	}
	defer st.Close()
	cs, err := st.ListClients(context.Background(), store.ClientFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, cl := range cs {
		ids = append(ids, cl.ID)
	}
	if !slices.Contains(ids, c.id) || !slices.Contains(ids, h.adminID) {
		t.Errorf("clients after reopen = %v, want %s and the admin %s", ids, c.id, h.adminID)
	}
}

// TestLogsNeverHoldCredentials runs issuance, introspection, revocation, a
// secret client and refusals, then searches every log line for the
// credentials that passed through the server.
func TestLogsNeverHoldCredentials(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	tokenURL := h.issuer + "/oauth2/token"
	var secrets []string

	// DPoP through the SDK.
	dc := h.newKeyClient(inventory.Registration{Scope: "a"})
	dtok, err := (&sdk.Config{TokenURL: tokenURL, ClientID: dc.id, Key: dc.key, KeyID: dc.kid, DPoP: true, HTTPClient: h.httpClient(nil)}).TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, dtok.AccessToken)

	// Bearer by hand, with the assertion kept.
	bc := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	form := tokenForm(bc, h)
	secrets = append(secrets, form.Get("client_assertion"))
	r := h.postForm(nil, "/oauth2/token", form, nil)
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	btok := r.body["access_token"].(string)
	secrets = append(secrets, btok)
	// The replayed assertion is refused and must not be logged either.
	if r := h.postForm(nil, "/oauth2/token", form, nil); r.status != 401 {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}

	// A legacy secret client, right and wrong.
	sv := h.register(inventory.Registration{Scope: "a", AuthMethod: "client_secret_post", AllowBearer: true})
	secrets = append(secrets, sv.ClientSecret, sv.ClientSecret+"wrong")
	cc := clientcredentials.Config{ClientID: sv.ClientID, ClientSecret: sv.ClientSecret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}
	stok, err := cc.Token(h.oauth2Ctx())
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, stok.AccessToken)
	cc.ClientSecret += "wrong"
	if _, err := cc.Token(h.oauth2Ctx()); err == nil {
		t.Fatal("wrong secret accepted")
	}

	// Introspection and revocation, with the caller's assertion kept.
	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	for _, tok := range []string{dtok.AccessToken, btok, stok.AccessToken} {
		if h.introspect(rs, tok)["active"] != true {
			t.Errorf("token inactive")
		}
	}
	revokeForm := url.Values{"token": {btok}, "client_id": {bc.id}, "client_assertion_type": {assertionType}, "client_assertion": {bc.assertion(t, h.issuer)}}
	secrets = append(secrets, revokeForm.Get("client_assertion"))
	if r := h.postForm(nil, "/oauth2/revoke", revokeForm, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}

	// Refusals at the admin API with real tokens in the header.
	for _, hdr := range []string{"Bearer " + dtok.AccessToken, "DPoP " + btok, "Bearer " + btok} {
		if r := h.do(nil, "GET", "/admin/v1/clients", "", nil, map[string]string{"Authorization": hdr}); r.status < 400 {
			t.Fatalf("admin call with %q accepted", hdr[:10])
		}
	}

	logs := h.logs.String()
	if !strings.Contains(logs, `"msg":"token issued"`) {
		t.Fatal("no issuance logged: the scan below would prove nothing")
	}
	// Tokens appear as their jti, so an incident can still be traced.
	if jti, _ := decodeClaims(t, btok)["jti"].(string); !strings.Contains(logs, jti) {
		t.Errorf("issuance of jti %s not logged", jti)
	}
	for i, s := range secrets {
		if s == "" {
			t.Fatalf("credential %d is empty", i)
		}
		if strings.Contains(logs, s) {
			t.Errorf("log holds credential %d (%.12s...)", i, s)
		}
	}
	// Any JWS at all: tokens, assertions, proofs all start with a
	// base64url JSON header.
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, "eyJ") {
			t.Errorf("log line holds a JWS: %s", line)
		}
	}
}

// TestInvalidConfigRefusedBeforeStart checks app.New names every bad key and
// touches nothing on disk.
func TestInvalidConfigRefusedBeforeStart(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*config.Config)
		wantKeys []string
	}{
		{"default lifetime too short", func(c *config.Config) { c.Tokens.DefaultLifetime = time.Second }, []string{"tokens.default_lifetime"}},
		{"default lifetime above max", func(c *config.Config) { c.Tokens.DefaultLifetime = 2 * time.Hour }, []string{"tokens.default_lifetime"}},
		{"max lifetime over a day", func(c *config.Config) { c.Tokens.MaxLifetime = 48 * time.Hour }, []string{"tokens.max_lifetime"}},
		{"bad address", func(c *config.Config) { c.Server.Addr = "localhost" }, []string{"server.addr"}},
		{"http issuer", func(c *config.Config) { c.Server.Issuer = "http://auth.example.com" }, []string{"server.issuer"}},
		{"publish lead shorter than the JWKS cache", func(c *config.Config) { c.Keys.PublishLead = time.Minute }, []string{"keys.publish_lead"}},
		{"symmetric DPoP algorithm", func(c *config.Config) { c.Tokens.DPoP.Algorithms = []string{"ES256", "HS256"} }, []string{"tokens.dpop.algorithms[1]"}},
		{"cert without key", func(c *config.Config) { c.Server.CertFile = "/etc/server.pem" }, []string{"server.cert_file"}},
		{"two problems at once", func(c *config.Config) {
			c.Log.Level = "verbose"
			c.Server.ShutdownTimeout = 0
		}, []string{"log.level", "server.shutdown_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.Server.Addr = "127.0.0.1:0"
			tt.mutate(&cfg)
			a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatalf("app.New accepted the config: %+v", a)
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("error %v is not a *config.ValidationError", err)
			}
			for _, k := range tt.wantKeys {
				if !strings.Contains(err.Error(), k+":") {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("data dir created for a refused config: %v", err)
			}
		})
	}
}

// TestWritableKeyFilesRefuseStart: a key, secret or trusted-CA file that
// any user can write stops app.New with an error naming the setting and
// the file, for each of the six settings that name one.
func TestWritableKeyFilesRefuseStart(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := strings.Repeat("s", 40)
	okSecret := file("ok-secret", secret, 0o600)
	tests := []struct {
		setting string
		mutate  func(c *config.Config, bad string)
	}{
		{"server.key_file", func(c *config.Config, bad string) {
			c.Server.CertFile, c.Server.KeyFile = file("server.pem", "x", 0o644), bad
		}},
		{"server.client_ca_file", func(c *config.Config, bad string) { c.Server.ClientCAFile = bad }},
		{"workload_ca.key_file", func(c *config.Config, bad string) {
			c.WorkloadCA.CertFile, c.WorkloadCA.KeyFile = file("wl.pem", "x", 0o644), bad
		}},
		{"governance.notify.webhook.secret_file", func(c *config.Config, bad string) {
			c.Governance.Notify.Webhook.URL, c.Governance.Notify.Webhook.SecretFile = "https://127.0.0.1:1/hook", bad
		}},
		{"governance.notify.webhook.ca_file", func(c *config.Config, bad string) {
			w := &c.Governance.Notify.Webhook
			w.URL, w.SecretFile, w.CAFile = "https://127.0.0.1:1/hook", okSecret, bad
		}},
		{"gateway.issuer_ca_file", func(c *config.Config, bad string) {
			g := &c.Gateway
			g.Addr, g.Issuer, g.JWKSURL, g.IssuerCAFile = "127.0.0.1:0", "https://127.0.0.1:1", "https://127.0.0.1:1/jwks", bad
		}},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			bad := file(strings.ReplaceAll(tt.setting, ".", "-"), secret, 0o666)
			cfg := config.Default()
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.Server.Addr = "127.0.0.1:0"
			tt.mutate(&cfg, bad)
			a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatalf("app.New started with a world-writable file: %+v", a)
			}
			if want := tt.setting + ": " + bad + " can be written by any user (mode 0666)"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want it to contain %q", err, want)
			}
		})
	}
}
