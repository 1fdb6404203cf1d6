package gateway_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/gateway"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
)

// These tests run the gateway behind a real net/http server and in front of
// a real upstream, because the behaviours they pin (ReverseProxy's abort
// panic, 1xx forwarding, protocol switches) only happen there.

// goodToken is the one bearer token fakeChecker accepts; it holds
// fakeScopes.
const goodToken = "Bearer good"

var fakeScopes = []string{"x:read"}

// shortToken is accepted like goodToken but expires shortLife after each
// check.
const (
	// expiredToken is accepted (as within a verifier's leeway) though its
	// exp passed 5 s ago.
	expiredToken = "Bearer expired"
	shortToken   = "Bearer short"
	shortLife    = 500 * time.Millisecond
)

// fakeChecker accepts goodToken as a bearer caller and refuses anything else.
type fakeChecker struct{}

func (fakeChecker) Check(r *http.Request, _ string, _ *x509.Certificate) (*protect.Caller, error) {
	if r.Header.Get("Authorization") == expiredToken {
		return &protect.Caller{Claims: &accesstoken.Claims{ClientID: "c-1", JTI: "t-3", Scope: fakeScopes, Expiry: time.Now().Add(-5 * time.Second)}, Binding: protect.BindingBearer}, nil
	}
	if r.Header.Get("Authorization") == shortToken {
		return &protect.Caller{Claims: &accesstoken.Claims{ClientID: "c-1", JTI: "t-2", Scope: fakeScopes, Expiry: time.Now().Add(shortLife)}, Binding: protect.BindingBearer}, nil
	}
	if r.Header.Get("Authorization") != goodToken {
		return nil, oauth.New(oauth.CodeInvalidToken, "no good token")
	}
	return &protect.Caller{Claims: &accesstoken.Claims{ClientID: "c-1", JTI: "t-1", Scope: fakeScopes}, Binding: protect.BindingBearer}, nil
}

func (fakeChecker) Refuse(_ *protect.Caller, status int, code, desc string) *oauth.Error {
	e := oauth.New(code, desc)
	e.Status = status
	return e
}

// fakeKeys accepts the static key "kbs_good".
type fakeKeys struct{}

func (fakeKeys) Check(_ context.Context, key string) (*protect.Caller, error) {
	if key != "kbs_good" {
		return nil, errors.New("unknown key")
	}
	return &protect.Caller{Claims: &accesstoken.Claims{ClientID: "legacy-1", Scope: fakeScopes, StaticSecret: true}, Binding: protect.BindingStaticKey}, nil
}

// fakeAudit keeps every event.
type fakeAudit struct {
	mu     sync.Mutex
	events []store.AuditEvent
}

func (a *fakeAudit) Record(ev store.AuditEvent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return true
}

func (a *fakeAudit) Accepting() bool { return true }

func (a *fakeAudit) all() []store.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]store.AuditEvent(nil), a.events...)
}

// waitFor waits until at least n events are recorded and returns them.
func (a *fakeAudit) waitFor(t *testing.T, n int) []store.AuditEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := a.all()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d audit events recorded, want %d: %+v", len(evs), n, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seenUpstream records the requests an upstream received.
type seenUpstream struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *seenUpstream) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
}

func (s *seenUpstream) all() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// testGateway is a gateway on a real server in front of upstream.
type testGateway struct {
	*httptest.Server
	gw    *gateway.Gateway
	audit *fakeAudit
	reg   *prometheus.Registry
}

func startTestGateway(t *testing.T, cfg gateway.Config, specs []route.Spec) *testGateway {
	t.Helper()
	table, err := route.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StaticKeys == nil {
		cfg.StaticKeys = fakeKeys{}
	}
	tg := &testGateway{audit: &fakeAudit{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.DiscardHandler)
	gw, err := gateway.New(cfg, table, fakeChecker{}, nil, tg.audit, gateway.NewMetrics(tg.reg), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	tg.gw = gw
	tg.Server = httptest.NewServer(gw)
	t.Cleanup(tg.Close)
	return tg
}

// requests is the value of keybound_gateway_requests_total for reason.
func (tg *testGateway) requests(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := tg.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "keybound_gateway_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func recordingUpstream(t *testing.T, seen *seenUpstream) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r)
		_, _ = io.WriteString(w, "upstream "+r.Method+" "+r.URL.Path)
	}))
	t.Cleanup(up.Close)
	return up
}

