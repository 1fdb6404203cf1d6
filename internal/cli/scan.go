package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/scan"
)

// Matching sends digests in batches small enough for the server's default
// body limit (server.max_body_bytes, 64 KiB): one entry is at most about
// 900 bytes of JSON, so 32 KiB or 200 entries, whichever comes first.
const (
	matchBatchBytes   = 32 << 10
	matchBatchEntries = 200
)

func newScanCmd(g *globals) *cobra.Command {
	var (
		out              string
		maxSize          int64
		noHistory        bool
		offline, failHit bool
	)
	cmd := &cobra.Command{
		Use:   "scan PATH",
		Short: "Find secrets in files and git history, and match them against the inventory",
		Long: `Scan PATH (a directory or a file) for credentials: keybound secrets, AWS,
GitHub and Slack keys, private keys and high-entropy "api_key = ..." values.
When PATH is in a git work tree, every blob reachable from any ref is
scanned too, so a secret deleted in a later commit is still found.

A secret is never printed or sent: each finding shows a fingerprint (the
start of the secret's SHA-256) and a preview (its first characters and its
length). Only the SHA-256 digests go to keybound, which answers for each:

  leaked     the secret of a registered identity: recorded in the admin log
             (client.leaked) and flagged for rotation
  unmanaged  no identity holds it: nobody governs this credential

With --offline nothing is sent and findings are "unchecked". Binary files,
symbolic links and files over --max-file-size are skipped and listed with
the reason.`,
		Example: `  keybound scan .
  keybound scan ~/src/billing -o sarif > keybound.sarif
  keybound scan deploy/ --no-history --fail-on-findings`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out != "table" && out != "json" && out != "sarif" {
				return usageError{fmt.Errorf("--output must be table, json or sarif, not %q", out)}
			}
			if maxSize <= 0 {
				return usageError{errors.New("--max-file-size must be a positive number of bytes")}
			}
			// Online, low-entropy "api_key = ..." values are matched too
			// (candidates): an imported legacy key may look like anything,
			// and only the inventory can tell that it is one.
			opt := scan.Options{MaxFileBytes: maxSize, NoHistory: noHistory, Candidates: !offline}
			rep, err := scan.Scan(cmd.Context(), args[0], opt)
			if err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), "scan: "))
			}
			if !offline && len(rep.Findings) > 0 {
				api, err := newAdminAPI(cmd.Context(), g)
				if err != nil {
					return fmt.Errorf("%w (use --offline to scan without matching against the inventory)", err)
				}
				if err := matchFindings(cmd, api, rep); err != nil {
					return err
				}
			}
			rep.PruneCandidates()
			switch out {
			case "json":
				err = printJSON(g.stdout, scanJSON{Report: rep, Summary: summarize(rep)})
			case "sarif":
				err = scan.WriteSARIF(g.stdout, rep)
			default:
				err = printScanTable(g, rep)
			}
			if err != nil {
				return err
			}
			if failHit && len(rep.Findings) > 0 {
				return fmt.Errorf("%s (--fail-on-findings)", summarize(rep).line())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "table", "output format: table, json or sarif (SARIF 2.1.0)")
	f.Int64Var(&maxSize, "max-file-size", scan.DefaultMaxFileBytes, "skip files and history blobs larger than this many bytes")
	f.BoolVar(&noHistory, "no-history", false, "scan only the files, not git history")
	f.BoolVar(&offline, "offline", false, "do not match against the inventory (no server needed); findings are unchecked")
	f.BoolVar(&failHit, "fail-on-findings", false, "exit with status 1 when any secret is found")
	return cmd
}

// matchFindings sends the distinct digests of rep's findings to the admin
// API and marks every finding leaked or unmanaged.
func matchFindings(cmd *cobra.Command, api *adminAPI, rep *scan.Report) error {
	type pending struct {
		sighting adminapi.SecretSighting
		findings []int
	}
	var order []string
	byDigest := map[string]*pending{}
	for i, f := range rep.Findings {
		d := hex.EncodeToString(f.Lookup)
		p, ok := byDigest[d]
		if !ok {
			loc := f.Path + ":" + strconv.Itoa(f.Line)
			p = &pending{sighting: adminapi.SecretSighting{SHA256: d, Rule: f.Rule, Location: loc, Commit: f.Commit}}
			byDigest[d] = p
			order = append(order, d)
		}
		p.findings = append(p.findings, i)
	}
	source := rep.Root
	if abs, err := filepath.Abs(rep.Root); err == nil {
		source = abs
	}
	for start := 0; start < len(order); {
		req := adminapi.SecretMatchRequest{Source: source}
		size := 0
		end := start
		for end < len(order) && len(req.Secrets) < matchBatchEntries {
			b, _ := json.Marshal(byDigest[order[end]].sighting)
			if len(req.Secrets) > 0 && size+len(b) > matchBatchBytes {
				break
			}
			size += len(b)
			req.Secrets = append(req.Secrets, byDigest[order[end]].sighting)
			end++
		}
		var res adminapi.SecretMatchResponse
		if err := api.call(cmd.Context(), "POST", "/secrets/match", req, &res); err != nil {
			return err
		}
		if len(res.Results) != len(req.Secrets) {
			return fmt.Errorf("the admin API answered %d results for %d secrets", len(res.Results), len(req.Secrets))
		}
		for i, r := range res.Results {
			for _, fi := range byDigest[order[start+i]].findings {
				f := &rep.Findings[fi]
				f.Status = scan.StatusUnmanaged
				if r.Status == adminapi.MatchLeaked {
					f.Status = scan.StatusLeaked
					f.Identity = &scan.Identity{ClientID: r.ClientID, Name: r.ClientName, Owner: r.Owner, Status: string(r.ClientStatus), FlaggedAt: r.FlaggedAt}
				}
			}
		}
		start = end
	}
	return nil
}

