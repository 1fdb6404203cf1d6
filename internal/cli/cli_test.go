package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/app/apptest"
	"github.com/keybound/keybound/internal/cli"
	"github.com/keybound/keybound/internal/config"
)

// server is one in-process keybound on a loopback port with a fresh data dir.
type server struct {
	dataDir string
	issuer  string
	adminID string
	stop    func()
}

// startServer builds and serves keybound exactly as `keybound serve` would,
// but on a listener the test opened on port 0. It stops in t.Cleanup.
func startServer(t *testing.T) *server { return startServerWith(t, nil) }

// startServerWith is startServer with the config adjusted by mutate (a
// gateway with routes, say) and extra app options (its listener).
func startServerWith(t *testing.T, mutate func(*config.Config), opts ...app.Option) *server {
	t.Helper()
	s := apptest.Start(t, mutate, opts...)
	// A failed stop is reported by apptest's cleanup.
	return &server{dataDir: s.Config.DataDir, issuer: s.Issuer, adminID: s.Admin.ClientID, stop: func() { _ = s.Stop() }}
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// run drives the CLI in-process as `keybound ARGS...`.
func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := cli.Main(ctx, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// runOK runs the CLI and fails the test unless it exits 0 with an empty stderr.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("keybound %s:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// (s *server) cli runs a command against s's data directory.
func (s *server) cli(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, append([]string{"--data-dir", s.dataDir}, args...)...)
}

func (s *server) cliOK(t *testing.T, args ...string) string {
	t.Helper()
	return runOK(t, append([]string{"--data-dir", s.dataDir}, args...)...)
}

// checkFailure asserts exit code, that stderr is exactly one line starting
// "keybound: ", and that it holds every want (case-insensitive).
func checkFailure(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\n%s", r.code, code, r)
	}
	if !strings.HasPrefix(r.stderr, "keybound: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one line starting %q: %q", "keybound: ", r.stderr)
	}
	if strings.HasPrefix(r.stderr, "keybound: keybound: ") {
		t.Errorf("stderr repeats the program name: %q", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
			t.Errorf("stderr %q does not mention %q", r.stderr, w)
		}
	}
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

// jwsParts decodes the header and payload of a compact JWS.
func jwsParts(t *testing.T, compact string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(compact), ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS (%d parts): %q", len(parts), compact)
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("JWS part is not base64url: %v", err)
		}
		return decodeJSON[map[string]any](t, string(b))
	}
	if parts[2] == "" {
		t.Fatal("JWS has no signature")
	}
	return dec(parts[0]), dec(parts[1])
}

// keygen writes key.pem and key.jwks.json under dir and returns their paths.
func keygen(t *testing.T, dir, name string) (key, jwks string) {
	t.Helper()
	key, jwks = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".jwks.json")
	runOK(t, "keygen", "--key", key, "--jwks", jwks)
	return key, jwks
}

// createArgs is a valid `client create` with overrides appended.
func createArgs(jwks string, extra ...string) []string {
	args := []string{"client", "create", "--name", "billing-sync", "--owner", "team-billing@example.com",
		"--purpose", "nightly invoice export", "--environment", "prod", "--expires-in", "30d",
		"--scope", "a b", "--jwks-file", jwks, "--dpop"}
	return append(args, extra...)
}

