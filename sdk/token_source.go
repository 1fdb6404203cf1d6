package sdk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/oauth"
)

// Token types (RFC 6750, RFC 9449 section 5) as TokenSource reports them in
// oauth2.Token.TokenType.
const (
	TokenTypeBearer = "Bearer"
	TokenTypeDPoP   = "DPoP"
)

// ErrDPoPDowngrade is returned when DPoP was requested and the token endpoint
// issued a token of another type. Using it would silently drop the binding.
var ErrDPoPDowngrade = errors.New("keybound: token endpoint issued a non-DPoP token although Config.DPoP is set")

// Error is an error response from the token endpoint (RFC 6749 section 5.2).
// Code is the error code ("invalid_client", "invalid_scope", ...), empty when
// the body was not an OAuth error; Description is the server's hint about
// what to fix. Callers branch on Code with errors.As.
type Error struct {
	StatusCode  int
	Code        string
	Description string
}

// Error returns "keybound: token endpoint: <code>: <description>".
func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	if e.Description == "" {
		return "keybound: token endpoint: " + code
	}
	return "keybound: token endpoint: " + code + ": " + e.Description
}

// TokenSource fetches client_credentials access tokens, caches the current
// one and fetches the next a margin before it expires (30 seconds, or a tenth
// of its lifetime when that is shorter). It implements oauth2.TokenSource and
// is safe for concurrent use: concurrent callers share one token request.
//
// If an early refresh fails while the cached token is still valid, the cached
// token is returned and the refresh is tried again a few seconds later. A
// token response without expires_in is not cached.
//
// Make one with Config.TokenSource; the zero value is not usable.
type TokenSource struct {
	ctx     context.Context // for Token only; see Config.TokenSource
	initErr error

	tokenURL  string
	tokenOrig string // origin of tokenURL, the key of its DPoP nonce
	clientID  string
	scope     string
	resources []string
	client    *http.Client
	now       func() time.Time
	assertion *assertionSigner // nil for tls_client_auth
	dpop      *dpop.Signer     // nil unless Config.DPoP
	nonces    nonceCache

	mu        sync.Mutex
	tok       *oauth2.Token
	refreshAt time.Time
	inflight  *fetchCall
}

// fetchCall is one token request that concurrent callers wait on.
type fetchCall struct {
	done chan struct{}
	tok  *oauth2.Token
	err  error
}

func newTokenSource(ctx context.Context, c *Config) *TokenSource {
	if ctx == nil {
		ctx = context.Background()
	}
	ts := &TokenSource{ctx: ctx}
	u, err := c.validate()
	if err != nil {
		ts.initErr = err
		return ts
	}
	ts.tokenURL = c.TokenURL
	ts.tokenOrig = origin(u)
	ts.clientID = c.ClientID
	ts.scope = strings.Join(c.Scopes, " ")
	ts.resources = append([]string(nil), c.Resources...)
	ts.now = c.Now
	if ts.now == nil {
		ts.now = time.Now
	}

	// Token requests never follow redirects: the assertion and the DPoP
	// proof are bound to TokenURL and must not be sent anywhere else.
	client := &http.Client{Timeout: defaultTokenTimeout}
	if c.HTTPClient != nil {
		cp := *c.HTTPClient
		client = &cp
	}
	client.CheckRedirect = noRedirect
	ts.client = client

	if c.Key != nil {
		aud := c.Audience
		if aud == "" {
			aud = ts.tokenURL
		}
		if ts.assertion, err = newAssertionSigner(c.Key, c.KeyID, c.ClientID, aud); err != nil {
			ts.initErr = err
			return ts
		}
	}
	if c.DPoP {
		key := c.DPoPKey
		if key == nil {
			if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				ts.initErr = fmt.Errorf("keybound: generate DPoP key: %w", err)
				return ts
			}
		}
		if ts.dpop, err = dpop.NewSigner(key); err != nil {
			ts.initErr = fmt.Errorf("keybound: DPoP key: %w", err)
			return ts
		}
	}
	return ts
}

