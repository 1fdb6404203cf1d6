package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
)

// TestTokenNonceRetryWithSameAssertion is RFC 9449 section 8 as a client
// meets it: with server nonces required, the first token request is
// refused use_dpop_nonce, and the retry with the same client assertion and
// a proof carrying the nonce gets the token. The assertion is spent by
// that success, so a third use is a replay.
func TestTokenNonceRetryWithSameAssertion(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Tokens.DPoP.RequireNonce = true })
	tokenURL := h.issuer + "/oauth2/token"
	c := h.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	signer, err := dpop.NewSigner(newEC(t))
	if err != nil {
		t.Fatal(err)
	}
	proof := func(nonce string) string {
		p, err := signer.Proof("POST", tokenURL, dpop.ProofOptions{Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {c.assertion(t, tokenURL)}}

	r := h.postForm(nil, "/oauth2/token", form, map[string]string{"DPoP": proof("")})
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != 400 || r.body["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("proof without nonce: %d %s, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", r.status, r.raw, nonce)
	}
	r = h.postForm(nil, "/oauth2/token", form, map[string]string{"DPoP": proof(nonce)})
	if r.status != 200 || r.body["token_type"] != "DPoP" {
		t.Fatalf("retry with the nonce and the same assertion: %d %s, want 200", r.status, r.raw)
	}
	r = h.postForm(nil, "/oauth2/token", form, map[string]string{"DPoP": proof(nonce)})
	if r.status != 401 || r.body["error"] != "invalid_client" || !strings.Contains(r.raw, "already used") {
		t.Fatalf("third use of the assertion: %d %s, want 401 invalid_client (replay)", r.status, r.raw)
	}
	// A spent assertion is refused as a replay before anything else is
	// answered: asking for a scope the client lacks tells the replayer
	// nothing about what it holds.
	form.Set("scope", "payroll:admin")
	r = h.postForm(nil, "/oauth2/token", form, map[string]string{"DPoP": proof(nonce)})
	if r.status != 401 || r.body["error"] != "invalid_client" || strings.Contains(r.raw, "payroll") {
		t.Fatalf("spent assertion with a scope the client lacks: %d %s, want 401 invalid_client (replay)", r.status, r.raw)
	}
}

// TestTokenErrorDescriptionCharset checks the wire: error_description holds
// only RFC 6749 section 5.2's characters when the request carries a double
// quote, a backslash or non-ASCII to be quoted back.
func TestTokenErrorDescriptionCharset(t *testing.T) {
	h := start(t, nil)
	for _, gt := range []string{`a"b`, `a\b`, "a\u00e9\u65e5b"} {
		r := h.postForm(nil, "/oauth2/token", url.Values{"grant_type": {gt}}, nil)
		desc, _ := r.body["error_description"].(string)
		if r.status != 400 || r.body["error"] != "unsupported_grant_type" || desc == "" {
			t.Fatalf("grant_type %q: %d %s", gt, r.status, r.raw)
		}
		for i := 0; i < len(desc); i++ {
			if c := desc[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("grant_type %q: error_description %q has byte %#x, outside RFC 6749 section 5.2", gt, desc, c)
			}
		}
		if !strings.Contains(desc, "grant_type 'a?") {
			t.Errorf("grant_type %q: error_description %q does not quote the value readably", gt, desc)
		}
	}
}

// TestRevokedTokenRefusedThroughLeeway: the admin API, like every keybound
// resource server, accepts a token for 30 s of clock skew past its exp, so a
// revoked token must stay refused through that leeway. Before the fix the
// revocation was forgotten at exp and the revoked token was accepted again.
// A real clock is the only one the app has: the token lives the 10 s
// minimum, and the test waits past its exp.
func TestRevokedTokenRefusedThroughLeeway(t *testing.T) {
	h := start(t, nil)
	c := h.newKeyClient(inventory.Registration{Scope: "invoices:read", AllowBearer: true, AccessTokenLifetime: 10})
	rs := h.newKeyClient(inventory.Registration{Scope: "keybound:introspect", AllowBearer: true})
	r := h.postForm(nil, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {c.assertion(t, h.issuer+"/oauth2/token")}}, nil)
	if r.status != 200 || r.body["token_type"] != "Bearer" {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	tok := r.body["access_token"].(string)
	exp := time.Unix(int64(decodeClaims(t, tok)["exp"].(float64)), 0)
	adminCall := func() httpResult {
		return h.do(nil, "GET", adminapi.Prefix+"/clients", "", nil, map[string]string{"Authorization": "Bearer " + tok})
	}
	// Not revoked, the token authenticates and lacks only the admin scope.
	if got := adminCall(); got.status != http.StatusForbidden {
		t.Fatalf("admin call with a live token: %d %s, want 403", got.status, got.body)
	}
	r = h.postForm(nil, "/oauth2/revoke", url.Values{"token": {tok}, "client_id": {c.id}, "client_assertion_type": {assertionType}, "client_assertion": {c.assertion(t, h.issuer)}}, nil)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}

	// Past exp, well inside the 30 s leeway, and past the revocation
	// view's one-second sync that dropped the revocation before.
	time.Sleep(time.Until(exp.Add(3 * time.Second)))
	got := adminCall()
	if got.status != http.StatusUnauthorized || !strings.Contains(got.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("admin call with the revoked token %s after exp: %d %s (WWW-Authenticate %q), want 401 invalid_token",
			time.Since(exp).Round(time.Second), got.status, got.body, got.header.Get("WWW-Authenticate"))
	}
	if in := h.introspect(rs, tok); in["active"] != false {
		t.Errorf("introspection after exp = %v, want active false", in)
	}
}
