package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Bounds and defaults of Remote, each with the reason for its size.
const (
	// MaxRemoteJWKSBytes bounds a fetched JWK Set body. A P-256 JWK is about
	// 200 bytes and an RSA-4096 one with an x5c chain a few KiB; 256 KiB is
	// room for every realistic set and stops a hostile or broken issuer from
	// making the gateway buffer without limit.
	MaxRemoteJWKSBytes = 256 << 10
	// MaxRemoteKeys bounds the keys in a fetched set. An issuer publishes its
	// current key, the next one and the retired ones still verifying: a
	// handful. More than this is a mistake or an attack.
	MaxRemoteKeys = 100
	// maxRemoteKIDBytes bounds a kid Remote will look up or refresh for:
	// longer ids come from nobody's key ring and never cause a fetch.
	maxRemoteKIDBytes = 256
	// DefaultRemoteTimeout bounds one fetch, connection and body included.
	// Requests that met an unknown kid wait for the fetch, so it is short.
	DefaultRemoteTimeout = 5 * time.Second
	// DefaultRemoteMinRefresh is how often, at most, traffic may cause a
	// fetch: an unknown kid, or a set too old to serve. A flood of tokens
	// with made-up kids costs the issuer one request per interval.
	DefaultRemoteMinRefresh = 10 * time.Second
	// DefaultRemoteMaxAge is how long a set is fresh when the issuer's
	// response carries no usable Cache-Control max-age.
	DefaultRemoteMaxAge = 5 * time.Minute
	// MinRemoteMaxAge and MaxRemoteMaxAge clamp the issuer's max-age: below
	// a minute every request would refresh, and above JWKSCacheMaxAge a key
	// retired at the issuer would linger here longer than keybound promises
	// its own verifiers (an unknown kid refreshes at once anyway).
	MinRemoteMaxAge = time.Minute
	MaxRemoteMaxAge = JWKSCacheMaxAge
	// DefaultRemoteMaxStale is how long past its max-age the last good set is
	// still served while every fetch fails. It rides out an issuer outage or
	// a bad deploy of its JWKS endpoint; beyond it keys the issuer may have
	// withdrawn are no longer trusted and every token fails closed.
	DefaultRemoteMaxStale = time.Hour
)

// ErrRemoteJWKS wraps every reason a fetched JWK Set was refused: transport,
// HTTP status, size, syntax, or private key material. The last good set, if
// any, stays in use.
var ErrRemoteJWKS = errors.New("keys: remote JWK Set refused")

// RemoteConfig is what Remote reads. URL is required; every zero field
// takes its default.
type RemoteConfig struct {
	// URL is the issuer's JWK Set (its jwks_uri, RFC 8414 section 2). It
	// must be https.
	URL string
	// RootCAs verify the issuer's TLS certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Timeout bounds one fetch. Default DefaultRemoteTimeout.
	Timeout time.Duration
	// MinRefresh is the least time between fetches caused by traffic.
	// Default DefaultRemoteMinRefresh.
	MinRefresh time.Duration
	// MaxStale is how long past max-age the last good set is served while
	// fetches fail. Default DefaultRemoteMaxStale.
	MaxStale time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives fetch failures and key set changes; nil discards them.
	Log *slog.Logger
}

// Remote is the verification keys of a token service in another process:
// its JWK Set (RFC 7517 section 5) fetched over HTTPS and cached by kid. It
// implements accesstoken.KeyLookup, so a verifier uses it as it would the
// local Ring.
//
// Only keys the access token verifier can use are kept: EC P-256 public
// keys for ES256 whose use, if given, is "sig" and whose key_ops, if given,
// include "verify". Other keys are skipped. A set carrying any private key
// member is refused whole: an issuer that publishes private keys is broken,
// and its keys are not to be trusted.
//
// Freshness: a set is fresh for the response's Cache-Control max-age,
// clamped to [MinRemoteMaxAge, MaxRemoteMaxAge] (DefaultRemoteMaxAge when
// absent). A lookup in a set past its max-age is answered from it and
// starts a background refresh. An unknown kid refreshes at once, so a key
// the issuer rotates in is picked up without a restart; such refreshes
// happen at most once per MinRefresh, and lookups that arrive while a fetch
// is running wait for that same fetch. A kid still unknown afterwards is
// refused. When fetches fail, the last good set is served for MaxStale past
// its max-age; after that, and before the first successful fetch, every
// lookup fails closed.
//
// Build it with NewRemote. It is safe for concurrent use. PublicKey takes
// no context (accesstoken.KeyLookup has none): on an unknown kid it may
// block for up to Timeout.
type Remote struct {
	cfg    RemoteConfig
	client *http.Client

	set atomic.Pointer[remoteSet]

	mu          sync.Mutex // guards the fields below
	flight      *remoteFetch
	lastAttempt time.Time // start of the last fetch, for any reason
	lastMiss    time.Time // start of the last fetch caused by a lookup that failed

	fetches  atomic.Uint64
	failures atomic.Uint64
}

