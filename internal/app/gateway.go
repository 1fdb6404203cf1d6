package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/audit"
	"github.com/keybound/keybound/internal/authserver"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/gateway"
	"github.com/keybound/keybound/internal/keys"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/ratelimit"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/web"
)

// Bounds of the gateway's in-memory state.
const (
	tokenCacheEntries = 1 << 16
	rateLimitKeys     = 1 << 18
	// gatewayRealm is the realm of the gateway's WWW-Authenticate
	// challenges, for tokens and static API keys alike.
	gatewayRealm = "keybound-gateway"
)

// gatewayPart is the gateway listener and what it owns.
type gatewayPart struct {
	gw       *gateway.Gateway
	audit    *audit.Writer
	handler  http.Handler
	tlsConf  *tls.Config
	listener net.Listener
	jsonl    io.Closer

	// reload serialises route reloads.
	reload sync.Mutex
}

// buildGateway assembles the gateway from cfg. checker is the token check
// shared with the admin API but configured for gateway audiences.
func (a *App) buildGateway(cfg config.Config, base *protect.Checker, reg prometheus.Registerer, cert tls.Certificate) error {
	table, err := route.Compile(cfg.Gateway.Routes)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	for _, r := range table.Routes() {
		if r.AllowWeakerAssurance {
			a.log.Warn("route overrides its sensitivity floor (allow_weaker_assurance)", "route", r.Name, "sensitivity", r.Sensitivity.String())
		}
	}
	var proxies []netip.Prefix
	for _, p := range cfg.Gateway.TrustedProxies {
		pp, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("app: gateway.trusted_proxies: %w", err)
		}
		proxies = append(proxies, pp)
	}
	gp := &gatewayPart{}
	sinks := []audit.Sink{audit.StoreSink{Store: a.store}}
	switch f := cfg.Gateway.Audit.File; f {
	case "":
	case "-":
		sinks = append(sinks, audit.NewJSONLSink(os.Stdout))
	default:
		sink, err := audit.OpenJSONLFile(f)
		if err != nil {
			return fmt.Errorf("app: gateway.audit.file: %w", err)
		}
		gp.jsonl = sink
		sinks = append(sinks, sink)
	}
	gp.audit = audit.New(audit.Config{
		QueueSize:  cfg.Gateway.Audit.QueueSize,
		FailClosed: cfg.Gateway.Audit.FailClosed,
		Sinks:      sinks,
		Log:        a.log,
	})
	checker := *base
	tokens := base.Tokens
	if cfg.Gateway.JWKSURL != "" {
		if tokens, err = a.remoteTokens(cfg.Gateway, reg); err != nil {
			return err
		}
	}
	if cfg.Gateway.ExternalURL == "" {
		// Without it, a DPoP proof's htu is compared with the Host header
		// the caller sends, so a proof made for another server's URL can be
		// replayed here by sending that server's name as Host.
		a.log.Warn("gateway.external_url is not set: DPoP proofs are checked against the Host header each caller sends; set it to the URL clients call (scheme://host[:port])")
	}
	checker.Tokens = accesstoken.NewCache(tokens, tokenCacheEntries, nil)
	checker.Audience = ""
	checker.Realm = gatewayRealm
	gw, err := gateway.New(gateway.Config{
		Realm:               gatewayRealm,
		ExternalURL:         cfg.Gateway.ExternalURL,
		TrustedProxies:      proxies,
		ForwardedCertHeader: cfg.Gateway.ForwardedCertHeader,
		FailClosed:          cfg.Gateway.Audit.FailClosed,
		UpstreamTimeout:     cfg.Gateway.UpstreamTimeout,
		StaticKeys: &protect.StaticKeys{
			Lookup:  a.store,
			Clients: base.Clients,
			Allowed: func() bool { return cfg.Tokens.AllowStaticSecrets },
		},
	}, table, &checker, ratelimit.New(rateLimitKeys, nil), gp.audit, gateway.NewMetrics(reg), nil, a.log)
	if err != nil {
		return err
	}
	gp.gw = gw
	registerGatewayMetrics(reg, gp.audit, checker.Tokens, base.Clients)
	gp.handler = web.Middleware(gw, cfg.Server.MaxBodyBytes, a.log)
	clientAuth := tls.RequestClientCert
	if cfg.Gateway.RequireClientCert {
		clientAuth = tls.RequireAnyClientCert
	}
	gp.tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: clientAuth, NextProtos: []string{"h2", "http/1.1"}}
	a.gateway = gp
	return nil
}

