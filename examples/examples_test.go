// Package examples_test builds each example program and runs it against a
// real keybound with its gateway in front of a real upstream, registering
// the identities with the CLI as examples/README.md says.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/app/apptest"
	"github.com/keybound/keybound/internal/cli"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/route"
)

// env is one keybound with a gateway routing /invoices/{id} to an upstream
// that answers with the caller's identity as the gateway forwarded it.
type env struct {
	dataDir, tokenURL, caFile, gw string
}

func start(t *testing.T) *env {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "client_id": r.Header.Get("X-Keybound-Client-Id"), "binding": r.Header.Get("X-Keybound-Binding"),
		})
	}))
	t.Cleanup(up.Close)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := apptest.Start(t, func(cfg *config.Config) {
		cfg.Tokens.DPoP.RequireNonce = true
		cfg.Gateway.Addr = gl.Addr().String()
		cfg.Gateway.Routes = []route.Spec{{Name: "invoices", Path: "/invoices/{id}", Methods: []string{"GET"}, Upstream: up.URL,
			Scopes: route.ScopeSpec{All: []string{"invoices:read"}}, Sensitivity: "confidential"}}
	}, app.WithGatewayListener(gl))
	return &env{dataDir: s.Config.DataDir, tokenURL: s.Admin.TokenEndpoint, caFile: s.Admin.CAFile, gw: "https://" + gl.Addr().String()}
}

// keybound runs the CLI in-process against e and returns its stdout.
func (e *env) keybound(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code := cli.Main(ctx, append([]string{"--data-dir", e.dataDir}, args...), &out, &errb); code != 0 {
		t.Fatalf("keybound %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

func clientID(t *testing.T, createOutput string) string {
	t.Helper()
	var v struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(createOutput), &v); err != nil || v.ClientID == "" {
		t.Fatalf("client create output: %v\n%s", err, createOutput)
	}
	return v.ClientID
}

// runExample builds ./name and runs it with args, returning its stdout.
func runExample(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "./"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", name, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstderr: %s", name, err, errb.String())
	}
	return out.String()
}

func checkCaller(t *testing.T, out, id, binding string) {
	t.Helper()
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("example output is not the upstream's JSON: %v\n%s", err, out)
	}
	if got["path"] != "/invoices/42" || got["client_id"] != id || got["binding"] != binding {
		t.Errorf("upstream saw %v, want client %s with binding %s", got, id, binding)
	}
}

func TestDPoPClient(t *testing.T) {
	t.Parallel()
	e := start(t)
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "svc.key"), filepath.Join(dir, "svc.jwks.json")
	e.keybound(t, "keygen", "--key", key, "--jwks", jwks)
	id := clientID(t, e.keybound(t, "client", "create", "--name", "billing-sync", "--owner", "team-billing@example.com",
		"--purpose", "invoice export", "--environment", "prod", "--expires-in", "30d", "--scope", "invoices:read",
		"--jwks-file", jwks, "--dpop", "-o", "json"))
	out := runExample(t, "dpop-client", "-token-url", e.tokenURL, "-client-id", id, "-key", key, "-cacert", e.caFile,
		"-scope", "invoices:read", "-url", e.gw+"/invoices/42")
	checkCaller(t, out, id, "dpop")
}

func TestMTLSClient(t *testing.T) {
	t.Parallel()
	e := start(t)
	dir := t.TempDir()
	id := clientID(t, e.keybound(t, "client", "create", "--name", "billing-worker", "--owner", "team-billing@example.com",
		"--purpose", "invoice worker", "--environment", "prod", "--expires-in", "30d", "--scope", "invoices:read",
		"--auth", "tls_client_auth", "--tls-san-uri", "spiffe://keybound.local/billing-worker", "--mtls-bound", "-o", "json"))
	join := strings.TrimSpace(e.keybound(t, "cert", "join-token", "--client", id, "--lifetime", "15m"))
	key, crt := filepath.Join(dir, "worker.key"), filepath.Join(dir, "worker.pem")
	e.keybound(t, "keygen", "--key", key)
	e.keybound(t, "cert", "enroll", "--key", key, "--join-token", join, "--out", crt)
	out := runExample(t, "mtls-client", "-token-url", e.tokenURL, "-client-id", id, "-cert", crt, "-key", key, "-cacert", e.caFile,
		"-scope", "invoices:read", "-url", e.gw+"/invoices/42")
	checkCaller(t, out, id, "mtls")
}
