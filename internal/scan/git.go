package scan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // git's object ids, not a security decision
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Git history is read with the git executable, not a Go implementation of
// git (docs/dependencies.md says why): rev-list lists every object reachable
// from any ref, cat-file reads blobs in one long-running process, and log
// --find-object names the commit that added a blob a secret was found in.
// Each blob is scanned once however many commits hold it.

// gitRepo is the repository a scanned directory belongs to.
type gitRepo struct {
	git string
	dir string // the scanned directory, where commands run
	// prefix is the scanned directory relative to the top of the work tree,
	// with a trailing slash ("" at the top): history paths outside it are
	// not part of the scan.
	prefix string
	format string // object format: sha1 or sha256
	// bare is set for a bare repository or a .git directory: there is no
	// work tree to walk, only history.
	bare bool
}

// openRepo returns the repository dir is in, or nil when it is in none. An
// error means dir looks like a repository (it has a .git entry) but git
// could not read it: the caller reports that history was not scanned.
func openRepo(ctx context.Context, git, dir string) (*gitRepo, error) {
	_, statErr := os.Lstat(filepath.Join(dir, ".git"))
	hasDotGit := statErr == nil
	if _, err := exec.LookPath(git); err != nil {
		if hasDotGit {
			return nil, errors.New("git executable not found; install git or pass --no-history")
		}
		return nil, nil
	}
	r := &gitRepo{git: git, dir: dir}
	out, err := r.output(ctx, "rev-parse", "--is-bare-repository", "--is-inside-git-dir", "--is-inside-work-tree", "--show-object-format")
	if err != nil {
		if hasDotGit {
			return nil, err
		}
		return nil, nil // not a repository
	}
	f := strings.Fields(out)
	if len(f) != 4 {
		return nil, fmt.Errorf("unexpected git rev-parse output %q", out)
	}
	r.format = f[3]
	if r.format != "sha1" && r.format != "sha256" {
		return nil, fmt.Errorf("unknown git object format %q", r.format)
	}
	if f[2] != "true" {
		r.bare = true
		return r, nil
	}
	out, err = r.output(ctx, "rev-parse", "--show-prefix")
	if err != nil {
		return nil, err
	}
	r.prefix = strings.TrimRight(out, "\n")
	return r, nil
}

// command builds a git command in r.dir that reads no user input, pages
// nothing and runs no repository-configured helper it can avoid.
func (r *gitRepo) command(ctx context.Context, args ...string) *exec.Cmd {
	base := []string{"--no-pager", "-c", "core.fsmonitor=false", "-c", "core.quotePath=false", "-C", r.dir}
	cmd := exec.CommandContext(ctx, r.git, append(base, args...)...)
	// GIT_NO_LAZY_FETCH: in a partial clone, a missing object is not
	// fetched from the promisor remote (network I/O through the
	// repository's own transport settings); the scan reads what is here.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_NO_LAZY_FETCH=1", "LC_ALL=C")
	return cmd
}

// output runs git and returns its standard output; a failure carries the
// first line git wrote to standard error.
func (r *gitRepo) output(ctx context.Context, args ...string) (string, error) {
	cmd := r.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", gitError(args[0], err, stderr.String())
	}
	return string(out), nil
}

func gitError(verb string, err error, stderr string) error {
	line, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	if line != "" {
		return fmt.Errorf("git %s: %s", verb, line)
	}
	return fmt.Errorf("git %s: %w", verb, err)
}

// historyBlob is one blob reachable from some ref.
type historyBlob struct {
	id   string
	size int64
	path string // relative to the scanned directory
}

// history scans every blob reachable from any ref that is not already the
// content of a scanned work-tree file. Only a cancelled context is an
// error; any other failure is reported as history not scanned.
func (s *scanner) history(ctx context.Context, r *gitRepo) error {
	err := s.readHistory(ctx, r)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.skip(".git", "", "git history not scanned: "+err.Error())
	}
	return nil
}

func (s *scanner) readHistory(ctx context.Context, r *gitRepo) error {
	out, err := r.output(ctx, "rev-list", "--all", "--count")
	if err != nil {
		return err
	}
	commits, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("git rev-list --count: %q is not a number", strings.TrimSpace(out))
	}
	s.rep.History, s.rep.Commits = true, commits
	if commits == 0 {
		return nil
	}
	blobs, err := r.listBlobs(ctx)
	if err != nil {
		return err
	}
	var toRead []historyBlob
	for _, b := range blobs {
		if r.prefix != "" {
			rel, ok := strings.CutPrefix(b.path, r.prefix)
			if !ok {
				continue
			}
			b.path = rel
		}
		if s.seen[b.id] {
			continue // the same content as a work-tree file already scanned
		}
		if b.size > s.opt.MaxFileBytes {
			s.skip(b.path, b.id, fmt.Sprintf("in history: larger than %d bytes (%d bytes)", s.opt.MaxFileBytes, b.size))
			continue
		}
		toRead = append(toRead, b)
	}
	found := map[string][]int{} // blob id -> indexes of its findings
	err = r.readBlobs(ctx, toRead, func(b historyBlob, content []byte) {
		if isBinary(content) {
			s.skip(b.path, b.id, "in history: binary file")
			return
		}
		s.rep.Blobs++
		first := len(s.rep.Findings)
		s.findings(content, b.path, "", b.id)
		for i := first; i < len(s.rep.Findings); i++ {
			found[b.id] = append(found[b.id], i)
		}
	})
	if err != nil {
		return err
	}
	for id, idx := range found {
		commit, err := r.introducedIn(ctx, id)
		if err != nil {
			return err
		}
		for _, i := range idx {
			s.rep.Findings[i].Commit = commit
		}
	}
	return nil
}