// clientView is the subset of the admin API's client view the tests read.
type clientView struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Name         string `json:"client_name"`
	Owner        string `json:"owner"`
	Environment  string `json:"environment"`
	Status       string `json:"status"`
	Scope        string `json:"scope"`
	ExpiresAt    string `json:"expires_at"`
	AuthMethod   string `json:"token_endpoint_auth_method"`
	DPoPBound    bool   `json:"dpop_bound_access_tokens"`
	AllowBearer  bool   `json:"allow_bearer"`
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.jwks.json")

	tests := []struct {
		name string
		args []string
		code int
		want []string // in stdout on success, in stderr on failure
	}{
		{"writes key and JWKS", []string{"keygen", "--key", key, "--jwks", jwks}, 0, []string{key, "kid", jwks}},
		{"never overwrites a key", []string{"keygen", "--key", key, "--jwks", jwks}, 1, []string{"private key", "exists"}},
		{"key is required", []string{"keygen", "--jwks", filepath.Join(dir, "other.json")}, 2, []string{"--key"}},
		{"positional args refused", []string{"keygen", "extra"}, 2, nil},
	}
	for _, tc := range tests {
		// Sequential: the second case depends on the first.
		r := run(t, tc.args...)
		if tc.code == 0 {
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("%s: %s", tc.name, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("%s: stdout %q lacks %q", tc.name, r.stdout, w)
				}
			}
			continue
		}
		if tc.want == nil {
			if r.code != tc.code {
				t.Errorf("%s: exit %d, want %d\n%s", tc.name, r.code, tc.code, r)
			}
			continue
		}
		checkFailure(t, r, tc.code, tc.want...)
	}

	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	pemBytes, _ := os.ReadFile(key)
	if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file is not a PKCS#8 PEM: %.40q", pemBytes)
	}
	set := decodeJSON[struct {
		Keys []map[string]any `json:"keys"`
	}](t, mustRead(t, jwks))
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
	}
	k := set.Keys[0]
	if _, ok := k["d"]; ok {
		t.Error("the public JWKS holds the private key (d)")
	}
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["kid"] == nil || k["kid"] == "" {
		t.Errorf("unexpected JWK: %v", k)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClientCreate(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, jwks := keygen(t, t.TempDir(), "k")

	t.Run("json", func(t *testing.T) {
		v := decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks, "-o", "json")...))
		if v.ClientID == "" {
			t.Errorf("no client_id: %+v", v)
		}
		if v.Owner != "team-billing@example.com" || v.Status != "active" || !v.DPoPBound || v.Scope != "a b" ||
			v.Environment != "prod" || v.Name != "billing-sync" || v.AuthMethod != "private_key_jwt" || v.ClientSecret != "" {
			t.Errorf("unexpected client: %+v", v)
		}
		exp, err := time.Parse(time.RFC3339, v.ExpiresAt)
		if err != nil || exp.Before(time.Now().Add(29*24*time.Hour)) || exp.After(time.Now().Add(31*24*time.Hour)) {
			t.Errorf("expires_at %q is not about 30 days from now", v.ExpiresAt)
		}
	})

	t.Run("table", func(t *testing.T) {
		out := s.cliOK(t, createArgs(jwks)...)
		for _, w := range []string{"FIELD", "client_id", "owner", "team-billing@example.com", "status", "active", "binding", "dpop", "auth_method", "private_key_jwt"} {
			if !strings.Contains(out, w) {
				t.Errorf("table lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, "client_secret") {
			t.Errorf("a private_key_jwt client got a secret:\n%s", out)
		}
	})

	without := func(args []string, flag string) []string {
		var out []string
		for i := 0; i < len(args); i++ {
			if args[i] == flag {
				i++
				continue
			}
			out = append(out, args[i])
		}
		return out
	}
	errCases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing owner", without(createArgs(jwks), "--owner"), 1, []string{"owner", "required"}},
		{"missing purpose", without(createArgs(jwks), "--purpose"), 1, []string{"purpose"}},
		// The CLI refuses before calling the server: a usage error.
		{"missing expiry", without(createArgs(jwks), "--expires-in"), 2, []string{"expire", "--expires-in"}},
		{"both expiries", createArgs(jwks, "--expires-at", "2030-01-01"), 2, []string{"not both"}},
		{"bad expires-in", without(createArgs(jwks), "--expires-in"), 2, nil}, // replaced below
		{"expiry past the maximum", append(without(createArgs(jwks), "--expires-in"), "--expires-in", "400d"), 1, []string{"expires_at", "maximum"}},
		{"expiry in the past", append(without(createArgs(jwks), "--expires-in"), "--expires-at", "2001-01-01"), 1, []string{"expires_at", "future"}},
		{"two bindings", createArgs(jwks, "--allow-bearer"), 1, []string{"binding"}},
		{"jwks file missing", append(without(createArgs(jwks), "--jwks-file"), "--jwks-file", filepath.Join(t.TempDir(), "nope.json")), 1, []string{"nope.json"}},
		{"no jwks for private_key_jwt", without(createArgs(jwks), "--jwks-file"), 1, []string{"jwks", "required"}},
		{"bad output", createArgs(jwks, "-o", "yaml"), 2, []string{"json or table"}},
	}
	errCases[4].args = append(without(createArgs(jwks), "--expires-in"), "--expires-in", "soon")
	errCases[4].want = []string{"--expires-in", "soon"}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.cli(t, tc.args...)
			checkFailure(t, r, tc.code, tc.want...)
			if r.stdout != "" {
				t.Errorf("stdout on failure: %q", r.stdout)
			}
		})
	}

	t.Run("token lifetime in whole seconds", func(t *testing.T) {
		v := decodeJSON[map[string]any](t, s.cliOK(t, createArgs(jwks, "--token-lifetime", "90s", "-o", "json")...))
		if v["access_token_lifetime"] != float64(90) {
			t.Errorf("access_token_lifetime %v, want 90", v["access_token_lifetime"])
		}
	})

	t.Run("secret shown once", func(t *testing.T) {
		out := s.cliOK(t, "client", "create", "--name", "legacy", "--owner", "team-legacy@example.com",
			"--purpose", "old integration", "--environment", "dev", "--expires-in", "720h",
			"--auth", "client_secret_basic", "--allow-bearer")
		var id, secret string
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "client_id" {
				id = f[1]
			}
			if len(f) == 2 && f[0] == "client_secret" {
				secret = f[1]
			}
		}
		if id == "" || len(secret) < 20 {
			t.Fatalf("no client_id or client_secret in:\n%s", out)
		}
		if !strings.Contains(out, "shown only now") {
			t.Errorf("no warning that the secret is shown once:\n%s", out)
		}
		shown := s.cliOK(t, "client", "show", id, "-o", "json")
		if strings.Contains(shown, secret) {
			t.Fatalf("client show reveals the secret:\n%s", shown)
		}
		m := decodeJSON[map[string]any](t, shown)
		if _, ok := m["client_secret"]; ok {
			t.Errorf("client show has a client_secret field:\n%s", shown)
		}
		if m["token_endpoint_auth_method"] != "client_secret_basic" || m["allow_bearer"] != true || m["static_secret"] != true {
			t.Errorf("unexpected legacy client: %s", shown)
		}
		if table := s.cliOK(t, "client", "show", id); strings.Contains(table, secret) {
			t.Errorf("client show (table) reveals the secret:\n%s", table)
		}
		if list := s.cliOK(t, "client", "list", "-o", "json"); strings.Contains(list, secret) {
			t.Errorf("client list reveals the secret")
		}
	})
}

