// Command tokenbench is a reproducible load benchmark for keybound's token
// endpoint (POST /oauth2/token, client_credentials).
//
// It builds ./cmd/keybound, starts it as a separate process on a loopback
// port with a fresh data directory, registers one private_key_jwt + DPoP
// client and one tls_client_auth + certificate-bound client through the
// admin API, then drives the endpoint from N goroutines, each with its own
// keep-alive HTTP/1.1 connection. The server process's CPU time is read
// from /proc/PID/stat before and after each run, so the figure that matters
// (server CPU per issued token) does not include the load generator.
//
// It also measures, in process, the "crypto floor" of one issuance: the
// signature operations the server cannot avoid (DPoP mode: two ECDSA P-256
// verifications, client assertion and DPoP proof, plus one P-256 signature
// for the access token; mTLS mode: one signature, the TLS handshake being
// amortised over keep-alive connections), and reports the ratio of server
// CPU per token to that floor.
//
//	go run ./bench/tokenbench [-duration 10s] [-concurrency 1,16,64] [-mode dpop,mtls]
//
// The Markdown report goes to stdout, progress to stderr. See bench/README.md.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/sdk"
)

// hydraCPUPerToken is the ORY Hydra v26.2.0 reference: CPU per issued token
// (private_key_jwt) on this machine class, from ../shared/DEPENDENCIES.md
// ("about 2.0-2.7 ms"); the upper figure is the one quoted.
const hydraCPUPerToken = 2700 * time.Microsecond

type options struct {
	duration    time.Duration
	warmup      time.Duration
	concurrency []int
	modes       []string
	floorIters  int
	precompute  bool
	keepLog     bool
	floorOnly   int
}

func main() {
	var o options
	var conc, modes string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each (mode, concurrency) run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up per run (opens the keep-alive connections)")
	flag.StringVar(&conc, "concurrency", "1,16,64", "comma-separated concurrency levels (one connection each)")
	flag.StringVar(&modes, "mode", "dpop,mtls", "comma-separated modes: dpop (private_key_jwt + DPoP), mtls (tls_client_auth, certificate-bound)")
	flag.IntVar(&o.floorIters, "floor-iters", 2000, "iterations per crypto-floor sample (3 samples, minimum taken)")
	flag.BoolVar(&o.precompute, "precompute", true, "sign assertions and proofs before the measured window (falls back to signing on the fly when the pool runs dry)")
	flag.BoolVar(&o.keepLog, "server-log", false, "copy the server's log to stderr at the end")
	flag.IntVar(&o.floorOnly, "floor-only", 0, "measure only the crypto floor, this many times, and exit (no server)")
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			fatalf("bad -concurrency %q", s)
		}
		o.concurrency = append(o.concurrency, n)
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if m != "dpop" && m != "mtls" {
			fatalf("bad -mode %q: use dpop, mtls", m)
		}
		o.modes = append(o.modes, m)
	}
	if o.duration <= 0 || o.warmup < 0 {
		fatalf("-duration must be > 0 and -warmup >= 0")
	}
	// Assertions live 60 s and proofs must be younger than the server's 60 s
	// window; a pool signed before a long run would age out.
	if o.duration+o.warmup > 40*time.Second && o.precompute {
		logf("-duration over 40s: signing assertions and proofs on the fly instead of precomputing")
		o.precompute = false
	}

	if o.floorOnly > 0 {
		for range o.floorOnly {
			f, err := measureFloor(o.floorIters)
			if err != nil {
				fatalf("%v", err)
			}
			fmt.Printf("verify %.1f µs  sign %.1f µs  dpop floor %.1f µs\n", benchkit.Micros(f.verify), benchkit.Micros(f.sign), benchkit.Micros(f.dpop()))
		}
		return
	}
	b := &bench{opts: o}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := b.run(ctx)
	stop()
	b.cleanup()
	if err != nil {
		fatalf("%v", err)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "tokenbench: "+format+"\n", args...) }

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}