// listBlobs lists every blob reachable from any ref with its size and the
// path it was first seen at: rev-list --objects piped into cat-file
// --batch-check, two processes and one pass.
func (r *gitRepo) listBlobs(ctx context.Context) ([]historyBlob, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	list := r.command(ctx, "rev-list", "--objects", "--all")
	check := r.command(ctx, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize) %(rest)")
	var listErr, checkErr bytes.Buffer
	list.Stderr, check.Stderr = &listErr, &checkErr
	pipe, err := list.StdoutPipe()
	if err != nil {
		return nil, err
	}
	check.Stdin = pipe
	out, err := check.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := list.Start(); err != nil {
		return nil, gitError("rev-list", err, "")
	}
	if err := check.Start(); err != nil {
		cancel()
		_ = list.Wait()
		return nil, gitError("cat-file", err, "")
	}
	var blobs []historyBlob
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "<id> <type> <size> <path>"; the path may hold spaces.
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 || f[1] != "blob" {
			continue
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		b := historyBlob{id: f[0], size: size}
		if len(f) == 4 {
			b.path = f[3]
		}
		blobs = append(blobs, b)
	}
	scanErr := sc.Err()
	if scanErr != nil {
		// Nothing reads cat-file's output any more: stop both, or rev-list
		// and cat-file would block on full pipes and Wait never return.
		cancel()
		_ = list.Wait()
		_ = check.Wait()
		return nil, fmt.Errorf("git cat-file: %w", scanErr)
	}
	if err := list.Wait(); err != nil {
		cancel()
		_ = check.Wait()
		return nil, gitError("rev-list", err, listErr.String())
	}
	if err := check.Wait(); err != nil {
		return nil, gitError("cat-file", err, checkErr.String())
	}
	if scanErr != nil {
		return nil, fmt.Errorf("git cat-file: %w", scanErr)
	}
	return blobs, nil
}

// readBlobs streams the contents of blobs through one cat-file --batch
// process and calls fn for each, in order.
func (r *gitRepo) readBlobs(ctx context.Context, blobs []historyBlob, fn func(historyBlob, []byte)) error {
	if len(blobs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := r.command(ctx, "cat-file", "--batch")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return gitError("cat-file", err, "")
	}
	go func() {
		w := bufio.NewWriter(in)
		for _, b := range blobs {
			if _, err := w.WriteString(b.id + "\n"); err != nil {
				break
			}
		}
		_ = w.Flush()
		_ = in.Close()
	}()
	out := bufio.NewReaderSize(outPipe, 64<<10)
	var readErr error
	for _, b := range blobs {
		header, err := out.ReadString('\n')
		if err != nil {
			readErr = fmt.Errorf("git cat-file: reading %s: %w", b.id, err)
			break
		}
		f := strings.Fields(header)
		if len(f) != 3 || f[0] != b.id || f[1] != "blob" {
			readErr = fmt.Errorf("git cat-file: unexpected answer %q for %s", strings.TrimSpace(header), b.id)
			break
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size != b.size {
			readErr = fmt.Errorf("git cat-file: %s has size %q, listed as %d", b.id, f[2], b.size)
			break
		}
		content := make([]byte, size+1) // the blob and its terminating newline
		if _, err := io.ReadFull(out, content); err != nil {
			readErr = fmt.Errorf("git cat-file: reading %s: %w", b.id, err)
			break
		}
		fn(b, content[:size])
	}
	if readErr != nil {
		cancel()
		_ = cmd.Wait()
		return readErr
	}
	if err := cmd.Wait(); err != nil {
		return gitError("cat-file", err, stderr.String())
	}
	return nil
}

// introducedIn returns the oldest commit, over all refs, that added blob:
// log --find-object lists the commits that change how often it occurs,
// newest first, so the last one added it.
func (r *gitRepo) introducedIn(ctx context.Context, blob string) (string, error) {
	out, err := r.output(ctx, "log", "--all", "--format=%H", "--find-object="+blob)
	if err != nil {
		return "", err
	}
	lines := strings.Fields(out)
	if len(lines) == 0 {
		return "", nil
	}
	return lines[len(lines)-1], nil
}

func sha1Hex(header string, content []byte) string {
	h := sha1.New() //nolint:gosec // git's object ids
	h.Write([]byte(header))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}