func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, jwks := keygen(t, t.TempDir(), "k")
	create := func(name, owner string) string {
		t.Helper()
		args := createArgs(jwks, "-o", "json")
		args[3], args[5] = name, owner
		return decodeJSON[clientView](t, s.cliOK(t, args...)).ClientID
	}
	a := create("svc-a", "team-a@example.com")
	b := create("svc-b", "team-b@example.com")
	c := create("svc-c", "team-b@example.com")

	s.cliOK(t, "client", "suspend", b, "--reason", "key leaked in CI log")

	ids := func(out string) []string {
		var got []string
		for _, v := range decodeJSON[[]clientView](t, out) {
			if v.ClientID != s.adminID {
				got = append(got, v.ClientID)
			}
		}
		return got
	}
	has := func(list []string, id string) bool {
		for _, x := range list {
			if x == id {
				return true
			}
		}
		return false
	}

	t.Run("list", func(t *testing.T) {
		cases := []struct {
			name      string
			args      []string
			want, not []string
		}{
			{"all", nil, []string{a, b, c}, nil},
			{"owner", []string{"--owner", "team-b@example.com"}, []string{b, c}, []string{a}},
			{"status suspended", []string{"--status", "suspended"}, []string{b}, []string{a, c}},
			{"owner and status", []string{"--owner", "team-b@example.com", "--status", "active"}, []string{c}, []string{a, b}},
			{"environment", []string{"--environment", "staging"}, nil, []string{a, b, c}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got := ids(s.cliOK(t, append([]string{"client", "list", "-o", "json"}, tc.args...)...))
				for _, w := range tc.want {
					if !has(got, w) {
						t.Errorf("list %v lacks %s: %v", tc.args, w, got)
					}
				}
				for _, n := range tc.not {
					if has(got, n) {
						t.Errorf("list %v has %s: %v", tc.args, n, got)
					}
				}
				if len(got) != len(tc.want) {
					t.Errorf("list %v: %d clients, want %d", tc.args, len(got), len(tc.want))
				}
			})
		}
		t.Run("table", func(t *testing.T) {
			out := s.cliOK(t, "client", "list", "-o", "table")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 || !strings.HasPrefix(lines[0], "CLIENT_ID") {
				t.Fatalf("want a header and 4 rows (3 + admin):\n%s", out)
			}
			for _, h := range []string{"OWNER", "STATUS", "BINDING", "EXPIRES"} {
				if !strings.Contains(lines[0], h) {
					t.Errorf("header lacks %s: %q", h, lines[0])
				}
			}
			if !strings.Contains(out, b) || !strings.Contains(out, "suspended") {
				t.Errorf("table lacks the suspended client:\n%s", out)
			}
			if def := s.cliOK(t, "client", "list"); def != out {
				t.Errorf("default output is not the table:\n%s", def)
			}
		})
		t.Run("errors", func(t *testing.T) {
			checkFailure(t, s.cli(t, "client", "list", "-o", "yaml"), 2, "json or table")
			checkFailure(t, s.cli(t, "client", "list", "--status", "sleeping"), 1, "status")
			checkFailure(t, s.cli(t, "client", "list", "extra"), 2)
		})
	})

	t.Run("show", func(t *testing.T) {
		v := decodeJSON[clientView](t, s.cliOK(t, "client", "show", a, "-o", "json"))
		if v.ClientID != a || v.Name != "svc-a" || v.Owner != "team-a@example.com" || v.Status != "active" {
			t.Errorf("show: %+v", v)
		}
		table := s.cliOK(t, "client", "show", b)
		for _, w := range []string{"FIELD", b, "svc-b", "suspended", "a b"} {
			if !strings.Contains(table, w) {
				t.Errorf("show table lacks %q:\n%s", w, table)
			}
		}
		checkFailure(t, s.cli(t, "client", "show", "kb-does-not-exist"), 1, "not found")
		checkFailure(t, s.cli(t, "client", "show"), 2, "arg")
	})

	t.Run("status changes", func(t *testing.T) {
		cases := []struct {
			args []string
			code int
			want string // stdout on success, stderr on failure
		}{
			{[]string{"suspend", a, "--reason", "investigating"}, 0, a + " is now suspended"},
			{[]string{"suspend", a}, 1, "cannot become suspended"},
			{[]string{"resume", a, "--reason", "cleared"}, 0, a + " is now active"},
			{[]string{"resume", a}, 1, "is active and cannot become active"},
			{[]string{"revoke", a, "--reason", "decommissioned"}, 0, a + " is now revoked"},
			{[]string{"resume", a}, 1, "is revoked and cannot become active"},
			{[]string{"suspend", a}, 1, "is revoked"},
			{[]string{"revoke", a}, 1, "is revoked"},
			{[]string{"revoke", b, "-o", "json"}, 0, `"status": "revoked"`},
			{[]string{"suspend", "kb-does-not-exist"}, 1, "not found"},
			{[]string{"suspend", s.adminID}, 1, "cannot suspend itself"},
			{[]string{"revoke", s.adminID}, 1, "cannot revoke itself"},
			{[]string{"resume"}, 2, "arg"},
		}
		for _, tc := range cases {
			r := s.cli(t, append([]string{"client"}, tc.args...)...)
			if tc.code == 0 {
				if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
					t.Errorf("client %v: want %q\n%s", tc.args, tc.want, r)
				}
				continue
			}
			checkFailure(t, r, tc.code, tc.want)
		}
		if v := decodeJSON[clientView](t, s.cliOK(t, "client", "show", a, "-o", "json")); v.Status != "revoked" {
			t.Errorf("after revoke, status %q", v.Status)
		}
		// A conflict reads as a sentence, not as a status code.
		r := s.cli(t, "client", "resume", a)
		if !strings.Contains(r.stderr, "Status change not allowed") {
			t.Errorf("conflict message is not readable: %q", r.stderr)
		}
	})

	t.Run("admin-log", func(t *testing.T) {
		var events []struct {
			Actor   string            `json:"actor"`
			Action  string            `json:"action"`
			Target  string            `json:"target"`
			Time    time.Time         `json:"time"`
			Changes map[string]string `json:"changes"`
		}
		if err := json.Unmarshal([]byte(s.cliOK(t, "admin-log", "-o", "json")), &events); err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, e := range events {
			if e.Target == s.adminID {
				continue // the admin identity's own registration, by "keybound"
			}
			if e.Actor != s.adminID {
				t.Errorf("event %s on %s has actor %q, want the admin identity %s", e.Action, e.Target, e.Actor, s.adminID)
			}
			if e.Time.IsZero() {
				t.Errorf("event %s has no time", e.Action)
			}
			found[e.Action+" "+e.Target] = true
			if e.Action == "client.suspend" && e.Target == b && e.Changes["reason"] != "key leaked in CI log" {
				t.Errorf("suspend event lost the reason: %v", e.Changes)
			}
		}
		for _, w := range []string{"client.create " + a, "client.create " + b, "client.create " + c, "client.suspend " + b, "client.suspend " + a, "client.resume " + a, "client.revoke " + a, "client.revoke " + b} {
			if !found[w] {
				t.Errorf("admin log lacks %s", w)
			}
		}
		// Filtered by target, and as a table.
		tbl := s.cliOK(t, "admin-log", "--target", b)
		lines := strings.Split(strings.TrimSpace(tbl), "\n")
		if !strings.HasPrefix(lines[0], "TIME") || len(lines) != 4 { // create, suspend, revoke
			t.Errorf("admin-log --target %s:\n%s", b, tbl)
		}
		if !strings.Contains(tbl, "client.suspend") || !strings.Contains(tbl, "reason=key leaked in CI log") {
			t.Errorf("admin-log table lacks the suspension:\n%s", tbl)
		}
		if out := s.cliOK(t, "admin-log", "--limit", "1", "-o", "json"); len(decodeJSON[[]any](t, out)) != 1 {
			t.Errorf("--limit 1 gave:\n%s", out)
		}
		checkFailure(t, s.cli(t, "admin-log", "-o", "yaml"), 2, "json or table")
	})
}

