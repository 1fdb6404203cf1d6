package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
)

// fakeIssuer stands in for a keybound server other than the data
// directory's, behind a certificate the data directory's CA did not sign:
// its token endpoint answers every request with tokenStatus and tokenBody;
// its enrollment endpoint issues a made-up certificate; anything else
// answers 200 with a small JSON body.
type fakeIssuer struct {
	*httptest.Server
	caFile string // the server's certificate, PEM: what --cacert names
}

func newFakeIssuer(t *testing.T, tokenStatus int, tokenBody string) *fakeIssuer {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/oauth2/token":
			if tokenBody != "" {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(tokenStatus)
			_, _ = io.WriteString(w, tokenBody)
		case "/workload/v1/enroll":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"client_id": "kb-fake", "spiffe_id": "spiffe://fake/client/kb-fake", "serial": "01",
				"not_after":         time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
				"certificate_chain": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
			})
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "fake-ca.pem")
	writeFile(t, caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	return &fakeIssuer{Server: srv, caFile: caFile}
}

// fakeDataDir is a data directory whose descriptor names issuer as its
// server and trusts caFile, with a fresh admin key: what `keybound serve`
// leaves, without a server.
func fakeDataDir(t *testing.T, issuer, caFile string) string {
	t.Helper()
	dir := t.TempDir()
	key, _ := keygen(t, t.TempDir(), "admin")
	d := app.AdminDescriptor{ClientID: "kb-admin", Issuer: issuer, TokenEndpoint: issuer + "/oauth2/token", KeyFile: key, CAFile: caFile}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, app.AdminDir, app.AdminJSON), string(b))
	return dir
}

// writeOtherCA writes a self-signed CA certificate that signed nothing the
// tests serve, and returns its path.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "data directory CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, p, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return p
}

const fakeToken = `{"access_token":"h.p.s","token_type":"DPoP","expires_in":300}`

// TestOtherIssuerWithCACert: a server the user names with --issuer and
// --cacert is trusted through --cacert, with or without a data directory.
func TestOtherIssuerWithCACert(t *testing.T) {
	t.Parallel()
	fake := newFakeIssuer(t, http.StatusOK, fakeToken)
	key, _ := keygen(t, t.TempDir(), "k")
	local := fakeDataDir(t, "https://127.0.0.1:1", writeOtherCA(t))
	for _, dataDir := range []string{local, t.TempDir()} {
		out := runOK(t, "--data-dir", dataDir, "token", "--issuer", fake.URL, "--cacert", fake.caFile,
			"--client-id", "kb-x", "--key", key, "--dpop", "-o", "json")
		if tok := decodeJSON[map[string]any](t, out); tok["access_token"] != "h.p.s" {
			t.Errorf("token from %s: %s", fake.URL, out)
		}
	}
}

// systemRootsChild names the commands a child test process runs with its
// system roots replaced; see TestOtherIssuerUsesSystemRoots.
const systemRootsChild = "KEYBOUND_CLI_TEST_SYSTEM_ROOTS_ARGS"

// TestOtherIssuerUsesSystemRoots: with a data directory whose own server
// has its own CA, a server named with --issuer (or --token-url) and no
// --cacert is verified against the system roots, not that CA. The system
// roots of a process are fixed at first use, so the commands run in a child
// process whose roots (SSL_CERT_FILE) are the other server's certificate.
func TestOtherIssuerUsesSystemRoots(t *testing.T) {
	if enc := os.Getenv(systemRootsChild); enc != "" {
		systemRootsChildRun(t, enc)
		return
	}
	t.Parallel()
	fake := newFakeIssuer(t, http.StatusOK, fakeToken)
	dir := t.TempDir()
	key, _ := keygen(t, dir, "k")
	dataDir := fakeDataDir(t, "https://127.0.0.1:1", writeOtherCA(t))
	cmds := [][]string{
		{"--data-dir", dataDir, "token", "--issuer", fake.URL, "--client-id", "kb-x", "--key", key, "--dpop"},
		{"--data-dir", dataDir, "request", "GET", fake.URL + "/api", "--token-url", fake.URL + "/oauth2/token", "--client-id", "kb-x", "--key", key},
		{"--data-dir", dataDir, "cert", "enroll", "--issuer", fake.URL, "--key", key, "--client-id", "kb-x", "--out", filepath.Join(dir, "svc.pem")},
	}
	enc, err := json.Marshal(cmds)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestOtherIssuerUsesSystemRoots$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), systemRootsChild+"="+string(enc), "SSL_CERT_FILE="+fake.caFile, "SSL_CERT_DIR="+t.TempDir())
	out, err := child.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("the system roots do not follow SSL_CERT_FILE here:\n%s", out)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// systemRootsChildRun is the child of TestOtherIssuerUsesSystemRoots: every
