package sdk

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config describes one machine client of a keybound token service: where to
// get tokens, how to authenticate, and what to ask for. The zero value is not
// usable: TokenURL and ClientID are required. A Config is read once, when
// TokenSource or Client is called; changing it afterwards has no effect on
// sources already made.
type Config struct {
	// TokenURL is the token endpoint. It must be https, except on a loopback
	// host, because every request carries a client credential.
	TokenURL string
	// ClientID is the registered client_id.
	ClientID string
	// Key signs private_key_jwt client assertions (RFC 7523). Leave it nil to
	// authenticate with the TLS client certificate in HTTPClient
	// (tls_client_auth, RFC 8705).
	Key crypto.Signer
	// KeyID is the kid header of each assertion. Empty means the RFC 7638
	// thumbprint of Key, which is the kid PublicJWKS registers by default.
	KeyID string
	// Scopes are requested with the space-joined scope parameter.
	Scopes []string
	// Resources are RFC 8707 resource indicators, one resource parameter each.
	Resources []string
	// DPoP requests DPoP-bound tokens (RFC 9449). A TokenSource then refuses
	// a Bearer token from the server rather than silently downgrading.
	DPoP bool
	// DPoPKey signs DPoP proofs. Nil means a fresh in-memory P-256 key made
	// once per TokenSource; it is never the assertion Key, so a stolen token
	// and a stolen assertion key do not help each other.
	DPoPKey crypto.Signer
	// HTTPClient sends token requests and is the base of Client's transport.
	// It carries the TLS configuration: RootCAs for a private CA and, for
	// tls_client_auth, the client certificate. Nil means a client with a
	// 30-second timeout over http.DefaultTransport. Token requests never
	// follow redirects, whatever its CheckRedirect says.
	HTTPClient *http.Client
	// Audience is the aud of each client assertion. Empty means TokenURL.
	Audience string
	// Now returns the current time; nil means time.Now. Tests inject it.
	Now func() time.Time
}

// String describes c without its keys, so that printing or logging a Config
// never leaks a private key.
func (c Config) String() string {
	return fmt.Sprintf("sdk.Config{TokenURL:%q ClientID:%q Key:%s KeyID:%q Scopes:%q Resources:%q DPoP:%t DPoPKey:%s Audience:%q}",
		c.TokenURL, c.ClientID, redactKey(c.Key), c.KeyID, c.Scopes, c.Resources, c.DPoP, redactKey(c.DPoPKey), c.Audience)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue logs c without its keys (log/slog.LogValuer).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

func redactKey(k crypto.Signer) string {
	if k == nil {
		return "nil"
	}
	return fmt.Sprintf("%T(redacted)", k)
}

// TokenSource returns a caching, concurrency-safe source of access tokens for
// c. ctx is used for token requests made through Token, which cannot take a
// context because oauth2.TokenSource has none; TokenContext and Transport use
// their own. A Config that is not valid yields a source whose every call
// returns the validation error.
func (c *Config) TokenSource(ctx context.Context) *TokenSource {
	return newTokenSource(ctx, c)
}

// Client returns an *http.Client that adds access tokens (and DPoP proofs when
// c.DPoP) to every request through a Transport. It keeps c.HTTPClient's
// transport (for its TLS configuration) and timeout. It does not follow a
// redirect to another origin, since the token would follow it; the 3xx
// response is returned instead.
func (c *Config) Client(ctx context.Context) *http.Client {
	var base http.RoundTripper
	var timeout time.Duration
	if c.HTTPClient != nil {
		base, timeout = c.HTTPClient.Transport, c.HTTPClient.Timeout
	}
	return &http.Client{
		Transport:     &Transport{Source: c.TokenSource(ctx), Base: base},
		Timeout:       timeout,
		CheckRedirect: sameOriginRedirect,
	}
}

// sameOriginRedirect follows at most 10 redirects, all within the origin of
// the first request.
func sameOriginRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("keybound: stopped after 10 redirects")
	}
	if origin(req.URL) != origin(via[0].URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// noRedirect follows no redirect: the 3xx response is returned. Requests
// that carry a credential bound to their URL (a client assertion, a DPoP
// proof, a CSR for the workload API) use it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// validate checks c and returns the parsed token URL.
func (c *Config) validate() (*url.URL, error) {
	var problems []string
	var u *url.URL
	if c.TokenURL == "" {
		problems = append(problems, "TokenURL is empty")
	} else {
		var err error
		u, err = url.Parse(c.TokenURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			problems = append(problems, "TokenURL is not an absolute http(s) URL")
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			problems = append(problems, "TokenURL must use https unless its host is loopback")
		case u.User != nil || u.Fragment != "":
			problems = append(problems, "TokenURL must not have user info or a fragment")
		}
	}
	if c.ClientID == "" {
		problems = append(problems, "ClientID is empty")
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			problems = append(problems, fmt.Sprintf("Scopes[%d] is empty or has a space, quote or backslash", i))
		}
	}
	for i, r := range c.Resources {
		ru, err := url.Parse(r)
		if err != nil || !ru.IsAbs() || ru.Fragment != "" {
			problems = append(problems, fmt.Sprintf("Resources[%d] is not an absolute URI without fragment (RFC 8707 section 2)", i))
		}
	}
	if c.Key != nil {
		if _, err := algorithmFor(c.Key.Public()); err != nil {
			problems = append(problems, "Key: "+err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("keybound: invalid config: %s", strings.Join(problems, "; "))
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// origin is scheme://host[:port] of u, lower-cased: the key for DPoP nonces
// and the boundary for redirects.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
