package main

// The load generator. Two shapes:
//
//   - closed loop: N clients, each with one keep-alive HTTP/1.1 connection,
//     send the next request as soon as the previous answer arrives. This
//     finds saturation throughput and the CPU each process spends per
//     request.
//   - open loop: requests are due at a fixed rate whatever the server does
//     (one every 1/R seconds), taken by a pool of connections; latency is
//     measured from when a request was due, not from when a connection was
//     free to send it, so a stall shows in the percentiles instead of
//     silently lowering the offered load (coordinated omission).
//
// DPoP proofs are signed before the measured window, one per request with a
// unique jti, so the generator's signing does not compete with the gateway
// for the two CPUs; if the pool runs dry, proofs are signed on the fly and
// counted.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
	"github.com/keybound/keybound/internal/dpop"
)

// Process names the report uses.
const (
	procKeybound  = "keybound"
	procProxy     = "proxy"
	procUpstream  = "upstream"
	procGenerator = "generator"
)

var procNames = []string{procKeybound, procProxy, procUpstream, procGenerator}

// mode is one way of reaching the upstream.
type mode struct {
	name  string
	label string // for the report
	url   string
	// front is the process between the client and the upstream, whose CPU
	// per request is the figure of merit (the upstream itself for the
	// direct mode).
	front string
	auth  string // Authorization header value, if any
	// dpop: a fresh proof per request from the pool. staticProof: one fixed
	// proof-sized header (the plain proxy does not check it, but receives
	// and forwards the same bytes the gateway receives in DPoP mode).
	dpop        bool
	staticProof string
	cert        bool // present the client certificate
	gateway     bool
}

// result is one measured run of one mode.
type result struct {
	mode     *mode
	open     bool
	conns    int
	offered  float64 // open loop: requests/s due
	ok       int     // 2xx responses
	failures map[string]int
	samples  map[string]string // first failure of each kind
	wall     time.Duration
	lat      []time.Duration // sorted, 2xx only
	lag      []time.Duration // open loop: due to sent, sorted
	cpu      map[string]time.Duration
	machine  machineCPU
	others   map[string]time.Duration // other visible processes' CPU, by name
	onTheFly int64                    // proofs signed inside the window
	dials    int64                    // connections opened inside the window
	// perRound holds each round's figures, before merging.
	perRound []roundFigures
	// windows are the measured spans of keybound's open-loop rounds, to
	// pick their events out of the audit trail; inside is the latency the
	// gateway recorded for them, sorted.
	windows []window
	inside  []time.Duration
}

// window is one measured span.
type window struct{ start, end time.Time }

// roundFigures are the headline figures of one round.
type roundFigures struct {
	rate  float64
	cpu   time.Duration // the front process's CPU per request
	p99   time.Duration
	other float64
}

func (r *result) figures() roundFigures {
	return roundFigures{rate: r.rate(), cpu: r.cpuPerReq(r.mode.front), p99: benchkit.Percentile(r.lat, 0.99), other: r.otherCores()}
}

func (r *result) failed() int {
	n := 0
	for _, c := range r.failures {
		n += c
	}
	return n
}

func (r *result) rate() float64 { return float64(r.ok) / r.wall.Seconds() }

// cpuPerReq is proc's CPU time in the window divided by the 2xx responses.
func (r *result) cpuPerReq(proc string) time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.cpu[proc] / time.Duration(r.ok)
}

// cores is how many CPUs proc kept busy on average during the window.
func (r *result) cores(proc string) float64 { return r.cpu[proc].Seconds() / r.wall.Seconds() }

// otherCores is machine-wide busy time not accounted to our four
// processes: other work on the VM (other engineers' builds and tests,
// including processes too short-lived to be seen in /proc; none of it is
// steal) and kernel work not charged to a process.
// Both counters tick at 100 Hz and are sampled at slightly different
// instants, so a quiet machine can read a little below zero; that is
// reported as zero.
func (r *result) otherCores() float64 {
	var ours time.Duration
	for _, p := range procNames {
		ours += r.cpu[p]
	}
	return max(0, (benchkit.Ticks(r.machine.busy)-ours).Seconds()/r.wall.Seconds())
}

