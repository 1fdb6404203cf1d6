package app_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/app/apptest"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

// harness is one keybound server on a loopback port with a fresh data dir.
type harness struct {
	t       *testing.T
	cfg     config.Config
	issuer  string
	pool    *x509.CertPool
	admin   *http.Client
	adminID string
	logs    *apptest.Logs
	stop    func() error
}

func start(t *testing.T, mutate func(*config.Config)) *harness {
	t.Helper()
	return startWithOptions(t, mutate, nil, "")
}

// startWith starts a server whose gateway serves on gl.
func startWith(t *testing.T, mutate func(*config.Config), gl net.Listener) *harness {
	t.Helper()
	return startWithOptions(t, mutate, gl, "")
}

// startWithOptions starts a server; gl, when set, is the gateway listener,
// and configFile, when set, is where routes are reloaded from.
func startWithOptions(t *testing.T, mutate func(*config.Config), gl net.Listener, configFile string) *harness {
	t.Helper()
	var opts []app.Option
	if gl != nil {
		opts = append(opts, app.WithGatewayListener(gl))
	}
	if configFile != "" {
		opts = append(opts, app.WithConfigFile(configFile))
	}
	return startApp(t, mutate, opts...)
}

// startApp starts a server with opts and an admin client for it.
func startApp(t *testing.T, mutate func(*config.Config), opts ...app.Option) *harness {
	t.Helper()
	s := apptest.Start(t, mutate, opts...)
	h := &harness{t: t, cfg: s.Config, issuer: s.Issuer, pool: s.Pool, adminID: s.Admin.ClientID, logs: s.Logs, stop: s.Stop}
	d := s.Admin
	key, err := sdk.LoadPrivateKey(d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ac := &sdk.Config{TokenURL: d.TokenEndpoint, ClientID: d.ClientID, Key: key, KeyID: d.KeyID, Scopes: []string{adminapi.Scope}, DPoP: true, HTTPClient: h.httpClient(nil)}
	h.admin = ac.Client(context.Background())
	return h
}

// httpClient trusts the server's CA and presents certs, if any.
func (h *harness) httpClient(certs []tls.Certificate) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.pool, Certificates: certs}},
	}
}

// adminDo calls the admin API as the admin identity.
func (h *harness) adminDo(method, path string, in any) (int, []byte) {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.issuer+adminapi.Prefix+path, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.admin.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// register creates a client through the admin API and returns its view.
func (h *harness) register(reg inventory.Registration) adminapi.ClientView {
	h.t.Helper()
	if reg.Name == "" {
		reg.Name = "svc"
	}
	if reg.Owner == "" {
		reg.Owner = "team-a@example.com"
	}
	if reg.Purpose == "" {
		reg.Purpose = "tests"
	}
	if reg.Environment == "" {
		reg.Environment = "dev"
	}
	if reg.ExpiresAt.IsZero() {
		reg.ExpiresAt = time.Now().Add(24 * time.Hour)
	}
	code, b := h.adminDo("POST", "/clients", reg)
	if code != http.StatusCreated {
		h.t.Fatalf("register: %d %s", code, b)
	}
	var v adminapi.ClientView
	if err := json.Unmarshal(b, &v); err != nil {
		h.t.Fatal(err)
	}
	return v
}

// tokenResult is one raw token endpoint answer.
type tokenResult struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// postForm sends a raw form to path with extra headers.
func (h *harness) postForm(c *http.Client, path string, form url.Values, hdr map[string]string) tokenResult {
	h.t.Helper()
	res := h.do(c, "POST", path, "application/x-www-form-urlencoded", []byte(form.Encode()), hdr)
	r := tokenResult{status: res.status, header: res.header, raw: string(res.body)}
	_ = json.Unmarshal(res.body, &r.body)
	return r
}

// introspect asks the server about tok as the admin identity would, using
// a dedicated introspection client with a secret-free method.
func (h *harness) introspect(caller clientKey, tok string) map[string]any {
	h.t.Helper()
	form := url.Values{"token": {tok}, "client_id": {caller.id}, "client_assertion_type": {assertionType}, "client_assertion": {caller.assertion(h.t, h.issuer+"/oauth2/introspect")}}
	r := h.postForm(nil, "/oauth2/introspect", form, nil)
	if r.status != 200 {
		h.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r.body
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientKey is a registered private_key_jwt client and its key.
type clientKey struct {
	id  string
	key crypto.Signer
	kid string
}

func (c clientKey) assertion(t *testing.T, aud string) string {
	t.Helper()
	a, err := sdk.ClientAssertion(c.key, c.kid, c.id, aud, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newKeyClient registers a private_key_jwt client with a fresh key.
func (h *harness) newKeyClient(reg inventory.Registration) clientKey {
	h.t.Helper()
	key, err := sdk.GenerateKey()
	if err != nil {
		h.t.Fatal(err)
	}
	set, err := sdk.PublicJWKS(key, "k1")
	if err != nil {
		h.t.Fatal(err)
	}
	reg.AuthMethod = "private_key_jwt"
	reg.JWKS = set
	if !reg.DPoPBound && !reg.MTLSBound && !reg.AllowBearer {
		reg.DPoPBound = true
	}
	v := h.register(reg)
	return clientKey{id: v.ClientID, key: key, kid: "k1"}
}
