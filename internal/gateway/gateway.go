// Package gateway is the enforcement point in front of APIs: a reverse
// proxy that lets a request through only when the caller proves, on that
// very request, possession of the key or certificate its token is bound to,
// holds the scopes the route requires, meets the assurance floor of the
// route's data sensitivity and is within its rate limit. Every decision,
// allow or deny, is one audit event.
//
// It fails closed: no route, any doubt in a check, or (with fail_closed) an
// audit queue that cannot take the event refuses the request, and the
// upstream never sees a refused request.
package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/web"
)

// Identity headers the gateway sets for the upstream. Any header with this
// prefix that the caller sent is removed first, so upstreams can trust them.
const (
	HeaderPrefix   = "X-Keybound-"
	HeaderClientID = "X-Keybound-Client-Id"
	HeaderOwner    = "X-Keybound-Owner"
	HeaderScopes   = "X-Keybound-Scopes"
	HeaderBinding  = "X-Keybound-Binding"
	HeaderRoute    = "X-Keybound-Route"
)

// MaxForwardedCertBytes bounds a forwarded client certificate header.
const MaxForwardedCertBytes = 16 << 10

// Checker verifies a request's token and proof of possession, and builds
// the refusal, challenge included, of a caller it accepted that a later
// check turns away, so every token challenge the gateway sends has one
// shape.
type Checker interface {
	Check(r *http.Request, htu string, cert *x509.Certificate) (*protect.Caller, error)
	Refuse(caller *protect.Caller, status int, code, desc string) *oauth.Error
}

// Limiter is the per-identity rate limiter.
type Limiter interface {
	Allow(key string, rate float64, burst int) (bool, time.Duration)
}

// StaticKeys authenticates legacy static API keys on routes that opt in.
type StaticKeys interface {
	Check(ctx context.Context, key string) (*protect.Caller, error)
}

// Auditor takes one event per decision.
type Auditor interface {
	Record(ev store.AuditEvent) bool
	Accepting() bool
}

// Config is what the gateway needs besides its routes.
type Config struct {
	// ExternalURL is the base URL clients call (scheme://host[:port]); DPoP
	// htu is checked against it. Empty means the URL as this listener sees it.
	ExternalURL string
	// TrustedProxies may send the client certificate in ForwardedCertHeader.
	TrustedProxies []netip.Prefix
	// ForwardedCertHeader carries a URL-escaped PEM client certificate from
	// a trusted fronting proxy. Stripped from everyone else.
	ForwardedCertHeader string
	// FailClosed refuses traffic when the audit queue cannot take an event.
	FailClosed bool
	// UpstreamTimeout bounds waiting for upstream response headers.
	UpstreamTimeout time.Duration
	// StaticKeys checks static API keys on routes with allow_static_keys;
	// nil refuses every static key.
	StaticKeys StaticKeys
	// Realm names the gateway in the WWW-Authenticate challenge of a
	// refused static API key, as the token checker names it in its own.
	Realm string
}

// Gateway is an http.Handler. Routes are swapped atomically by SetRoutes.
type Gateway struct {
	cfg Config
	// htuBase is ExternalURL's scheme://host, the prefix of every DPoP
	// htu; empty means the URL as this listener sees it.
	htuBase string
	// keyChallenge is the WWW-Authenticate of a refused static API key.
	keyChallenge string
	routes       atomic.Pointer[route.Table]
	check        Checker
	limiter      Limiter
	audit        Auditor
	metrics      *Metrics
	log          *slog.Logger
	proxy        *httputil.ReverseProxy
	forwarded    forwardedCerts
	now          func() time.Time
}

// New builds a gateway serving table.
func New(cfg Config, table *route.Table, check Checker, limiter Limiter, audit Auditor, metrics *Metrics, transport http.RoundTripper, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, check: check, limiter: limiter, audit: audit, metrics: metrics, log: log, now: time.Now}
	if cfg.ExternalURL != "" {
		u, err := url.Parse(cfg.ExternalURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, errors.New("gateway: external_url must be scheme://host[:port] with no path")
		}
		g.htuBase = u.Scheme + "://" + u.Host
	}
	g.keyChallenge = oauth.Challenge("Bearer", cfg.Realm, nil)
	g.routes.Store(table)
	if transport == nil {
		transport = NewTransport(cfg.UpstreamTimeout)
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:      g.rewrite,
		Transport:    transport,
		ErrorHandler: g.upstreamError,
		// 0: a response of known length is written in full, in as few TLS
		// records as it takes; httputil still flushes every write of a
		// streaming response (unknown length, text/event-stream) at once.
		// -1 cost one extra write(2) per response, about 8 % of a request.
		FlushInterval: 0,
		BufferPool:    proxyBuffers{},
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return g, nil
}