// snapshot is the CPU counters at one instant.
type snapshot struct {
	cpu     map[string]time.Duration
	machine machineCPU
	others  map[int]procSample // every other visible process
}

func (b *bench) snapshot() (snapshot, error) {
	s := snapshot{cpu: map[string]time.Duration{}}
	pids := map[string]int{procKeybound: b.keybound.pid(), procProxy: b.proxy.pid(), procUpstream: b.upstream.pid(), procGenerator: b.self}
	skip := map[int]bool{}
	for name, pid := range pids {
		c, err := benchkit.ProcessCPU(pid)
		if err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
		s.cpu[name] = c
		skip[pid] = true
	}
	m, err := readMachineCPU()
	s.machine = m
	s.others = allProcs(skip)
	return s, err
}

func (r *result) setCPU(a, z snapshot) {
	r.cpu = map[string]time.Duration{}
	for _, p := range procNames {
		r.cpu[p] = z.cpu[p] - a.cpu[p]
	}
	r.machine = z.machine.sub(a.machine)
	r.others = map[string]time.Duration{}
	for pid, zs := range z.others {
		if as, ok := a.others[pid]; ok && as.comm == zs.comm && zs.cpu > as.cpu {
			r.others[zs.comm] += zs.cpu - as.cpu
		}
	}
}

// busiestOthers names the other processes that used at least 0.05 cores
// during the window, busiest first, at most three.
func (r *result) busiestOthers() string {
	names := make([]string, 0, len(r.others))
	for n, c := range r.others {
		if c.Seconds()/r.wall.Seconds() >= 0.05 {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(x, y string) int { return int(r.others[y] - r.others[x]) })
	if len(names) > 3 {
		names = names[:3]
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f", n, r.others[n].Seconds()/r.wall.Seconds())
	}
	return strings.Join(parts, ", ")
}

// worker is one connection and what it observed.
type worker struct {
	client  *http.Client
	lat     []time.Duration
	lag     []time.Duration
	ok      int
	fail    map[string]int
	samples map[string]string
}

func (b *bench) newWorker(m *mode, dials *atomic.Int64) *worker {
	tc := &tls.Config{RootCAs: b.pool}
	if m.cert {
		tc.Certificates = []tls.Certificate{b.clientCert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c := benchkit.Client(tc, func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	})
	return &worker{client: c, fail: map[string]int{}, samples: map[string]string{}}
}

func (w *worker) close() { w.client.CloseIdleConnections() }

// newWorkers returns n workers for m, each dial counted in dials.
func (b *bench) newWorkers(m *mode, n int, dials *atomic.Int64) []*worker {
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = b.newWorker(m, dials)
	}
	return workers
}

func closeAll(workers []*worker) {
	for _, w := range workers {
		w.close()
	}
}

// send makes one request. It returns whether the answer was a 2xx.
func (b *bench) send(w *worker, m *mode, proof string, record bool) bool {
	req, _ := http.NewRequest(http.MethodGet, m.url, nil)
	if m.auth != "" {
		req.Header.Set("Authorization", m.auth)
	}
	switch {
	case proof != "":
		req.Header.Set("DPoP", proof)
	case m.staticProof != "":
		req.Header.Set("DPoP", m.staticProof)
	}
	resp, err := w.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if m.gateway {
			b.gatewayAnswers.Add(1)
		}
	}
	key := ""
	switch {
	case err != nil:
		key = "transport"
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		key = strconv.Itoa(resp.StatusCode)
	}
	if key == "" {
		return true
	}
	if record {
		w.fail[key]++
		if _, seen := w.samples[key]; !seen {
			if err != nil {
				w.samples[key] = err.Error()
			} else {
				w.samples[key] = string(body)
			}
		}
	}
	return false
}