// send makes one request with hdr, each value set under the exact key
// given (so "X_Keybound_Client_Id" goes out spelled as it is).
func send(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// fold is a header name as a CGI/WSGI/Rack upstream reads it.
func fold(k string) string { return strings.ReplaceAll(strings.ToLower(k), "_", "-") }

// TestGatewayAuditsAbortedResponses: when copying the response fails,
// ReverseProxy panics with http.ErrAbortHandler. The request must still
// leave exactly one audit event and one metric, and the client must still
// see the response cut off rather than ended cleanly.
func TestGatewayAuditsAbortedResponses(t *testing.T) {
	const chunk = 1 << 20
	// clientLeaves: the client reads a little of a 33 MiB stream and
	// closes. The upstream sends the rest only once the client has gone,
	// so the gateway cannot have finished writing before the connection
	// broke.
	clientGone := make(chan struct{})
	upstreamDone := make(chan error, 1)
	clientLeaves := func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, chunk)
		_, _ = w.Write(buf)
		http.NewResponseController(w).Flush()
		select {
		case <-clientGone:
		case <-time.After(10 * time.Second):
		}
		for range 32 { // it stops at the first failed write
			if _, err := w.Write(buf); err != nil {
				upstreamDone <- err
				return
			}
			http.NewResponseController(w).Flush()
		}
		upstreamDone <- nil
	}
	// upstreamBreaks: a chunked body whose connection drops after 1 MiB.
	// Had the gateway swallowed the panic, net/http would end the chunked
	// body cleanly and the client would take 1 MiB for the whole answer.
	upstreamBreaks := func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, chunk))
		http.NewResponseController(w).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Path == "/big/leaves" {
			clientLeaves(w, r)
		} else {
			upstreamBreaks(w, r)
		}
	}))
	t.Cleanup(up.Close)

	cases := []struct {
		name string
		path string
		// client makes the request and checks what it saw.
		client func(t *testing.T, tg *testGateway)
		// minOut and maxOut bound bytes_out.
		minOut, maxOut int64
	}{
		{"client leaves mid-response", "/big/leaves", func(t *testing.T, tg *testGateway) {
			conn, err := net.Dial("tcp", tg.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "GET /big/leaves HTTP/1.1\r\nHost: gw.test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
				t.Fatalf("reading the start of the body: %v", err)
			}
			_ = conn.Close() // unread data: the kernel resets the connection
			close(clientGone)
			select {
			case err := <-upstreamDone:
				if err == nil {
					t.Fatal("the upstream wrote its whole body; the gateway did not stop copying when the client left")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream handler did not finish")
			}
		}, 64 << 10, 33*chunk - 1},
		{"upstream body breaks", "/big/breaks", func(t *testing.T, tg *testGateway) {
			resp, err := http.Get(tg.URL + "/big/breaks")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil {
				t.Errorf("the client read %d bytes and a clean end; want the response cut off", n)
			}
		}, 1, chunk},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := startTestGateway(t, gateway.Config{}, []route.Spec{
				{Name: "big", Path: "/big/{how}", Upstream: up.URL, Sensitivity: "public"},
			})
			tc.client(t, tg)
			tg.audit.waitFor(t, 1)
			tg.Close() // waits for the gateway's handler, so no event can come later
			evs := tg.audit.all()
			if len(evs) != 1 {
				t.Fatalf("%d audit events, want exactly 1: %+v", len(evs), evs)
			}
			ev := evs[0]
			if ev.Decision != "allow" || ev.Reason != "aborted" || ev.Status != http.StatusOK || ev.Route != "big" || ev.Method != "GET" {
				t.Errorf("event %+v; want allow, aborted, status 200, route big, GET", ev)
			}
			if ev.BytesOut < tc.minOut || ev.BytesOut > tc.maxOut {
				t.Errorf("bytes_out %d; want what was written before the abort, in [%d, %d]", ev.BytesOut, tc.minOut, tc.maxOut)
			}
			if n := tg.requests(t, "aborted"); n != 1 {
				t.Errorf("keybound_gateway_requests_total{reason=aborted} = %v, want 1", n)
			}
		})
	}
}