// bench holds the server process and everything needed to clean up after it.
type bench struct {
	opts    options
	tmp     string
	srv     *exec.Cmd
	srvDone chan error
	srvLog  *os.File
	issuer  string
	pool    *x509.CertPool

	tokenURL string
	dpopCli  registered
	mtlsCli  registered
	mtlsCert tls.Certificate

	dpopSigner *dpop.Signer
}

type registered struct {
	id  string
	key crypto.Signer
	kid string
}

// result is one (mode, concurrency) run.
type result struct {
	mode         string
	conc         int
	ok           int
	failures     map[string]int // status (or "transport") -> count
	samples      map[string]string
	wall         time.Duration
	serverCPU    time.Duration
	lat          []time.Duration
	onTheFly     int64 // requests whose credentials were signed inside the window
	genCPU       time.Duration
	floor        time.Duration // crypto floor for this mode (median of the floor measurements)
	verify, sign time.Duration // the floor measurement taken just before this run
}

func (r *result) failed() int {
	n := 0
	for _, c := range r.failures {
		n += c
	}
	return n
}

func (b *bench) run(ctx context.Context) error {
	var err error
	b.tmp, err = os.MkdirTemp("", "tokenbench-")
	if err != nil {
		return err
	}
	logf("building ./cmd/keybound")
	bin, err := benchkit.BuildKeybound(ctx, "tokenbench", b.tmp)
	if err != nil {
		return err
	}

	// The floor is measured once before the server starts and again right
	// before each run (server idle); the ratio uses the median of all of
	// them, since one measurement on a shared VM can be off by 20-30%.
	logf("measuring the crypto floor")
	fl, err := measureFloor(b.opts.floorIters)
	if err != nil {
		return err
	}
	floors := []floor{fl}

	if err := b.startServer(ctx, bin); err != nil {
		return err
	}
	if err := b.register(ctx); err != nil {
		return err
	}

	var results []*result
	for _, mode := range b.opts.modes {
		for _, n := range b.opts.concurrency {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.serverAlive(); err != nil {
				return err
			}
			rf, err := measureFloor(b.opts.floorIters)
			if err != nil {
				return err
			}
			floors = append(floors, rf)
			r, err := b.load(ctx, mode, n)
			if err != nil {
				return fmt.Errorf("%s c=%d: %w", mode, n, err)
			}
			r.verify, r.sign = rf.verify, rf.sign
			results = append(results, r)
			logf("%s c=%d: %d ok, %d failed, %.0f tokens/s, %.0f µs CPU/token", mode, n, r.ok, r.failed(), r.rate(), benchkit.Micros(r.cpuPerToken()))
		}
	}
	med := medianFloor(floors)
	for _, r := range results {
		if r.mode == "dpop" {
			r.floor = med.dpop()
		} else {
			r.floor = med.sign
		}
	}
	b.report(os.Stdout, med, results)
	return nil
}

func (b *bench) startServer(ctx context.Context, bin string) error {
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(b.tmp, "data")
	b.srvLog, err = os.Create(filepath.Join(b.tmp, "server.log"))
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Info-level JSON logs to a file: every access line and issuance record
	// is paid for, as in production.
	b.srv = exec.Command(bin, "serve", "--data-dir", dataDir, "--addr", addr, "--log-level", "info", "--log-format", "json")
	b.srv.Stdout, b.srv.Stderr = b.srvLog, b.srvLog
	// Its own process group: a terminal ^C reaches only us, and we stop it.
	b.srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.srv.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	b.srvDone = make(chan error, 1)
	go func() { b.srvDone <- b.srv.Wait() }()
	logf("server pid %d on %s", b.srv.Process.Pid, addr)

	// Wait for the CA, then for /readyz.
	caFile := filepath.Join(dataDir, "tls", ca.CACertFile)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := b.serverAlive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after 30s; log:\n%s", b.tailLog())
		}
		if b.pool == nil {
			if p, err := app.CAPool(caFile); err == nil {
				b.pool = p
			}
		}
		if b.pool != nil {
			c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}}
			resp, err := c.Get("https://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (b *bench) serverAlive() error {
	select {
	case err := <-b.srvDone:
		b.srvDone <- err
		return fmt.Errorf("server exited (%v); log:\n%s", err, b.tailLog())
	default:
		return nil
	}
}

