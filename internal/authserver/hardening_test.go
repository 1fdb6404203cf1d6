package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/replay"
	"github.com/keybound/keybound/sdk"
)

// TestRevocationOutlivesVerifierLeeway: a revoked token must stay refused
// for as long as any keybound verifier would otherwise accept it, which is
// up to TokenLeeway past its exp. Before the fix the revocation was kept
// only until exp, so the view dropped it at its next sync and the token was
// accepted again for the rest of the leeway.
func TestRevocationOutlivesVerifierLeeway(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.addClient("svc", identity.BindingBearer, "invoices:read")
	ts.addClient("rs", identity.BindingBearer, ScopeIntrospect)
	tok := ts.token("svc")
	claims, err := ts.tokens.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	ts.revoke("svc", tok)

	stored := ts.revs.all()
	if len(stored) != 1 || stored[0].ExpiresAt.Before(claims.Expiry.Add(TokenLeeway)) {
		t.Errorf("stored revocations %+v; want one kept until at least exp + %s (%s)", stored, TokenLeeway, claims.Expiry.Add(TokenLeeway))
	}

	// A resource server as protect checks tokens: the verifier, with its
	// leeway, then the revocation view, which the app syncs every second.
	refused := func(at time.Time) bool {
		ts.clock.Set(at)
		if err := ts.view.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		c, err := ts.tokens.Verify(tok)
		return err != nil || ts.view.Revoked(c.JTI)
	}
	for _, at := range []time.Time{
		claims.Expiry.Add(-time.Second),
		claims.Expiry,
		claims.Expiry.Add(time.Second),
		claims.Expiry.Add(TokenLeeway / 2),
		claims.Expiry.Add(TokenLeeway - time.Second),
		claims.Expiry.Add(TokenLeeway),
	} {
		if !refused(at) {
			t.Errorf("%s after exp the revoked token is accepted again", at.Sub(claims.Expiry))
		}
		if got := ts.introspect("rs", tok); got["active"] != false {
			t.Errorf("%s after exp introspection = %v, want active false", at.Sub(claims.Expiry), got)
		}
	}
}

// TestIntrospectionUsesNoLeeway: the token service is the clock of record;
// RFC 7662 section 2.2 calls a token active only before its exp and not
// before its nbf. Before the fix introspection used the verifiers' leeway
// and answered active:true for 30 s after exp.
func TestIntrospectionUsesNoLeeway(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.addClient("svc", identity.BindingBearer, "invoices:read")
	ts.addClient("rs", identity.BindingBearer, ScopeIntrospect)
	issued := ts.clock.Now()
	tok := ts.token("svc")
	claims, err := ts.tokens.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		at     time.Time
		active bool
	}{
		{"at issuance", issued, true},
		{"one second before exp", claims.Expiry.Add(-time.Second), true},
		{"at exp", claims.Expiry, false},
		{"inside the verifiers' leeway after exp", claims.Expiry.Add(TokenLeeway / 2), false},
		{"inside the verifiers' leeway before nbf", claims.NotBefore.Add(-TokenLeeway / 2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts.clock.Set(tt.at)
			got := ts.introspect("rs", tok)
			if got["active"] != tt.active {
				t.Fatalf("introspection = %v, want active %v", got, tt.active)
			}
			if !tt.active && len(got) != 1 {
				t.Errorf("inactive answer carries members: %v", got)
			}
		})
	}
}

