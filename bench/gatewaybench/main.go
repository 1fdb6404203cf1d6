// Command gatewaybench is a reproducible load benchmark for keybound's
// enforcing gateway, measured in one run against its baselines on the same
// upstream.
//
// It builds ./cmd/keybound and starts three processes: an upstream that
// answers a small fixed body, keybound (token service and gateway, info
// JSON logs, audit to the store and to a JSON-lines file, a rate limit on
// every route, the DPoP replay cache), and a plain net/http/httputil reverse
// proxy that terminates TLS with the same certificate. It registers one
// bearer, one DPoP-bound and one mTLS-bound client through the admin API and
// fetches a token for each, then measures, one after the other:
//
//   - upstream: the upstream directly (cleartext HTTP/1.1);
//   - proxy: the plain reverse proxy (HTTPS);
//   - bearer, dpop, mtls: the gateway with each kind of token, every DPoP
//     request carrying a fresh proof.
//
// Each mode runs closed-loop (N keep-alive connections) to find saturation
// throughput, p50/p99 and the CPU time per request of each process (utime +
// stime from /proc/PID/stat, divided by 2xx responses); then proxy and dpop
// run open-loop at the same fixed rate, half of dpop's saturation, to
// compare p99 latency below saturation.
//
//	go run ./bench/gatewaybench [-duration 10s] [-concurrency 32] [-mode upstream,proxy,bearer,dpop,mtls]
//
// The Markdown report goes to stdout, progress to stderr. See bench/README.md.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
	"github.com/keybound/keybound/internal/dpop"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	modes       []string
	openModes   []string
	openRate    float64
	openConns   int
	rounds      int
	proxyFlush  time.Duration
	keyboundEnv []string
	keep        bool
	serverLog   bool
}

var allModes = []string{"upstream", "proxy", "bearer", "dpop", "mtls"}