// proxyBuffers recycles the reverse proxy's 32 KiB copy buffers instead
// of allocating one per response.
type proxyBuffers struct{}

var proxyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (proxyBuffers) Get() []byte  { return *proxyBufferPool.Get().(*[]byte) }
func (proxyBuffers) Put(b []byte) { proxyBufferPool.Put(&b) }

// NewTransport is the upstream transport: HTTP/1.1 and HTTP/2, bounded
// waits, connection reuse.
func NewTransport(headerTimeout time.Duration) *http.Transport {
	if headerTimeout <= 0 {
		headerTimeout = 30 * time.Second
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// SetRoutes swaps in a new, fully compiled route table. In-flight requests
// finish with the table they started with.
func (g *Gateway) SetRoutes(t *route.Table) { g.routes.Store(t) }

// Routes returns the current table.
func (g *Gateway) Routes() *route.Table { return g.routes.Load() }

// ctxKey carries the decision from ServeHTTP into rewrite.
type ctxKey struct{}

// decision is what the checks established about an allowed request.
type decision struct {
	route  *route.Route
	caller *protect.Caller
}

// deny is one refusal: the status, the OAuth error (for WWW-Authenticate)
// or problem to render, and the bounded reason code for audit and metrics.
type deny struct {
	status     int
	reason     string
	oauth      *oauth.Error
	detail     string
	retryAfter time.Duration
	allow      []string
	// challenge is a WWW-Authenticate value for refusals without an OAuth
	// error (a bad static API key).
	challenge string
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	ev := store.AuditEvent{
		Time:       start.UTC(),
		RequestID:  web.RequestID(r.Context()),
		Method:     r.Method,
		SourceAddr: r.RemoteAddr,
		BytesIn:    max(r.ContentLength, 0),
	}
	cw := &countingWriter{ResponseWriter: w}
	d, dn := g.decide(r, &ev)
	if dn != nil {
		g.render(cw, r, dn)
		ev.Decision, ev.Reason, ev.Status = "deny", dn.reason, dn.status
	} else {
		ev.Decision, ev.Reason = "allow", "ok"
		r = r.WithContext(withDecision(r.Context(), d))
		g.proxy.ServeHTTP(cw, r)
		ev.Status = cw.status
		if ev.Status >= 502 && ev.Status <= 504 {
			ev.Reason = "upstream_error"
		}
	}
	ev.BytesOut = cw.n
	ev.LatencyMicros = g.now().Sub(start).Microseconds()
	if !g.audit.Record(ev) && g.cfg.FailClosed {
		// The response is already written; the next requests are refused
		// by the Accepting check in decide.
		g.log.Error("audit event dropped under fail_closed", web.AttrRequestID, ev.RequestID)
	}
	g.metrics.observe(ev.Route, ev.Decision, ev.Reason, time.Duration(ev.LatencyMicros)*time.Microsecond)
}

// decide runs the checks in order; the first refusal wins.
func (g *Gateway) decide(r *http.Request, ev *store.AuditEvent) (*decision, *deny) {
	if g.cfg.FailClosed && !g.audit.Accepting() {
		return nil, &deny{status: http.StatusServiceUnavailable, reason: "audit_unavailable", detail: "the audit trail cannot record this request; the gateway refuses traffic rather than lose audit (fail_closed)"}
	}
	m, err := g.routes.Load().Match(r.Host, r.Method, r.URL.EscapedPath())
	if err != nil {
		var mna *route.MatchError
		if errors.Is(err, route.ErrMethodNotAllowed) && errors.As(err, &mna) {
			return nil, &deny{status: http.StatusMethodNotAllowed, reason: "method_not_allowed", detail: "this route does not accept " + r.Method, allow: mna.Allowed}
		}
		return nil, &deny{status: http.StatusNotFound, reason: "no_route", detail: "no route matches this host and path"}
	}
	rt := m.Route
	ev.Route, ev.PathTemplate, ev.ObjectID = rt.Name, m.Template, objectID(m.Params)

	hasAuthz := r.Header.Get("Authorization") != ""
	var staticKeys []string
	if rt.AllowStaticKeys {
		staticKeys = r.Header.Values(rt.StaticKeyHeader)
	}
	if rt.Sensitivity == route.Public && !hasAuthz && len(staticKeys) == 0 {
		return &decision{route: rt}, nil
	}
	var caller *protect.Caller
	if len(staticKeys) > 0 && !hasAuthz {
		var dn *deny
		if caller, dn = g.staticKey(r, rt, staticKeys, ev); dn != nil {
			return nil, dn
		}
		g.metrics.staticKey(rt.Name)
	} else {
		var err error
		caller, err = g.check.Check(r, g.htu(r), g.clientCert(r))
		if err != nil {
			oe := oauth.As(err)
			reason := oe.Code
			if reason == "" {
				reason = "missing_token"
			}
			if unusable(err, ev) {
				reason = protect.ReasonClientExpired
			}
			return nil, &deny{status: oe.Status, reason: reason, oauth: oe, detail: oe.Description}
		}
	}
	c := caller.Claims
	ev.ClientID, ev.TokenJTI, ev.Scopes, ev.CredentialType = c.ClientID, c.JTI, c.Scope, caller.Binding
	if caller.Client != nil {
		ev.Owner = caller.Client.Owner
	}
	if len(rt.Audiences) > 0 && !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(rt.Audiences, a) }) {
		return nil, g.tokenDeny(caller, http.StatusUnauthorized, oauth.CodeInvalidToken, "the token's audience is not accepted by this route; request a token with resource="+rt.Audiences[0])
	}
	if s := protect.MissingScope(caller, rt.RequiredScopes(r.Method)); s != "" {
		return nil, g.tokenDeny(caller, http.StatusForbidden, oauth.CodeInsufficientScope, protect.ScopeRefusal(caller, s, "this route needs the "+s+" scope for "+r.Method))
	}
	if dn := g.assurance(rt, caller); dn != nil {
		return nil, dn
	}
	if rt.Limit.PerSecond > 0 {
		if ok, wait := g.limiter.Allow(c.ClientID+"\x00"+rt.Name, rt.Limit.PerSecond, rt.Limit.Burst); !ok {
			return nil, &deny{status: http.StatusTooManyRequests, reason: "rate_limited", detail: "rate limit for this identity on this route exceeded; retry after the Retry-After seconds", retryAfter: wait}
		}
	}
	return &decision{route: rt, caller: caller}, nil
}