// TestErrorDescriptionCharset: every error_description the token endpoint
// sends holds only RFC 6749 section 5.2's characters, whatever the client
// sent to be quoted back: a double quote, a backslash, non-ASCII.
func TestErrorDescriptionCharset(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.addClient("svc", identity.BindingDPoP, "invoices:read")
	key, _ := sdk.GenerateKey()
	signer, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	withParam := func(k, v string) string {
		f := tokenForm("svc", ts.assertion("svc", testIssuer+PathToken))
		f.Set(k, v)
		return f.Encode()
	}
	badHTU, err := signer.Proof(http.MethodPost, "https://as.example.test/\"q\\u\u00e9", dpop.ProofOptions{Now: ts.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		hdr        map[string]string
		wantError  string
		wantIn     string
	}{
		{"grant_type with a double quote", url.Values{"grant_type": {`a"b`}}.Encode(), nil, oauth.CodeUnsupportedGrantType, "grant_type 'a?b'"},
		{"grant_type with backslash and non-ASCII", url.Values{"grant_type": {"a\\b\u00e9\u65e5"}}.Encode(), nil, oauth.CodeUnsupportedGrantType, "grant_type 'a?b"},
		{"repeated parameter with a quote in its name", `x"y=1&x"y=2&grant_type=client_credentials`, nil, oauth.CodeInvalidRequest, "parameter 'x?y' is repeated"},
		{"scope with a double quote", withParam("scope", `invoices:"read"`), nil, oauth.CodeInvalidScope, "scope "},
		{"scope with non-ASCII", withParam("scope", "invoices:r\u00e9ad"), nil, oauth.CodeInvalidScope, "scope "},
		{"resource with quote, backslash and non-ASCII", withParam("resource", "https://api.example/\"\\\u00e9"), nil, oauth.CodeInvalidTarget, "resource '"},
		{"DPoP htu with quote, backslash and non-ASCII", withParam("scope", "invoices:read"), map[string]string{"DPoP": badHTU}, oauth.CodeInvalidDPoPProof, "htu '"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.post(PathToken, tt.body, tt.hdr)
			if r.body["error"] != tt.wantError {
				t.Fatalf("got %d %s, want %s", r.status, r.raw, tt.wantError)
			}
			desc, _ := r.body["error_description"].(string)
			if desc == "" {
				t.Fatal("no error_description")
			}
			for i := 0; i < len(desc); i++ {
				if !allowedDescriptionByte(desc[i]) {
					t.Errorf("error_description %q has byte %#x at %d, outside RFC 6749 section 5.2", desc, desc[i], i)
				}
			}
			if !strings.Contains(desc, tt.wantIn) {
				t.Errorf("error_description %q does not contain %q", desc, tt.wantIn)
			}
		})
	}
}

// TestOversizedGrantIsInvalidScope: a grant too large for one token is the
// client's to fix by asking for less; it is answered 400 invalid_scope, not
// 500 server_error with an error logged for the operator, and it does not
// spend the assertion.
func TestOversizedGrantIsInvalidScope(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	var scopes []string
	for i := range identity.MaxScopes {
		scopes = append(scopes, fmt.Sprintf("scope-%02d:%s", i, strings.Repeat("x", 100)))
	}
	ts.addClient("big", identity.BindingBearer, scopes...)
	a := ts.assertion("big", testIssuer+PathToken)

	r := ts.post(PathToken, tokenForm("big", a).Encode(), nil)
	if r.status != http.StatusBadRequest || r.body["error"] != oauth.CodeInvalidScope {
		t.Fatalf("got %d %s, want 400 invalid_scope", r.status, r.raw)
	}
	if desc, _ := r.body["error_description"].(string); !strings.Contains(desc, "request fewer scope values or resource parameters") {
		t.Errorf("error_description %q does not tell the client what to fix", desc)
	}
	if strings.Contains(ts.logs.String(), `"level":"ERROR"`) {
		t.Errorf("an oversized grant was logged as a server error:\n%s", ts.logs.String())
	}

	form := tokenForm("big", a)
	form.Set("scope", scopes[0])
	if r := ts.post(PathToken, form.Encode(), nil); r.status != http.StatusOK {
		t.Fatalf("retry with fewer scopes and the same assertion: %d %s", r.status, r.raw)
	}
}

// stubProofs is a ProofVerifier that fails with err.
type stubProofs struct{ err error }

func (s stubProofs) Verify(string, dpop.Request) (*dpop.Proof, error) { return nil, s.err }

// stubNonces is a NonceSource with a fixed nonce.
type stubNonces string

func (s stubNonces) Current() string { return string(s) }