func TestKeysRotate(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	out := s.cliOK(t, "keys", "rotate")
	f := strings.Fields(out)
	if len(f) < 4 || f[0] != "new" || f[2] != "key" || len(f[3]) < 8 {
		t.Fatalf("keys rotate printed no kid: %q", out)
	}
	kid := f[3]
	if out2 := s.cliOK(t, "keys", "rotate"); strings.Contains(out2, kid) {
		t.Errorf("second rotation printed the same kid %s", kid)
	}
	found := false
	for _, e := range decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "-o", "json")) {
		found = found || e["action"] == "keys.rotate" && e["target"] == kid && e["actor"] == s.adminID
	}
	if !found {
		t.Errorf("admin log has no keys.rotate event for %s", kid)
	}
}

func TestTokenAndProofs(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "k")
	dpopKey, _ := keygen(t, dir, "d")
	id := decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks, "-o", "json")...)).ClientID

	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
		JKT         string `json:"jkt"`
	}
	if err := json.Unmarshal([]byte(s.cliOK(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey, "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.TokenType != "DPoP" || tok.JKT == "" || tok.ExpiresIn <= 0 {
		t.Fatalf("token: %+v", tok)
	}
	if _, claims := jwsParts(t, tok.AccessToken); claims["client_id"] != id {
		t.Errorf("access token client_id %v, want %s", claims["client_id"], id)
	} else if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != tok.JKT {
		t.Errorf("access token cnf %v, want jkt %s", claims["cnf"], tok.JKT)
	}

	t.Run("table prints the token only", func(t *testing.T) {
		out := s.cliOK(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey, "--scope", "a")
		if f := strings.Fields(out); len(f) != 1 || strings.Count(f[0], ".") != 2 {
			t.Errorf("want one JWT, got %q", out)
		}
	})

	t.Run("dpop-proof", func(t *testing.T) {
		proof := runOK(t, "dpop-proof", "--key", dpopKey, "--method", "get", "--url", "https://x/y", "--token", tok.AccessToken)
		h, p := jwsParts(t, proof)
		if h["typ"] != "dpop+jwt" || h["alg"] != "ES256" || h["jwk"] == nil {
			t.Errorf("proof header: %v", h)
		}
		if jwk, _ := h["jwk"].(map[string]any); jwk["d"] != nil {
			t.Error("proof header carries the private key")
		}
		if p["htm"] != "GET" || p["htu"] != "https://x/y" || p["ath"] == nil || p["ath"] == "" || p["jti"] == nil || p["iat"] == nil {
			t.Errorf("proof payload: %v", p)
		}
		if _, p2 := jwsParts(t, runOK(t, "dpop-proof", "--key", dpopKey, "--url", "https://x/token")); p2["htm"] != "POST" || p2["ath"] != nil {
			t.Errorf("default proof payload: %v", p2)
		}
	})

	t.Run("assertion", func(t *testing.T) {
		aud := s.issuer + "/oauth2/token"
		h, p := jwsParts(t, runOK(t, "assertion", "--key", key, "--client-id", id, "--aud", aud))
		if h["alg"] != "ES256" {
			t.Errorf("assertion header: %v", h)
		}
		if p["iss"] != id || p["sub"] != id || p["jti"] == nil || p["exp"] == nil {
			t.Errorf("assertion payload: %v", p)
		}
		switch a := p["aud"].(type) {
		case string:
			if a != aud {
				t.Errorf("aud %q, want %q", a, aud)
			}
		case []any:
			if len(a) != 1 || a[0] != aud {
				t.Errorf("aud %v, want %q", a, aud)
			}
		default:
			t.Errorf("aud %v", p["aud"])
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"proof without url", []string{"dpop-proof", "--key", dpopKey}, "--url"},
			{"proof without key", []string{"dpop-proof", "--url", "https://x/y"}, "--key"},
			{"assertion without aud", []string{"assertion", "--key", key, "--client-id", id}, "--aud"},
			{"token without client id", []string{"--data-dir", s.dataDir, "token", "--key", key}, "--client-id"},
			{"token without key", []string{"--data-dir", s.dataDir, "token", "--client-id", id}, "--key"},
			{"token without issuer", []string{"--data-dir", t.TempDir(), "token", "--client-id", id, "--key", key}, "--issuer"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { checkFailure(t, run(t, tc.args...), 2, tc.want) })
		}
		checkFailure(t, run(t, "dpop-proof", "--key", filepath.Join(dir, "missing.pem"), "--url", "https://x/y"), 1, "missing.pem")
	})

	t.Run("suspended client gets no token", func(t *testing.T) {
		s.cliOK(t, "client", "suspend", id)
		r := s.cli(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey)
		checkFailure(t, r, 1, "invalid_client", "suspended")
	})
}