// TestGatewayStripsSpoofedHeaders: Go keeps X_Keybound_Client_Id apart from
// X-Keybound-Client-Id, but CGI, WSGI and Rack upstreams read both as
// HTTP_X_KEYBOUND_CLIENT_ID. No spelling of an identity, forwarded
// certificate or static-key header may reach the upstream.
func TestGatewayStripsSpoofedHeaders(t *testing.T) {
	var seen seenUpstream
	up := recordingUpstream(t, &seen)
	tg := startTestGateway(t, gateway.Config{ForwardedCertHeader: "X-Client-Cert"}, []route.Spec{
		{Name: "open", Path: "/open", Upstream: up.URL, Sensitivity: "public"},
		{Name: "tokened", Path: "/tokened", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}},
		{Name: "legacy", Path: "/legacy", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}, AllowStaticKeys: true},
	})
	spoofed := []string{
		"X-Keybound-Client-Id", // the canonical spelling, stripped before too
		"X_Keybound_Client_Id",
		"x_keybound_owner",
		"X-Keybound_Scopes",
		"X_KEYBOUND_BINDING",
		"X_Keybound-Route",
		"X_Keybound_Anything",
		"X_Client_Cert", // the configured forwarded-certificate header
		"x-client_cert",
		"X_Api_Key",       // the static-key header (route default)
		"X_Forwarded_For", // would stand in for the client address
		"x_forwarded_host",
		"X_Forwarded-Proto",
	}
	cases := []struct {
		name, path string
		hdr        map[string]string
		status     int
		// identity is the X-Keybound-Client-Id the upstream must see ("" for none).
		identity string
	}{
		{"public route", "/open", nil, http.StatusOK, ""},
		{"token route", "/tokened", map[string]string{"Authorization": goodToken}, http.StatusOK, "c-1"},
		{"static key route", "/legacy", map[string]string{"X-Api-Key": "kbs_good"}, http.StatusOK, "legacy-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			for _, k := range spoofed {
				hdr[k] = "spoofed"
			}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			before := len(seen.all())
			resp, body := send(t, "GET", tg.URL+tc.path, hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			reqs := seen.all()
			if len(reqs) != before+1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs)-before)
			}
			in := reqs[len(reqs)-1]
			for k, vs := range in.Header {
				f := fold(k)
				if f == "x-client-cert" || f == "x-api-key" {
					t.Errorf("upstream saw %s: %q", k, vs)
				}
				if strings.HasPrefix(f, "x-keybound-") && k != http.CanonicalHeaderKey(f) {
					t.Errorf("upstream saw the spoofed %s: %q", k, vs)
				}
				for _, v := range vs {
					if v == "spoofed" {
						t.Errorf("upstream saw the spoofed value under %s", k)
					}
				}
			}
			if got := in.Header.Get(gateway.HeaderClientID); got != tc.identity {
				t.Errorf("upstream saw client id %q, want %q", got, tc.identity)
			}
			if got := in.Header.Get(gateway.HeaderRoute); got != strings.TrimPrefix(tc.path, "/") {
				t.Errorf("upstream saw route %q", got)
			}
		})
	}
}