// TestProofErrorClasses: only a proof the client can fix is its fault
// (400 invalid_dpop_proof, or use_dpop_nonce with a nonce to retry with);
// a failure of the server's own DPoP machinery is server_error. Before the
// fix every error was answered 400 invalid_dpop_proof, and a nonce demanded
// with no nonce source to hand one out sent the client into a retry it
// could never satisfy.
func TestProofErrorClasses(t *testing.T) {
	key, _ := sdk.GenerateKey()
	signer, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	realNonces, err := dpop.NewNonces(nil, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		proofs     ProofVerifier
		nonces     NonceSource
		wantStatus int
		wantError  string
		wantNonce  bool
	}{
		{"invalid proof", stubProofs{fmt.Errorf("%w: htm does not match", dpop.ErrInvalidProof)}, nil, 400, oauth.CodeInvalidDPoPProof, false},
		{"replayed proof", stubProofs{errors.Join(dpop.ErrReplay, dpop.ErrInvalidProof)}, nil, 400, oauth.CodeInvalidDPoPProof, false},
		{"nonce needed and a nonce to send", stubProofs{dpop.ErrUseNonce}, stubNonces("n-0123456789abcdefghij"), 400, oauth.CodeUseDPoPNonce, true},
		{"nonce needed but no nonce source", stubProofs{dpop.ErrUseNonce}, nil, 500, oauth.CodeServerError, false},
		{"nonce needed but the source has no nonce", stubProofs{dpop.ErrUseNonce}, stubNonces(""), 500, oauth.CodeServerError, false},
		{"replay cache cannot remember", stubProofs{errors.New("dpop: replay cache is full")}, nil, 500, oauth.CodeServerError, false},
		{"real verifier without a replay cache", &dpop.Verifier{}, nil, 500, oauth.CodeServerError, false},
		{"real verifier demanding a nonce the server cannot send", &dpop.Verifier{Replay: replay.New(16, nil), Nonce: realNonces}, nil, 500, oauth.CodeServerError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, serverOptions{})
			ts.srv.Proofs = tt.proofs
			ts.srv.Nonces = tt.nonces
			ts.addClient("svc", identity.BindingDPoP, "a")
			// Proofs at the real clock: the real verifiers in the table
			// read time.Now.
			p := proof(t, signer, time.Now(), "")
			r := ts.post(PathToken, tokenForm("svc", ts.assertion("svc", testIssuer+PathToken)).Encode(), map[string]string{"DPoP": p})
			if r.status != tt.wantStatus || r.body["error"] != tt.wantError {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, tt.wantStatus, tt.wantError)
			}
			if got := r.header.Get("DPoP-Nonce"); (got != "") != tt.wantNonce {
				t.Errorf("DPoP-Nonce = %q, want one: %v", got, tt.wantNonce)
			}
			serverErr := strings.Contains(ts.logs.String(), `"level":"ERROR"`)
			if serverErr != (tt.wantError == oauth.CodeServerError) {
				t.Errorf("logged at ERROR: %v, want %v:\n%s", serverErr, tt.wantError == oauth.CodeServerError, ts.logs.String())
			}
		})
	}
}

// TestNonceRetryKeepsAssertion is RFC 9449 section 8's interop flow: with
// server nonces required, the first request is refused use_dpop_nonce, and
// the client retries with the same client assertion and a proof carrying
// the nonce. Before the fix the first request had already spent the
// assertion's jti, so the retry was refused invalid_client.
func TestNonceRetryKeepsAssertion(t *testing.T) {
	ts := newTestServer(t, serverOptions{requireNonce: true})
	ts.addClient("svc", identity.BindingDPoP, "invoices:read")
	key, _ := sdk.GenerateKey()
	signer, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	a := ts.assertion("svc", testIssuer+PathToken)
	body := tokenForm("svc", a).Encode()

	r := ts.post(PathToken, body, map[string]string{"DPoP": proof(t, signer, ts.clock.Now(), "")})
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != http.StatusBadRequest || r.body["error"] != oauth.CodeUseDPoPNonce || nonce == "" {
		t.Fatalf("proof without nonce: %d %s, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", r.status, r.raw, nonce)
	}
	r = ts.post(PathToken, body, map[string]string{"DPoP": proof(t, signer, ts.clock.Now(), nonce)})
	if r.status != http.StatusOK || r.body["token_type"] != "DPoP" {
		t.Fatalf("retry with the nonce and the same assertion: %d %s, want 200", r.status, r.raw)
	}
	r = ts.post(PathToken, body, map[string]string{"DPoP": proof(t, signer, ts.clock.Now(), nonce)})
	if r.status != http.StatusUnauthorized || r.body["error"] != oauth.CodeInvalidClient || !strings.Contains(r.raw, "already used") {
		t.Fatalf("third use of the assertion: %d %s, want 401 invalid_client (replay)", r.status, r.raw)
	}
}

