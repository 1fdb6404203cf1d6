package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// craftJWS signs header and claims with key (ES256), whatever the header
// says, so tests can build proofs and assertions the honest signers refuse
// to make.
func craftJWS(t *testing.T, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

func ecJWK(pub *ecdsa.PublicKey) map[string]any {
	return map[string]any{"kty": "EC", "crv": "P-256", "x": b64(pub.X.FillBytes(make([]byte, 32))), "y": b64(pub.Y.FillBytes(make([]byte, 32)))}
}

func newEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// decodeClaims reads a JWT's payload without verifying it (the server did).
func decodeClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDPoPBoundTokenWithSDK(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "invoices:read invoices:write", Audiences: []string{"https://api.example.com"}})
	dkey := newEC(t)
	cfg := &sdk.Config{TokenURL: h.issuer + "/oauth2/token", ClientID: c.id, Key: c.key, KeyID: c.kid, Scopes: []string{"invoices:read"}, DPoP: true, DPoPKey: dkey, HTTPClient: h.httpClient(nil)}
	tok, err := cfg.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", tok.TokenType)
	}
	if life := time.Until(tok.Expiry); life < 4*time.Minute || life > 5*time.Minute+5*time.Second {
		t.Errorf("lifetime %s, want the 5 minute default", life)
	}
	claims := decodeClaims(t, tok.AccessToken)
	jkt, _ := dpop.Thumbprint(dkey.Public())
	cnf, _ := claims["cnf"].(map[string]any)
	if cnf["jkt"] != jkt {
		t.Errorf("cnf.jkt = %v, want %s", cnf["jkt"], jkt)
	}
	if claims["scope"] != "invoices:read" || claims["client_id"] != c.id || claims["sub"] != c.id {
		t.Errorf("claims = %v", claims)
	}
	if aud, _ := claims["aud"].(string); aud != "https://api.example.com" {
		if arr, ok := claims["aud"].([]any); !ok || len(arr) != 1 || arr[0] != "https://api.example.com" {
			t.Errorf("aud = %v", claims["aud"])
		}
	}
	parts := strings.SplitN(tok.AccessToken, ".", 2)
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if !strings.Contains(string(hb), `"typ":"at+jwt"`) {
		t.Errorf("header %s lacks typ at+jwt", hb)
	}

	// Introspection as a resource server with the introspect scope.
	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	got := h.introspect(rs, tok.AccessToken)
	if got["active"] != true || got["token_type"] != "DPoP" || got["client_id"] != c.id {
		t.Errorf("introspection = %v", got)
	}
	if icnf, _ := got["cnf"].(map[string]any); icnf["jkt"] != jkt {
		t.Errorf("introspection cnf = %v", got["cnf"])
	}

	// Revocation by the token's own client takes effect at once.
	r := h.postForm(nil, "/oauth2/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {c.assertion(t, h.issuer)}}, nil)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if got := h.introspect(rs, tok.AccessToken); got["active"] != false || len(got) != 1 {
		t.Errorf("after revocation introspection = %v, want only active=false", got)
	}
}

func TestIntrospectionFollowsClientStatus(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	r := h.postForm(nil, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {c.assertion(t, h.issuer+"/oauth2/token")}}, nil)
	if r.status != 200 || r.body["token_type"] != "Bearer" {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	tok := r.body["access_token"].(string)
	if h.introspect(rs, tok)["active"] != true {
		t.Fatal("fresh token inactive")
	}
	if code, b := h.adminDo("POST", "/clients/"+c.id+"/suspend", map[string]string{"reason": "test"}); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	if h.introspect(rs, tok)["active"] != false {
		t.Error("token of a suspended client is still active")
	}
	if code, b := h.adminDo("POST", "/clients/"+c.id+"/resume", nil); code != 200 {
		t.Fatalf("resume: %d %s", code, b)
	}
	if h.introspect(rs, tok)["active"] != true {
		t.Error("token inactive after resume")
	}

	// A caller without the introspect scope is refused.
	plain := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	form := url.Values{"token": {tok}, "client_id": {plain.id}, "client_assertion_type": {assertionType}, "client_assertion": {plain.assertion(t, h.issuer)}}
	if r := h.postForm(nil, "/oauth2/introspect", form, nil); r.status != 400 || r.body["error"] != "unauthorized_client" {
		t.Errorf("introspect without scope: %d %s", r.status, r.raw)
	}
	// And an unauthenticated one gets invalid_client.
	if r := h.postForm(nil, "/oauth2/introspect", url.Values{"token": {tok}}, nil); r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("introspect unauthenticated: %d %s", r.status, r.raw)
	}
}