func main() {
	if ok, err := runChild(os.Args[1:]); ok {
		if err != nil {
			fmt.Fprintf(os.Stderr, "gatewaybench %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	var o options
	var modes, openModes string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up of each closed-loop run (opens the connections)")
	flag.IntVar(&o.concurrency, "concurrency", 32, "closed loop: concurrent clients, one keep-alive connection each")
	flag.StringVar(&modes, "mode", strings.Join(allModes, ","), "comma-separated modes, run in this order: "+strings.Join(allModes, ", "))
	flag.StringVar(&openModes, "open-modes", "proxy,dpop", "modes also run open-loop at the half-load rate (\"\" for none)")
	flag.Float64Var(&o.openRate, "open-rate", 0, "open-loop rate in requests/s; 0 means half of dpop's closed-loop rate in this run")
	flag.IntVar(&o.openConns, "open-conns", 64, "open loop: connections that take the due requests")
	flag.IntVar(&o.rounds, "rounds", 2, "the modes take turns this many times, each measured for -duration/rounds (so other work on the machine spreads over all of them)")
	flag.DurationVar(&o.proxyFlush, "proxy-flush-interval", 0, "experiment: the plain proxy's httputil FlushInterval (0, the default, buffers each response; -1ns flushes every write, as keybound's gateway does)")
	flag.Func("keybound-env", "experiment: `NAME=VALUE` added to keybound's environment only (repeatable), e.g. GOGC=off or GODEBUG=gctrace=1", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		o.keyboundEnv = append(o.keyboundEnv, v)
		return nil
	})
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, audit file, database)")
	flag.BoolVar(&o.serverLog, "server-log", false, "copy the last 50 lines of keybound's log to stderr at the end")
	flag.Parse()
	var err error
	if o.modes, err = parseModes(modes); err != nil || len(o.modes) == 0 {
		fatalf("bad -mode %q: use some of %s", modes, strings.Join(allModes, ", "))
	}
	if o.openModes, err = parseModes(openModes); err != nil {
		fatalf("bad -open-modes %q: %v", openModes, err)
	}
	if o.duration <= 0 || o.warmup < 0 || o.concurrency < 1 || o.concurrency > 4096 || o.openConns < 1 || o.openConns > 4096 || o.openRate < 0 || o.rounds < 1 || o.rounds > 20 {
		fatalf("need -duration > 0, -warmup >= 0, 1 <= -concurrency, -open-conns <= 4096, -open-rate >= 0, 1 <= -rounds <= 20")
	}
	// Proofs signed before a run must still be inside keybound's 60 s DPoP
	// window (tokens.dpop.window) when they are sent.
	if o.duration/time.Duration(o.rounds) > 40*time.Second {
		fatalf("-duration/-rounds over 40s: proofs signed before a round would age out of the 60s DPoP window")
	}
	b := &bench{opts: o, self: os.Getpid()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = b.run(ctx)
	stop()
	b.cleanup()
	if err != nil {
		fatalf("%v", err)
	}
}

func parseModes(s string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if !slices.Contains(allModes, m) {
			return nil, fmt.Errorf("unknown mode %q", m)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	// Always in the canonical order: proxy before the gateway modes (its
	// rate sizes the proof pool), dpop before the open-loop runs.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(allModes, a) - slices.Index(allModes, b) })
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gatewaybench: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}

// bench is the whole run: the processes, the clients and the results.
type bench struct {
	opts options
	self int // the generator's pid
	tmp  string

	upstream, keybound, proxy *proc

	dataDir, auditFile                string
	upstreamURL, proxyURL, gatewayURL string
	tokenURL                          string
	pool                              *x509.CertPool
	bearerToken, dpopToken, mtlsToken string
	dpopKey                           *ecdsa.PrivateKey
	clientCert                        tls.Certificate
	proofs                            *proofPool
	modes                             map[string]*mode
	proxyRate                         float64 // closed-loop proxy req/s, once measured
	idleOther                         float64 // cores busy outside our processes before the runs
	idleOthers                        string  // the busiest of them
	gatewayAnswers                    atomic.Int64
	closedResults, openResults        []*result
	audit                             auditCount
	started                           time.Time
}

func (b *bench) run(ctx context.Context) error {
	b.started = time.Now()
	var err error
	if b.tmp, err = os.MkdirTemp("", "gatewaybench-"); err != nil {
		return err
	}
	logf("building ./cmd/keybound and starting upstream, keybound and the plain proxy in %s", b.tmp)
	if err := b.startAll(ctx); err != nil {
		return err
	}
	if err := b.register(ctx); err != nil {
		return err
	}
	if err := b.defineModes(); err != nil {
		return err
	}
	if err := b.sanityCheck(ctx); err != nil {
		return err
	}
	// Other work on the VM competes for the same two CPUs: sample
	// /proc/stat while our processes idle, to report how busy the machine
	// was before the runs.
	if err := b.measureIdle(ctx); err != nil {
		return err
	}

	// The modes take turns, round after round (upstream, proxy, bearer,
	// dpop, mtls, upstream, ...), so that a burst of other work on the
	// machine is less likely to land on one mode only; each mode's rounds
	// are merged.
	slice := b.opts.duration / time.Duration(b.opts.rounds)
	for round := range b.opts.rounds {
		for i, name := range b.opts.modes {
			if err := b.allAlive(); err != nil {
				return err
			}
			m := b.modes[name]
			r, err := b.closed(ctx, m, slice)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			logf("round %d, %s closed loop: %.0f req/s, p99 %.2f ms, %d failed, %s %.0f µs CPU/req, %.2f cores of other work",
				round+1, name, r.rate(), benchkit.Millis(benchkit.Percentile(r.lat, 0.99)), r.failed(), m.front, benchkit.Micros(r.cpuPerReq(m.front)), r.otherCores())
			if name == "proxy" {
				b.proxyRate = r.rate()
			}
			if round == 0 {
				b.closedResults = append(b.closedResults, r)
			} else {
				b.closedResults[i].merge(r)
			}
		}
	}

	rate := b.opts.openRate
	if rate == 0 {
		if d := b.closedResult("dpop"); d != nil && d.ok > 0 {
			rate = d.rate() / 2
		}
	}
	if len(b.opts.openModes) > 0 && rate == 0 {
		logf("no open-loop runs: dpop was not measured closed-loop and -open-rate is 0")
	}
	// The open-loop modes take turns the same way.
	for round := 0; round < b.opts.rounds && rate > 0; round++ {
		for i, name := range b.opts.openModes {
			if err := b.allAlive(); err != nil {
				return err
			}
			r, err := b.open(ctx, b.modes[name], rate, slice)
			if err != nil {
				return fmt.Errorf("%s open loop: %w", name, err)
			}
			logf("round %d, %s open loop at %.0f req/s: p99 %.2f ms, %.2f cores of other work", round+1, name, rate, benchkit.Millis(benchkit.Percentile(r.lat, 0.99)), r.otherCores())
			if round == 0 {
				b.openResults = append(b.openResults, r)
			} else {
				b.openResults[i].merge(r)
			}
		}
	}

	// Stop keybound (it flushes its audit queue on the way out), then count
	// what reached each audit sink.
	b.keybound.stop(20 * time.Second)
	b.audit = countAudit(ctx, b.dataDir, b.auditFile, b.gatewayAnswers.Load(), b.keybound.log)
	if err := insideLatencies(b.auditFile, b.openResults); err != nil {
		logf("reading keybound's own latencies from %s: %v", b.auditFile, err)
	}
	b.report(os.Stdout)
	return nil
}

// measureIdle records the CPU used outside our processes over 2 s with no
// load.
func (b *bench) measureIdle(ctx context.Context) error {
	s0, err := b.snapshot()
	if err != nil {
		return err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	s1, err := b.snapshot()
	if err != nil {
		return err
	}
	r := &result{wall: time.Since(start)}
	r.setCPU(s0, s1)
	b.idleOther = r.otherCores()
	b.idleOthers = r.busiestOthers()
	logf("machine before the runs: %.2f cores busy outside our processes%s", b.idleOther, parenthesize(b.idleOthers))
	return nil
}

func (b *bench) closedResult(name string) *result {
	for _, r := range b.closedResults {
		if r.mode.name == name {
			return r
		}
	}
	return nil
}

func (b *bench) openResult(name string) *result {
	for _, r := range b.openResults {
		if r.mode.name == name {
			return r
		}
	}
	return nil
}

func (b *bench) allAlive() error {
	for _, p := range []*proc{b.upstream, b.keybound, b.proxy} {
		if err := p.alive(); err != nil {
			return err
		}
	}
	return nil
}

// defineModes fixes each mode's URL and credentials.
func (b *bench) defineModes() error {
	signer, err := dpop.NewSigner(b.dpopKey)
	if err != nil {
		return err
	}
	b.proofs = &proofPool{signer: signer, htu: b.gatewayURL + pathConfidential, ath: b.dpopToken}
	static, err := b.proofs.sign()
	if err != nil {
		return err
	}
	b.modes = map[string]*mode{
		"upstream": {name: "upstream", label: "upstream, direct (HTTP)", url: b.upstreamURL + pathConfidential, front: procUpstream},
		"proxy": {name: "proxy", label: "plain httputil proxy (HTTPS)", url: b.proxyURL + pathConfidential, front: procProxy,
			auth: "DPoP " + b.dpopToken, staticProof: static},
		"bearer": {name: "bearer", label: "gateway, bearer JWT", url: b.gatewayURL + pathInternal, front: procKeybound, gateway: true,
			auth: "Bearer " + b.bearerToken},
		"dpop": {name: "dpop", label: "gateway, DPoP", url: b.gatewayURL + pathConfidential, front: procKeybound, gateway: true,
			auth: "DPoP " + b.dpopToken, dpop: true},
		"mtls": {name: "mtls", label: "gateway, mTLS-bound", url: b.gatewayURL + pathConfidential, front: procKeybound, gateway: true,
			auth: "Bearer " + b.mtlsToken, cert: true},
	}
	return nil
}

// sanityCheck sends one request per mode and wants the upstream's body
// back, so a misrouted or refused mode fails loudly instead of being
// benchmarked.
func (b *bench) sanityCheck(ctx context.Context) error {
	var dials atomic.Int64
	for _, name := range allModes {
		m := b.modes[name]
		w := b.newWorker(m, &dials)
		p, err := b.proofFor(m)
		if err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
		if m.auth != "" {
			req.Header.Set("Authorization", m.auth)
		}
		if p == "" {
			p = m.staticProof
		}
		if p != "" {
			req.Header.Set("DPoP", p)
		}
		resp, err := w.client.Do(req)
		if err != nil {
			return fmt.Errorf("sanity check %s: %w", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.close()
		if m.gateway {
			b.gatewayAnswers.Add(1)
		}
		if resp.StatusCode != http.StatusOK || string(body) != upstreamBody {
			return fmt.Errorf("sanity check %s: GET %s answered %d %s", name, m.url, resp.StatusCode, body)
		}
	}
	logf("sanity check: every mode reaches the upstream")
	return nil
}

// cleanup stops every process, keybound first (it may still be proxying
// to the upstream or flushing audit events), and removes the temporary
// directory unless -keep. Safe to call more than once.
func (b *bench) cleanup() {
	if b.keybound != nil {
		b.keybound.stop(20 * time.Second)
		if b.opts.serverLog {
			fmt.Fprintf(os.Stderr, "---- keybound log (last 50 lines) ----\n%s\n", benchkit.TailFile(b.keybound.log, 50))
		}
		b.keybound = nil
	}
	for _, p := range []*proc{b.proxy, b.upstream} {
		p.stop(10 * time.Second)
	}
	b.proxy, b.upstream = nil, nil
	if b.tmp != "" {
		if b.opts.keep {
			logf("kept %s", b.tmp)
		} else if err := os.RemoveAll(b.tmp); err != nil {
			logf("remove %s: %v", b.tmp, err)
		}
		b.tmp = ""
	}
}