func TestNeedsServer(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty")
	_, jwks := keygen(t, t.TempDir(), "k")
	cmds := [][]string{
		{"client", "list"},
		{"client", "show", "kb-x"},
		{"client", "suspend", "kb-x"},
		{"client", "resume", "kb-x"},
		{"client", "revoke", "kb-x"},
		createArgs(jwks),
		{"keys", "rotate"},
		{"admin-log"},
	}
	for _, args := range cmds {
		t.Run(strings.Join(args[:min(2, len(args))], " "), func(t *testing.T) {
			r := run(t, append([]string{"--data-dir", empty}, args...)...)
			checkFailure(t, r, 1, "keybound serve", empty)
		})
	}
	t.Run("server stopped", func(t *testing.T) {
		s := startServer(t)
		s.cliOK(t, "client", "list")
		s.stop()
		checkFailure(t, s.cli(t, "client", "list"), 1, "keybound serve")
	})
}

// TestDataDirFromEnv cannot run in parallel: it sets KEYBOUND_DATA_DIR.
func TestDataDirFromEnv(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	t.Setenv("KEYBOUND_DATA_DIR", empty)
	checkFailure(t, run(t, "client", "list"), 1, "keybound serve", empty)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"unknown subcommand", []string{"client", "frobnicate"}, `unknown command "frobnicate" for "keybound client"`},
		{"unknown keys subcommand", []string{"keys", "rotat"}, "unknown command"},
		{"unknown flag", []string{"client", "list", "--frobnicate"}, "unknown flag"},
		{"unknown shorthand", []string{"keygen", "-z"}, "unknown shorthand"},
		// cobra takes "client" as the unknown flag's value, so the message
		// names "list"; the exit status is what matters.
		{"unknown global flag", []string{"--frobnicate", "client", "list"}, ""},
		{"unknown global flag with value", []string{"--frobnicate=1", "client", "list"}, "unknown flag"},
		{"bad flag value", []string{"client", "list", "--limit", "many"}, "limit"},
		{"extra argument", []string{"keys", "rotate", "now"}, ""},
		{"show needs an id", []string{"client", "show"}, ""},
		{"wrong argument count", []string{"scan"}, "accepts 1 arg(s), received 0"},
		{"too many arguments", []string{"request", "GET", "https://x/", "extra"}, "accepts 2 arg(s), received 3"},
		{"unknown cert subcommand", []string{"cert", "renw"}, `unknown command "renw" for "keybound cert"; did you mean renew?`},
		{"mistyped command", []string{"tokn"}, "did you mean token?"},
		{"completion shell with extra argument", []string{"completion", "bash", "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"--data-dir", t.TempDir()}, tc.args...)...)
			if tc.want == "" {
				if r.code != 2 {
					t.Errorf("exit %d, want 2\n%s", r.code, r)
				}
				return
			}
			checkFailure(t, r, 2, tc.want)
		})
	}
	t.Run("group without subcommand prints help", func(t *testing.T) {
		r := run(t, "client")
		if r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
			t.Errorf("keybound client:\n%s", r)
		}
	})
	t.Run("help", func(t *testing.T) {
		r := run(t, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "client") || !strings.Contains(r.stdout, "dpop-proof") {
			t.Errorf("help:\n%s", r)
		}
	})
}