// TestTokenEndpointRejections sends each bad request the foundation issue
// names and checks the wire answer and that the token is neither issued nor
// anything stored changed.
func TestTokenEndpointRejections(t *testing.T) {
	h := start(t, nil)
	tokenURL := h.issuer + "/oauth2/token"
	c := h.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	signer, err := dpop.NewSigner(dkey)
	if err != nil {
		t.Fatal(err)
	}
	goodProof := func() string {
		p, err := signer.Proof("POST", tokenURL, dpop.ProofOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	claims := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"iss": c.id, "sub": c.id, "aud": tokenURL, "jti": b64(randBytes(12)), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if mod != nil {
			mod(m)
		}
		return m
	}
	ckey := c.key.(*ecdsa.PrivateKey)
	assertion := func(mod func(m map[string]any)) string {
		return craftJWS(t, ckey, map[string]any{"alg": "ES256", "kid": c.kid, "typ": "JWT"}, claims(mod))
	}
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {a}}
	}
	proofClaims := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"jti": b64(randBytes(12)), "htm": "POST", "htu": tokenURL, "iat": time.Now().Unix()}
		if mod != nil {
			mod(m)
		}
		return m
	}
	proofHeader := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": ecJWK(&dkey.PublicKey)}
		if mod != nil {
			mod(m)
		}
		return m
	}
	other := newEC(t)
	replayedAssertion := assertion(nil)
	if r := h.postForm(nil, "/oauth2/token", form(replayedAssertion), map[string]string{"DPoP": goodProof()}); r.status != 200 {
		t.Fatalf("baseline issuance failed: %d %s", r.status, r.raw)
	}
	replayedProof := goodProof()
	if r := h.postForm(nil, "/oauth2/token", form(assertion(nil)), map[string]string{"DPoP": replayedProof}); r.status != 200 {
		t.Fatalf("baseline issuance failed: %d %s", r.status, r.raw)
	}
	pubJSON, _ := json.Marshal(ecJWK(&ckey.PublicKey))

	suspended := h.newKeyClient(inventory.Registration{Scope: "a"})
	h.adminDo("POST", "/clients/"+suspended.id+"/suspend", nil)
	revoked := h.newKeyClient(inventory.Registration{Scope: "a"})
	h.adminDo("POST", "/clients/"+revoked.id+"/revoke", nil)
	expired := h.newKeyClient(inventory.Registration{Scope: "a", ExpiresAt: time.Now().Add(2 * time.Second)})
	time.Sleep(2100 * time.Millisecond) // the only way to age a real registration past its expiry
	forClient := func(k clientKey) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {k.id}, "client_assertion_type": {assertionType}, "client_assertion": {k.assertion(t, tokenURL)}}
	}

	tests := []struct {
		name       string
		form       url.Values
		rawBody    string
		headers    map[string]string
		wantStatus int
		wantError  string
	}{
		{"alg none", form(b64([]byte(`{"alg":"none"}`)) + "." + b64(mustJSON(claims(nil))) + "."), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"HS256 signed with the public key", form(hs256(t, pubJSON, claims(nil))), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"expired assertion", form(assertion(func(m map[string]any) { m["exp"] = now.Add(-2 * time.Minute).Unix() })), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"not yet valid assertion", form(assertion(func(m map[string]any) { m["nbf"] = now.Add(2 * time.Minute).Unix() })), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"too long-lived assertion", form(assertion(func(m map[string]any) { m["exp"] = now.Add(time.Hour).Unix() })), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"replayed assertion jti", form(replayedAssertion), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"wrong aud", form(assertion(func(m map[string]any) { m["aud"] = "https://evil.example/token" })), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"kb-nobody"}, "client_assertion_type": {assertionType}, "client_assertion": {craftJWS(t, ckey, map[string]any{"alg": "ES256"}, claims(func(m map[string]any) { m["iss"], m["sub"] = "kb-nobody", "kb-nobody" }))}}, "", nil, 401, "invalid_client"},
		{"suspended client", forClient(suspended), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"revoked client", forClient(revoked), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"expired client", forClient(expired), "", map[string]string{"DPoP": goodProof()}, 401, "invalid_client"},
		{"no DPoP proof for a DPoP client", form(assertion(nil)), "", nil, 400, "invalid_dpop_proof"},
		{"proof for another htm", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(nil), proofClaims(func(m map[string]any) { m["htm"] = "GET" }))}, 400, "invalid_dpop_proof"},
		{"proof for another htu", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(nil), proofClaims(func(m map[string]any) { m["htu"] = "https://evil.example/oauth2/token" }))}, 400, "invalid_dpop_proof"},
		{"replayed proof", form(assertion(nil)), "", map[string]string{"DPoP": replayedProof}, 400, "invalid_dpop_proof"},
		{"proof iat far in the past", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(nil), proofClaims(func(m map[string]any) { m["iat"] = time.Now().Add(-time.Hour).Unix() }))}, 400, "invalid_dpop_proof"},
		{"proof iat in the future", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(nil), proofClaims(func(m map[string]any) { m["iat"] = time.Now().Add(time.Hour).Unix() }))}, 400, "invalid_dpop_proof"},
		{"proof signed by another key than its jwk", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, other, proofHeader(nil), proofClaims(nil))}, 400, "invalid_dpop_proof"},
		{"proof jwk with private members", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(func(m map[string]any) {
			j := ecJWK(&dkey.PublicKey)
			j["d"] = b64(dkey.D.FillBytes(make([]byte, 32)))
			m["jwk"] = j
		}), proofClaims(nil))}, 400, "invalid_dpop_proof"},
		{"proof with disallowed alg", form(assertion(nil)), "", map[string]string{"DPoP": craftJWS(t, dkey, proofHeader(func(m map[string]any) { m["alg"] = "HS256" }), proofClaims(nil))}, 400, "invalid_dpop_proof"},
		{"two DPoP headers", form(assertion(nil)), "", nil, 400, "invalid_dpop_proof"},
		{"scope escalation", withParam(form(assertion(nil)), "scope", "invoices:read invoices:delete"), "", map[string]string{"DPoP": goodProof()}, 400, "invalid_scope"},
		{"unregistered resource", withParam(form(assertion(nil)), "resource", "https://other.example"), "", map[string]string{"DPoP": goodProof()}, 400, "invalid_target"},
		{"unsupported grant type", withParam(form(assertion(nil)), "grant_type", "password"), "", nil, 400, "unsupported_grant_type"},
		{"missing grant type", withParam(form(assertion(nil)), "grant_type", ""), "", nil, 400, "invalid_request"},
		{"malformed form encoding", nil, "grant_type=client_credentials&client_id=%zz", nil, 400, "invalid_request"},
		{"repeated parameter", nil, "grant_type=client_credentials&grant_type=client_credentials", nil, 400, "invalid_request"},
		{"oversized body", nil, "grant_type=client_credentials&pad=" + strings.Repeat("a", 70<<10), nil, 413, "invalid_request"},
		{"basic and assertion at once", form(assertion(nil)), "", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(c.id+":x")), "DPoP": goodProof()}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.rawBody
			if tt.form != nil {
				body = tt.form.Encode()
			}
			req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			if tt.name == "two DPoP headers" {
				req.Header.Add("DPoP", goodProof())
				req.Header.Add("DPoP", goodProof())
			}
			resp, err := h.httpClient(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&got)
			if resp.StatusCode != tt.wantStatus || got["error"] != tt.wantError {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, got, tt.wantStatus, tt.wantError)
			}
			t.Logf("%d %s: %s", resp.StatusCode, got["error"], got["error_description"])
			if got["error_description"] == "" {
				t.Error("no error_description telling the caller what to fix")
			}
			if _, ok := got["access_token"]; ok {
				t.Error("token issued")
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("error response cacheable")
			}
			if strings.Contains(got["error_description"], "eyJ") {
				t.Errorf("description echoes a JWS: %q", got["error_description"])
			}
		})
	}

	t.Run("oversized header", func(t *testing.T) {
		req, _ := http.NewRequest("POST", tokenURL, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Pad", strings.Repeat("a", 64<<10))
		resp, err := h.httpClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})

	// Nothing a rejected request did may show in the admin log: only the
	// registrations and status changes this test made itself.
	code, b := h.adminDo("GET", "/events?limit=1000", nil)
	if code != 200 {
		t.Fatal(code)
	}
	var evs struct {
		Events []struct{ Action string } `json:"events"`
	}
	_ = json.Unmarshal(b, &evs)
	var actions []string
	for _, e := range evs.Events {
		actions = append(actions, e.Action)
	}
	slices.Sort(actions)
	want := []string{"client.create", "client.create", "client.create", "client.create", "client.create", "client.revoke", "client.suspend"}
	if !slices.Equal(actions, want) {
		t.Errorf("admin log actions %v, want %v", actions, want)
	}
}

func withParam(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for kk, vv := range v {
		out[kk] = vv
	}
	out.Set(k, val)
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// hs256 signs claims with HMAC-SHA256 keyed by key: the classic attack of
// using a client's public key as an HMAC secret.
func hs256(t *testing.T, key []byte, claims map[string]any) string {
	t.Helper()
	input := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(mustJSON(claims))
	return input + "." + b64(hmacSHA256(key, []byte(input)))
}