// Token returns a valid access token, fetching one if none is cached or the
// cached one is due for refresh. Token requests use the context given to
// Config.TokenSource. The returned token is a copy the caller may keep.
func (ts *TokenSource) Token() (*oauth2.Token, error) {
	return ts.TokenContext(ts.ctx)
}

// TokenContext is Token with ctx governing any token request this call makes
// or waits on.
func (ts *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if ts == nil || (ts.initErr == nil && ts.client == nil) {
		return nil, errors.New("keybound: TokenSource not made by Config.TokenSource")
	}
	if ts.initErr != nil {
		return nil, ts.initErr
	}
	for {
		ts.mu.Lock()
		now := ts.now()
		if ts.tok != nil && now.Before(ts.refreshAt) {
			t := *ts.tok
			ts.mu.Unlock()
			return &t, nil
		}
		if c := ts.inflight; c != nil {
			ts.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// The caller who made the request gave up; its cancellation
			// says nothing about ours, so try again with our context.
			if c.err != nil && ctx.Err() == nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) {
				continue
			}
			if c.err != nil {
				return nil, c.err
			}
			t := *c.tok
			return &t, nil
		}
		c := &fetchCall{done: make(chan struct{})}
		ts.inflight = c
		ts.mu.Unlock()

		tok, refreshAt, err := ts.fetchGuarded(ctx, c)

		ts.mu.Lock()
		switch {
		case err == nil:
			ts.tok, ts.refreshAt = tok, refreshAt
		case ts.tok != nil && ts.now().Before(ts.tok.Expiry):
			// The early refresh failed but the old token still works.
			tok, err = ts.tok, nil
			ts.refreshAt = minTime(ts.now().Add(refreshRetryDelay), ts.tok.Expiry)
		}
		c.tok, c.err = tok, err
		ts.inflight = nil
		ts.mu.Unlock()
		close(c.done)
		if err != nil {
			return nil, err
		}
		t := *tok
		return &t, nil
	}
}

// errFetchPanicked is what callers waiting on a fetch get when the fetch
// panicked (a Key whose Sign panics, say).
var errFetchPanicked = errors.New("keybound: the token request panicked")

// fetchGuarded is fetch, but if fetch panics it first releases the
// in-flight slot c, so waiting and later callers get an error instead of
// waiting forever on a fetch that will never finish; the panic goes on.
func (ts *TokenSource) fetchGuarded(ctx context.Context, c *fetchCall) (tok *oauth2.Token, refreshAt time.Time, err error) {
	defer func() {
		if p := recover(); p != nil {
			ts.mu.Lock()
			c.err = errFetchPanicked
			ts.inflight = nil
			ts.mu.Unlock()
			close(c.done)
			panic(p)
		}
	}()
	return ts.fetch(ctx)
}

// String describes ts without its token, so that printing or logging a
// TokenSource never leaks a credential.
func (ts *TokenSource) String() string {
	if ts == nil {
		return "sdk.TokenSource(nil)"
	}
	return fmt.Sprintf("sdk.TokenSource{client_id=%q token_url=%q dpop=%t}", ts.clientID, ts.tokenURL, ts.dpop != nil)
}

// GoString is String, for %#v.
func (ts *TokenSource) GoString() string { return ts.String() }

// LogValue logs ts without its token (log/slog.LogValuer).
func (ts *TokenSource) LogValue() slog.Value {
	if ts == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("client_id", ts.clientID), slog.String("token_url", ts.tokenURL), slog.Bool("dpop", ts.dpop != nil))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tokenResponse is the JSON body of RFC 6749 section 5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// errorResponse is the JSON body of RFC 6749 section 5.2.
type errorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// fetch requests a token. With DPoP, a use_dpop_nonce refusal that carries a
// DPoP-Nonce is retried once with that nonce (RFC 9449 section 8); a second
// refusal is returned, so a server that always wants a new nonce cannot make
// the client loop.
func (ts *TokenSource) fetch(ctx context.Context) (*oauth2.Token, time.Time, error) {
	for attempt := 0; ; attempt++ {
		resp, err := ts.post(ctx)
		if err != nil {
			return nil, time.Time{}, err
		}
		body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes+1))
		resp.Body.Close()
		if readErr != nil {
			return nil, time.Time{}, fmt.Errorf("keybound: token endpoint: read response: %w", readErr)
		}
		if len(body) > maxTokenResponseBytes {
			return nil, time.Time{}, fmt.Errorf("keybound: token endpoint: response is larger than %d bytes", maxTokenResponseBytes)
		}
		nonce := resp.Header.Get("DPoP-Nonce")
		if ts.dpop != nil && nonce != "" {
			ts.nonces.set(ts.tokenOrig, nonce)
		}
		if resp.StatusCode != http.StatusOK {
			e := parseError(resp.StatusCode, body)
			// RFC 9449 section 8 says 400; accept 401 as well, which is
			// what a server that renders use_dpop_nonce as a challenge sends.
			if ts.dpop != nil && attempt == 0 && e.Code == oauth.CodeUseDPoPNonce && nonce != "" &&
				(resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized) {
				continue
			}
			return nil, time.Time{}, e
		}
		return ts.parseToken(body)
	}
}

// post sends one token request with a fresh assertion and DPoP proof.
func (ts *TokenSource) post(ctx context.Context) (*http.Response, error) {
	now := ts.now()
	form := url.Values{}
	form.Set("grant_type", "client_credentials")
	form.Set("client_id", ts.clientID)
	if ts.scope != "" {
		form.Set("scope", ts.scope)
	}
	for _, r := range ts.resources {
		form.Add("resource", r)
	}
	if ts.assertion != nil {
		a, err := ts.assertion.sign(now)
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", jwtBearerAssertionType)
		form.Set("client_assertion", a)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("keybound: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if ts.dpop != nil {
		proof, err := ts.dpop.Proof(http.MethodPost, ts.tokenURL, dpop.ProofOptions{
			Nonce: ts.nonces.get(ts.tokenOrig),
			Now:   now,
		})
		if err != nil {
			return nil, fmt.Errorf("keybound: DPoP proof: %w", err)
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keybound: token request: %w", err)
	}
	return resp, nil
}

func parseError(status int, body []byte) *Error {
	e := &Error{StatusCode: status}
	var er errorResponse
	if json.Unmarshal(body, &er) == nil {
		e.Code, e.Description = er.Error, er.ErrorDescription
	}
	return e
}

// parseToken checks a 200 response and returns the token and when to refresh.
func (ts *TokenSource) parseToken(body []byte) (*oauth2.Token, time.Time, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, time.Time{}, errors.New("keybound: token endpoint: response is not a token response JSON object")
	}
	if tr.AccessToken == "" {
		return nil, time.Time{}, errors.New("keybound: token endpoint: response has no access_token")
	}
	var typ string
	switch {
	case strings.EqualFold(tr.TokenType, TokenTypeDPoP):
		typ = TokenTypeDPoP
	case strings.EqualFold(tr.TokenType, TokenTypeBearer):
		typ = TokenTypeBearer
	default:
		return nil, time.Time{}, fmt.Errorf("keybound: token endpoint: unsupported token_type %q", tr.TokenType)
	}
	if ts.dpop != nil && typ != TokenTypeDPoP {
		return nil, time.Time{}, ErrDPoPDowngrade
	}
	if ts.dpop == nil && typ == TokenTypeDPoP {
		return nil, time.Time{}, errors.New("keybound: token endpoint issued a DPoP token although Config.DPoP is not set")
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: typ}
	extra := map[string]any{"scope": tr.Scope}
	if tr.ExpiresIn > 0 {
		extra["expires_in"] = tr.ExpiresIn
	}
	tok = tok.WithExtra(extra)

	now := ts.now()
	if tr.ExpiresIn <= 0 {
		// Without expires_in the lifetime is unknown; do not cache.
		return tok, now, nil
	}
	lifetime := maxCachedLifetime
	if tr.ExpiresIn < int64(maxCachedLifetime/time.Second) {
		lifetime = time.Duration(tr.ExpiresIn) * time.Second
	}
	tok.Expiry = now.Add(lifetime)
	tok.ExpiresIn = tr.ExpiresIn
	return tok, tok.Expiry.Add(-min(maxRefreshMargin, lifetime/10)), nil
}
