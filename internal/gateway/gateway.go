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
	"fmt"
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

// Identity headers the gateway sets for the upstream. Any header the
// caller sent whose name starts with this prefix, compared as CGI, WSGI and
// Rack upstreams compare names (case-insensitively, '_' read as '-'), is
// removed first, so upstreams can trust them.
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

// Audit and metric reasons the gateway adds to the checkers' codes. They
// are constants, so the reason label of the metrics stays bounded.
const (
	// reasonAborted is a request whose response was cut off: the client
	// went away or the upstream body broke while it was being copied.
	reasonAborted = "aborted"
	// reasonInvalidMethod is a method with lower-case letters, refused
	// before matching (see decide).
	reasonInvalidMethod = "invalid_method"
	// reasonUpstreamError is an allowed request answered 502 to 504.
	reasonUpstreamError = "upstream_error"
	// reasonAmbiguousPath is a path refused by route.ErrAmbiguousPath.
	reasonAmbiguousPath = "ambiguous_path"
)

// maxEchoedMethod bounds how much of a refused method a problem repeats.
const maxEchoedMethod = 32

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
	// certHeader is ForwardedCertHeader folded (see foldedEqual).
	certHeader string
	routes     atomic.Pointer[routeSet]
	check      Checker
	limiter    Limiter
	audit      Auditor
	metrics    *Metrics
	log        *slog.Logger
	proxy      *httputil.ReverseProxy
	forwarded  forwardedCerts
	tunnels    tunnels
	now        func() time.Time
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
	g.certHeader = foldHeader(cfg.ForwardedCertHeader)
	g.SetRoutes(table)
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

// routeSet is a route table with what rewrite derives from it, computed
// once per table rather than once per request.
type routeSet struct {
	table *route.Table
	// keyHeaders are the static-key header names of every route that
	// accepts static keys, folded (see foldHeader). They are removed on
	// every route: a legacy secret sent to a route that does not take it
	// must not reach that route's upstream either.
	keyHeaders []string
}

func newRouteSet(t *route.Table) *routeSet {
	rs := &routeSet{table: t}
	for _, r := range t.Routes() {
		if r.AllowStaticKeys {
			if h := foldHeader(r.StaticKeyHeader); !slices.Contains(rs.keyHeaders, h) {
				rs.keyHeaders = append(rs.keyHeaders, h)
			}
		}
	}
	return rs
}

// SetRoutes swaps in a new, fully compiled route table. In-flight requests
// finish with the table they started with.
func (g *Gateway) SetRoutes(t *route.Table) { g.routes.Store(newRouteSet(t)) }

// Routes returns the current table.
func (g *Gateway) Routes() *route.Table { return g.routes.Load().table }

// ctxKey carries the decision from ServeHTTP into rewrite.
type ctxKey struct{}

// decision is what the checks established about an allowed request.
type decision struct {
	route  *route.Route
	caller *protect.Caller
	// routes is the table the request was matched in, so rewrite strips
	// the static-key headers of that same table.
	routes *routeSet
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
	cw := &web.StatusWriter{ResponseWriter: w}
	// tunnelDone deregisters a WebSocket tunnel, after its event is
	// recorded: CloseTunnels waits for it to mean "audited".
	var tunnelDone func()
	defer func() {
		// httputil.ReverseProxy panics with http.ErrAbortHandler when
		// copying the response body fails (the client went away, the
		// upstream body broke). The request was decided and partly
		// answered, so it still gets its one audit event and its metric;
		// the panic then goes on, so net/http drops the connection and the
		// client sees a cut-off response rather than a complete one.
		if p := recover(); p != nil {
			if ev.Decision == "" {
				ev.Decision = "deny" // it panicked before reaching the upstream
			}
			ev.Reason = reasonAborted
			if cw.Status != 0 {
				ev.Status = cw.Status
			}
			g.record(&ev, cw, start)
			if tunnelDone != nil {
				tunnelDone()
			}
			panic(p)
		}
	}()
	d, dn := g.decide(r, &ev)
	if dn != nil {
		ev.Decision, ev.Reason, ev.Status = "deny", dn.reason, dn.status
		g.render(cw, r, dn)
	} else {
		ev.Decision, ev.Reason = "allow", "ok"
		ctx := withDecision(r.Context(), d)
		if isWebSocket(r.Header) {
			// ReverseProxy closes a tunnel when the request's context ends.
			// A tunnel is checked once, at the upgrade, so it ends when the
			// token it was opened with expires: a revoked or suspended
			// client's tunnel lasts at most one token lifetime, and the
			// client reconnects with a fresh token (checked again) to go
			// on. CloseTunnels ends the rest at shutdown, so that their
			// audit events are recorded before the audit trail closes.
			var cancel context.CancelFunc
			switch {
			case d.caller != nil && d.caller.Claims != nil && !d.caller.Claims.Expiry.IsZero():
				ctx, cancel = context.WithDeadline(ctx, d.caller.Claims.Expiry)
			case d.caller != nil:
				// A credential without an expiry (a static API key): the
				// tunnel is checked again at least this often.
				ctx, cancel = context.WithTimeout(ctx, maxKeyTunnel)
			default:
				ctx, cancel = context.WithCancel(ctx) // public route: no credential to outlive
			}
			tunnelDone = g.tunnels.add(cancel)
		}
		r = r.WithContext(ctx)
		g.proxy.ServeHTTP(cw, r)
		ev.Status = cw.Status
		if ev.Status >= 502 && ev.Status <= 504 {
			ev.Reason = reasonUpstreamError
		}
	}
	g.record(&ev, cw, start)
	if tunnelDone != nil {
		tunnelDone()
	}
}