// TestGatewayStripsStaticKeysOnEveryRoute: a legacy secret is a credential
// for the gateway. It must not reach an upstream whether or not the route
// accepts static keys, under any route's configured header name.
func TestGatewayStripsStaticKeysOnEveryRoute(t *testing.T) {
	var seen seenUpstream
	up := recordingUpstream(t, &seen)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "open", Path: "/open", Upstream: up.URL, Sensitivity: "public"},
		{Name: "tokened", Path: "/tokened", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}},
		{Name: "legacy", Path: "/legacy", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}, AllowStaticKeys: true},
		{Name: "legacy-custom", Path: "/legacy-custom", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}, AllowStaticKeys: true, StaticKeyHeader: "X-Legacy-Key"},
	})
	cases := []struct {
		name, path, header string
		auth               bool
	}{
		{"default header on a public route", "/open", "X-Api-Key", false},
		{"default header on a token route", "/tokened", "X-Api-Key", true},
		{"custom header on a public route", "/open", "X-Legacy-Key", false},
		{"custom header on a token route", "/tokened", "X-Legacy-Key", true},
		{"default header on the custom-header route", "/legacy-custom", "X-Api-Key", true},
		{"default header on its route next to a token", "/legacy", "X-Api-Key", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{tc.header: "kbs_legacy_secret"}
			if tc.auth {
				hdr["Authorization"] = goodToken
			}
			before := len(seen.all())
			resp, body := send(t, "GET", tg.URL+tc.path, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
			}
			reqs := seen.all()
			if len(reqs) != before+1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs)-before)
			}
			if v := reqs[len(reqs)-1].Header.Values(tc.header); len(v) != 0 {
				t.Errorf("upstream saw %s: %q", tc.header, v)
			}
		})
	}
}

// TestGatewayAuditsFinalStatusAfterEarlyHints: ReverseProxy forwards an
// upstream's 103 through the gateway's writer before the final status; the
// audit trail and metrics must record the final one.
func TestGatewayAuditsFinalStatusAfterEarlyHints(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		var final int
		switch r.URL.Path {
		case "/hints/bad-gateway":
			final = http.StatusBadGateway
		case "/hints/error":
			final = http.StatusInternalServerError
		default:
			final = http.StatusOK
		}
		w.WriteHeader(final)
		_, _ = io.WriteString(w, "final")
	}))
	t.Cleanup(up.Close)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "hints", Path: "/hints/{which}", Upstream: up.URL, Sensitivity: "public"},
	})
	cases := []struct {
		path   string
		status int
		reason string
	}{
		{"/hints/bad-gateway", http.StatusBadGateway, "upstream_error"},
		{"/hints/error", http.StatusInternalServerError, "ok"},
		{"/hints/fine", http.StatusOK, "ok"},
	}
	for i, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := send(t, "GET", tg.URL+tc.path, nil)
			if resp.StatusCode != tc.status || body != "final" {
				t.Fatalf("client got %d %q, want %d \"final\"", resp.StatusCode, body, tc.status)
			}
			ev := tg.audit.waitFor(t, i+1)[i]
			if ev.Status != tc.status || ev.Reason != tc.reason || ev.Decision != "allow" {
				t.Errorf("audited status %d reason %q decision %q; want %d %q allow", ev.Status, ev.Reason, ev.Decision, tc.status, tc.reason)
			}
		})
	}
}