// TestRefusalsDoNotSpendAssertion: a request refused after the client
// authenticated (scope, target, binding) leaves its assertion usable, and
// the assertion is spent by the request that gets the token. Introspection
// and revocation spend theirs at once, as before.
func TestRefusalsDoNotSpendAssertion(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.addClient("svc", identity.BindingDPoP, "invoices:read")
	ts.addClient("rs", identity.BindingBearer, ScopeIntrospect)
	key, _ := sdk.GenerateKey()
	signer, err := dpop.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	a := ts.assertion("svc", testIssuer+PathToken)
	with := func(k, v string) string {
		f := tokenForm("svc", a)
		if k != "" {
			f.Set(k, v)
		}
		return f.Encode()
	}
	good := func() map[string]string { return map[string]string{"DPoP": proof(t, signer, ts.clock.Now(), "")} }
	refusals := []struct {
		name, body string
		hdr        map[string]string
		wantError  string
	}{
		{"scope not granted", with("scope", "invoices:write"), good(), oauth.CodeInvalidScope},
		{"resource not registered", with("resource", "https://other.example"), good(), oauth.CodeInvalidTarget},
		{"no proof for a DPoP client", with("", ""), nil, oauth.CodeInvalidDPoPProof},
		{"invalid proof", with("", ""), map[string]string{"DPoP": "not.a.proof"}, oauth.CodeInvalidDPoPProof},
	}
	for _, tt := range refusals {
		if r := ts.post(PathToken, tt.body, tt.hdr); r.body["error"] != tt.wantError {
			t.Fatalf("%s: got %d %s, want %s", tt.name, r.status, r.raw, tt.wantError)
		}
	}
	if r := ts.post(PathToken, with("", ""), good()); r.status != http.StatusOK {
		t.Fatalf("the assertion after refusals: %d %s, want 200", r.status, r.raw)
	}
	if r := ts.post(PathToken, with("", ""), good()); r.status != http.StatusUnauthorized || r.body["error"] != oauth.CodeInvalidClient {
		t.Fatalf("the assertion after it got a token: %d %s, want 401 invalid_client", r.status, r.raw)
	}

	// Introspection spends its caller's assertion on success.
	tok := ts.post(PathToken, tokenForm("svc", ts.assertion("svc", testIssuer+PathToken)).Encode(), good()).body["access_token"].(string)
	form := tokenForm("rs", ts.assertion("rs", testIssuer+PathIntrospect))
	form.Del("grant_type")
	form.Set("token", tok)
	if r := ts.post(PathIntrospect, form.Encode(), nil); r.status != http.StatusOK || r.body["active"] != true {
		t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	if r := ts.post(PathIntrospect, form.Encode(), nil); r.status != http.StatusUnauthorized || r.body["error"] != oauth.CodeInvalidClient {
		t.Fatalf("introspect with a spent assertion: %d %s, want 401 invalid_client", r.status, r.raw)
	}
}

// TestMetadataUnderAnIssuerPath: RFC 8414 section 3.1 puts the metadata of
// an issuer with a path at the well-known path with the issuer's path
// appended; the root location keeps working.
func TestMetadataUnderAnIssuerPath(t *testing.T) {
	for _, tc := range []struct{ issuer, path string }{
		{"https://auth.example.com/tenant-a", PathMetadata + "/tenant-a"},
		{"https://auth.example.com/tenant-a/", PathMetadata + "/tenant-a"},
		{"https://auth.example.com", PathMetadata},
	} {
		s := &Server{Settings: Settings{Issuer: tc.issuer}, Log: slog.New(slog.DiscardHandler)}
		mux := http.NewServeMux()
		s.Register(mux)
		for _, p := range []string{tc.path, PathMetadata} {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
			var md map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &md) != nil || md["issuer"] != tc.issuer {
				t.Errorf("issuer %s, GET %s: %d %s", tc.issuer, p, rec.Code, rec.Body)
			}
		}
	}
}