// scanSummary counts a report for people and for scripts.
type scanSummary struct {
	Findings  int  `json:"findings"`
	Leaked    int  `json:"leaked"`
	Unmanaged int  `json:"unmanaged"`
	Unchecked int  `json:"unchecked"`
	Skipped   int  `json:"skipped"`
	Files     int  `json:"files_scanned"`
	Blobs     int  `json:"history_blobs_scanned"`
	Commits   int  `json:"commits"`
	History   bool `json:"-"`
}

func summarize(rep *scan.Report) scanSummary {
	s := scanSummary{Findings: len(rep.Findings), Skipped: len(rep.Skipped), Files: rep.Files, Blobs: rep.Blobs, Commits: rep.Commits, History: rep.History}
	for _, f := range rep.Findings {
		switch f.Status {
		case scan.StatusLeaked:
			s.Leaked++
		case scan.StatusUnmanaged:
			s.Unmanaged++
		default:
			s.Unchecked++
		}
	}
	return s
}

func (s scanSummary) line() string {
	var b strings.Builder
	switch s.Findings {
	case 0:
		b.WriteString("no secrets found")
	case 1:
		b.WriteString("1 secret found")
	default:
		fmt.Fprintf(&b, "%d secrets found", s.Findings)
	}
	if s.Findings > 0 {
		var parts []string
		for _, p := range []struct {
			n    int
			name string
		}{{s.Leaked, "leaked"}, {s.Unmanaged, "unmanaged"}, {s.Unchecked, "unchecked"}} {
			if p.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
			}
		}
		b.WriteString(" (" + strings.Join(parts, ", ") + ")")
	}
	fmt.Fprintf(&b, " in %s", plural(s.Files, "file"))
	if s.History {
		fmt.Fprintf(&b, " and %s of %s", plural(s.Blobs, "history blob"), plural(s.Commits, "commit"))
	}
	if s.Skipped > 0 {
		fmt.Fprintf(&b, "; %d skipped", s.Skipped)
	}
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// displayPath is a scanned file's path for the terminal: quoted when it
// holds anything but printable characters. A file name is chosen by whoever
// wrote the scanned tree; printed raw, escape sequences in it would drive
// the reader's terminal, and tabs or newlines would break the table.
func displayPath(p string) string {
	if !utf8.ValidString(p) || strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(p)
	}
	return p
}

// scanJSON is the -o json document: the report and its counts.
type scanJSON struct {
	*scan.Report
	Summary scanSummary `json:"summary"`
}

func printScanTable(g *globals, rep *scan.Report) error {
	if len(rep.Findings) > 0 {
		rows := make([][]string, 0, len(rep.Findings))
		for _, f := range rep.Findings {
			commit := "-"
			if f.Commit != "" {
				commit = f.Commit[:min(12, len(f.Commit))]
			}
			who := "-"
			if id := f.Identity; id != nil {
				who = fmt.Sprintf("%s (%s, owner %s)", id.ClientID, id.Name, id.Owner)
			}
			rows = append(rows, []string{f.Status, f.Rule, displayPath(f.Path) + ":" + strconv.Itoa(f.Line), commit, f.Fingerprint, f.Preview, who})
		}
		if err := printTable(g.stdout, []string{"STATUS", "RULE", "LOCATION", "COMMIT", "FINGERPRINT", "PREVIEW", "IDENTITY"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout)
	}
	if len(rep.Skipped) > 0 {
		rows := make([][]string, 0, len(rep.Skipped))
		for _, s := range rep.Skipped {
			rows = append(rows, []string{displayPath(s.Path), s.Reason})
		}
		if err := printTable(g.stdout, []string{"SKIPPED", "REASON"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout)
	}
	s := summarize(rep)
	fmt.Fprintln(g.stdout, s.line()+".")
	if s.Leaked > 0 {
		fmt.Fprintln(g.stdout, "Leaked secrets belong to registered identities: each is recorded in the admin log (client.leaked) and must be rotated.")
	}
	if s.Unmanaged > 0 {
		fmt.Fprintln(g.stdout, "Unmanaged secrets are held by no identity: rotate them, and register their holders (keybound import brings existing keys in).")
	}
	return nil
}
