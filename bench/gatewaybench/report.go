package main

// The Markdown report: machine, method, the saturation and half-load
// tables, verdicts against the targets, the audit check, and the
// reference figures of two other gateways measured on this machine class.

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
)

// Targets, from the issue.
const (
	// targetThroughput: DPoP mode at least this share of the plain proxy's
	// requests/s in the same run.
	targetThroughput = 0.45
	// targetCPU: what that share means in CPU per request on the 2-core
	// machine.
	targetCPU = 230 * time.Microsecond
	// targetP99Delta: p99 at half of saturation load at most this much above
	// the plain proxy's.
	targetP99Delta = time.Millisecond
)

// Reference figures: CPU per proxied request while checking a bearer JWT
// only (no proof of possession) on this machine class, from
// ../shared/DEPENDENCIES.md and the issue.
const (
	oathkeeperCPU = 560 * time.Microsecond // ORY Oathkeeper v26.2.0
	heimdallCPU   = 390 * time.Microsecond // heimdall v0.17.18 (325-390)
)

func (b *bench) report(out io.Writer) {
	o := b.opts
	fmt.Fprintf(out, "## keybound gateway benchmark\n\n")
	fmt.Fprintf(out, "- machine: %d CPUs (nproc), %s; %s %s/%s\n", runtime.NumCPU(), benchkit.CPUModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(out, "- one machine for everything: upstream, plain proxy, keybound and the load generator share the CPUs; before the runs, %.2f cores were busy with other work%s\n", b.idleOther, parenthesize(b.idleOthers))
	fmt.Fprintf(out, "- closed loop: %d clients, one keep-alive HTTP/1.1 connection each; each mode measured for %s in all, in %d rounds of %s (each after a %s warm-up) taking turns with the other modes\n", o.concurrency, o.duration, o.rounds, o.duration/time.Duration(o.rounds), o.warmup)
	fmt.Fprintf(out, "- keybound: `serve --log-level info --log-format json`; routes with scopes, sensitivity floor and a per-identity rate limit (1,000,000/s: checked, never refuses); DPoP replay cache; audit to the store and a JSON-lines file\n")
	var goenv []string
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			goenv = append(goenv, k+"="+v)
		}
	}
	if len(goenv) == 0 {
		goenv = []string{"none (each process uses its own defaults)"}
	}
	fmt.Fprintf(out, "- Go runtime variables passed to every process: %s\n", strings.Join(goenv, ", "))
	if len(o.keyboundEnv) > 0 || o.proxyFlush != 0 {
		fmt.Fprintf(out, "- **experiment**: keybound environment %q, plain proxy FlushInterval %s\n", o.keyboundEnv, o.proxyFlush)
	}
	fmt.Fprintf(out, "- DPoP: a fresh proof per request (unique jti, htm, htu, ath), signed before the window\n")
	fmt.Fprintf(out, "- CPU per request: utime+stime of the process from /proc/PID/stat over the window, divided by 2xx responses; any other answer is a failure\n\n")

	fmt.Fprintf(out, "### Saturation (closed loop, %d connections)\n\n", o.concurrency)
	fmt.Fprintf(out, "| mode | req/s | p50 ms | p99 ms | failures | keybound CPU µs/req | plain proxy CPU µs/req | upstream CPU µs/req | req/s ÷ proxy | CPU ÷ proxy |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	px := b.closedResult("proxy")
	for _, r := range b.closedResults {
		rateRatio, cpuRatio := "-", "-"
		if px != nil && px.ok > 0 && r.mode.front != procUpstream {
			rateRatio = fmt.Sprintf("%.2f", r.rate()/px.rate())
			cpuRatio = fmt.Sprintf("%.2f", float64(r.cpuPerReq(r.mode.front))/float64(px.cpuPerReq(procProxy)))
		}
		fmt.Fprintf(out, "| %s | %.0f | %.2f | %.2f | %s | %s | %s | %.0f | %s | %s |\n",
			r.mode.label, r.rate(), benchkit.Millis(benchkit.Percentile(r.lat, 0.5)), benchkit.Millis(benchkit.Percentile(r.lat, 0.99)), benchkit.FailureCell(r.failures),
			cpuCell(r, procKeybound), cpuCell(r, procProxy), benchkit.Micros(r.cpuPerReq(procUpstream)), rateRatio, cpuRatio)
	}
	fmt.Fprintf(out, "\nThe bold CPU figure is the process in front of the upstream. The plain proxy receives the same request as the gateway in DPoP mode (token and a proof header, which it forwards unchecked).\n\n")
	b.detailTable(out, b.closedResults)

	if len(b.openResults) > 0 {
		rate := b.openResults[0].offered
		fmt.Fprintf(out, "### Half load (open loop, %.0f req/s, %d connections)\n\n", rate, o.openConns)
		how := "set by -open-rate"
		if o.openRate == 0 {
			how = "half of the gateway's closed-loop DPoP rate above"
		}
		fmt.Fprintf(out, "The rate is %s", how)
		if px != nil && px.ok > 0 {
			fmt.Fprintf(out, " (%.0f%% of the plain proxy's saturation rate)", 100*rate/px.rate())
		}
		fmt.Fprintf(out, ". Requests are due every 1/rate seconds whatever the answers do; latency runs from when a request was due, so queueing in the generator counts.\n\n")
		fmt.Fprintf(out, "| mode | offered req/s | answered req/s | p50 ms | p99 ms | p99.9 ms | max ms | failures | front CPU µs/req | send lag p99 ms |\n")
		fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range b.openResults {
			fmt.Fprintf(out, "| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %.0f | %.2f |\n",
				r.mode.label, r.offered, r.rate(), benchkit.Millis(benchkit.Percentile(r.lat, 0.5)), benchkit.Millis(benchkit.Percentile(r.lat, 0.99)), benchkit.Millis(benchkit.Percentile(r.lat, 0.999)),
				benchkit.Millis(benchkit.Percentile(r.lat, 1)), benchkit.FailureCell(r.failures), benchkit.Micros(r.cpuPerReq(r.mode.front)), benchkit.Millis(benchkit.Percentile(r.lag, 0.99)))
		}
		fmt.Fprintf(out, "\nSend lag is from when a request was due to when a connection started sending it (dispatcher wake-up plus waiting for a free connection).\n")
		for _, r := range b.openResults {
			if len(r.inside) == 0 {
				continue
			}
			fmt.Fprintf(out, "\nInside keybound (%s, the audit trail's latency_micros for the %d requests that arrived in these rounds: from the handler's start to the end of the proxied response): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms. The rest of the generator's latency is spent before the handler runs or after it returns: in the kernel, TLS, scheduling and the generator.\n",
				r.mode.label, len(r.inside), benchkit.Millis(benchkit.Percentile(r.inside, 0.5)), benchkit.Millis(benchkit.Percentile(r.inside, 0.99)), benchkit.Millis(benchkit.Percentile(r.inside, 0.999)))
		}
		fmt.Fprintf(out, "\n")
		b.detailTable(out, b.openResults)
	}

	b.verdicts(out)
	b.auditSection(out)
	b.references(out)
}

