package main

// The two helper processes the benchmark starts by re-executing its own
// binary: the upstream every mode ends at, and the plain httputil reverse
// proxy that is the baseline. Each runs as its own process so that its CPU
// time can be read from /proc/PID/stat apart from the load generator's and
// keybound's.
//
// Each prints one line, "listening HOST:PORT", on stdout once it accepts
// connections, and runs until SIGTERM or SIGINT.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/keybound/keybound/internal/gateway"
	"github.com/keybound/keybound/internal/web"
)

// upstreamBody is the small fixed answer of the upstream. Every mode checks
// it once before measuring, so a wrong route shows up as an error rather
// than as a fast benchmark of an error page.
const upstreamBody = `{"ok":true,"from":"gatewaybench-upstream"}` + "\n"

// runChild runs a helper subcommand and reports whether args named one.
func runChild(args []string) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "upstream":
		return true, runUpstream(args[1:])
	case "proxy":
		return true, runProxy(args[1:])
	}
	return false, nil
}

// runUpstream serves upstreamBody to every request over cleartext HTTP/1.1
// with keep-alive, as an API behind a gateway on the same host would be.
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := []byte(upstreamBody)
	clen := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", clen)
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: web.ReadHeaderTimeout, IdleTimeout: web.IdleTimeout}
	return serveUntilSignal(srv, false)
}

// runProxy is the baseline: the standard library's reverse proxy,
// terminating TLS with the same server certificate keybound's gateway uses
// (an ECDSA P-256 certificate from the data directory's CA) and forwarding
// to the same upstream over the same transport settings
// (gateway.NewTransport), so the only difference left is what the gateway
// checks and records.
func runProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	up := fs.String("upstream", "", "upstream base URL")
	certFile := fs.String("cert", "", "server certificate (PEM)")
	keyFile := fs.String("key", "", "server private key (PEM)")
	flush := fs.Duration("flush-interval", 0, "httputil.ReverseProxy.FlushInterval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*up)
	if err != nil || u.Host == "" {
		return fmt.Errorf("proxy: bad -upstream %q", *up)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport:     gateway.NewTransport(30 * time.Second),
		FlushInterval: *flush,
	}
	srv := &http.Server{
		Handler:           rp,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: web.ReadHeaderTimeout,
		ReadTimeout:       web.ReadTimeout,
		WriteTimeout:      web.WriteTimeout,
		IdleTimeout:       web.IdleTimeout,
	}
	return serveUntilSignal(srv, true)
}

// serveUntilSignal listens on a free loopback port, announces it on stdout
// and serves until SIGTERM or SIGINT.
func serveUntilSignal(srv *http.Server, useTLS bool) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(l, "", "")
		} else {
			errc <- srv.Serve(l)
		}
	}()
	fmt.Printf("listening %s\n", l.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