// TestGatewayUpgrades: only WebSocket switches protocols through the
// gateway. Any other Upgrade (h2c above all, which would tunnel a lenient
// upstream's HTTP/2 past every later check) is dropped and the request is
// proxied as a plain one. A WebSocket upgrade is audited as 101.
func TestGatewayUpgrades(t *testing.T) {
	var seen seenUpstream
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r)
		echoTunnel(w, r)
	}))
	t.Cleanup(up.Close)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "up", Path: "/up", Upstream: up.URL, Sensitivity: "public"},
	})

	// The HTTP2-Settings value is an empty SETTINGS payload, base64url.
	cases := []struct {
		name string
		hdr  string
	}{
		{"h2c listing HTTP2-Settings in Connection", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"h2c not listing HTTP2-Settings", "Upgrade: h2c\r\nConnection: Upgrade\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"h2c with an underscore HTTP2_Settings", "Upgrade: h2c\r\nConnection: Upgrade\r\nHTTP2_Settings: AAMAAABkAAQAAP__\r\n"},
		{"upper-case H2C", "Upgrade: H2C\r\nConnection: upgrade\r\n"},
		{"another protocol", "Upgrade: TLS/1.2\r\nConnection: Upgrade\r\n"},
		{"websocket offered with another", "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(seen.all())
			nev := len(tg.audit.all())
			resp, body := rawRequest(t, tg, "GET /up HTTP/1.1\r\nHost: gw.test\r\n"+tc.hdr+"\r\n")
			if resp.StatusCode != http.StatusOK || body != "plain" {
				t.Fatalf("client got %d %q, want 200 \"plain\" (proxied as a plain request)", resp.StatusCode, body)
			}
			reqs := seen.all()
			if len(reqs) != before+1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs)-before)
			}
			in := reqs[len(reqs)-1]
			for k, v := range in.Header {
				if f := fold(k); f == "upgrade" || f == "http2-settings" {
					t.Errorf("upstream saw %s: %q", k, v)
				}
			}
			for _, v := range in.Header.Values("Connection") {
				if strings.Contains(strings.ToLower(v), "upgrade") {
					t.Errorf("upstream saw Connection: %s", v)
				}
			}
			if ev := tg.audit.waitFor(t, nev+1)[nev]; ev.Status != http.StatusOK || ev.Reason != "ok" {
				t.Errorf("audited status %d reason %q, want 200 ok", ev.Status, ev.Reason)
			}
		})
	}

	t.Run("websocket", func(t *testing.T) {
		nev := len(tg.audit.all())
		for _, spelling := range []string{"websocket", "WebSocket"} {
			conn, br, resp := dialTunnel(t, tg, "/up", spelling, "")
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("%s: status %d, want 101", spelling, resp.StatusCode)
			}
			_, _ = io.WriteString(conn, "ping\n")
			if line, err := br.ReadString('\n'); err != nil || line != "PING\n" {
				t.Fatalf("%s: echo over the switched connection: %q, %v", spelling, line, err)
			}
			_ = conn.Close()
		}
		evs := tg.audit.waitFor(t, nev+2)[nev:]
		for _, ev := range evs {
			if ev.Status != http.StatusSwitchingProtocols || ev.Decision != "allow" {
				t.Errorf("audited status %d decision %q, want 101 allow", ev.Status, ev.Decision)
			}
		}
	})
}

// rawRequest writes req on a fresh connection and reads one response, so
// the request's headers go out exactly as written.
func rawRequest(t *testing.T, tg *testGateway, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", tg.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestGatewayRefusesLowerCaseMethods: routes match methods exactly, so
// "delete" would be held to a route's "*" scopes while an upstream that
// upper-cases methods deletes. Such a method is refused before matching,
// with a problem naming it, and audited like any refusal.
func TestGatewayRefusesLowerCaseMethods(t *testing.T) {
	var seen seenUpstream
	up := recordingUpstream(t, &seen)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "things", Path: "/x/{id}", Upstream: up.URL, Sensitivity: "internal",
			Scopes: route.ScopeSpec{ByMethod: map[string][]string{"DELETE": {"x:delete"}, "*": {"x:read"}}}},
	})
	cases := []struct {
		method string
		status int
		reason string
	}{
		{"delete", http.StatusBadRequest, "invalid_method"},
		{"Delete", http.StatusBadRequest, "invalid_method"},
		{"get", http.StatusBadRequest, "invalid_method"},
		{"pOST", http.StatusBadRequest, "invalid_method"},
		// The upper-case method is held to its own scopes: the caller lacks x:delete.
		{"DELETE", http.StatusForbidden, "insufficient_scope"},
		{"GET", http.StatusOK, "ok"},
	}
	for i, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			var detail []string
			if tc.reason == "invalid_method" {
				detail = []string{`"` + tc.method + `"`}
			}
			ev := tg.expect(t, &seen, i, tc.method, "/x/1", tc.status, tc.reason, detail...)
			if ev.Method != tc.method {
				t.Errorf("audited method %q, want %q", ev.Method, tc.method)
			}
		})
	}
}