func (b *bench) tailLog() string {
	if b.srvLog == nil {
		return ""
	}
	return benchkit.TailFile(b.srvLog.Name(), 20)
}

// cleanup stops the server (SIGTERM, then SIGKILL after 10 s) and removes
// the temporary directory. Safe to call more than once.
func (b *bench) cleanup() {
	if b.srv != nil && b.srv.Process != nil {
		select {
		case <-b.srvDone:
		default:
			_ = b.srv.Process.Signal(syscall.SIGTERM)
			select {
			case <-b.srvDone:
			case <-time.After(10 * time.Second):
				logf("server ignored SIGTERM for 10s; killing it")
				_ = b.srv.Process.Kill()
				<-b.srvDone
			}
		}
		b.srv = nil
	}
	if b.srvLog != nil {
		if b.opts.keepLog {
			if data, err := os.ReadFile(b.srvLog.Name()); err == nil && len(data) > 0 {
				fmt.Fprintf(os.Stderr, "---- server log ----\n%s", data)
			}
		}
		b.srvLog.Close()
		b.srvLog = nil
	}
	if b.tmp != "" {
		if err := os.RemoveAll(b.tmp); err != nil {
			logf("remove %s: %v", b.tmp, err)
		}
		b.tmp = ""
	}
}

// ---- admin API -----------------------------------------------------------

func (b *bench) register(ctx context.Context) error {
	dataDir := filepath.Join(b.tmp, "data")
	d, err := app.LoadAdmin(dataDir)
	if err != nil {
		return err
	}
	b.issuer, b.tokenURL = d.Issuer, d.TokenEndpoint
	key, err := sdk.LoadPrivateKey(d.KeyFile)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}}
	ac := &sdk.Config{TokenURL: d.TokenEndpoint, ClientID: d.ClientID, Key: key, KeyID: d.KeyID, Scopes: []string{"keybound:admin"}, DPoP: true, HTTPClient: hc}
	admin := ac.Client(ctx)

	post := func(reg inventory.Registration) (string, error) {
		reg.Owner, reg.Purpose, reg.Environment = "bench@example.com", "token endpoint load benchmark", "dev"
		// Beyond the longest expiry-warning lead time (14 days), so the
		// log carries no warnings about the benchmark's own identities.
		reg.ExpiresAt = time.Now().Add(30 * 24 * time.Hour)
		return benchkit.RegisterClient(ctx, admin, b.issuer, reg)
	}

	// private_key_jwt + DPoP.
	ck, err := sdk.GenerateKey()
	if err != nil {
		return err
	}
	set, err := sdk.PublicJWKS(ck, "k1")
	if err != nil {
		return err
	}
	id, err := post(inventory.Registration{Name: "bench-dpop", Scope: "bench:read", AuthMethod: "private_key_jwt", JWKS: set, DPoPBound: true})
	if err != nil {
		return err
	}
	b.dpopCli = registered{id: id, key: ck, kid: "k1"}

	// tls_client_auth + certificate-bound tokens, certificate from the CA.
	authority, err := ca.LoadOrCreate(filepath.Join(dataDir, "tls"), time.Now())
	if err != nil {
		return err
	}
	mk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	cert, err := authority.IssueClientCertificate(mk.Public(), pkix.Name{CommonName: "tokenbench"}, nil, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	b.mtlsCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: mk, Leaf: cert}
	id, err = post(inventory.Registration{Name: "bench-mtls", Scope: "bench:read", AuthMethod: "tls_client_auth", TLSSubjectDN: "CN=tokenbench", MTLSBound: true})
	if err != nil {
		return err
	}
	b.mtlsCli = registered{id: id}
	logf("registered clients %s (dpop) and %s (mtls)", b.dpopCli.id, b.mtlsCli.id)
	return nil
}