// command must succeed.
func systemRootsChildRun(t *testing.T, enc string) {
	var cmds [][]string
	if err := json.Unmarshal([]byte(enc), &cmds); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(os.Getenv("SSL_CERT_FILE")); err != nil {
		t.Fatal(err)
	} else if blk, _ := pem.Decode(b); blk == nil {
		t.Fatal("SSL_CERT_FILE holds no PEM")
	} else if c, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	} else if _, err := c.Verify(x509.VerifyOptions{}); err != nil {
		t.Skipf("SSL_CERT_FILE is not the system roots: %v", err)
	}
	for _, args := range cmds {
		if r := run(t, args...); r.code != 0 {
			t.Errorf("keybound %s:\n%s", strings.Join(args, " "), r)
		}
	}
}

// TestTokenResponseWithoutExpiresIn: -o json leaves expires_in out when the
// server sent none, instead of counting down to the zero time.
func TestTokenResponseWithoutExpiresIn(t *testing.T) {
	t.Parallel()
	key, _ := keygen(t, t.TempDir(), "k")
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"access_token":"h.p.s","token_type":"DPoP"}`, false},
		{fakeToken, true},
	} {
		fake := newFakeIssuer(t, http.StatusOK, tc.body)
		out := runOK(t, "--data-dir", t.TempDir(), "token", "--issuer", fake.URL, "--cacert", fake.caFile,
			"--client-id", "kb-x", "--key", key, "--dpop", "-o", "json")
		tok := decodeJSON[map[string]any](t, out)
		exp, ok := tok["expires_in"].(float64)
		if ok != tc.want || ok && (exp <= 0 || exp > 300) {
			t.Errorf("response %s gave:\n%s", tc.body, out)
		}
	}
}

// TestTokenEndpointFailures: what the token endpoint says reaches the user
// on one line, and a refusal is a failure (exit 1), whatever its words.
func TestTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := keygen(t, dir, "k")
	dpopKey, _ := keygen(t, dir, "d")
	cases := []struct {
		name   string
		status int
		body   string
		want   []string
	}{
		{"refusal saying accepts", http.StatusBadRequest,
			`{"error":"invalid_request","error_description":"the token endpoint accepts only Basic in the Authorization header"}`,
			[]string{"invalid_request", "accepts only Basic"}},
		{"proxy error without a body", http.StatusBadGateway, "", []string{"HTTP 502"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeIssuer(t, tc.status, tc.body)
			r := run(t, "--data-dir", t.TempDir(), "token", "--issuer", fake.URL, "--cacert", fake.caFile, "--client-id", "kb-x", "--key", key, "--dpop-key", dpopKey)
			checkFailure(t, r, 1, tc.want...)
		})
	}
}

// TestAdminTokenFailureNamesStatus: when the admin identity's token request
// fails without an OAuth error body (a proxy's 502), the message names the
// HTTP status instead of two empty fields.
func TestAdminTokenFailureNamesStatus(t *testing.T) {
	t.Parallel()
	fake := newFakeIssuer(t, http.StatusBadGateway, "")
	dataDir := fakeDataDir(t, fake.URL, fake.caFile)
	r := run(t, "--data-dir", dataDir, "client", "list")
	checkFailure(t, r, 1, "could not get a token: HTTP 502 Bad Gateway")
	if strings.Contains(r.stderr, ": : ") || strings.HasSuffix(strings.TrimSpace(r.stderr), ":") {
		t.Errorf("empty fields in %q", r.stderr)
	}
}