// expect sends method path as the caller holding goodToken, the n-th
// request of the test, and checks what the caller and the audit trail see:
// the status and the event's reason; for a refusal (reason not "ok" and
// not a token refusal checked elsewhere), a deny event, an RFC 9457 problem
// whose type is the reason and whose detail holds each of detail, and an
// upstream that saw nothing.
func (tg *testGateway) expect(t *testing.T, seen *seenUpstream, n int, method, path string, status int, reason string, detail ...string) store.AuditEvent {
	t.Helper()
	before := len(seen.all())
	resp, body := send(t, method, tg.URL+path, map[string]string{"Authorization": goodToken})
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	ev := tg.audit.waitFor(t, n+1)[n]
	if ev.Status != status || ev.Reason != reason {
		t.Errorf("audited %d %q, want %d %q", ev.Status, ev.Reason, status, reason)
	}
	if len(detail) == 0 {
		return ev
	}
	if ev.Decision != "deny" {
		t.Errorf("audited decision %q, want deny", ev.Decision)
	}
	if k := len(seen.all()) - before; k != 0 {
		t.Errorf("upstream saw %d requests, want none", k)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	if want := "urn:keybound:problem:" + strings.ReplaceAll(reason, "_", "-"); p.Type != want || p.Status != status {
		t.Errorf("problem %+v; want type %s, status %d", p, want, status)
	}
	for _, d := range detail {
		if !strings.Contains(p.Detail, d) {
			t.Errorf("problem detail %q does not say %q", p.Detail, d)
		}
	}
	return ev
}

// TestGatewayRefusesAmbiguousPaths: with a restricted route and an
// internal catch-all on the same upstream, a path that a lenient upstream
// would read as the restricted route's is refused with a problem that
// says why, and the upstream sees nothing; the exact path is judged by the
// restricted route's own policy.
func TestGatewayRefusesAmbiguousPaths(t *testing.T) {
	var seen seenUpstream
	up := recordingUpstream(t, &seen)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "admin", Path: "/admin/{id}", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:admin"}}},
		{Name: "rest", Path: "/{rest...}", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: []string{"x:read"}}},
	})
	cases := []struct {
		path   string
		status int
		reason string
	}{
		{"/ADMIN/5", http.StatusBadRequest, "ambiguous_path"},
		{"/admin;v=1/5", http.StatusBadRequest, "ambiguous_path"},
		{"/admin%2F5", http.StatusBadRequest, "ambiguous_path"},
		{"/admin/5/", http.StatusBadRequest, "ambiguous_path"},
		{"/admin/5", http.StatusForbidden, "insufficient_scope"}, // the caller lacks x:admin
		{"/other/Thing", http.StatusOK, "ok"},
	}
	for i, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			var detail []string
			if tc.reason == "ambiguous_path" {
				detail = []string{"stricter policy", "exact path"}
			}
			tg.expect(t, &seen, i, "GET", tc.path, tc.status, tc.reason, detail...)
		})
	}
}

