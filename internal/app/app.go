// Package app is the composition root: it builds every component from a
// validated config.Config, bootstraps the data directory on first start
// (store, CA and server certificate, signing keys, admin identity), serves
// the HTTPS listener, runs the background schedules, and shuts everything
// down in order.
//
// It is the only package that chooses implementations; everything below it
// receives its dependencies.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/authserver"
	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/keys"
	"github.com/keybound/keybound/internal/notify"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/replay"
	"github.com/keybound/keybound/internal/revocation"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/web"
	"github.com/keybound/keybound/internal/workload"
	"github.com/keybound/keybound/internal/workloadapi"
)

// Schedules of the background loops.
const (
	keyTickEvery   = time.Minute
	revocationSync = time.Second
	purgeEvery     = time.Hour
	// certRetention is how long an expired workload certificate stays in
	// the inventory before the hourly purge removes it.
	certRetention = 30 * 24 * time.Hour
	// notificationRetention is how long after the expiry it warned about
	// a notification stays visible before the hourly purge removes it:
	// 60 days past the window in which an "expired" warning can still be
	// created, so a purged warning is never created and sent again.
	notificationRetention = notify.DefaultExpiredWindow + 60*24*time.Hour
)

// App is a built, not yet serving, keybound.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	store    *sqlite.Store
	ring     *keys.Ring
	revoked  *revocation.View
	workload *workload.Service
	handler  http.Handler
	tlsConf  *tls.Config
	ready    chan struct{}
	listener net.Listener
	// AdminFile is the path of the CLI's admin identity descriptor.
	AdminFile string
	// CAFile is the path of the CA certificate clients trust.
	CAFile string

	gateway         *gatewayPart
	gatewayListener net.Listener
	configFile      string
	// sweeps are the governance tasks background runs (sweep.go).
	sweeps []sweepTask
	// proofReplay and assertionReplay, when set by WithReplayCaches,
	// replace the replay caches New would make.
	proofReplay, assertionReplay *replay.Cache
}

// Option adjusts how New builds the app.
type Option func(*App)

// WithListener serves on l instead of opening server.addr; tests pass a
// listener on port 0 and set server.addr to its address.
func WithListener(l net.Listener) Option { return func(a *App) { a.listener = l } }

// WithReplayCaches makes the app remember DPoP proof ids in proofs and
// client assertion ids in assertions instead of in caches of the default
// sizes (proofReplaySize, assertionReplaySize). Tests pass small caches to
// reach a full one without a million requests.
func WithReplayCaches(proofs, assertions *replay.Cache) Option {
	return func(a *App) { a.proofReplay, a.assertionReplay = proofs, assertions }
}