func TestServeInvalidAddr(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no port", []string{"--addr", "nope"}, []string{"server.addr", "nope"}},
		{"empty port", []string{"--addr", "127.0.0.1:"}, []string{"server.addr", "HOST:PORT"}},
		{"bad log level", []string{"--addr", "127.0.0.1:0", "--log-level", "loud"}, []string{"log.level"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := cli.Main(ctx, append([]string{"serve", "--data-dir", dir}, tc.args...), &out, &errb)
			checkFailure(t, result{code, out.String(), errb.String()}, 1, tc.want...)
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("serve created %s although its config is invalid", dir)
			}
		})
	}
}

// TestServeAddrInUse: serve reports a port it cannot listen on and returns.
func TestServeAddrInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := cli.Main(ctx, []string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--addr", l.Addr().String()}, &out, &errb)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "keybound: ") || !strings.Contains(last, "server.addr "+l.Addr().String()) {
		t.Errorf("exit %d, stderr:\n%s", code, errb.String())
	}
}

// TestFlagsNotIgnored: a flag that would be silently dropped or changed is
// refused as a usage error that names it.
func TestFlagsNotIgnored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "k")
	// Named so that a flag ignored is not hidden by another usage error; a
	// command that got this far fails to connect (exit 1).
	const far = "https://127.0.0.1:1"
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"token lifetime under a second", createArgs(jwks, "--token-lifetime", "500ms"), []string{"--token-lifetime", "whole seconds", "500ms"}},
		{"token lifetime not whole seconds", createArgs(jwks, "--token-lifetime", "1500ms"), []string{"--token-lifetime", "whole seconds", "1.5s"}},
		{"token: --cert-key without --cert", []string{"token", "--issuer", far, "--client-id", "kb-x", "--key", key, "--cert-key", key}, []string{"--cert", "--cert-key"}},
		{"token: --cert without --cert-key", []string{"token", "--issuer", far, "--client-id", "kb-x", "--cert", "c.pem"}, []string{"--cert", "--cert-key"}},
		{"token: --kid without --key", []string{"token", "--issuer", far, "--client-id", "kb-x", "--kid", "k1", "--cert", "c.pem", "--cert-key", key}, []string{"--kid", "--key"}},
		{"request: --kid without --key", []string{"request", "GET", "https://x/", "--token-url", far + "/oauth2/token", "--client-id", "kb-x", "--kid", "k1", "--cert", "c.pem", "--cert-key", key}, []string{"--kid", "--key"}},
		{"enroll: --kid with a join token", []string{"cert", "enroll", "--issuer", far, "--key", key, "--out", filepath.Join(dir, "o.pem"), "--join-token", "kbjt.x", "--kid", "k1"}, []string{"--kid", "--client-id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"--data-dir", t.TempDir()}, tc.args...)...)
			checkFailure(t, r, 2, tc.want...)
		})
	}
}
