package app_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/store"
)

// problemBody is an RFC 9457 problem as a client reads it.
type problemBody struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Code     string `json:"error"`
	Errors   []struct {
		Field  string `json:"field"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// fields lists the fields the problem's errors name, in order.
func (p problemBody) fields() []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// httpResult is one raw HTTP answer.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) problem(t *testing.T) problemBody {
	t.Helper()
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body is not a problem: %v: %s", err, r.body)
	}
	return p
}

// do sends one request with c (nil: a plain client trusting the CA) to
// the issuer-relative path.
func (h *harness) do(c *http.Client, method, path, contentType string, body []byte, hdr map[string]string) httpResult {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.issuer+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = h.httpClient(nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

// adminRaw calls the admin API as the admin identity with a raw body and
// content type, for requests adminDo would encode correctly.
func (h *harness) adminRaw(method, path, contentType string, body []byte) httpResult {
	h.t.Helper()
	return h.do(h.admin, method, adminapi.Prefix+path, contentType, body, nil)
}

// events reads the whole admin log.
func (h *harness) events() []store.AdminEvent {
	h.t.Helper()
	code, b := h.adminDo("GET", "/events?limit=1000", nil)
	if code != 200 {
		h.t.Fatalf("events: %d %s", code, b)
	}
	var out struct {
		Events []store.AdminEvent `json:"events"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatal(err)
	}
	return out.Events
}

// clientIDs lists the client ids GET /clients returns for query.
func (h *harness) clientIDs(query string) []string {
	h.t.Helper()
	code, b := h.adminDo("GET", "/clients"+query, nil)
	if code != 200 {
		h.t.Fatalf("list clients%s: %d %s", query, code, b)
	}
	var out struct {
		Clients []adminapi.ClientView `json:"clients"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatal(err)
	}
	ids := []string{}
	for _, c := range out.Clients {
		ids = append(ids, c.ClientID)
	}
	return ids
}

// decodeHeader reads a JWS's protected header.
func decodeHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, ok := strings.Cut(tok, ".")
	if !ok {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// writeCertAndKey writes cert and key as PEM files in a temp dir and
// returns their paths, as an operator would hand them to curl.
func writeCertAndKey(t *testing.T, cert *x509.Certificate, key *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// curlToken posts a client_credentials form to the token endpoint with
// curl, presenting certFile/keyFile when given, and returns the status and
// the decoded JSON body.
func (h *harness) curlToken(t *testing.T, clientID, certFile, keyFile string) (int, map[string]any) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	args := []string{"-sS", "--cacert", filepath.Join(h.cfg.DataDir, "tls", "ca.pem"), "-w", "\n%{http_code}",
		"-d", "grant_type=client_credentials", "-d", "client_id=" + clientID}
	if certFile != "" {
		args = append(args, "--cert", certFile, "--key", keyFile)
	}
	args = append(args, h.issuer+"/oauth2/token")
	out, err := exec.Command(curl, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("curl: %v: %s%s", err, out, stderr)
	}
	i := bytes.LastIndexByte(out, '\n')
	if i < 0 {
		t.Fatalf("curl output %q has no status line", out)
	}
	body, code := string(out[:i]), string(out[i+1:])
	status, err := strconv.Atoi(strings.TrimSpace(code))
	if err != nil {
		t.Fatalf("curl output %q has no status", out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("curl body is not JSON: %q", body)
	}
	return status, m
}

// tokenForm is a private_key_jwt token request for k.
func tokenForm(k clientKey, h *harness) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {k.id}, "client_assertion_type": {assertionType}, "client_assertion": {k.assertion(h.t, h.issuer+"/oauth2/token")}}
}

// clientView reads one client through the admin API.
func (h *harness) clientView(id string) adminapi.ClientView {
	h.t.Helper()
	code, b := h.adminDo("GET", "/clients/"+id, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET client %s: %d %s", id, code, b)
	}
	var v adminapi.ClientView
	if err := json.Unmarshal(b, &v); err != nil {
		h.t.Fatal(err)
	}
	return v
}

// waitUntil polls cond every 50 ms until it holds, and fails the test
// after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
