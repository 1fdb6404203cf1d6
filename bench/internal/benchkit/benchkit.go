// Package benchkit holds what keybound's load benchmarks (tokenbench,
// gatewaybench) share: finding the module, building keybound, a free port,
// the tail of a log file, the machine
// description, process CPU time from /proc, registering the clients they
// load the server with through the admin API, the one-connection HTTP
// client each load worker uses, signing credentials ahead on every CPU, and
// the report's percentiles and failure cells. Each benchmark keeps its own
// load generation and report.
package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/inventory"
)

// ModuleRoot is the directory of the go.mod the benchmark runs in; name is
// the benchmark, for the error that says how to run it.
func ModuleRoot(name string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run %s inside the keybound module (go run ./bench/%s)", name, name)
	}
	return filepath.Dir(gomod), nil
}

// BuildKeybound compiles ./cmd/keybound of the module (see ModuleRoot; name
// is the benchmark) into dir and returns the binary's path. The compiler's
// output goes to stderr.
func BuildKeybound(ctx context.Context, name, dir string) (string, error) {
	root, err := ModuleRoot(name)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keybound")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/keybound")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keybound: %w", err)
	}
	return bin, nil
}

// TailFile returns the last n lines of the file at path (a child process's
// log, for an error message), or "" when it cannot be read.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CPUModel is the first "model name" of /proc/cpuinfo, or "unknown".
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Micros and Millis turn a duration into the report's units.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Millis: see Micros.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// RegisterClient registers reg through POST /admin/v1/clients of issuer,
// with admin an HTTP client that authenticates as the admin identity, and
// returns the new client id.
func RegisterClient(ctx context.Context, admin *http.Client, issuer string, reg inventory.Registration) (string, error) {
	body, err := json.Marshal(reg)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", issuer+"/admin/v1/clients", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := admin.Do(req)
	if err != nil {
		return "", fmt.Errorf("register %s: %w", reg.Name, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("register %s: %d %s", reg.Name, resp.StatusCode, rb)
	}
	var v struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(rb, &v); err != nil || v.ClientID == "" {
		return "", fmt.Errorf("register %s: no client_id in %s", reg.Name, rb)
	}
	return v.ClientID, nil
}

// ClkTck is sysconf(_SC_CLK_TCK): USER_HZ, fixed at 100 for the /proc ABI
// on every architecture Go supports.
const ClkTck = 100

// Ticks converts clock ticks to a duration.
func Ticks(t uint64) time.Duration { return time.Duration(t) * time.Second / ClkTck }

// ParseProcStat returns utime+stime, in clock ticks, from the contents of
// /proc/PID/stat. utime and stime are fields 14 and 15; they are counted
// after the ")" that closes field 2 (comm), because comm may itself contain
// spaces and parentheses.
func ParseProcStat(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat: no ')' after comm")
	}
	// After ")", field 3 (state) is index 0, so field k is index k-3.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15-3+1 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseUint(f[14-3], 10, 64)
	st, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: %w", err)
	}
	return ut + st, nil
}

// ProcessCPU is the CPU time (user + system) pid has used so far.
func ProcessCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	t, err := ParseProcStat(data)
	return Ticks(t), err
}

// Client is a load worker's HTTP client: one keep-alive HTTP/1.1
// connection over TLS configured by tc. dial, when not nil, opens the
// connection (to count dials); nil uses a net.Dialer with a 5 s timeout.
func Client(tc *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tc,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		// A non-nil empty map keeps the transport on HTTP/1.1.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if dial == nil {
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// SignAhead calls sign n times on every CPU and returns the results in
// order, or the first error.
func SignAhead[T any](n int, sign func() (T, error)) ([]T, error) {
	out := make([]T, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				v, err := sign()
				if err != nil {
					firstErr.Store(err)
					return
				}
				out[i] = v
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return out, nil
}

// Percentile is the nearest-rank percentile (p in [0, 1]) of sorted: the
// smallest value with at least p of the samples at or below it. Zero for no
// samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// FailureCell is the report's failures cell: "0", or the total in bold
// followed by the count of each kind, e.g. "**3** (503×2, transport×1)".
func FailureCell(failures map[string]int) string {
	total := 0
	keys := make([]string, 0, len(failures))
	for k, n := range failures {
		total += n
		keys = append(keys, k)
	}
	if total == 0 {
		return "0"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, failures[k])
	}
	return fmt.Sprintf("**%d** (%s)", total, strings.Join(parts, ", "))
}
