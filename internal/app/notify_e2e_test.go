package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/cli"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/notify"
)

// hookReceiver is a real HTTPS webhook receiver that answers every request
// with status and keeps what it got.
type hookReceiver struct {
	*httptest.Server
	caFile string
	status int
	mu     sync.Mutex
	got    []hookRequest
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{status: status}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rc.mu.Lock()
		rc.got = append(rc.got, hookRequest{header: r.Header.Clone(), body: b})
		status := rc.status
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	rc.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.StartTLS()
	t.Cleanup(rc.Close)
	rc.caFile = filepath.Join(t.TempDir(), "receiver-ca.pem")
	if err := os.WriteFile(rc.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *hookReceiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.got...)
}

// configure points keybound's webhook at rc, sweeping every second with one
// lead time of a day.
func (rc *hookReceiver) configure(maxAttempts int) func(*config.Config) {
	return func(c *config.Config) {
		c.Governance.SweepInterval = time.Second
		c.Governance.Notify.LeadTimes = []time.Duration{24 * time.Hour}
		c.Governance.Notify.Webhook.URL = rc.URL + "/hooks/keybound"
		c.Governance.Notify.Webhook.CAFile = rc.caFile
		c.Governance.Notify.Webhook.Timeout = 2 * time.Second
		c.Governance.Notify.Webhook.MaxAttempts = maxAttempts
	}
}