func parenthesize(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func cpuCell(r *result, proc string) string {
	s := fmt.Sprintf("%.0f", benchkit.Micros(r.cpuPerReq(proc)))
	if proc == r.mode.front {
		return "**" + s + "**"
	}
	return s
}

// disturbedCores: a run during which more than this much CPU went to work
// outside our processes (other engineers' builds and tests on the VM) was
// disturbed.
const disturbedCores = 0.3

// detailTable shows where the CPUs went in each run, and flags the runs
// that other work on the machine disturbed.
func (b *bench) detailTable(out io.Writer, rs []*result) {
	fmt.Fprintf(out, "| mode | 2xx | cores busy: keybound | proxy | upstream | generator | other work | steal | busiest other processes (cores) | generator CPU µs/req | new conns in window | proofs signed in window |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	for _, r := range rs {
		other := fmt.Sprintf("%.2f", r.otherCores())
		if r.otherCores() > disturbedCores {
			other = "**" + other + "**"
		}
		signed := "-"
		if r.mode.dpop {
			signed = fmt.Sprint(r.onTheFly)
		}
		fmt.Fprintf(out, "| %s | %d | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %s | %.0f | %d | %s |\n",
			r.mode.name, r.ok, r.cores(procKeybound), r.cores(procProxy), r.cores(procUpstream), r.cores(procGenerator),
			other, benchkit.Ticks(r.machine.steal).Seconds()/r.wall.Seconds(), r.busiestOthers(), benchkit.Micros(r.cpuPerReq(procGenerator)), r.dials, signed)
	}
	fmt.Fprintf(out, "\n| mode | per round: req/s | front CPU µs/req | p99 ms | other work (cores) |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		var rate, cpu, p99, other []string
		for _, f := range r.perRound {
			rate = append(rate, fmt.Sprintf("%.0f", f.rate))
			cpu = append(cpu, fmt.Sprintf("%.0f", benchkit.Micros(f.cpu)))
			p99 = append(p99, fmt.Sprintf("%.2f", benchkit.Millis(f.p99)))
			other = append(other, fmt.Sprintf("%.2f", f.other))
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s |\n", r.mode.name, strings.Join(rate, ", "), strings.Join(cpu, ", "), strings.Join(p99, ", "), strings.Join(other, ", "))
	}
	fmt.Fprintf(out, "\n\"other work\" is machine-wide busy time (/proc/stat) outside our four processes: other work on the VM (other engineers' builds and tests; the busiest visible ones are named) and kernel work not charged to a process. Bold: more than %.1f cores, a disturbed run.\n\n", disturbedCores)
}

func (b *bench) verdicts(out io.Writer) {
	fmt.Fprintf(out, "### Verdicts\n\n")
	px, dp := b.closedResult("proxy"), b.closedResult("dpop")
	if px != nil && dp != nil && px.ok > 0 && dp.ok > 0 {
		share := dp.rate() / px.rate()
		fmt.Fprintf(out, "- DPoP throughput: %.0f req/s = %.0f%% of the plain proxy's %.0f (target >= %.0f%%): %s\n",
			dp.rate(), 100*share, px.rate(), 100*targetThroughput, verdict(share >= targetThroughput))
	} else {
		fmt.Fprintf(out, "- DPoP throughput: not measured (needs -mode proxy,dpop)\n")
	}
	if dp != nil && dp.ok > 0 {
		c := dp.cpuPerReq(procKeybound)
		fmt.Fprintf(out, "- DPoP CPU: %.0f µs per request (target <= %.0f): %s\n", benchkit.Micros(c), benchkit.Micros(targetCPU), verdict(c <= targetCPU))
	}
	op, od := b.openResult("proxy"), b.openResult("dpop")
	if op != nil && od != nil && op.ok > 0 && od.ok > 0 {
		pp, pd := benchkit.Percentile(op.lat, 0.99), benchkit.Percentile(od.lat, 0.99)
		fmt.Fprintf(out, "- p99 at %.0f req/s: gateway DPoP %.2f ms, plain proxy %.2f ms, difference %+.2f ms (target <= +%.0f ms): %s\n",
			od.offered, benchkit.Millis(pd), benchkit.Millis(pp), benchkit.Millis(pd-pp), benchkit.Millis(targetP99Delta), verdict(pd-pp <= targetP99Delta))
	} else {
		fmt.Fprintf(out, "- p99 at half load: not measured (needs -open-modes proxy,dpop)\n")
	}
	all := append(append([]*result(nil), b.closedResults...), b.openResults...)
	nf := 0
	for _, r := range all {
		nf += r.failed()
	}
	var disturbed []string
	for _, r := range all {
		if r.otherCores() > disturbedCores {
			loop := "closed"
			if r.open {
				loop = "open"
			}
			disturbed = append(disturbed, fmt.Sprintf("%s (%s loop, %.2f cores)", r.mode.name, loop, r.otherCores()))
		}
	}
	if len(disturbed) > 0 {
		fmt.Fprintf(out, "- disturbed by other work on the machine: %s; rerun if these figures matter\n", strings.Join(disturbed, ", "))
	}
	if nf == 0 {
		fmt.Fprintf(out, "- failures: none\n")
	} else {
		fmt.Fprintf(out, "- FAILURES: %d non-2xx answers or transport errors\n", nf)
		for _, r := range all {
			keys := make([]string, 0, len(r.samples))
			for k := range r.samples {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			loop := "closed"
			if r.open {
				loop = "open"
			}
			for _, k := range keys {
				s := strings.TrimSpace(r.samples[k])
				if len(s) > 300 {
					s = s[:300] + "..."
				}
				fmt.Fprintf(out, "  - %s (%s loop), first %s: %s\n", r.mode.name, loop, k, s)
			}
		}
	}
	fmt.Fprintln(out)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**MISSED**"
}

func (b *bench) auditSection(out io.Writer) {
	a := b.audit
	fmt.Fprintf(out, "### Audit check\n\n")
	fmt.Fprintf(out, "- gateway answers received (warm-up, checks and measured runs): %d\n", a.answers)
	if a.storeErr != nil {
		fmt.Fprintf(out, "- store: could not count (%v)\n", a.storeErr)
	} else {
		fmt.Fprintf(out, "- store: %d events (%d allow) %s\n", a.stored, a.allowed, matchWord(a.stored, a.answers))
	}
	if a.jsonlErr != nil {
		fmt.Fprintf(out, "- JSON-lines file: could not count (%v)\n", a.jsonlErr)
	} else {
		fmt.Fprintf(out, "- JSON-lines file: %d lines %s\n", a.jsonl, matchWord(a.jsonl, a.answers))
	}
	switch {
	case a.logScanErr != nil:
		fmt.Fprintf(out, "- keybound log: could not scan (%v)\n", a.logScanErr)
	case a.warnings == 0:
		fmt.Fprintf(out, "- keybound log: no warnings or errors\n")
	default:
		w := a.firstWarn
		if len(w) > 300 {
			w = w[:300] + "..."
		}
		fmt.Fprintf(out, "- keybound log: **%d warnings or errors**, the first: `%s`\n", a.warnings, w)
	}
	fmt.Fprintln(out)
}

func matchWord(got, want int64) string {
	if got == want {
		return "(one per answer)"
	}
	return fmt.Sprintf("(**MISMATCH**: %d answers)", want)
}

func (b *bench) references(out io.Writer) {
	fmt.Fprintf(out, "### Reference\n\n")
	fmt.Fprintf(out, "CPU per proxied request on this machine class, checking a bearer JWT only (no proof of possession): ORY Oathkeeper v26.2.0 about %.0f µs, heimdall v0.17.18 about %.0f µs (../shared/DEPENDENCIES.md).\n\n", benchkit.Micros(oathkeeperCPU), benchkit.Micros(heimdallCPU))
	for _, name := range []string{"bearer", "dpop", "mtls"} {
		r := b.closedResult(name)
		if r == nil || r.ok == 0 {
			continue
		}
		c := r.cpuPerReq(procKeybound)
		fmt.Fprintf(out, "- keybound %s: %.0f µs = %.0f%% of Oathkeeper's, %.0f%% of heimdall's\n", name, benchkit.Micros(c), 100*float64(c)/float64(oathkeeperCPU), 100*float64(c)/float64(heimdallCPU))
	}
	if px := b.closedResult("proxy"); px != nil && px.ok > 0 {
		fmt.Fprintf(out, "- plain httputil proxy: %.0f µs (../shared/DEPENDENCIES.md: about 70-105 µs)\n", benchkit.Micros(px.cpuPerReq(procProxy)))
	}
	fmt.Fprintf(out, "\nTotal time: %s.\n", time.Since(b.started).Round(time.Second))
}
