package main

// The processes under test: keybound built from the working tree, and this
// binary re-executed as the upstream and as the plain proxy. Each is its own
// process, in its own process group (a terminal ^C reaches only the
// benchmark, which then stops them in order), with its output in a log file
// under the temporary directory.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
)

// proc is one child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error // receives Wait's result once; alive puts it back
	log  string     // file holding its stdout and stderr (or just stderr)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive returns an error, with the tail of the log, once the process has
// exited.
func (p *proc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited (%v); last lines of its log:\n%s", p.name, err, benchkit.TailFile(p.log, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL after grace. It is safe to call twice.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case err := <-p.done:
		p.done <- err
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(grace):
		logf("%s ignored SIGTERM for %s; killing it", p.name, grace)
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// startProc starts bin with args and, added to ours, the environment
// variables in env. With announce, the child's stdout is read for its
// "listening ADDR" line, which is returned; the rest of its output goes to
// logPath.
func startProc(ctx context.Context, name, bin string, args, env []string, logPath string, announce bool) (*proc, string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stderr = logFile
	var stdout io.ReadCloser
	if announce {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = logFile
	}
	// Own process group, so a terminal ^C is not delivered to it before we
	// are done with it; SIGTERM if the benchmark dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { p.done <- cmd.Wait() }()
	if !announce {
		return p, "", nil
	}
	type line struct {
		s   string
		err error
	}
	lc := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(stdout).ReadString('\n')
		lc <- line{s, err}
		// Keep draining so a stray write by the child never blocks it.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-lc:
		addr, ok := strings.CutPrefix(strings.TrimSpace(l.s), "listening ")
		if l.err != nil || !ok {
			p.stop(5 * time.Second)
			return nil, "", fmt.Errorf("%s did not announce its address (%q, %v); log:\n%s", name, l.s, l.err, benchkit.TailFile(logPath, 20))
		}
		logf("%s pid %d on %s", name, p.pid(), addr)
		return p, addr, nil
	case <-time.After(30 * time.Second):
		p.stop(5 * time.Second)
		return nil, "", fmt.Errorf("%s did not start within 30s", name)
	case <-ctx.Done():
		p.stop(5 * time.Second)
		return nil, "", ctx.Err()
	}
}