// remoteTokens builds the verifier of tokens from a token service in another
// process: its JWK Set is fetched from gateway.jwks_url and cached
// (keys.Remote), and iss must be gateway.issuer. The first fetch happens
// here; if the issuer cannot be reached, keybound still starts and every
// token is refused until a later fetch succeeds.
func (a *App) remoteTokens(gc config.Gateway, reg prometheus.Registerer) (*accesstoken.Verifier, error) {
	var roots *x509.CertPool
	if gc.IssuerCAFile != "" {
		var err error
		if roots, err = trustFile(a.log, "gateway.issuer_ca_file", gc.IssuerCAFile, nil); err != nil {
			return nil, err
		}
	}
	remote, err := keys.NewRemote(keys.RemoteConfig{URL: gc.JWKSURL, RootCAs: roots, Log: a.log})
	if err != nil {
		return nil, fmt.Errorf("app: gateway.jwks_url: %w", err)
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keybound_gateway_jwks_fetches_total",
			Help: "Fetches of the issuer's JWK Set (gateway.jwks_url).",
		}, func() float64 { return float64(remote.Stats().Fetches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keybound_gateway_jwks_fetch_failures_total",
			Help: "Fetches of the issuer's JWK Set that failed or were refused; the last good set stays in use.",
		}, func() float64 { return float64(remote.Stats().Failures) }),
	)
	ctx, cancel := context.WithTimeout(context.Background(), keys.DefaultRemoteTimeout)
	defer cancel()
	if err := remote.Refresh(ctx); err != nil {
		a.log.Warn("gateway: the issuer's JWK Set could not be fetched at start; tokens are refused until it can be", "jwks_url", gc.JWKSURL, "error", err)
	} else {
		a.log.Info("gateway verifies tokens of a separate issuer", "issuer", gc.Issuer, "jwks_url", gc.JWKSURL, "keys", remote.Stats().Keys)
	}
	// The same clock-skew leeway as the token service's own verifier.
	return &accesstoken.Verifier{Keys: remote, Issuer: gc.Issuer, Leeway: authserver.TokenLeeway}, nil
}

// ReloadRoutes re-reads the configuration file, compiles its routes and
// swaps them in. On any error the running routes stay as they are and the
// error says why. It returns the number of routes now served.
func (a *App) ReloadRoutes(_ context.Context) (int, error) {
	if a.gateway == nil {
		return 0, errors.New("the gateway is not running (set gateway.addr)")
	}
	if a.configFile == "" {
		return 0, errors.New("keybound was started without --config; there is no file to reload routes from")
	}
	a.gateway.reload.Lock()
	defer a.gateway.reload.Unlock()
	cfg := config.Default()
	if err := cfg.LoadFile(a.configFile); err != nil {
		a.log.Error("route reload refused; keeping the running routes", "error", err)
		return 0, err
	}
	table, err := route.Compile(cfg.Gateway.Routes)
	if err != nil {
		a.log.Error("route reload refused; keeping the running routes", "error", err)
		return 0, err
	}
	a.gateway.gw.SetRoutes(table)
	n := len(table.Routes())
	a.log.Info("routes reloaded", "routes", n, "file", a.configFile)
	return n, nil
}

// tunnelCloseTimeout bounds ending the WebSocket tunnels at shutdown;
// each ends as soon as its connections close.
const tunnelCloseTimeout = 5 * time.Second

// auditDrainTimeout bounds writing out the queued audit events at
// shutdown, after the listener's grace; a batch takes milliseconds.
const auditDrainTimeout = 10 * time.Second

// serveGateway starts the gateway listener; it returns a stop function.
func (a *App) serveGateway(errc chan<- error) (func(context.Context) error, error) {
	gp := a.gateway
	if gp.listener == nil {
		l, err := web.Listen(a.cfg.Gateway.Addr)
		if err != nil {
			return nil, fmt.Errorf("app: listen on gateway.addr %s: %w", a.cfg.Gateway.Addr, err)
		}
		gp.listener = l
	}
	bg, cancel := context.WithCancel(context.Background())
	gp.audit.Start(bg)
	hs := web.NewServer(gp.handler, gp.tlsConf, a.cfg.Server.MaxHeaderBytes, a.log)
	go func() { errc <- hs.ServeTLS(gp.listener, "", "") }()
	a.log.Info("gateway serving", "addr", gp.listener.Addr().String(), "routes", len(gp.gw.Routes().Routes()))
	return func(ctx context.Context) error {
		err := hs.Shutdown(ctx)
		// Shutdown does not wait for WebSocket tunnels (hijacked
		// connections); end them so their audit events are recorded
		// before the audit writer closes.
		// Like the audit drain below, with a budget of its own: a request
		// that used up the grace must not cost the tunnels their events.
		tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), tunnelCloseTimeout)
		terr := gp.gw.CloseTunnels(tctx)
		tcancel()
		// The audit drain gets its own budget: a slow request or tunnel
		// that used up the grace must not make Close give up on the
		// events of every request that did finish.
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), auditDrainTimeout)
		aerr := gp.audit.Close(actx)
		acancel()
		cancel()
		var ferr error
		if gp.jsonl != nil {
			ferr = gp.jsonl.Close()
		}
		return errors.Join(err, terr, aerr, ferr)
	}, nil
}

// GatewayAddr returns the gateway listener's address, once listening.
func (a *App) GatewayAddr() net.Addr {
	if a.gateway == nil || a.gateway.listener == nil {
		return nil
	}
	return a.gateway.listener.Addr()
}

// WithGatewayListener serves the gateway on l (tests use port 0).
func WithGatewayListener(l net.Listener) Option {
	return func(a *App) { a.gatewayListener = l }
}

// WithConfigFile records the file routes are reloaded from.
func WithConfigFile(path string) Option { return func(a *App) { a.configFile = path } }
