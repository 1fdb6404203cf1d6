package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
)

// oauth2Ctx makes x/oauth2 use an HTTP client that trusts the server's CA.
func (h *harness) oauth2Ctx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, h.httpClient(nil))
}

// retrieveError unwraps the error x/oauth2 returns for a refused request.
func retrieveError(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not an *oauth2.RetrieveError", err, err)
	}
	return re
}

// TestLegacySecretClientWithXOAuth2 drives a client_secret_basic client
// with golang.org/x/oauth2/clientcredentials, the library most Go services
// already use.
func TestLegacySecretClientWithXOAuth2(t *testing.T) {
	h := start(t, nil)
	v := h.register(inventory.Registration{Scope: "reports:read", AuthMethod: "client_secret_basic", AllowBearer: true})
	if v.ClientSecret == "" {
		t.Fatal("registration response shows no client_secret")
	}
	if !v.StaticSecret || v.AuthMethod != "client_secret_basic" {
		t.Errorf("registration view static_secret=%v method=%q", v.StaticSecret, v.AuthMethod)
	}
	cc := clientcredentials.Config{ClientID: v.ClientID, ClientSecret: v.ClientSecret, TokenURL: h.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(h.oauth2Ctx())
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.AccessToken == "" {
		t.Errorf("token type %q, access token %q", tok.TokenType, tok.AccessToken)
	}
	if life := time.Until(tok.Expiry); life < 4*time.Minute || life > 5*time.Minute+5*time.Second {
		t.Errorf("lifetime %s, want the 5 minute default", life)
	}
	if _, ok := decodeClaims(t, tok.AccessToken)["cnf"]; ok {
		t.Error("bearer token carries a cnf claim")
	}

	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	got := h.introspect(rs, tok.AccessToken)
	if got["active"] != true || got["kb_static_secret"] != true || got["kb_auth_method"] != "client_secret_basic" || got["token_type"] != "Bearer" {
		t.Errorf("introspection = %v, want active static-secret client_secret_basic Bearer", got)
	}

	// The secret is shown once: reading the registration again never
	// returns it, in any form.
	for _, path := range []string{"/clients/" + v.ClientID, "/clients", "/events?limit=1000"} {
		code, b := h.adminDo("GET", path, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		if strings.Contains(string(b), v.ClientSecret) || strings.Contains(string(b), "client_secret\"") {
			t.Errorf("GET %s shows the secret: %s", path, b)
		}
	}

	tests := []struct {
		name        string
		cfg         clientcredentials.Config
		wantStatus  int
		wantError   string
		wantBasicWA bool
	}{
		{"wrong secret", clientcredentials.Config{ClientID: v.ClientID, ClientSecret: v.ClientSecret + "x", AuthStyle: oauth2.AuthStyleInHeader}, 401, "invalid_client", true},
		{"unknown client", clientcredentials.Config{ClientID: "kb-nobody", ClientSecret: v.ClientSecret, AuthStyle: oauth2.AuthStyleInHeader}, 401, "invalid_client", true},
		{"secret in the body for a client_secret_basic client", clientcredentials.Config{ClientID: v.ClientID, ClientSecret: v.ClientSecret, AuthStyle: oauth2.AuthStyleInParams}, 401, "invalid_client", false},
		{"scope not granted", clientcredentials.Config{ClientID: v.ClientID, ClientSecret: v.ClientSecret, AuthStyle: oauth2.AuthStyleInHeader, Scopes: []string{"reports:write"}}, 400, "invalid_scope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.TokenURL = h.issuer + "/oauth2/token"
			tok, err := tt.cfg.Token(h.oauth2Ctx())
			if err == nil {
				t.Fatalf("token issued: %v", tok.TokenType)
			}
			re := retrieveError(t, err)
			if re.Response.StatusCode != tt.wantStatus || re.ErrorCode != tt.wantError {
				t.Fatalf("got %d %q (%s), want %d %s", re.Response.StatusCode, re.ErrorCode, re.ErrorDescription, tt.wantStatus, tt.wantError)
			}
			if re.ErrorDescription == "" {
				t.Error("no error_description")
			}
			if strings.Contains(re.ErrorDescription, v.ClientSecret) {
				t.Error("description echoes the secret")
			}
			// RFC 6749 section 5.2: a failed Basic authentication is a 401
			// with a WWW-Authenticate challenge for the scheme used.
			wa := re.Response.Header.Get("WWW-Authenticate")
			if tt.wantBasicWA && !strings.HasPrefix(wa, "Basic") {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge", wa)
			}
			if !tt.wantBasicWA && wa != "" {
				t.Errorf("WWW-Authenticate = %q, want none", wa)
			}
			if cc := re.Response.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
		})
	}
	t.Run("Basic challenge carries a realm", func(t *testing.T) {
		cc := clientcredentials.Config{ClientID: v.ClientID, ClientSecret: "wrong", TokenURL: h.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
		_, err := cc.Token(h.oauth2Ctx())
		wa := retrieveError(t, err).Response.Header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, "Basic realm=\"") {
			t.Errorf("WWW-Authenticate = %q, want Basic realm=... (RFC 7617 section 2)", wa)
		}
	})
}

// TestStaticSecretsDisabled checks the server-wide switch: a client that
// registered a secret can no longer use it, and metadata stops advertising
// secret methods.
func TestStaticSecretsDisabled(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Tokens.AllowStaticSecrets = false })
	v := h.register(inventory.Registration{Scope: "reports:read", AuthMethod: "client_secret_basic", AllowBearer: true})
	cc := clientcredentials.Config{ClientID: v.ClientID, ClientSecret: v.ClientSecret, TokenURL: h.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	_, err := cc.Token(h.oauth2Ctx())
	if err == nil {
		t.Fatal("token issued with static secrets disabled")
	}
	re := retrieveError(t, err)
	if re.Response.StatusCode != 401 || re.ErrorCode != "invalid_client" {
		t.Errorf("got %d %q, want 401 invalid_client", re.Response.StatusCode, re.ErrorCode)
	}
	if !strings.Contains(re.ErrorDescription, "disabled") {
		t.Errorf("description %q does not say secrets are disabled", re.ErrorDescription)
	}
	if wa := re.Response.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Basic") {
		t.Errorf("WWW-Authenticate = %q, want a Basic challenge", wa)
	}

	md := h.metadata()
	for _, key := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		methods := stringList(md[key])
		if slices.Contains(methods, "client_secret_basic") || slices.Contains(methods, "client_secret_post") {
			t.Errorf("%s = %v advertises static secrets", key, methods)
		}
		if !slices.Contains(methods, "private_key_jwt") {
			t.Errorf("%s = %v lacks private_key_jwt", key, methods)
		}
	}
}