// remoteSet is one immutable fetched key set.
type remoteSet struct {
	keys      map[string]*ecdsa.PublicKey
	fetchedAt time.Time
	staleAt   time.Time // fetchedAt + max-age: refresh in the background
	expiresAt time.Time // staleAt + MaxStale: no longer served
}

func (s *remoteSet) usable(now time.Time) bool { return s != nil && now.Before(s.expiresAt) }

// remoteFetch is one fetch in progress; err is set before done is closed.
type remoteFetch struct {
	done chan struct{}
	err  error
}

// Log attribute keys.
const (
	attrURL   = "jwks_url"
	attrError = "error"
	attrKeys  = "keys"
	attrAge   = "age"
	attrKID   = "kid"
)

// NewRemote checks cfg and returns a Remote with no keys yet: call Refresh
// to fetch them before serving, or let the first lookup do it.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("keys: remote JWK Set URL must be an https URL with no user info or fragment, not %q", cfg.URL)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRemoteTimeout
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = DefaultRemoteMinRefresh
	}
	if cfg.MaxStale == 0 {
		cfg.MaxStale = DefaultRemoteMaxStale
	}
	if cfg.Timeout < 0 || cfg.MinRefresh < 0 || cfg.MaxStale < 0 {
		return nil, errors.New("keys: remote Timeout, MinRefresh and MaxStale must not be negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}
	client := &http.Client{
		Transport: tr,
		// A redirect may not leave https, and a short chain only.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s refused: the JWK Set must come over https", req.URL.Redacted())
			}
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		},
	}
	return &Remote{cfg: cfg, client: client}, nil
}

// PublicKey returns the ES256 public key the issuer publishes under kid. It
// implements accesstoken.KeyLookup; see Remote for when it fetches and how
// long it may block.
func (r *Remote) PublicKey(kid string) (crypto.PublicKey, string, bool) {
	if kid == "" || len(kid) > maxRemoteKIDBytes {
		return nil, "", false
	}
	now := r.cfg.Now()
	s := r.set.Load()
	if s.usable(now) {
		if k, ok := s.keys[kid]; ok {
			if !now.Before(s.staleAt) {
				r.refreshInBackground(now)
			}
			return k, AlgES256, true
		}
	}
	// Unknown kid, or no set fit to serve: one fetch, shared and rate-limited.
	f := r.fetchOnMiss(now)
	if f == nil {
		return nil, "", false
	}
	<-f.done
	s = r.set.Load()
	if s.usable(r.cfg.Now()) {
		if k, ok := s.keys[kid]; ok {
			return k, AlgES256, true
		}
	}
	return nil, "", false
}

// Refresh fetches the set now, or waits for the fetch already running, and
// returns its error. The last good set stays in use when it fails. Use it at
// start; lookups refresh by themselves afterwards. ctx bounds the wait, not
// the fetch, which other callers may share.
func (r *Remote) Refresh(ctx context.Context) error {
	r.mu.Lock()
	f := r.flight
	if f == nil {
		f = r.startLocked(r.cfg.Now(), false)
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("keys: waiting for the remote JWK Set: %w", ctx.Err())
	}
}

// RemoteStats is a snapshot of a Remote's counters, for metrics.
type RemoteStats struct {
	// Fetches counts fetch attempts; Failures those refused or failed.
	Fetches, Failures uint64
	// Keys is the number of usable keys in the current set (0 before the
	// first successful fetch); FetchedAt is when that set was fetched.
	Keys      int
	FetchedAt time.Time
}