// isWebSocket reports whether h asks for the one protocol switch the
// gateway tunnels.
func isWebSocket(h http.Header) bool { return strings.EqualFold(h.Get("Upgrade"), "websocket") }

// maxKeyTunnel bounds a WebSocket tunnel opened with a credential that has
// no expiry (a legacy static API key), so a revoked key's tunnel ends too.
const maxKeyTunnel = time.Hour

// record completes ev with what was written and hands it to the audit trail
// and the metrics.
func (g *Gateway) record(ev *store.AuditEvent, cw *web.StatusWriter, start time.Time) {
	ev.BytesOut = cw.Bytes
	ev.LatencyMicros = g.now().Sub(start).Microseconds()
	if !g.audit.Record(*ev) && g.cfg.FailClosed {
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
	// Methods are case-sensitive and routes match them exactly, so
	// "delete" would fall to a route's "*" scopes while an upstream that
	// upper-cases methods runs it as DELETE. No standard method has
	// lower-case letters; refuse rather than guess.
	if strings.ContainsFunc(r.Method, func(c rune) bool { return 'a' <= c && c <= 'z' }) {
		return nil, &deny{status: http.StatusBadRequest, reason: reasonInvalidMethod,
			detail: "the method " + strconv.Quote(truncate(r.Method, maxEchoedMethod)) + " has lower-case letters; HTTP methods are case-sensitive and this gateway accepts them in upper case only (GET, POST, DELETE, ...)"}
	}
	routes := g.routes.Load()
	m, err := routes.table.Match(r.Host, r.Method, r.URL.EscapedPath())
	if err != nil {
		var mna *route.MatchError
		if errors.Is(err, route.ErrMethodNotAllowed) && errors.As(err, &mna) {
			return nil, &deny{status: http.StatusMethodNotAllowed, reason: "method_not_allowed", detail: "this route does not accept " + r.Method, allow: mna.Allowed}
		}
		if errors.Is(err, route.ErrAmbiguousPath) {
			return nil, &deny{status: http.StatusBadRequest, reason: reasonAmbiguousPath,
				detail: "this path reads as the path of a route with a stricter policy once letter case, ';' parameters, an encoded '/' or '\\', or a trailing '/' are ignored, as some upstreams read paths; send the exact path of the route you mean"}
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
		return &decision{route: rt, routes: routes}, nil
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
	if caller != nil && caller.Claims != nil && !caller.Claims.Expiry.IsZero() && !caller.Claims.Expiry.After(g.now()) &&
		isWebSocket(r.Header) {
		// Accepted within the verifier's clock-skew leeway, but a tunnel
		// lives until the token's exp, which has passed: it would be cut
		// before it opened, and the client blamed on the upstream.
		return nil, g.tokenDeny(caller, http.StatusUnauthorized, oauth.CodeInvalidToken, "this token has expired; a WebSocket tunnel lasts until its token expires, so open it with a fresh token")
	}
	return &decision{route: rt, caller: caller, routes: routes}, nil
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
// by the gateway only, credentials and forwarded-cert header removed, and
// no protocol switch other than WebSocket.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	d := decisionFrom(pr.In.Context())
	pr.SetURL(d.route.Upstream)
	pr.SetXForwarded()
	h := pr.Out.Header
	for k := range h {
		if g.stripped(k, d.routes) {
			delete(h, k)
		}
	}
	h.Del("Authorization")
	h.Del("DPoP")
	// ReverseProxy forwards any Upgrade token. Only WebSocket is tunnelled:
	// anything else (h2c above all) would open a channel to a lenient
	// upstream that no later request passes the gateway's checks on. The
	// request goes on as a plain one, which RFC 9110 section 7.8 lets a
	// server do by ignoring Upgrade; ReverseProxy then refuses (502) a 101
	// the upstream sends anyway, since none was asked for.
	if h.Get("Upgrade") != "" && !isWebSocket(h) {
		h.Del("Upgrade")
		h.Del("Connection") // ReverseProxy set it to "Upgrade" alone
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

// stripped reports whether the caller's header k must not reach the
// upstream: an identity header (the gateway sets its own), the forwarded
// certificate header, any route's static-key header (a credential for the
// gateway, not the upstream) or HTTP2-Settings (an h2c upgrade's, which is
// never forwarded). Names are compared folded, because CGI, WSGI and Rack
// upstreams read X_Keybound_Client_Id as X-Keybound-Client-Id; Go keeps
// them apart and would forward the first.
func (g *Gateway) stripped(k string, rs *routeSet) bool {
	if foldedHasPrefix(k, "x-keybound-") || foldedEqual(k, "http2-settings") {
		return true
	}
	// ReverseProxy drops the caller's X-Forwarded-* and Forwarded and sets
	// its own, but an underscore spelling (X_Forwarded_For) survives and
	// would stand in for the client address at a CGI-style upstream.
	if strings.IndexByte(k, '_') >= 0 && (foldedHasPrefix(k, "x-forwarded-") || foldedEqual(k, "forwarded")) {
		return true
	}
	if g.certHeader != "" && foldedEqual(k, g.certHeader) {
		return true
	}
	for _, kh := range rs.keyHeaders {
		if foldedEqual(k, kh) {
			return true
		}
	}
	return false
}

// foldHeader is a header name as CGI-style upstreams see it: ASCII lower
// case with '_' read as '-'.
func foldHeader(k string) string {
	b := []byte(k)
	for i, c := range b {
		b[i] = foldByte(c)
	}
	return string(b)
}

func foldByte(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	}
	return c
}

// foldedHasPrefix reports whether k, folded, starts with prefix (already
// folded), without allocating: it runs for every header of every request.
func foldedHasPrefix(k, prefix string) bool {
	if len(k) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldByte(k[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// foldedEqual reports whether k, folded, is name (already folded).
func foldedEqual(k, name string) bool {
	return len(k) == len(name) && foldedHasPrefix(k, name)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// tunnels tracks the WebSocket requests being served, so CloseTunnels can
// end them: http.Server.Shutdown does not wait for hijacked connections.
type tunnels struct {
	mu     sync.Mutex
	next   uint64
	open   map[uint64]context.CancelFunc
	closed bool
	idle   chan struct{} // closed when open empties after closing began
}

// add registers a tunnel's cancel; the returned func deregisters it (and
// cancels, releasing the context). A tunnel added after CloseTunnels began
// is cancelled at once.
func (t *tunnels) add(cancel context.CancelFunc) func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		cancel()
	}
	if t.open == nil {
		t.open = map[uint64]context.CancelFunc{}
	}
	id := t.next
	t.next++
	t.open[id] = cancel
	return func() {
		cancel()
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.open, id)
		if t.closed && len(t.open) == 0 && t.idle != nil {
			close(t.idle)
			t.idle = nil
		}
	}
}

// CloseTunnels ends every WebSocket tunnel and waits, until ctx is done,
// for their requests to finish, each with its audit event recorded. Call it
// after the listener's Shutdown and before closing the audit writer.
func (g *Gateway) CloseTunnels(ctx context.Context) error {
	t := &g.tunnels
	t.mu.Lock()
	t.closed = true
	for _, cancel := range t.open {
		cancel()
	}
	if len(t.open) == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gateway: tunnels still open at shutdown: %w", ctx.Err())
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
