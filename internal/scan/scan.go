// Package scan finds credentials embedded in files and in git history: it
// walks a directory tree and, when the tree is a git work tree, every blob
// reachable from its refs, and reports each secret by rule, location, a
// SHA-256 fingerprint and a redacted preview.
//
// It must never keep, return or print a found secret: a Finding holds the
// secret's SHA-256 (to match against the inventory) and a preview of its
// first characters, nothing more. Matching against the inventory and
// recording leaks are the caller's job (the admin API's secret matching),
// so this package does no storage and no network I/O.
package scan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// Finding statuses. Status is Unchecked until the caller matches the
// finding's fingerprint against the inventory.
const (
	// StatusLeaked: the secret belongs to a registered identity; it is
	// exposed and the identity must rotate it.
	StatusLeaked = "leaked"
	// StatusUnmanaged: no identity holds the secret; nobody governs it.
	StatusUnmanaged = "unmanaged"
	// StatusUnchecked: not matched against an inventory.
	StatusUnchecked = "unchecked"
)

// Finding is one secret at one location. It never holds the secret.
type Finding struct {
	Rule string `json:"rule"`
	// Path is relative to the scanned root, with forward slashes.
	Path   string `json:"path"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	// Commit is empty for a file in the working tree; for a secret found
	// only in history it is the commit that added the blob.
	Commit string `json:"commit,omitempty"`
	// Fingerprint is identity.SecretFingerprint of the secret: a short
	// prefix of its SHA-256.
	Fingerprint string `json:"fingerprint"`
	// Preview is the secret's first characters and its length (Preview).
	Preview string `json:"preview"`
	Status  string `json:"status"`
	// Identity is the registered identity whose secret this is (leaked).
	Identity *Identity `json:"identity,omitempty"`

	// Lookup is the full SHA-256 of the secret (identity.SecretLookup): what
	// the inventory is searched by. It is left out of every rendering.
	Lookup []byte `json:"-"`
	// Candidate marks a value that does not look like a key (a low-entropy
	// "api_key = ..." value) but may still be a registered legacy secret:
	// it is matched against the inventory and reported only if leaked.
	// PruneCandidates drops the others.
	Candidate bool `json:"-"`
}

// PruneCandidates removes the candidate findings that were not matched as
// leaked: call it after matching, or instead of matching. It returns how
// many it removed.
func (r *Report) PruneCandidates() int {
	kept := r.Findings[:0]
	for _, f := range r.Findings {
		if !f.Candidate || f.Status == StatusLeaked {
			kept = append(kept, f)
		}
	}
	n := len(r.Findings) - len(kept)
	clear(r.Findings[len(kept):])
	r.Findings = kept
	return n
}

// Identity names the registered identity a leaked secret belongs to.
type Identity struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	Status   string `json:"status"`
	// FlaggedAt is when the leak was first recorded in the admin log.
	FlaggedAt time.Time `json:"flagged_at"`
}

// Skipped is a file or history blob not scanned, and why.
type Skipped struct {
	Path string `json:"path"`
	// Blob is the git object id of a history blob; empty in the work tree.
	Blob   string `json:"blob,omitempty"`
	Reason string `json:"reason"`
}

// Report is the result of one scan.
type Report struct {
	// Root is the scanned path as given.
	Root     string    `json:"root"`
	Findings []Finding `json:"findings"`
	Skipped  []Skipped `json:"skipped"`
	// Files is the number of work-tree files read.
	Files int `json:"files_scanned"`
	// History reports whether git history was scanned; Commits and Blobs
	// count the reachable commits and the history blobs read.
	History bool `json:"history_scanned"`
	Commits int  `json:"commits"`
	Blobs   int  `json:"history_blobs_scanned"`
}

// Options configures Scan. The zero value scans files up to
// DefaultMaxFileBytes and git history with the git on PATH.
type Options struct {
	// MaxFileBytes bounds a file or blob read; larger ones are skipped.
	MaxFileBytes int64
	// NoHistory skips git history even in a git work tree.
	NoHistory bool
	// Git is the git executable; "" means "git" found on PATH.
	Git string
	// Candidates keeps candidate findings (Finding.Candidate) in the report,
	// for a caller that matches them against an inventory and then calls
	// PruneCandidates. Without it they are never reported.
	Candidates bool
}

// ErrPath is wrapped by Scan's error when the root does not exist or cannot
// be read.
var ErrPath = errors.New("scan: cannot read path")

// Scan scans root, a directory or a single file. Files that cannot be read,
// binary files and files over the size bound are listed in Skipped with the
// reason; only a root that cannot be read at all is an error.
func Scan(ctx context.Context, root string, opt Options) (*Report, error) {
	if opt.MaxFileBytes <= 0 {
		opt.MaxFileBytes = DefaultMaxFileBytes
	}
	if opt.Git == "" {
		opt.Git = "git"
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPath, root, pathErr(err))
	}
	rep := &Report{Root: root, Findings: []Finding{}, Skipped: []Skipped{}}
	s := &scanner{opt: opt, rep: rep, seen: map[string]bool{}}
	if !st.IsDir() {
		if err := s.file(ctx, root, filepath.Base(root), st); err != nil {
			return nil, err
		}
		return rep, nil
	}
	f, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPath, root, pathErr(err))
	}
	_, err = f.ReadDir(1)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w %s: %w", ErrPath, root, pathErr(err))
	}

	var repo *gitRepo
	if !opt.NoHistory {
		repo, err = openRepo(ctx, opt.Git, root)
		if err != nil {
			// A tree that looks like a repository but cannot be read as one
			// is scanned as plain files, and the report says so.
			rep.Skipped = append(rep.Skipped, Skipped{Path: ".git", Reason: "git history not scanned: " + err.Error()})
		}
	}
	if repo != nil {
		s.blobFormat = repo.format
	}
	if repo == nil || !repo.bare {
		// The root itself may be a symbolic link the user named; WalkDir
		// would only see the link. Links below it are still not followed.
		walkRoot := root
		if resolved, err := filepath.EvalSymlinks(root); err == nil {
			walkRoot = resolved
		}
		if err := s.walk(ctx, walkRoot); err != nil {
			return nil, err
		}
	}
	if repo != nil {
		if err := s.history(ctx, repo); err != nil {
			return nil, err
		}
	}
	s.closeSkipped()
	sortFindings(rep.Findings)
	return rep, nil
}

// pathErr keeps the operating system's reason and drops the repeated path.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

type scanner struct {
	opt Options
	rep *Report
	// seen holds the git blob ids of work-tree files read, so the history
	// scan does not report the same content twice.
	seen map[string]bool
	// blobFormat is the repository's object format (sha1 or sha256); empty
	// when no history is scanned.
	blobFormat string
	// moreSkipped counts skips past maxSkippedListed.
	moreSkipped int
}

// walk scans every regular file under root, skipping .git directories
// (history is scanned from the object store) and never following links.
func (s *scanner) walk(ctx context.Context, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if err != nil {
			if path == root {
				return fmt.Errorf("%w %s: %w", ErrPath, root, pathErr(err))
			}
			s.skip(rel, "", "cannot read: "+pathErr(err).Error())
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			if d.Name() == ".git" && path != root {
				return fs.SkipDir
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			s.skip(rel, "", "symbolic link (not followed)")
			return nil
		case !d.Type().IsRegular():
			s.skip(rel, "", "not a regular file")
			return nil
		}
		if d.Name() == ".git" {
			return nil // a worktree's or submodule's .git file: a pointer
		}
		info, err := d.Info()
		if err != nil {
			s.skip(rel, "", "cannot read: "+pathErr(err).Error())
			return nil
		}
		return s.file(ctx, path, rel, info)
	})
}

// file scans one work-tree file.
func (s *scanner) file(ctx context.Context, path, rel string, info fs.FileInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if info.Size() > s.opt.MaxFileBytes {
		s.skip(rel, "", fmt.Sprintf("larger than %d bytes (%d bytes)", s.opt.MaxFileBytes, info.Size()))
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		s.skip(rel, "", "cannot read: "+pathErr(err).Error())
		return nil
	}
	// Read at most one byte past the bound: the file may have grown since
	// the stat, and the bound must hold regardless.
	content, err := io.ReadAll(io.LimitReader(f, s.opt.MaxFileBytes+1))
	f.Close()
	if err != nil {
		s.skip(rel, "", "cannot read: "+pathErr(err).Error())
		return nil
	}
	if int64(len(content)) > s.opt.MaxFileBytes {
		s.skip(rel, "", fmt.Sprintf("larger than %d bytes", s.opt.MaxFileBytes))
		return nil
	}
	if s.blobFormat != "" {
		s.seen[blobID(s.blobFormat, content)] = true
	}
	if isBinary(content) {
		s.skip(rel, "", "binary file")
		return nil
	}
	s.rep.Files++
	s.findings(content, rel, "", "")
	return nil
}

// findings adds the secrets in content to the report.
func (s *scanner) findings(content []byte, rel, commit, blob string) {
	ms := detect(content)
	if !s.opt.Candidates {
		// Candidates not asked for are dropped before the cap, so a file
		// full of low-entropy matches cannot push a real secret past it.
		ms = slices.DeleteFunc(ms, func(m match) bool { return m.candidate })
	} else {
		// Real secrets first, then candidates, each in file order.
		slices.SortStableFunc(ms, func(a, b match) int {
			switch {
			case a.candidate == b.candidate:
				return 0
			case b.candidate:
				return -1
			}
			return 1
		})
	}
	if len(ms) > maxFindingsPerFile {
		ms = ms[:maxFindingsPerFile]
		s.skip(rel, blob, fmt.Sprintf("more than %d secrets; only the first %d are listed", maxFindingsPerFile, maxFindingsPerFile))
	}
	for _, m := range ms {
		if m.candidate && !s.opt.Candidates {
			continue
		}
		secret := string(content[m.start:m.end])
		lookup := identity.SecretLookup(secret)
		line, col := position(content, m.start)
		s.rep.Findings = append(s.rep.Findings, Finding{
			Rule:        rules[m.rule].ID,
			Path:        rel,
			Line:        line,
			Column:      col,
			Commit:      commit,
			Fingerprint: identity.SecretFingerprint(lookup),
			Preview:     Preview(secret),
			Status:      StatusUnchecked,
			Lookup:      lookup,
			Candidate:   m.candidate,
		})
	}
}

func (s *scanner) skip(rel, blob, reason string) {
	if len(s.rep.Skipped) < maxSkippedListed {
		s.rep.Skipped = append(s.rep.Skipped, Skipped{Path: rel, Blob: blob, Reason: reason})
		return
	}
	s.moreSkipped++
}

// closeSkipped adds the entry that counts the skips not listed.
func (s *scanner) closeSkipped() {
	if s.moreSkipped > 0 {
		s.rep.Skipped = append(s.rep.Skipped, Skipped{Reason: fmt.Sprintf("%d more files or blobs not scanned; only the first %d are listed", s.moreSkipped, maxSkippedListed)})
	}
}

// isBinary reports whether content looks binary: a NUL byte in its first
// binarySniffBytes, as git decides.
func isBinary(content []byte) bool {
	return bytes.IndexByte(content[:min(len(content), binarySniffBytes)], 0) >= 0
}

// blobID is the git object id content would have as a blob.
func blobID(format string, content []byte) string {
	header := fmt.Sprintf("blob %d\x00", len(content))
	if format == "sha256" {
		h := sha256.New()
		h.Write([]byte(header))
		h.Write(content)
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	return sha1Hex(header, content)
}

// sortFindings orders findings by path, commit (work tree first), line and
// column, so reports are stable.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if (a.Commit == "") != (b.Commit == "") {
			if a.Commit == "" {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if c := strings.Compare(a.Commit, b.Commit); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}