// Stats returns the counters.
func (r *Remote) Stats() RemoteStats {
	st := RemoteStats{Fetches: r.fetches.Load(), Failures: r.failures.Load()}
	if s := r.set.Load(); s != nil {
		st.Keys, st.FetchedAt = len(s.keys), s.fetchedAt
	}
	return st
}

// refreshInBackground starts a fetch for a set past its max-age unless one
// is running or one started less than MinRefresh ago.
func (r *Remote) refreshInBackground(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flight == nil && now.Sub(r.lastAttempt) >= r.cfg.MinRefresh {
		r.startLocked(now, false)
	}
}

// fetchOnMiss returns the fetch a failed lookup should wait for: the one
// running, or a new one if the last fetch caused by a failed lookup started
// at least MinRefresh ago; nil when rate-limited.
func (r *Remote) fetchOnMiss(now time.Time) *remoteFetch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flight != nil {
		return r.flight
	}
	if !r.lastMiss.IsZero() && now.Sub(r.lastMiss) < r.cfg.MinRefresh {
		return nil
	}
	return r.startLocked(now, true)
}

// startLocked starts a fetch in its own goroutine, bounded by Timeout and
// not by any caller's context: waiters share it. The caller holds r.mu.
func (r *Remote) startLocked(now time.Time, miss bool) *remoteFetch {
	f := &remoteFetch{done: make(chan struct{})}
	r.flight = f
	r.lastAttempt = now
	if miss {
		r.lastMiss = now
	}
	r.fetches.Add(1)
	go r.run(f)
	return f
}

func (r *Remote) run(f *remoteFetch) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	next, err := r.fetch(ctx)
	prev := r.set.Load()
	r.mu.Lock()
	if err == nil {
		r.set.Store(next)
	}
	r.flight = nil
	r.mu.Unlock()
	if err != nil {
		r.failures.Add(1)
		attrs := []any{attrURL, r.cfg.URL, attrError, err}
		if prev != nil {
			now := r.cfg.Now()
			attrs = append(attrs, attrAge, now.Sub(prev.fetchedAt).Round(time.Second).String())
			if prev.usable(now) {
				r.cfg.Log.Warn("issuer JWK Set fetch failed; serving the last good set", attrs...)
			} else {
				r.cfg.Log.Error("issuer JWK Set fetch failed and the last good set is too old to serve; tokens are refused", attrs...)
			}
		} else {
			r.cfg.Log.Error("issuer JWK Set fetch failed; no keys yet, tokens are refused", attrs...)
		}
	} else if prev == nil || !sameKIDs(prev.keys, next.keys) {
		r.cfg.Log.Info("issuer JWK Set loaded", attrURL, r.cfg.URL, attrKeys, sortedKIDs(next.keys))
	}
	f.err = err
	close(f.done)
}

// fetch GETs and parses the set.
func (r *Remote) fetch(ctx context.Context) (*remoteSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRemoteJWKS, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRemoteJWKS, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%w: HTTP status %d", ErrRemoteJWKS, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxRemoteJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", ErrRemoteJWKS, err)
	}
	if len(body) > MaxRemoteJWKSBytes {
		return nil, fmt.Errorf("%w: body is over %d bytes", ErrRemoteJWKS, MaxRemoteJWKSBytes)
	}
	keys, skipped, err := parseRemoteJWKS(body)
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		r.cfg.Log.Debug("issuer JWK skipped", attrURL, r.cfg.URL, attrKID, s.kid, attrError, s.why)
	}
	now := r.cfg.Now()
	s := &remoteSet{keys: keys, fetchedAt: now, staleAt: now.Add(maxAge(resp.Header))}
	s.expiresAt = s.staleAt.Add(r.cfg.MaxStale)
	if len(keys) == 0 {
		r.cfg.Log.Warn("issuer JWK Set holds no ES256 signing key; every token is refused", attrURL, r.cfg.URL)
	}
	return s, nil
}

// privateMembers are the JWK members that carry private or symmetric key
// material (RFC 7518 sections 6.2.2, 6.3.2 and 6.4; RFC 8037 section 2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// skippedKey says why a key of the set is not used.
type skippedKey struct{ kid, why string }