// staticKey authenticates a static API key (a legacy client secret sent as
// it is). The key is refused when sent twice or when the gateway has no
// static-key checker; the refusal never echoes the key.
func (g *Gateway) staticKey(r *http.Request, rt *route.Route, keys []string, ev *store.AuditEvent) (*protect.Caller, *deny) {
	refuse := func(detail string) *deny {
		return &deny{status: http.StatusUnauthorized, reason: "invalid_api_key", detail: detail,
			challenge: g.keyChallenge}
	}
	if len(keys) != 1 {
		return nil, refuse("send one " + rt.StaticKeyHeader + " header")
	}
	if g.cfg.StaticKeys == nil {
		return nil, refuse("this gateway does not accept static API keys")
	}
	caller, err := g.cfg.StaticKeys.Check(r.Context(), keys[0])
	if err != nil {
		dn := refuse(err.Error() + "; static API keys are a migration path, so move this caller to a DPoP or mTLS-bound token")
		if unusable(err, ev) {
			dn.reason = protect.ReasonClientExpired
		}
		return nil, dn
	}
	return caller, nil
}

// unusable records in ev which client a refused, genuine credential
// belonged to, when its client was suspended, revoked or expired, and
// reports whether the client had expired.
func unusable(err error, ev *store.AuditEvent) bool {
	var uc *protect.UnusableClient
	if !errors.As(err, &uc) {
		return false
	}
	ev.ClientID, ev.Owner = uc.ClientID, uc.Owner
	return errors.Is(uc.Err, identity.ErrExpired)
}

// assurance enforces the route's sensitivity floor: confidential and above
// need a sender-constrained token; restricted also needs a client that
// authenticated with a key or certificate, not a shared secret.
func (g *Gateway) assurance(rt *route.Route, caller *protect.Caller) *deny {
	if rt.AllowWeakerAssurance {
		return nil
	}
	if rt.Sensitivity >= route.Confidential && !caller.SenderConstrained() {
		return g.tokenDeny(caller, http.StatusForbidden, oauth.CodeInsufficientScope, "this route holds "+rt.Sensitivity.String()+" data and needs a sender-constrained token (DPoP or mTLS-bound), not a bearer token")
	}
	if rt.Sensitivity >= route.Restricted && (caller.Claims.StaticSecret || caller.Claims.AuthMethod == "client_secret_basic" || caller.Claims.AuthMethod == "client_secret_post") {
		return g.tokenDeny(caller, http.StatusForbidden, oauth.CodeInsufficientScope, "this route holds restricted data and needs a client that authenticates with a key or certificate, not a shared secret")
	}
	return nil
}