// proofPool hands out fresh DPoP proofs, signed ahead of time.
type proofPool struct {
	signer   *dpop.Signer
	htu, ath string // ath is the access token the proofs are bound to
	proofs   []string
	next     atomic.Int64
	onTheFly atomic.Int64
}

func (p *proofPool) sign() (string, error) {
	return p.signer.Proof(http.MethodGet, p.htu, dpop.ProofOptions{AccessToken: p.ath})
}

// fill signs n proofs on every CPU.
func (p *proofPool) fill(n int) error {
	p.next.Store(0)
	p.onTheFly.Store(0)
	proofs, err := benchkit.SignAhead(n, p.sign)
	p.proofs = proofs
	return err
}

// take returns an unused proof, signing one if the pool is empty.
func (p *proofPool) take() (string, error) {
	if i := p.next.Add(1) - 1; i < int64(len(p.proofs)) {
		s := p.proofs[i]
		p.proofs[i] = ""
		return s, nil
	}
	p.onTheFly.Add(1)
	return p.sign()
}

// proofFor returns the proof for the next request of m ("" when m sends
// none).
func (b *bench) proofFor(m *mode) (string, error) {
	if !m.dpop {
		return "", nil
	}
	return b.proofs.take()
}

// closed runs m closed-loop with b.opts.concurrency connections for dur
// (after the warm-up).
func (b *bench) closed(ctx context.Context, m *mode, dur time.Duration) (*result, error) {
	n := b.opts.concurrency
	var dials atomic.Int64
	workers := b.newWorkers(m, n, &dials)
	defer closeAll(workers)

	// Warm-up: opens every connection (the TLS handshakes happen here) and
	// estimates the rate, to size the proof pool.
	b.proofs.proofs = nil
	var warm atomic.Int64
	warmEnd := time.Now().Add(b.opts.warmup)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; first || time.Now().Before(warmEnd); first = false {
				p, err := b.proofFor(m)
				if err != nil {
					return
				}
				b.send(w, m, p, false)
				warm.Add(1)
			}
		}()
	}
	wg.Wait()
	if m.dpop {
		// Warm-up signs on the fly, which slows it: take at least twice its
		// rate, and at least the plain proxy's rate if that was measured
		// (the gateway cannot beat the proxy by much).
		rate := max(2*float64(warm.Load())/max(b.opts.warmup.Seconds(), 0.1), 1.1*b.proxyRate)
		want := min(int(rate*dur.Seconds())+2*n+64, maxPool)
		t := time.Now()
		if err := b.proofs.fill(want); err != nil {
			return nil, err
		}
		logf("%s: signed %d proofs in %s", m.name, want, time.Since(t).Round(time.Millisecond))
	}

	s0, err := b.snapshot()
	if err != nil {
		return nil, err
	}
	dials.Store(0)
	b.proofs.onTheFly.Store(0)
	start := time.Now()
	end := start.Add(dur)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				p, err := b.proofFor(m)
				if err != nil {
					w.fail["client-sign"]++
					continue
				}
				t := time.Now()
				if !t.Before(end) {
					return
				}
				if b.send(w, m, p, true) {
					w.ok++
					w.lat = append(w.lat, time.Since(t))
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	s1, err := b.snapshot()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &result{mode: m, conns: n, wall: wall, onTheFly: b.proofs.onTheFly.Load(), dials: dials.Load()}
	r.setCPU(s0, s1)
	r.collect(workers)
	r.perRound = []roundFigures{r.figures()}
	return r, nil
}

// maxPool bounds the proofs signed ahead (about 600 bytes each).
const maxPool = 1_000_000