// New builds the app from cfg. It creates the data directory and everything
// in it on first start.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("app: data dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("app: data dir: %w", err)
	}
	now := time.Now()
	issuer := cfg.IssuerURL()

	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "keybound.db"))
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, store: st, ready: make(chan struct{})}
	for _, o := range opts {
		o(a)
	}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()

	tlsDir := filepath.Join(cfg.DataDir, "tls")
	authority, err := ca.LoadOrCreate(tlsDir, now)
	if err != nil {
		return nil, err
	}
	a.CAFile = filepath.Join(tlsDir, ca.CACertFile)
	var cert tls.Certificate
	if cfg.Server.CertFile != "" {
		if err = checkFileMode(log, "server.key_file", cfg.Server.KeyFile, kindSecret); err == nil {
			cert, err = tls.LoadX509KeyPair(cfg.Server.CertFile, cfg.Server.KeyFile)
		}
	} else {
		cert, err = authority.ServerCertificate(tlsDir, serverNames(issuer, cfg.Server.Addr, cfg.Gateway.Addr, cfg.Gateway.ExternalURL), now)
	}
	if err != nil {
		return nil, fmt.Errorf("app: server certificate: %w", err)
	}
	clientCAs := authority.Pool()
	wlIssuer, err := loadWorkloadIssuer(cfg, tlsDir, now, log)
	if err != nil {
		return nil, err
	}
	for _, r := range wlIssuer.Roots {
		clientCAs.AddCert(r)
	}
	if cfg.Server.ClientCAFile != "" {
		if _, err := trustFile(log, "server.client_ca_file", cfg.Server.ClientCAFile, clientCAs); err != nil {
			return nil, err
		}
	}
	a.tlsConf = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// Request, do not verify: self_signed_tls_client_auth certificates
		// must reach clientauth, which verifies tls_client_auth chains itself.
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"h2", "http/1.1"},
	}

	a.ring, err = keys.Open(ctx, st, keys.Config{
		PublishLead:      cfg.Keys.PublishLead,
		RotateEvery:      cfg.Keys.RotateEvery,
		MaxTokenLifetime: cfg.Tokens.MaxLifetime,
	})
	if err != nil {
		return nil, err
	}

	a.revoked = revocation.New(st, nil)
	if err := a.revoked.Sync(ctx); err != nil {
		return nil, err
	}
	a.workload, err = workload.New(st, wlIssuer, workload.Config{
		TrustDomain:       cfg.WorkloadCA.TrustDomain,
		DefaultLifetime:   cfg.WorkloadCA.CertLifetime,
		MaxLifetime:       cfg.WorkloadCA.MaxCertLifetime,
		JoinTokenLifetime: cfg.WorkloadCA.JoinTokenLifetime,
		CRLURL:            issuer + workloadapi.PathCRL,
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := a.workload.View.Sync(ctx); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	proofReplays, assertionReplays := a.replayCaches()
	var nonces *dpop.Nonces
	if cfg.Tokens.DPoP.RequireNonce {
		nonces, err = dpop.NewNonces(nil, time.Minute, nil)
		if err != nil {
			return nil, err
		}
	}
	proofs := &dpop.Verifier{Algorithms: cfg.Tokens.DPoP.Algorithms, Replay: proofReplays, Window: cfg.Tokens.DPoP.Window}
	if nonces != nil {
		proofs.Nonce = nonces
	}
	tokens := &accesstoken.Verifier{Keys: a.ring, Issuer: issuer, Leeway: authserver.TokenLeeway}

	// Clients are read through a cache at most a second stale across nodes
	// and invalidated at once by changes made here (inventory.OnChange).
	clients := revocation.NewClients(st, time.Second, nil)
	srv := &authserver.Server{
		Settings: authserver.Settings{
			Issuer:               issuer,
			DefaultLifetime:      cfg.Tokens.DefaultLifetime,
			MaxLifetime:          cfg.Tokens.MaxLifetime,
			DPoPAlgorithms:       cfg.Tokens.DPoP.Algorithms,
			AssertionAlgorithms:  clientauth.DefaultAlgorithms,
			StaticSecretsAllowed: cfg.Tokens.AllowStaticSecrets,
		},
		Auth: &clientauth.Authenticator{
			Clients:              clients,
			NotFound:             errNotFound,
			Replay:               assertionReplays,
			Audiences:            []string{issuer, issuer + authserver.PathToken, issuer + authserver.PathIntrospect, issuer + authserver.PathRevoke},
			MaxAssertionLifetime: cfg.Tokens.AssertionMaxLifetime,
			ClientCAs:            clientCAs,
			AllowStaticSecrets:   cfg.Tokens.AllowStaticSecrets,
			Workload:             a.workload,
		},
		Proofs:      proofs,
		Keys:        a.ring,
		Tokens:      tokens,
		Revocations: a.revoked,
		Clients:     clients,
		Metrics:     authserver.NewMetrics(reg),
		Log:         log,
	}
	if nonces != nil {
		srv.Nonces = nonces
	}

	inv := &inventory.Service{
		Store: st,
		Policy: inventory.Policy{
			MaxLifetime: cfg.Clients.MaxLifetime, MaxTokenLifetime: cfg.Tokens.MaxLifetime,
			RotationOverlap: cfg.Governance.RotationOverlap, MaxRotationOverlap: cfg.Governance.MaxRotationOverlap,
		},
		OnChange: func(id string) {
			clients.Invalidate(id)
			// A revoked identity's certificates go on the CRL too.
			if err := a.workload.ClientChanged(context.WithoutCancel(ctx), id); err != nil {
				log.Error("revoking the certificates of a revoked identity failed", "client_id", id, "error", err)
			}
		},
	}
	checker := &protect.Checker{
		Tokens: tokens, Proofs: proofs, Revoked: a.revoked.Revoked, Clients: clients,
		Audience: issuer, Realm: "keybound-admin", DPoPAlgorithms: cfg.Tokens.DPoP.Algorithms,
	}
	if nonces != nil {
		checker.Nonces = nonces
	}
	checker.Certs = a.workload
	admin := &adminapi.API{Inventory: inv, Events: st, Audit: st, Keys: a.ring, Auth: checker, BaseURL: issuer, Log: log}
	admin.Usage = st
	admin.Certs = a.workload
	if err := a.buildReviews(ctx, inv, admin); err != nil { // reviews.go
		return nil, err
	}
	if err := a.buildNotify(admin, reg); err != nil {
		return nil, err
	}
	a.addSweep("retire rotated credentials", func(ctx context.Context, now time.Time) error {
		n, err := inv.RetirePrevious(ctx, governanceActor, now)
		if n > 0 {
			log.Info("retired rotated-out credentials whose overlap ended", "count", n)
		}
		return err
	})
	enroll := &workloadapi.API{Service: a.workload, Log: log, Auth: &clientauth.Authenticator{
		Clients:              clients,
		NotFound:             errNotFound,
		Replay:               assertionReplays,
		Audiences:            []string{issuer, issuer + workloadapi.PathEnroll},
		MaxAssertionLifetime: cfg.Tokens.AssertionMaxLifetime,
	}}

	a.AdminFile, err = ensureAdmin(ctx, inv, st, cfg, issuer, log)
	if err != nil {
		return nil, err
	}
	if cfg.Gateway.Addr != "" {
		if err := a.buildGateway(cfg, checker, reg, cert); err != nil {
			return nil, err
		}
		a.gateway.listener = a.gatewayListener
		admin.Routes = a
		admin.RouteTable = a
	}

	mux := http.NewServeMux()
	srv.Register(mux)
	admin.Register(mux)
	enroll.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.handleReady)
	if cfg.Server.Metrics {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"type":"urn:keybound:problem:not-found","title":"Not found","status":404}`, http.StatusNotFound)
	})
	a.handler = web.Middleware(mux, cfg.Server.MaxBodyBytes, log)
	ok = true
	return a, nil
}

// handleReady reports ready once the listener is serving and the store
// answers.
func (a *App) handleReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-a.ready:
	default:
		http.Error(w, "starting\n", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := a.store.ListClients(ctx, store.ClientFilter{Limit: 1}); err != nil {
		http.Error(w, "store unavailable\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Listen opens the HTTPS listener, so callers learn the bound address (port
// 0 in tests) before Serve.
func (a *App) Listen() (net.Addr, error) {
	l, err := web.Listen(a.cfg.Server.Addr)
	if err != nil {
		return nil, fmt.Errorf("app: listen on server.addr %s: %w", a.cfg.Server.Addr, err)
	}
	a.listener = l
	return l.Addr(), nil
}

// Serve runs until ctx is done, then stops accepting, lets in-flight
// requests finish (up to server.shutdown_timeout) and closes the store.
func (a *App) Serve(ctx context.Context) error {
	if a.listener == nil {
		if _, err := a.Listen(); err != nil {
			a.store.Close()
			return err
		}
	}
	hs := web.NewServer(a.handler, a.tlsConf, a.cfg.Server.MaxHeaderBytes, a.log)
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(a.listener, "", "") }()
	stopGateway := func(context.Context) error { return nil }
	if a.gateway != nil {
		stop, err := a.serveGateway(errc)
		if err != nil {
			_ = hs.Close()
			a.store.Close()
			return err
		}
		stopGateway = stop
	}
	close(a.ready)
	a.log.Info("keybound serving",
		"issuer", a.cfg.IssuerURL(), "addr", a.listener.Addr().String(),
		"ca_cert", a.CAFile, "admin", a.AdminFile, "data_dir", a.cfg.DataDir)

	bg, stopBG := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.background(bg) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("shutting down", "grace", a.cfg.Server.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Server.ShutdownTimeout)
	defer cancel()
	shutErr := errors.Join(hs.Shutdown(sctx), stopGateway(sctx))
	stopBG()
	<-done
	closeErr := a.store.Close()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, shutErr, closeErr)
}

// background runs the key schedule, revocation sync and purge.
func (a *App) background(ctx context.Context) {
	keyT := time.NewTicker(keyTickEvery)
	revT := time.NewTicker(revocationSync)
	purgeT := time.NewTicker(purgeEvery)
	// The governance sweep runs apart: a slow webhook receiver must not
	// hold up revocation sync.
	var wg sync.WaitGroup
	wg.Go(func() { a.sweepLoop(ctx) })
	defer wg.Wait()
	defer keyT.Stop()
	defer revT.Stop()
	defer purgeT.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keyT.C:
			if err := a.ring.Tick(ctx); err != nil {
				a.log.Error("key ring schedule failed", "error", err)
			}
		case <-revT.C:
			if err := a.revoked.Sync(ctx); err != nil {
				a.log.Error("revocation sync failed", "error", err)
			}
			if err := a.workload.View.Sync(ctx); err != nil {
				a.log.Error("certificate revocation sync failed", "error", err)
			}
		case <-purgeT.C:
			if n, err := a.store.PurgeExpired(ctx, time.Now()); err != nil {
				a.log.Error("purge of expired revocations failed", "error", err)
			} else if n > 0 {
				a.log.Info("purged expired revocations", "count", n)
			}
			if n, err := a.store.PurgeCertificates(ctx, time.Now().Add(-certRetention)); err != nil {
				a.log.Error("purge of expired workload certificates failed", "error", err)
			} else if n > 0 {
				a.log.Info("purged expired workload certificates and join tokens", "count", n)
			}
			if n, err := a.store.PurgeNotifications(ctx, time.Now().Add(-notificationRetention)); err != nil {
				a.log.Error("purge of old expiry notifications failed", "error", err)
			} else if n > 0 {
				a.log.Info("purged old expiry notifications", "count", n)
			}
		}
	}
}

// serverNames lists the names the generated server certificate covers: the
// loopback names plus the hosts of every listener address and URL given.
func serverNames(issuer string, addrsOrURLs ...string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	add := func(h string) {
		if h == "" || h == "0.0.0.0" || h == "::" {
			return
		}
		for _, n := range names {
			if strings.EqualFold(n, h) {
				return
			}
		}
		names = append(names, h)
	}
	for _, v := range append(addrsOrURLs, issuer) {
		if v == "" {
			continue
		}
		if h, _, err := net.SplitHostPort(v); err == nil && !strings.Contains(v, "/") {
			add(h)
		} else if u, err := url.Parse(v); err == nil {
			add(u.Hostname())
		}
	}
	return names
}

// loadWorkloadIssuer loads the operator's workload CA, or keybound's own
// root and intermediate in tlsDir (created on first start).
func loadWorkloadIssuer(cfg config.Config, tlsDir string, now time.Time, log *slog.Logger) (*ca.Issuer, error) {
	if cfg.WorkloadCA.CertFile != "" {
		if err := checkFileMode(log, "workload_ca.key_file", cfg.WorkloadCA.KeyFile, kindSecret); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		return ca.LoadWorkloadIssuer(cfg.WorkloadCA.CertFile, cfg.WorkloadCA.KeyFile, now)
	}
	return ca.LoadOrCreateWorkload(tlsDir, cfg.WorkloadCA.TrustDomain, now)
}

// CAPool reads the CA certificate a CLI or test should trust.
func CAPool(caFile string) (*x509.CertPool, error) { return appendCAs(nil, caFile) }

// appendCAs adds the PEM certificates in path to pool, a new pool when
// nil; a file without one is an error naming it.
func appendCAs(pool *x509.CertPool, path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// Replay cache sizes. DPoP proofs and client assertions have caches of
// their own: DPoP proofs arrive with every gateway and admin request, and
// when they filled a cache shared with assertions, gateway traffic refused
// every private_key_jwt client at the token endpoint.
const (
	// proofReplaySize holds each proof's jti for the DPoP window (60 s by
	// default) plus a second: 1<<20 entries carry about 17,000 proofs a
	// second across the gateway, the admin API and the token endpoint, for
	// at most about 50 MiB (replay.DefaultMaxEntries).
	proofReplaySize = 1 << 20
	// assertionReplaySize holds each assertion's jti until its exp plus
	// leeway, at most tokens.assertion_max_lifetime (5 minutes by default)
	// ahead. There is one assertion per token request or enrollment, not
	// per API call (clients reuse a token until it expires), so 1<<18
	// entries (about 12 MiB at most) carry some 800 token requests a
	// second. Only registered clients can take entries: the jti is claimed
	// after the assertion's signature has verified with the client's key.
	assertionReplaySize = 1 << 18
	// replayFullLogEvery is how often a full replay cache is logged while
	// it stays full.
	replayFullLogEvery = time.Minute
)

// replayCaches returns the DPoP proof and client assertion replay caches,
// each logging when it is full.
func (a *App) replayCaches() (proofReplay, assertionReplay) {
	proofs, assertions := a.proofReplay, a.assertionReplay
	if proofs == nil {
		proofs = replay.New(proofReplaySize, nil)
	}
	if assertions == nil {
		assertions = replay.New(assertionReplaySize, nil)
	}
	return proofReplay{c: proofs, full: &replayFullLog{log: a.log, cache: "dpop_proof"}},
		assertionReplay{c: assertions, full: &replayFullLog{log: a.log, cache: "client_assertion"}}
}

// proofReplay is the DPoP proof replay cache as dpop.Verifier uses it: a
// dpop.BoundedReplayCache, so that a full cache is reported as
// dpop.ErrUnavailable (a 503 at protected resources), not as a replay, and
// logged.
type proofReplay struct {
	c    *replay.Cache
	full *replayFullLog
}

func (p proofReplay) Claim(key string, exp time.Time) bool {
	ok, _ := p.TryClaim(key, exp)
	return ok
}

func (p proofReplay) TryClaim(key string, exp time.Time) (bool, error) {
	ok, err := p.c.TryClaim(key, exp)
	if err != nil {
		p.full.note(err)
	}
	return ok, err
}

// assertionReplay keys private_key_jwt assertion ids by client in the
// assertion replay cache. A full cache is an error (clientauth answers it
// as a server error), not a replay, and is logged.
type assertionReplay struct {
	c    *replay.Cache
	full *replayFullLog
}

func (a assertionReplay) Claim(_ context.Context, clientID, jti string, until time.Time) (bool, error) {
	// until is the last moment the assertion could be accepted; the cache
	// reads its own clock a moment after clientauth's check, and without
	// the margin an assertion accepted at exactly until would be refused
	// as already used.
	ok, err := a.c.TryClaim(clientID+"\x00"+jti, until.Add(replay.Margin))
	if err != nil {
		a.full.note(err)
		if errors.Is(err, replay.ErrFull) {
			return false, fmt.Errorf("%w: %w", clientauth.ErrReplayCapacity, err)
		}
		return false, fmt.Errorf("client assertion replay cache: %w", err)
	}
	return ok, nil
}

// Seen reports, without claiming, whether the assertion is already spent.
func (a assertionReplay) Seen(_ context.Context, clientID, jti string) bool {
	return a.c.Seen(clientID + "\x00" + jti)
}

// replayFullLog reports a full replay cache once per burst: the first
// refusal at once, then at most one line per replayFullLogEvery, with the
// number of requests refused since the previous line. A full cache under
// load refuses thousands of requests a second; a line for each would bury
// the one thing an operator needs to know.
type replayFullLog struct {
	log   *slog.Logger
	cache string
	now   func() time.Time // nil: time.Now

	mu      sync.Mutex
	next    time.Time // no line before this
	refused int       // refusals not yet reported
}

func (l *replayFullLog) note(err error) {
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	t := now()
	l.mu.Lock()
	l.refused++
	if t.Before(l.next) {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused = 0
	l.next = t.Add(replayFullLogEvery)
	l.mu.Unlock()
	l.log.Error("replay cache is full: requests that need it are refused with 503 until its entries expire; this is a capacity problem, not replayed credentials",
		"cache", l.cache, "refused", n, "error", err)
}