// parseRemoteJWKS parses a JWK Set and returns its usable keys by kid.
// Unusable keys are skipped (RFC 7517 section 5 says to ignore what is not
// understood); private key material anywhere refuses the whole set.
func parseRemoteJWKS(body []byte) (map[string]*ecdsa.PublicKey, []skippedKey, error) {
	var set struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("%w: not a JWK Set: %v", ErrRemoteJWKS, err)
	}
	if set.Keys == nil {
		return nil, nil, fmt.Errorf("%w: no \"keys\" member (RFC 7517 section 5)", ErrRemoteJWKS)
	}
	if n := len(*set.Keys); n > MaxRemoteKeys {
		return nil, nil, fmt.Errorf("%w: %d keys, over the %d accepted", ErrRemoteJWKS, n, MaxRemoteKeys)
	}
	keys := make(map[string]*ecdsa.PublicKey)
	dup := make(map[string]bool)
	var skipped []skippedKey
	for i, raw := range *set.Keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return nil, nil, fmt.Errorf("%w: key %d is not a JSON object", ErrRemoteJWKS, i)
		}
		for _, m := range privateMembers {
			if _, ok := members[m]; ok {
				return nil, nil, fmt.Errorf("%w: key %d carries the private member %q; a JWK Set must hold public keys only", ErrRemoteJWKS, i, m)
			}
		}
		var meta struct {
			Kty    string   `json:"kty"`
			Crv    string   `json:"crv"`
			Kid    string   `json:"kid"`
			Alg    string   `json:"alg"`
			Use    string   `json:"use"`
			KeyOps []string `json:"key_ops"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			skipped = append(skipped, skippedKey{fmt.Sprintf("#%d", i), "members of the wrong JSON type"})
			continue
		}
		why := ""
		switch {
		case meta.Kid == "" || len(meta.Kid) > maxRemoteKIDBytes:
			why = "no kid, or one over 256 bytes: tokens name their key by kid"
		case meta.Use != "" && meta.Use != "sig":
			why = fmt.Sprintf("use is %q, not sig", meta.Use)
		case meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "verify"):
			why = "key_ops does not include verify"
		case meta.Alg != "" && meta.Alg != AlgES256:
			why = fmt.Sprintf("alg %q is not %s, the only algorithm access tokens are verified with", meta.Alg, AlgES256)
		case meta.Kty != "EC" || meta.Crv != "P-256":
			why = fmt.Sprintf("kty %q crv %q is not an EC P-256 key", meta.Kty, meta.Crv)
		}
		if why != "" {
			skipped = append(skipped, skippedKey{meta.Kid, why})
			continue
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			skipped = append(skipped, skippedKey{meta.Kid, err.Error()})
			continue
		}
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			skipped = append(skipped, skippedKey{meta.Kid, "not an EC P-256 public key"})
			continue
		}
		if dup[meta.Kid] {
			continue
		}
		if _, seen := keys[meta.Kid]; seen {
			// Two keys under one kid: which one signed is ambiguous, so neither is used.
			delete(keys, meta.Kid)
			dup[meta.Kid] = true
			skipped = append(skipped, skippedKey{meta.Kid, "kid is used by more than one key"})
			continue
		}
		keys[meta.Kid] = pub
	}
	return keys, skipped, nil
}

// maxAge reads Cache-Control max-age (RFC 9111 section 5.2.2.1), clamped to
// [MinRemoteMaxAge, MaxRemoteMaxAge]; no-store and no-cache mean the
// minimum, absence or nonsense the default.
func maxAge(h http.Header) time.Duration {
	d := DefaultRemoteMaxAge
	for _, v := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return MinRemoteMaxAge
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err == nil && n >= 0 {
					d = time.Duration(min(n, int64(MaxRemoteMaxAge/time.Second))) * time.Second
				}
			}
		}
	}
	return min(max(d, MinRemoteMaxAge), MaxRemoteMaxAge)
}

func sortedKIDs(m map[string]*ecdsa.PublicKey) []string {
	kids := make([]string, 0, len(m))
	for k := range m {
		kids = append(kids, k)
	}
	slices.Sort(kids)
	return kids
}

func sameKIDs(a, b map[string]*ecdsa.PublicKey) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ka := range a {
		if kb, ok := b[k]; !ok || !ka.Equal(kb) {
			return false
		}
	}
	return true
}