// open runs m open-loop at rate requests/s for dur over b.opts.openConns
// connections.
func (b *bench) open(ctx context.Context, m *mode, rate float64, dur time.Duration) (*result, error) {
	n := b.opts.openConns
	var dials atomic.Int64
	workers := b.newWorkers(m, n, &dials)
	defer closeAll(workers)
	// Open every connection before the window.
	b.proofs.proofs = nil
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, err := b.proofFor(m); err == nil {
				b.send(w, m, p, false)
			}
		}()
	}
	wg.Wait()

	total := int(rate * dur.Seconds())
	if total < 1 {
		return nil, fmt.Errorf("open loop: rate %.1f/s over %s is no request", rate, dur)
	}
	if m.dpop {
		if err := b.proofs.fill(min(total+64, maxPool)); err != nil {
			return nil, err
		}
	}
	interval := float64(time.Second) / rate
	due := func(start time.Time, i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }

	s0, err := b.snapshot()
	if err != nil {
		return nil, err
	}
	dials.Store(0)
	b.proofs.onTheFly.Store(0)
	queue := make(chan int, total)
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.lat = make([]time.Duration, 0, total/n+16)
			w.lag = make([]time.Duration, 0, total/n+16)
			for i := range queue {
				p, err := b.proofFor(m)
				if err != nil {
					w.fail["client-sign"]++
					continue
				}
				d := due(start, i)
				w.lag = append(w.lag, time.Since(d))
				if b.send(w, m, p, true) {
					w.ok++
					w.lat = append(w.lat, time.Since(d))
				}
			}
		}()
	}
	// The dispatcher: request i is due at start + i/rate. It sleeps until
	// the next one is due and releases every request that is due, so a late
	// wake-up delays requests (and shows in their latency) but never drops
	// them.
	for i := 0; i < total && ctx.Err() == nil; {
		if d := time.Until(due(start, i)); d > 0 {
			time.Sleep(d)
		}
		for now := time.Now(); i < total && !due(start, i).After(now); i++ {
			queue <- i
		}
	}
	close(queue)
	wg.Wait()
	wall := time.Since(start)
	s1, err := b.snapshot()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &result{mode: m, open: true, conns: n, offered: rate, wall: wall, onTheFly: b.proofs.onTheFly.Load(), dials: dials.Load()}
	if m.front == procKeybound {
		r.windows = []window{{start, start.Add(wall)}}
	}
	r.setCPU(s0, s1)
	r.collect(workers)
	slices.Sort(r.lag)
	r.perRound = []roundFigures{r.figures()}
	return r, nil
}

// merge adds o, another round of the same mode and loop, to r.
func (r *result) merge(o *result) {
	r.perRound = append(r.perRound, o.perRound...)
	r.windows = append(r.windows, o.windows...)
	r.ok += o.ok
	r.wall += o.wall
	r.onTheFly += o.onTheFly
	r.dials += o.dials
	for k, v := range o.cpu {
		r.cpu[k] += v
	}
	r.machine.busy += o.machine.busy
	r.machine.steal += o.machine.steal
	for k, v := range o.others {
		r.others[k] += v
	}
	for k, v := range o.failures {
		r.failures[k] += v
	}
	for k, v := range o.samples {
		if _, ok := r.samples[k]; !ok {
			r.samples[k] = v
		}
	}
	r.lat = append(r.lat, o.lat...)
	r.lag = append(r.lag, o.lag...)
	slices.Sort(r.lat)
	slices.Sort(r.lag)
}

// collect merges what the workers saw.
func (r *result) collect(workers []*worker) {
	r.failures, r.samples = map[string]int{}, map[string]string{}
	for _, w := range workers {
		r.ok += w.ok
		r.lat = append(r.lat, w.lat...)
		r.lag = append(r.lag, w.lag...)
		for k, v := range w.fail {
			r.failures[k] += v
		}
		for k, v := range w.samples {
			if _, ok := r.samples[k]; !ok {
				r.samples[k] = v
			}
		}
		w.lat, w.lag, w.ok, w.fail, w.samples = nil, nil, 0, map[string]int{}, map[string]string{}
	}
	slices.Sort(r.lat)
}