// tokenDeny refuses a caller the checker accepted, with the checker's
// challenge (realm and DPoP algs as on its own refusals).
func (g *Gateway) tokenDeny(caller *protect.Caller, status int, code, desc string) *deny {
	return &deny{status: status, reason: code, oauth: g.check.Refuse(caller, status, code, desc), detail: desc}
}

// htu is the URL the client called as it should appear in a DPoP proof.
func (g *Gateway) htu(r *http.Request) string {
	if g.htuBase != "" {
		return g.htuBase + r.URL.EscapedPath()
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// clientCert returns the connection's client certificate, or the one a
// trusted proxy forwarded.
func (g *Gateway) clientCert(r *http.Request) *x509.Certificate {
	if c := protect.PeerCertificate(r); c != nil {
		return c
	}
	if g.cfg.ForwardedCertHeader == "" || !g.trustedPeer(r) {
		return nil
	}
	v := r.Header.Get(g.cfg.ForwardedCertHeader)
	if v == "" || len(v) > MaxForwardedCertBytes {
		return nil
	}
	return g.forwarded.parse(v)
}

func (g *Gateway) trustedPeer(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// rewrite builds the outbound request: upstream URL, identity headers set
// by the gateway only, credentials and forwarded-cert header removed.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	d := decisionFrom(pr.In.Context())
	pr.SetURL(d.route.Upstream)
	pr.SetXForwarded()
	h := pr.Out.Header
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), HeaderPrefix) {
			delete(h, k)
		}
	}
	h.Del("Authorization")
	h.Del("DPoP")
	if g.cfg.ForwardedCertHeader != "" {
		h.Del(g.cfg.ForwardedCertHeader)
	}
	if d.route.AllowStaticKeys {
		// The key is a credential for the gateway, not the upstream.
		h.Del(d.route.StaticKeyHeader)
	}
	h.Set(HeaderRoute, d.route.Name)
	if c := d.caller; c != nil {
		h.Set(HeaderClientID, c.Claims.ClientID)
		h.Set(HeaderScopes, strings.Join(c.Claims.Scope, " "))
		h.Set(HeaderBinding, c.Binding)
		if c.Client != nil {
			h.Set(HeaderOwner, c.Client.Owner)
		}
	}
}

// upstreamError answers 502, or 504 when the upstream timed out.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	status, title := http.StatusBadGateway, "the upstream could not be reached or failed"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status, title = http.StatusGatewayTimeout, "the upstream did not answer in time"
	}
	g.log.Warn("upstream error", web.AttrRequestID, web.RequestID(r.Context()), web.AttrError, err.Error())
	p := problem.New(status, "upstream", http.StatusText(status), title)
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

// render writes a refusal: WWW-Authenticate for token problems, Retry-After
// for rate limits, Allow for 405, and always an RFC 9457 problem body that
// names the reason.
func (g *Gateway) render(w http.ResponseWriter, r *http.Request, d *deny) {
	if d.oauth != nil {
		oauth.SetHeaders(w.Header(), d.oauth)
	}
	if d.challenge != "" {
		w.Header().Set("WWW-Authenticate", d.challenge)
	}
	if d.retryAfter > 0 {
		secs := int64((d.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if len(d.allow) > 0 {
		w.Header().Set("Allow", strings.Join(d.allow, ", "))
	}
	p := problem.New(d.status, strings.ReplaceAll(d.reason, "_", "-"), http.StatusText(d.status), d.detail)
	if d.oauth != nil {
		p.Code = d.oauth.Code
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

// countingWriter records the status and body bytes written.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack (streaming,
// WebSocket upgrades).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// objectID is the data object a request addresses, for the audit trail: the
// path parameter named id, or else the last path parameter.
func objectID(ps route.Params) string {
	if v, ok := ps.Get("id"); ok {
		return v
	}
	if len(ps) > 0 {
		return ps[len(ps)-1].Value
	}
	return ""
}