// TestGatewayTunnelEndsWithItsToken: a WebSocket tunnel is checked once,
// at the upgrade, so it is closed when the token it was opened with
// expires; the client must reconnect with a fresh token. A tunnel whose
// token is still valid stays open.
func TestGatewayTunnelEndsWithItsToken(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoTunnel))
	t.Cleanup(up.Close)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "ws", Path: "/ws", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: fakeScopes}},
	})
	open := func(token string) (net.Conn, *bufio.Reader) {
		t.Helper()
		conn, br, resp := dialTunnel(t, tg, "/ws", "websocket", token)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %d", resp.StatusCode)
		}
		_, _ = io.WriteString(conn, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "PING\n" {
			t.Fatalf("echo through the tunnel: %q %v", line, err)
		}
		return conn, br
	}

	defer func() {
		// At shutdown the remaining tunnel is ended and audited before
		// CloseTunnels returns (http.Server.Shutdown does not wait for it).
		n := len(tg.audit.all())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tg.gw.CloseTunnels(ctx); err != nil {
			t.Fatalf("CloseTunnels: %v", err)
		}
		evs := tg.audit.all()
		if len(evs) != n+1 || evs[len(evs)-1].Status != http.StatusSwitchingProtocols {
			t.Errorf("after CloseTunnels: %d new events (%+v), want the open tunnel's, status 101", len(evs)-n, evs[n:])
		}
		// A tunnel asked for after closing began is ended at once.
		if conn, br, resp := dialTunnel(t, tg, "/ws", "websocket", goodToken); resp.StatusCode == http.StatusSwitchingProtocols {
			_, _ = io.WriteString(conn, "late\n")
			if line, err := br.ReadString('\n'); err == nil {
				t.Errorf("a tunnel opened after CloseTunnels carried %q", line)
			}
		}
	}()
	short, shortR := open(shortToken)
	long, longR := open(goodToken)
	// Past the short token's expiry the gateway has closed its tunnel.
	_ = short.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := shortR.ReadString('\n'); err == nil {
		t.Fatal("the tunnel of an expired token still delivers data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel of an expired token was still open 5 s later")
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Errorf("the tunnel closed %s after the check, long after its token expired", waited)
	}
	// The other tunnel still works.
	_ = long.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(long, "still\n")
	if line, err := longR.ReadString('\n'); err != nil || line != "STILL\n" {
		t.Errorf("a tunnel with a valid token: %q %v", line, err)
	}
}

// TestGatewayTunnelWithExpiredToken: a token past its exp but within the
// verifier's leeway opens no tunnel: 401 invalid_token, not a tunnel cut
// at once and blamed on the upstream (504).
func TestGatewayTunnelWithExpiredToken(t *testing.T) {
	var seen seenUpstream
	up := recordingUpstream(t, &seen)
	tg := startTestGateway(t, gateway.Config{}, []route.Spec{
		{Name: "ws", Path: "/ws", Upstream: up.URL, Sensitivity: "internal", Scopes: route.ScopeSpec{All: fakeScopes}},
	})
	resp, body := rawRequest(t, tg, "GET /ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: "+expiredToken+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "fresh token") {
		t.Fatalf("upgrade with an expired token: %d %s, want 401 saying to use a fresh token", resp.StatusCode, body)
	}
	if n := len(seen.all()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
	if ev := tg.audit.waitFor(t, 1)[0]; ev.Decision != "deny" || ev.Reason != "invalid_token" {
		t.Errorf("audited %s %s", ev.Decision, ev.Reason)
	}
	// A plain request with the same token is not a tunnel: it goes through.
	resp, _ = send(t, "GET", tg.URL+"/ws", map[string]string{"Authorization": expiredToken})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("plain request within the leeway: %d", resp.StatusCode)
	}
}

// echoTunnel answers a WebSocket upgrade with 101 and then echoes each line
// it reads, upper-cased, until the other side closes; any other request
// gets "plain".
func echoTunnel(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		_, _ = io.WriteString(w, "plain")
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_ = rw.Flush()
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = rw.WriteString(strings.ToUpper(line))
		_ = rw.Flush()
	}
}

func isUpgradeTo(r *http.Request, proto string) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), proto)
}

// dialTunnel asks the gateway for a WebSocket upgrade of path, with
// "Upgrade: spelling" and Authorization auth when not empty, on a fresh
// connection; it returns the connection, its reader and the response.
func dialTunnel(t *testing.T, tg *testGateway, path, spelling, auth string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", tg.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := ""
	if auth != "" {
		hdr = "Authorization: " + auth + "\r\n"
	}
	_, _ = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: gw.test\r\n"+hdr+"Upgrade: "+spelling+"\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}