// TestPrivateKeyJWTWithXOAuth2 uses x/oauth2 with a hand-made assertion in
// EndpointParams, which is how a service without keybound's SDK does it.
func TestPrivateKeyJWTWithXOAuth2(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "reports:read reports:write", AllowBearer: true})
	tokenURL := h.issuer + "/oauth2/token"
	cc := clientcredentials.Config{
		ClientID:  c.id,
		TokenURL:  tokenURL,
		AuthStyle: oauth2.AuthStyleInParams,
		Scopes:    []string{"reports:read"},
		EndpointParams: map[string][]string{
			"client_assertion_type": {assertionType},
			"client_assertion":      {c.assertion(t, tokenURL)},
		},
	}
	tok, err := cc.Token(h.oauth2Ctx())
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" {
		t.Errorf("token type %q, want Bearer", tok.TokenType)
	}
	claims := decodeClaims(t, tok.AccessToken)
	if claims["scope"] != "reports:read" || claims["client_id"] != c.id || claims["iss"] != h.issuer {
		t.Errorf("claims = %v", claims)
	}
	if s, _ := tok.Extra("scope").(string); s != "reports:read" {
		t.Errorf("response scope = %v", tok.Extra("scope"))
	}

	// The same assertion a second time is a replay.
	_, err = cc.Token(h.oauth2Ctx())
	if re := retrieveError(t, err); re.Response.StatusCode != 401 || re.ErrorCode != "invalid_client" {
		t.Errorf("replayed assertion: %d %q", re.Response.StatusCode, re.ErrorCode)
	}
}