// ---- load ----------------------------------------------------------------

// creds is what one DPoP-mode request needs freshly signed.
type creds struct{ assertion, proof string }

type worker struct {
	client  *http.Client
	lat     []time.Duration
	ok      int
	fail    map[string]int
	samples map[string]string
}

func (b *bench) newWorker(mode string) *worker {
	tc := &tls.Config{RootCAs: b.pool}
	if mode == "mtls" {
		tc.Certificates = []tls.Certificate{b.mtlsCert}
	}
	return &worker{client: benchkit.Client(tc, nil), fail: map[string]int{}, samples: map[string]string{}}
}

func (b *bench) sign() (creds, error) {
	a, err := sdk.ClientAssertion(b.dpopCli.key, b.dpopCli.kid, b.dpopCli.id, b.tokenURL, time.Now())
	if err != nil {
		return creds{}, err
	}
	p, err := b.dpopSigner.Proof("POST", b.tokenURL, dpop.ProofOptions{})
	if err != nil {
		return creds{}, err
	}
	return creds{a, p}, nil
}

// do sends one token request and records the outcome.
func (b *bench) do(w *worker, mode string, c creds, record bool) {
	var body string
	if mode == "dpop" {
		body = url.Values{"grant_type": {"client_credentials"}, "client_id": {b.dpopCli.id}, "client_assertion_type": {clientauth.JWTBearerAssertionType}, "client_assertion": {c.assertion}}.Encode()
	} else {
		body = url.Values{"grant_type": {"client_credentials"}, "client_id": {b.mtlsCli.id}}.Encode()
	}
	req, _ := http.NewRequest("POST", b.tokenURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mode == "dpop" {
		req.Header.Set("DPoP", c.proof)
	}
	start := time.Now()
	resp, err := w.client.Do(req)
	var rb []byte
	if err == nil {
		rb, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	d := time.Since(start)
	if !record {
		return
	}
	key := ""
	switch {
	case err != nil:
		key = "transport"
	case resp.StatusCode != http.StatusOK:
		key = strconv.Itoa(resp.StatusCode)
	}
	if key == "" {
		w.ok++
		w.lat = append(w.lat, d)
		return
	}
	w.fail[key]++
	if _, seen := w.samples[key]; !seen {
		if err != nil {
			w.samples[key] = err.Error()
		} else {
			w.samples[key] = strings.TrimSpace(string(rb))
		}
	}
}

func (b *bench) load(ctx context.Context, mode string, n int) (*result, error) {
	if mode == "dpop" && b.dpopSigner == nil {
		dk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if b.dpopSigner, err = dpop.NewSigner(dk); err != nil {
			return nil, err
		}
	}
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = b.newWorker(mode)
	}
	defer func() {
		for _, w := range workers {
			w.client.CloseIdleConnections()
		}
	}()

	// Warm-up: open every connection (TLS handshakes happen here) and
	// estimate the rate to size the precomputed pool.
	var warmCount atomic.Int64
	warmEnd := time.Now().Add(b.opts.warmup)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; first || time.Now().Before(warmEnd); first = false {
				var c creds
				if mode == "dpop" {
					var err error
					if c, err = b.sign(); err != nil {
						return
					}
				}
				b.do(w, mode, c, false)
				warmCount.Add(1)
			}
		}()
	}
	wg.Wait()

	// Precompute fresh credentials for the measured window.
	var pool []creds
	if mode == "dpop" && b.opts.precompute {
		rate := float64(warmCount.Load()) / max(b.opts.warmup.Seconds(), 0.1)
		want := int(rate*b.opts.duration.Seconds()*2.0) + 2*n + 64
		want = min(want, 400_000)
		var err error
		if pool, err = benchkit.SignAhead(want, b.sign); err != nil {
			return nil, err
		}
	}
	var poolNext, onTheFly atomic.Int64

	// Measured window.
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0, err := benchkit.ProcessCPU(b.srv.Process.Pid)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	end := start.Add(b.opts.duration)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				var c creds
				if mode == "dpop" {
					if i := poolNext.Add(1) - 1; i < int64(len(pool)) {
						c = pool[i]
					} else {
						onTheFly.Add(1)
						var err error
						if c, err = b.sign(); err != nil {
							w.fail["client-sign"]++
							continue
						}
					}
				}
				b.do(w, mode, c, true)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	t1, err := benchkit.ProcessCPU(b.srv.Process.Pid)
	if err != nil {
		return nil, err
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r := &result{mode: mode, conc: n, failures: map[string]int{}, samples: map[string]string{}, wall: wall, serverCPU: t1 - t0, onTheFly: onTheFly.Load(), genCPU: rusageCPU(ru1) - rusageCPU(ru0)}
	for _, w := range workers {
		r.ok += w.ok
		r.lat = append(r.lat, w.lat...)
		for k, v := range w.fail {
			r.failures[k] += v
		}
		for k, v := range w.samples {
			if _, ok := r.samples[k]; !ok {
				r.samples[k] = v
			}
		}
	}
	slices.Sort(r.lat)
	return r, nil
}