func (h *harness) notifications(query string) []adminapi.NotificationView {
	h.t.Helper()
	code, b := h.adminDo("GET", "/notifications"+query, nil)
	if code != 200 {
		h.t.Fatalf("notifications%s: %d %s", query, code, b)
	}
	var out struct {
		Notifications []adminapi.NotificationView `json:"notifications"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatal(err)
	}
	return out.Notifications
}

// TestExpiryWarningsEndToEnd registers an identity that expires in a few
// seconds and follows it: one signed identity.expiring warning, no
// duplicate from later sweeps, one identity.expired at expiry, and then
// the identity refused at the token endpoint and its still-unexpired token
// refused at the gateway. A restart on the same data directory sends
// nothing again.
func TestExpiryWarningsEndToEnd(t *testing.T) {
	rc := newHookReceiver(t, http.StatusNoContent)
	dir := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, func(c *config.Config) { rc.configure(3)(c); c.DataDir = dir })

	// The generated secret: 0600 in the data directory, never in the log.
	secretFile := filepath.Join(dir, app.WebhookSecretFile)
	fi, err := os.Stat(secretFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("webhook secret: %v, %v", fi, err)
	}
	secret, err := notify.LoadSecret(secretFile)
	if err != nil {
		t.Fatal(err)
	}

	expires := time.Now().Add(5 * time.Second).Truncate(time.Millisecond)
	ck := g.newKeyClient(inventory.Registration{Name: "ledger-sync", Owner: "team-ledger@example.com", Environment: "staging",
		Scope: "invoices:read", ExpiresAt: expires})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	call := func() gwResult {
		t.Helper()
		u := g.gw + "/invoices/7"
		return g.send(nil, "GET", "/invoices/7", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, tok)})
	}
	if r := call(); r.status != 200 {
		t.Fatalf("gateway before expiry: %d %s", r.status, r.body)
	}

	waitUntil(t, 4*time.Second, "the expiring warning", func() bool { return len(rc.requests()) >= 1 })
	// Sweeps keep running every second until the expiry: none may repeat it.
	time.Sleep(time.Until(expires.Add(-200 * time.Millisecond)))
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests before the expiry, want 1", len(reqs))
	}
	checkWarning := func(r hookRequest, typ string, lead int64) notify.Warning {
		t.Helper()
		if err := notify.Verify(secret, r.header.Get(notify.SignatureHeader), r.body, time.Now(), 0); err != nil {
			t.Errorf("signature: %v", err)
		}
		if err := notify.Verify([]byte(strings.Repeat("x", 64)), r.header.Get(notify.SignatureHeader), r.body, time.Now(), 0); err == nil {
			t.Error("the signature verifies under another secret")
		}
		var w notify.Warning
		if err := json.Unmarshal(r.body, &w); err != nil {
			t.Fatal(err)
		}
		if w.Type != typ || w.ClientID != ck.id || w.Name != "ledger-sync" || w.Owner != "team-ledger@example.com" ||
			w.Environment != "staging" || !w.ExpiresAt.Equal(expires) || w.LeadSeconds != lead || w.Issuer != g.issuer ||
			!strings.HasPrefix(w.ID, "ntf_") || r.header.Get("Keybound-Delivery") != w.ID {
			t.Errorf("warning %+v (want %s about %s expiring %s)", w, typ, ck.id, expires)
		}
		return w
	}
	first := checkWarning(reqs[0], notify.EventExpiring, 86400)

	// At expiry: refused everywhere, and the expired warning goes out once.
	time.Sleep(time.Until(expires))
	if r := g.bearerToken(ck); r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("token request after expiry: %d %s", r.status, r.raw)
	}
	if r := call(); r.status != 401 {
		t.Errorf("gateway with an unexpired token of an expired identity: %d %s", r.status, r.body)
	}
	waitUntil(t, 4*time.Second, "the expired warning", func() bool { return len(rc.requests()) >= 2 })
	second := checkWarning(rc.requests()[1], notify.EventExpired, 0)
	if second.ID == first.ID {
		t.Error("two warnings share a delivery id")
	}
	time.Sleep(2500 * time.Millisecond)
	if n := len(rc.requests()); n != 2 {
		t.Errorf("receiver got %d requests, want 2", n)
	}
	ns := g.notifications("?client_id=" + url.QueryEscape(ck.id))
	if len(ns) != 2 || ns[0].Status != "delivered" || ns[1].Status != "delivered" || ns[0].Type != notify.EventExpired || ns[1].LeadSeconds != 86400 {
		t.Errorf("admin API: %+v", ns)
	}
	if strings.Contains(g.logs.String(), strings.TrimSpace(string(secret))) || strings.Contains(g.logs.String(), "/hooks/keybound") {
		t.Error("the server log holds the webhook secret or URL path")
	}
	if !strings.Contains(g.logs.String(), "machine identity expires soon") {
		t.Error("the log notifier wrote no warning")
	}

	// A restart on the same state sends nothing again.
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}
	start(t, func(c *config.Config) { rc.configure(3)(c); c.DataDir = dir })
	time.Sleep(2500 * time.Millisecond)
	if n := len(rc.requests()); n != 2 {
		t.Errorf("after a restart the receiver got %d requests, want 2", n)
	}
	if got, _ := notify.LoadSecret(secretFile); !bytes.Equal(got, secret) {
		t.Error("the restart replaced the webhook secret")
	}
}

// TestExpiryWarningFailuresAreVisible: a receiver that keeps failing leaves
// a failed notification that the admin API, the CLI and the metrics show,
// with a reason and without the URL; `keybound notify test` reports the
// failure and exits non-zero.
func TestExpiryWarningFailuresAreVisible(t *testing.T) {
	rc := newHookReceiver(t, http.StatusServiceUnavailable)
	h := start(t, rc.configure(1))
	ck := h.newKeyClient(inventory.Registration{Scope: "a", ExpiresAt: time.Now().Add(time.Hour)})

	var failed []adminapi.NotificationView
	waitUntil(t, 5*time.Second, "a failed notification", func() bool {
		failed = h.notifications("?status=failed")
		return len(failed) == 1
	})
	f := failed[0]
	if f.ClientID != ck.id || f.Attempts != 1 || f.LastError != "gave up after 1 attempt: receiver answered 503 Service Unavailable" || f.Type != notify.EventExpiring {
		t.Errorf("failed notification %+v", f)
	}
	if p := h.notifications("?status=pending"); len(p) != 0 {
		t.Errorf("pending: %+v", p)
	}
	if got := len(rc.requests()); got != 1 {
		t.Errorf("max_attempts 1 made %d attempts", got)
	}
	if r := h.adminRaw("GET", "/notifications?status=sent", "", nil); r.status != 400 || r.problem(t).Errors[0].Field != "status" {
		t.Errorf("bad status filter: %d %s", r.status, r.body)
	}
	if r := h.adminRaw("GET", "/notifications?limit=0", "", nil); r.status != 400 {
		t.Errorf("limit=0: %d %s", r.status, r.body)
	}
	if r := h.do(nil, "GET", adminapi.Prefix+"/notifications", "", nil, nil); r.status != 401 {
		t.Errorf("notifications without a token: %d", r.status)
	}

	m := h.do(nil, "GET", "/metrics", "", nil, nil)
	if !strings.Contains(string(m.body), `keybound_notify_notifications{status="failed"} 1`) ||
		!strings.Contains(string(m.body), `keybound_notify_deliveries_total{outcome="failed"} 1`) {
		t.Errorf("metrics lack the failure:\n%s", grepLines(string(m.body), "keybound_notify"))
	}

	runCLI := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Main(context.Background(), append(args, "--data-dir", h.cfg.DataDir), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errOut := runCLI("notify", "list", "--status", "failed")
	if code != 0 || !strings.Contains(out, ck.id) || !strings.Contains(out, "receiver answered 503") || !strings.Contains(out, "failed") {
		t.Errorf("notify list: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("notify", "list", "--status", "failed", "-o", "json")
	var views []adminapi.NotificationView
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 || views[0].ID != f.ID {
		t.Errorf("notify list -o json: %d %s", code, out)
	}
	code, _, errOut = runCLI("notify", "list", "--status", "bogus")
	if code != 2 || !strings.Contains(errOut, "--status") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("bad --status: %d %q", code, errOut)
	}
	code, _, errOut = runCLI("notify", "test")
	if code != 1 || !strings.Contains(errOut, "503") || strings.Contains(errOut, "/hooks/keybound") {
		t.Errorf("notify test against a failing receiver: %d %q", code, errOut)
	}
	if got := len(rc.requests()); got != 2 {
		t.Errorf("receiver got %d requests, want the warning and the test", got)
	}
	tests := 0
	for _, ev := range h.events() {
		if ev.Action == "notify.test" && ev.Changes["outcome"] == "failed" {
			tests++
		}
	}
	if tests != 1 {
		t.Errorf("%d notify.test admin events, want 1", tests)
	}

	rc.mu.Lock()
	rc.status = http.StatusOK
	rc.mu.Unlock()
	code, out, errOut = runCLI("notify", "test")
	if code != 0 || !strings.Contains(out, "delivered to "+rc.URL+": answered 200") {
		t.Errorf("notify test: %d %q %q", code, out, errOut)
	}
}

// TestNotifyTestWithoutWebhook: no webhook configured is a clear refusal.
func TestNotifyTestWithoutWebhook(t *testing.T) {
	h := start(t, nil)
	if r := h.adminRaw("POST", "/notifications/test", "", nil); r.status != 409 || r.problem(t).Type == "" {
		t.Errorf("test without a webhook: %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.DataDir, app.WebhookSecretFile)); !os.IsNotExist(err) {
		t.Errorf("a webhook secret was generated without a webhook: %v", err)
	}
}

// TestWebhookMisconfigurationStopsStart: fail closed on a secret file too
// short or a CA file that holds no certificate.
func TestWebhookMisconfigurationStopsStart(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*config.Config){
		"short secret": func(c *config.Config) { c.Governance.Notify.Webhook.SecretFile = short },
		"bad CA file":  func(c *config.Config) { c.Governance.Notify.Webhook.CAFile = notPEM },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.Server.Addr = "127.0.0.1:0"
			cfg.Governance.Notify.Webhook.URL = "https://hooks.example/keybound"
			mut(&cfg)
			if _, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
				t.Fatal("app.New accepted the configuration")
			} else if !strings.Contains(err.Error(), "governance.notify.webhook") || strings.Contains(err.Error(), "tooshort") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