// mtlsClientCert issues a client certificate from the server's own CA.
func mtlsClientCert(t *testing.T, h *harness, subject pkix.Name) (*x509.Certificate, string, string) {
	t.Helper()
	authority, err := ca.LoadOrCreate(filepath.Join(h.cfg.DataDir, "tls"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := newEC(t)
	cert, err := authority.IssueClientCertificate(&key.PublicKey, subject, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := writeCertAndKey(t, cert, key)
	return cert, cf, kf
}

// selfSignedClientCert makes a certificate nobody issued.
func selfSignedClientCert(t *testing.T, cn string) (*x509.Certificate, string, string) {
	t.Helper()
	key := newEC(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := writeCertAndKey(t, cert, key)
	return cert, cf, kf
}

func x5tS256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestMTLSWithCurl authenticates tls_client_auth and
// self_signed_tls_client_auth clients with nothing but curl and PEM files,
// and checks the tokens are bound to the certificate (RFC 8705 section 3).
func TestMTLSWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	h := start(t, nil)

	cert, certFile, keyFile := mtlsClientCert(t, h, pkix.Name{CommonName: "billing-sync", Organization: []string{"example"}})
	// RFC 4514 order: most specific RDN first.
	pki := h.register(inventory.Registration{Scope: "billing:sync", AuthMethod: "tls_client_auth", TLSSubjectDN: "CN=billing-sync,O=example", MTLSBound: true})
	_, otherFile, otherKey := mtlsClientCert(t, h, pkix.Name{CommonName: "billing-other", Organization: []string{"example"}})

	ssCert, ssFile, ssKey := selfSignedClientCert(t, "edge-agent")
	jwk := ecJWK(ssCert.PublicKey.(*ecdsa.PublicKey))
	jwk["x5c"] = []string{base64.StdEncoding.EncodeToString(ssCert.Raw)}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	self := h.register(inventory.Registration{Scope: "edge:report", AuthMethod: "self_signed_tls_client_auth", JWKS: jwks, MTLSBound: true})
	_, ssOtherFile, ssOtherKey := selfSignedClientCert(t, "edge-agent")

	t.Run("tls_client_auth", func(t *testing.T) {
		status, body := h.curlToken(t, pki.ClientID, certFile, keyFile)
		if status != 200 || body["token_type"] != "Bearer" {
			t.Fatalf("got %d %v", status, body)
		}
		tok, _ := body["access_token"].(string)
		claims := decodeClaims(t, tok)
		cnf, _ := claims["cnf"].(map[string]any)
		if cnf["x5t#S256"] != x5tS256(cert) {
			t.Errorf("cnf = %v, want x5t#S256 %s", claims["cnf"], x5tS256(cert))
		}
		if _, ok := cnf["jkt"]; ok {
			t.Errorf("certificate-bound token also carries jkt: %v", cnf)
		}
		if claims["client_id"] != pki.ClientID || claims["scope"] != "billing:sync" {
			t.Errorf("claims = %v", claims)
		}
	})
	t.Run("self_signed_tls_client_auth", func(t *testing.T) {
		status, body := h.curlToken(t, self.ClientID, ssFile, ssKey)
		if status != 200 || body["token_type"] != "Bearer" {
			t.Fatalf("got %d %v", status, body)
		}
		cnf, _ := decodeClaims(t, body["access_token"].(string))["cnf"].(map[string]any)
		if cnf["x5t#S256"] != x5tS256(ssCert) {
			t.Errorf("cnf = %v, want x5t#S256 %s", cnf, x5tS256(ssCert))
		}
	})

	refusals := []struct {
		name, clientID, cert, key string
	}{
		{"tls_client_auth with another subject from the same CA", pki.ClientID, otherFile, otherKey},
		{"tls_client_auth with a self-signed certificate", pki.ClientID, ssFile, ssKey},
		{"tls_client_auth without a certificate", pki.ClientID, "", ""},
		{"self_signed_tls_client_auth with another self-signed certificate", self.ClientID, ssOtherFile, ssOtherKey},
		{"self_signed_tls_client_auth with a CA-issued certificate", self.ClientID, certFile, keyFile},
		{"self_signed_tls_client_auth without a certificate", self.ClientID, "", ""},
		{"unknown client with a valid certificate", "kb-nobody", certFile, keyFile},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			status, body := h.curlToken(t, tt.clientID, tt.cert, tt.key)
			if status != 401 || body["error"] != "invalid_client" {
				t.Fatalf("got %d %v, want 401 invalid_client", status, body)
			}
			if _, ok := body["access_token"]; ok {
				t.Error("token issued")
			}
			if d, _ := body["error_description"].(string); d == "" {
				t.Error("no error_description")
			}
		})
	}
}

// TestAuthorizationServerMetadata reads RFC 8414 metadata and the JWK Set
// it points to as a generic OAuth client library would.
func TestAuthorizationServerMetadata(t *testing.T) {
	h := start(t, nil)
	r := h.do(nil, "GET", "/.well-known/oauth-authorization-server", "", nil, nil)
	if r.status != 200 {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	var md map[string]any
	if err := json.Unmarshal(r.body, &md); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"issuer":                 h.issuer,
		"token_endpoint":         h.issuer + "/oauth2/token",
		"jwks_uri":               h.issuer + "/oauth2/jwks",
		"introspection_endpoint": h.issuer + "/oauth2/introspect",
		"revocation_endpoint":    h.issuer + "/oauth2/revoke",
	} {
		if md[key] != want {
			t.Errorf("%s = %v, want %s", key, md[key], want)
		}
	}
	// RFC 8414 section 3.3: the issuer is the URL the metadata was read under.
	if !strings.HasPrefix(h.issuer+"/.well-known/oauth-authorization-server", md["issuer"].(string)) {
		t.Errorf("issuer %v is not the metadata URL's prefix", md["issuer"])
	}
	if got := stringList(md["grant_types_supported"]); !slices.Equal(got, []string{"client_credentials"}) {
		t.Errorf("grant_types_supported = %v", got)
	}
	if got := stringList(md["dpop_signing_alg_values_supported"]); !slices.Contains(got, "ES256") {
		t.Errorf("dpop_signing_alg_values_supported = %v lacks ES256", got)
	}
	if md["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("tls_client_certificate_bound_access_tokens = %v", md["tls_client_certificate_bound_access_tokens"])
	}
	methods := stringList(md["token_endpoint_auth_methods_supported"])
	for _, m := range []string{"private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth", "client_secret_basic"} {
		if !slices.Contains(methods, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %v lacks %s", methods, m)
		}
	}
	algs := stringList(md["token_endpoint_auth_signing_alg_values_supported"])
	if len(algs) == 0 {
		t.Error("token_endpoint_auth_signing_alg_values_supported is empty")
	}
	for _, a := range algs {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			t.Errorf("token_endpoint_auth_signing_alg_values_supported = %v offers %s", algs, a)
		}
	}

	jr := h.do(nil, "GET", strings.TrimPrefix(md["jwks_uri"].(string), h.issuer), "", nil, nil)
	if jr.status != 200 {
		t.Fatalf("jwks: %d %s", jr.status, jr.body)
	}
	if ct := jr.header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("JWKS Content-Type = %q", ct)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jr.body, &set); err != nil {
		t.Fatal(err)
	}
	ec := 0
	for _, k := range set.Keys {
		if k["kty"] == "EC" && k["kid"] != "" && k["kid"] != nil {
			ec++
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWKS key %v has private member %q", k["kid"], private)
			}
		}
	}
	if ec == 0 {
		t.Errorf("JWKS %s has no EC key with a kid", jr.body)
	}
}

// metadata reads the authorization server metadata.
func (h *harness) metadata() map[string]any {
	h.t.Helper()
	r := h.do(nil, "GET", "/.well-known/oauth-authorization-server", "", nil, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	var md map[string]any
	if err := json.Unmarshal(r.body, &md); err != nil {
		h.t.Fatal(err)
	}
	return md
}

func stringList(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
