package app_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/route"
)

// proxyUpstream serves the behaviours the proxy must carry through:
// a streamed response, a WebSocket-style upgrade, and a slow answer.
func proxyUpstream(t *testing.T, firstChunkRead <-chan struct{}) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		// The second chunk is written only after the client has read the
		// first, so a proxy that buffers the whole body would deadlock here.
		select {
		case <-firstChunkRead:
		case <-time.After(5 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		// Echo one line back, upper-cased, over the switched connection.
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = rw.WriteString(strings.ToUpper(line))
		_ = rw.Flush()
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Proto", r.Proto)
		_, _ = io.Copy(w, r.Body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestGatewayProxyBehaviour(t *testing.T) {
	firstChunkRead := make(chan struct{})
	up := proxyUpstream(t, firstChunkRead)
	g := startGateway(t, func(c *config.Config) {
		c.Gateway.UpstreamTimeout = 300 * time.Millisecond
		for _, p := range []string{"/stream", "/ws", "/slow", "/echo"} {
			c.Gateway.Routes = append(c.Gateway.Routes, route.Spec{Name: strings.TrimPrefix(p, "/"), Path: p, Upstream: up.URL, Sensitivity: "public"})
		}
	})

	t.Run("HTTP/2 from the client", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", g.gw+"/echo", strings.NewReader("hello over h2"))
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != "hello over h2" {
			t.Errorf("proto %s status %d body %q; want HTTP/2 200 echoing the body", resp.Proto, resp.StatusCode, b)
		}
	})

	t.Run("streamed response", func(t *testing.T) {
		resp, err := g.httpClient(nil).Get(g.gw + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil || first != "first\n" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
		close(firstChunkRead)
		second, err := br.ReadString('\n')
		if err != nil || second != "second\n" {
			t.Fatalf("second chunk %q, %v", second, err)
		}
	})

	t.Run("WebSocket upgrade", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(g.gw, "https://"), &tls.Config{RootCAs: g.pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: "+strings.TrimPrefix(g.gw, "https://")+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		_, _ = io.WriteString(conn, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "PING\n" {
			t.Fatalf("echo over the upgraded connection: %q, %v", line, err)
		}
	})

	t.Run("upstream timeout", func(t *testing.T) {
		r := g.send(nil, "GET", "/slow", nil)
		if r.status != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504: %s", r.status, r.body)
		}
		if typ, _ := r.problem["type"].(string); !strings.HasSuffix(typ, "upstream") {
			t.Errorf("problem type %q", typ)
		}
	})
}
