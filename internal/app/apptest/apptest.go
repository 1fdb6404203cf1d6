// Package apptest runs a real keybound for the end-to-end tests of other
// packages: app.New and Serve, as `keybound serve` runs them, on a loopback
// listener the test opened, with a fresh data directory, stopped in
// t.Cleanup. The app's, the CLI's and the examples' tests share it, so how
// a test server starts, reports readiness and shuts down is decided in one
// place.
package apptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/config"
)

// ShutdownGrace is the test servers' server.shutdown_timeout. It is longer
// than the 5 s net/http waits before it treats a connection that never sent
// a request as idle: an SDK transport can leave one behind (a dial it no
// longer needed), and a 5 s grace raced it and failed the stop.
const ShutdownGrace = 10 * time.Second

// readyWait bounds the wait for /readyz after Serve starts.
const readyWait = 5 * time.Second

// Server is one running keybound.
type Server struct {
	// Config is the configuration it runs with.
	Config config.Config
	// Issuer is its issuer URL: the token service and the admin API.
	Issuer string
	// Pool trusts its TLS certificate (the data directory's CA).
	Pool *x509.CertPool
	// Admin describes the admin identity created on first start.
	Admin *app.AdminDescriptor
	// Logs holds everything it logged, as JSON lines from debug level up.
	Logs *Logs

	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	done     chan error
}

// Start starts a keybound whose configuration is config.Default() with a
// fresh data directory, the token service on a loopback port and
// ShutdownGrace, then adjusted by mutate (may be nil). opts are passed to
// app.New after the listener (a gateway listener, a config file). Start
// returns once /readyz answers 200; t fails if it never does.
func Start(t testing.TB, mutate func(*config.Config), opts ...app.Option) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Server.Addr = l.Addr().String()
	cfg.Server.ShutdownTimeout = ShutdownGrace
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &Logs{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(context.Background(), cfg, log, append([]app.Option{app.WithListener(l)}, opts...)...)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Config: cfg, Issuer: cfg.IssuerURL(), Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	if s.Pool, err = app.CAPool(a.CAFile); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t)
	if s.Admin, err = app.LoadAdmin(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	return s
}

// Stop shuts the server down gracefully and returns what Serve returned.
// Later calls return the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		s.stopErr = <-s.done
	})
	return s.stopErr
}

// HTTPClient trusts the server's CA and presents certs, if any.
func (s *Server) HTTPClient(certs []tls.Certificate) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Pool, Certificates: certs}},
	}
}

func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	c := s.HTTPClient(nil)
	defer c.CloseIdleConnections()
	for deadline := time.Now().Add(readyWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := c.Get(s.Issuer + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("server never became ready within %s", readyWait)
}

// Logs is a log destination safe for the server's concurrent writes.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