func (r *result) rate() float64 { return float64(r.ok) / r.wall.Seconds() }

func (r *result) cpuPerToken() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.serverCPU / time.Duration(r.ok)
}

func rusageCPU(ru syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ---- crypto floor --------------------------------------------------------

type floor struct {
	verify, sign time.Duration // CPU per operation
	iters        int
	samples      int // measurements the median was taken over
}

func (f floor) dpop() time.Duration { return 2*f.verify + f.sign }

func medianFloor(fs []floor) floor {
	v := make([]time.Duration, len(fs))
	s := make([]time.Duration, len(fs))
	for i, f := range fs {
		v[i], s[i] = f.verify, f.sign
	}
	slices.Sort(v)
	slices.Sort(s)
	return floor{verify: v[len(v)/2], sign: s[len(s)/2], iters: fs[0].iters, samples: len(fs)}
}

// measureFloor times ECDSA P-256 verify and sign on one goroutine, CPU time
// from getrusage; three samples of iters each, the smallest kept.
func measureFloor(iters int) (floor, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return floor{}, err
	}
	// A realistic signing input: a JWS header.payload of about the size of
	// an assertion.
	input := bytes.Repeat([]byte("eyJhbGciOiJFUzI1NiJ9."), 20)
	digest := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return floor{}, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	measure := func(op func() bool) (time.Duration, error) {
		best := time.Duration(1<<63 - 1)
		for range 3 {
			runtime.GC()
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			for range iters {
				// Hash inside the loop: the server hashes each signing input.
				if !op() {
					return 0, errors.New("floor: crypto operation failed")
				}
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			best = min(best, (rusageCPU(ru1)-rusageCPU(ru0))/time.Duration(iters))
		}
		return best, nil
	}
	v, err := measure(func() bool {
		d := sha256.Sum256(input)
		return ecdsa.VerifyASN1(&key.PublicKey, d[:], sig)
	})
	if err != nil {
		return floor{}, err
	}
	s, err := measure(func() bool {
		d := sha256.Sum256(input)
		_, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		return err == nil
	})
	if err != nil {
		return floor{}, err
	}
	return floor{verify: v, sign: s, iters: iters}, nil
}

// ---- report --------------------------------------------------------------

func (b *bench) report(out io.Writer, fl floor, rs []*result) {
	fmt.Fprintf(out, "## keybound token endpoint benchmark\n\n")
	fmt.Fprintf(out, "- machine: %d CPUs (nproc), %s\n", runtime.NumCPU(), benchkit.CPUModel())
	fmt.Fprintf(out, "- Go: %s %s/%s; server and load generator share the machine\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(out, "- each run: %s measured after %s warm-up; one keep-alive HTTP/1.1 TLS connection per concurrent client; fresh assertion and DPoP proof per request\n", b.opts.duration, b.opts.warmup)
	fmt.Fprintf(out, "- crypto floor (in process, one goroutine, getrusage CPU, best of 3 x %d iterations; median of %d measurements, one before the server starts and one right before each run): ECDSA P-256 verify %.1f µs, sign %.1f µs; DPoP issuance = 2 verify + 1 sign = %.1f µs; mTLS issuance = 1 sign = %.1f µs (TLS handshake amortised over keep-alive connections)\n",
		fl.iters, fl.samples, benchkit.Micros(fl.verify), benchkit.Micros(fl.sign), benchkit.Micros(fl.dpop()), benchkit.Micros(fl.sign))
	fmt.Fprintf(out, "- ratio = server CPU per token / floor; the second table shows the floor measured right before each run (its spread is the VM's noise)\n\n")

	fmt.Fprintf(out, "| mode | concurrency | tokens/s | p50 ms | p99 ms | failures | server CPU µs/token | floor µs | ratio |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		ratio := float64(r.cpuPerToken()) / float64(r.floor)
		fmt.Fprintf(out, "| %s | %d | %.0f | %.2f | %.2f | %s | %.0f | %.0f | %.2f |\n",
			r.mode, r.conc, r.rate(), benchkit.Millis(benchkit.Percentile(r.lat, 0.50)), benchkit.Millis(benchkit.Percentile(r.lat, 0.99)), benchkit.FailureCell(r.failures), benchkit.Micros(r.cpuPerToken()), benchkit.Micros(r.floor), ratio)
	}
	fmt.Fprintln(out)

	// Details: server utilisation, generator CPU, on-the-fly signing.
	fmt.Fprintf(out, "| mode | concurrency | issued | server CPU s | server cores busy | generator CPU s | signed in window | verify µs (pre-run) | sign µs (pre-run) |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		cpu := r.serverCPU
		fmt.Fprintf(out, "| %s | %d | %d | %.2f | %.2f | %.2f | %d | %.1f | %.1f |\n", r.mode, r.conc, r.ok, cpu.Seconds(), cpu.Seconds()/r.wall.Seconds(), r.genCPU.Seconds(), r.onTheFly, benchkit.Micros(r.verify), benchkit.Micros(r.sign))
	}
	fmt.Fprintln(out)

	// Verdict against the targets.
	fmt.Fprintf(out, "Targets: ratio <= 2.0, zero failures at concurrency 64.\n\n")
	for _, r := range rs {
		ratio := float64(r.cpuPerToken()) / float64(r.floor)
		verdict := "ok"
		if ratio > 2.0 {
			verdict = fmt.Sprintf("RATIO %.2f > 2.0", ratio)
		}
		if r.ok == 0 {
			verdict = "NO TOKENS ISSUED"
		}
		if r.failed() > 0 {
			verdict += fmt.Sprintf("; %d FAILURES", r.failed())
		}
		fmt.Fprintf(out, "- %s c=%d: %s\n", r.mode, r.conc, verdict)
	}
	for _, r := range rs {
		keys := make([]string, 0, len(r.samples))
		for k := range r.samples {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := r.samples[k]
			if len(s) > 300 {
				s = s[:300] + "..."
			}
			fmt.Fprintf(out, "  - %s c=%d, first %s failure: %s\n", r.mode, r.conc, k, s)
		}
	}
	fmt.Fprintln(out)

	// Reference: ORY Hydra.
	fmt.Fprintf(out, "Reference: ORY Hydra v26.2.0, about %.1f ms CPU per token (private_key_jwt) on this machine class (../shared/DEPENDENCIES.md).\n\n", benchkit.Millis(hydraCPUPerToken))
	for _, r := range rs {
		if r.ok == 0 {
			continue
		}
		c := r.cpuPerToken()
		fmt.Fprintf(out, "- %s c=%d: %.0f µs/token = %.1f%% of Hydra's CPU per token (Hydra / keybound = %.1fx)\n", r.mode, r.conc, benchkit.Micros(c), 100*float64(c)/float64(hydraCPUPerToken), float64(hydraCPUPerToken)/float64(c))
	}
}
