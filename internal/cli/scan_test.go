package cli_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitIn runs git in dir with a fixed identity and no user or system
// configuration, and returns its trimmed output.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+dir,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// awsKeyID builds an AWS-shaped access key id at run time, so this file
// holds none.
func awsKeyID(t *testing.T) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "AK" + "IA" + string(b)
}

// legacySecret registers a client_secret_basic identity through the CLI
// and returns its id and secret.
func (s *server) legacySecret(t *testing.T, name string) (id, secret string) {
	t.Helper()
	v := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", name, "--owner", "team-legacy@example.com",
		"--purpose", "old integration", "--environment", "prod", "--expires-in", "30d", "--auth", "client_secret_basic", "--dpop", "-o", "json"))
	if v.ClientID == "" || !strings.HasPrefix(v.ClientSecret, "kbs_") {
		t.Fatalf("legacy client: %+v", v)
	}
	return v.ClientID, v.ClientSecret
}

// scanJSONOut is `keybound scan -o json`, as a script reads it.
type scanJSONOut struct {
	Root     string `json:"root"`
	Findings []struct {
		Rule        string `json:"rule"`
		Path        string `json:"path"`
		Line        int    `json:"line"`
		Commit      string `json:"commit"`
		Fingerprint string `json:"fingerprint"`
		Preview     string `json:"preview"`
		Status      string `json:"status"`
		Identity    *struct {
			ClientID  string `json:"client_id"`
			Name      string `json:"name"`
			Owner     string `json:"owner"`
			FlaggedAt string `json:"flagged_at"`
		} `json:"identity"`
	} `json:"findings"`
	Skipped []struct {
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"skipped"`
	History bool `json:"history_scanned"`
	Commits int  `json:"commits"`
	Summary struct {
		Findings, Leaked, Unmanaged, Unchecked, Skipped int
	} `json:"summary"`
}

// noSecrets fails if any secret, or a long piece of one, is in r's output.
func noSecrets(t *testing.T, r result, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.Contains(out, s) || len(s) > 16 && strings.Contains(out, s[4:16]) {
				t.Errorf("output holds a secret (%s…):\n%s", s[:4], r)
			}
		}
	}
}

func TestScan(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (scripts/test.sh installs it)")
	}
	s := startServer(t)
	leakedID, leaked := s.legacySecret(t, "billing-legacy")
	safeID, safe := s.legacySecret(t, "never-committed")
	unmanaged := awsKeyID(t)
	// A legacy key brought in by keybound import that looks like no known
	// format and has little entropy: only the inventory can recognise it.
	imported, lookalike := "partner-key-0000-0000-0001", "partner-key-0000-0000-0002"
	importFile := filepath.Join(t.TempDir(), "keys.csv")
	writeFile(t, importFile, importHeader+"partner-feed,team-partners@example.com,feed,prod,"+
		time.Now().Add(24*time.Hour).UTC().Format(time.DateOnly)+","+imported+",,\n")
	s.cliOK(t, "import", importFile)

	// A repository where the registered secret was committed, then deleted.
	repo := t.TempDir()
	gitIn(t, repo, "init", "-q")
	writeFile(t, filepath.Join(repo, "config", "app.env"), "# billing\nKEYBOUND_SECRET="+leaked+"\n")
	writeFile(t, filepath.Join(repo, "main.go"), "package main\n")
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", "add config")
	added := gitIn(t, repo, "rev-parse", "HEAD")
	gitIn(t, repo, "rm", "-q", "config/app.env")
	gitIn(t, repo, "commit", "-q", "-m", "remove the secret")
	// The work tree: an unmanaged key, a binary file and a huge file.
	writeFile(t, filepath.Join(repo, "deploy", "aws.yaml"), "aws_access_key_id: "+unmanaged+"\n")
	writeFile(t, filepath.Join(repo, "deploy", "feed.env"), "FEED_API_KEY="+imported+"\nOTHER_API_KEY="+lookalike+"\n")
	writeFile(t, filepath.Join(repo, "logo.png"), "\x89PNG\r\n\x1a\n\x00\x00"+safe)
	writeFile(t, filepath.Join(repo, "dump.sql"), strings.Repeat("-- rows\n", 1024)+safe)
	secrets := []string{leaked, safe, unmanaged, imported, lookalike}

	r := s.cli(t, "scan", repo, "-o", "json", "--max-file-size", "4096")
	if r.code != 0 || r.stderr != "" {
		t.Fatal(r)
	}
	noSecrets(t, r, secrets...)
	rep := decodeJSON[scanJSONOut](t, r.stdout)
	if !rep.History || rep.Commits != 2 || len(rep.Findings) != 3 {
		t.Fatalf("report: %s", r.stdout)
	}
	var sawLeak, sawUnmanaged, sawImported bool
	for _, f := range rep.Findings {
		switch f.Path {
		case "config/app.env":
			sawLeak = true
			if f.Status != "leaked" || f.Commit != added || f.Line != 2 || f.Rule != "keybound-secret" || f.Preview != "kbs_…(47)" ||
				f.Identity == nil || f.Identity.ClientID != leakedID || f.Identity.Owner != "team-legacy@example.com" || f.Identity.FlaggedAt == "" {
				t.Errorf("the deleted registered secret: %+v", f)
			}
		case "deploy/feed.env":
			sawImported = true
			if f.Status != "leaked" || f.Line != 1 || f.Rule != "generic-api-key" || f.Identity == nil || f.Identity.Name != "partner-feed" {
				t.Errorf("the imported low-entropy key: %+v", f)
			}
		case "deploy/aws.yaml":
			sawUnmanaged = true
			if f.Status != "unmanaged" || f.Commit != "" || f.Identity != nil || f.Rule != "aws-access-key-id" {
				t.Errorf("the unmanaged key: %+v", f)
			}
		}
	}
	if !sawLeak || !sawUnmanaged || !sawImported {
		t.Errorf("findings %+v", rep.Findings)
	}
	reasons := map[string]string{}
	for _, sk := range rep.Skipped {
		reasons[sk.Path] = sk.Reason
	}
	if reasons["logo.png"] != "binary file" || !strings.HasPrefix(reasons["dump.sql"], "larger than 4096 bytes") {
		t.Errorf("skipped %v", reasons)
	}
	if rep.Summary.Leaked != 2 || rep.Summary.Unmanaged != 1 || rep.Summary.Skipped != 2 {
		t.Errorf("summary %+v", rep.Summary)
	}

	// The leak is in the admin log once, with where it was found and never
	// the secret; a second scan does not record it again.
	leakEvents := func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, e := range decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--target", leakedID, "-o", "json")) {
			if e["action"] == "client.leaked" {
				out = append(out, e)
			}
		}
		return out
	}
	evs := leakEvents()
	if len(evs) != 1 {
		t.Fatalf("%d client.leaked events, want 1", len(evs))
	}
	ch, _ := evs[0]["changes"].(map[string]any)
	if ch["location"] != "config/app.env:2" || ch["commit"] != added || len(ch["fingerprint"].(string)) != 16 ||
		ch["needs"] != "secret rotation" || ch["rule"] != "keybound-secret" {
		t.Errorf("leak event changes %v", ch)
	}
	// client show carries the flag, so the owner sees the rotation to do.
	if shown := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", leakedID, "-o", "json")); shown["leaked_at"] == nil {
		t.Errorf("client show of the leaked identity has no leaked_at: %v", shown)
	}
	if shown := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", safeID, "-o", "json")); shown["leaked_at"] != nil {
		t.Errorf("client show of an identity whose secret was not found: leaked_at %v", shown["leaked_at"])
	}

	t.Run("table", func(t *testing.T) {
		r := s.cli(t, "scan", repo, "--max-file-size", "4096")
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		noSecrets(t, r, secrets...)
		for _, w := range []string{"STATUS", "FINGERPRINT", "leaked", "unmanaged", "config/app.env:2", added[:12], leakedID, "kbs_…(47)",
			"SKIPPED", "logo.png", "binary file", "dump.sql", "larger than 4096 bytes", "3 secrets found (2 leaked, 1 unmanaged)", "2 commits", "rotated"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("table lacks %q:\n%s", w, r.stdout)
			}
		}
		if n := len(leakEvents()); n != 1 {
			t.Errorf("a second scan recorded the leak again: %d events", n)
		}
	})

	t.Run("sarif", func(t *testing.T) {
		r := s.cli(t, "scan", repo, "-o", "sarif", "--max-file-size", "4096")
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		noSecrets(t, r, secrets...)
		checkSARIFLog(t, r.stdout, 3)
	})

	t.Run("offline", func(t *testing.T) {
		// No server and no data directory: nothing is matched or sent.
		r := run(t, "--data-dir", filepath.Join(t.TempDir(), "none"), "scan", repo, "--offline", "-o", "json")
		if r.code != 0 {
			t.Fatal(r)
		}
		noSecrets(t, r, secrets...)
		for _, f := range decodeJSON[scanJSONOut](t, r.stdout).Findings {
			if f.Status != "unchecked" || f.Identity != nil {
				t.Errorf("offline finding %+v", f)
			}
		}
	})

	t.Run("no history", func(t *testing.T) {
		rep := decodeJSON[scanJSONOut](t, s.cliOK(t, "scan", repo, "--no-history", "--max-file-size", "4096", "-o", "json"))
		if rep.History || len(rep.Findings) != 2 || rep.Findings[0].Path != "deploy/aws.yaml" || rep.Findings[1].Path != "deploy/feed.env" {
			t.Errorf("report %+v", rep)
		}
	})

	t.Run("fail on findings", func(t *testing.T) {
		r := s.cli(t, "scan", repo, "--fail-on-findings", "--max-file-size", "4096", "-o", "json")
		if r.code != 1 || !strings.Contains(r.stderr, "3 secrets found") || r.stdout == "" {
			t.Errorf("%s", r)
		}
		noSecrets(t, r, secrets...)
		clean := t.TempDir()
		writeFile(t, filepath.Join(clean, "a.txt"), "nothing\n")
		if r := s.cli(t, "scan", clean, "--fail-on-findings"); r.code != 0 || !strings.Contains(r.stdout, "no secrets found") {
			t.Errorf("%s", r)
		}
	})

	errCases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"path does not exist", []string{"scan", filepath.Join(repo, "nope")}, 1, []string{"cannot read path", "nope", "no such file or directory"}},
		{"no path", []string{"scan"}, 2, nil},
		{"bad output", []string{"scan", repo, "-o", "yaml"}, 2, []string{"table, json or sarif"}},
		{"bad size bound", []string{"scan", repo, "--max-file-size", "0"}, 2, []string{"--max-file-size"}},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.cli(t, tc.args...)
			if tc.want == nil {
				if r.code != tc.code {
					t.Errorf("exit %d, want %d", r.code, tc.code)
				}
				return
			}
			checkFailure(t, r, tc.code, tc.want...)
			if r.stdout != "" {
				t.Errorf("stdout on failure: %q", r.stdout)
			}
		})
	}

	t.Run("server not running", func(t *testing.T) {
		r := run(t, "--data-dir", filepath.Join(t.TempDir(), "none"), "scan", repo)
		checkFailure(t, r, 1, "--offline")
		noSecrets(t, r, secrets...)
	})
}

// checkSARIFLog checks the structure SARIF 2.1.0 requires of a log and of
// each result, and that it has want results.
func checkSARIFLog(t *testing.T, out string, want int) {
	t.Helper()
	log := decodeJSON[map[string]any](t, out)
	if log["version"] != "2.1.0" || log["$schema"] == nil {
		t.Errorf("version %v, $schema %v", log["version"], log["$schema"])
	}
	runs, _ := log["runs"].([]any)
	if len(runs) != 1 {
		t.Fatalf("runs %v", log["runs"])
	}
	run := runs[0].(map[string]any)
	driver, _ := run["tool"].(map[string]any)["driver"].(map[string]any)
	rules, _ := driver["rules"].([]any)
	if driver["name"] != "keybound" || len(rules) == 0 {
		t.Fatalf("tool.driver %v", driver)
	}
	ids := map[string]float64{}
	for i, r := range rules {
		ids[r.(map[string]any)["id"].(string)] = float64(i)
	}
	results, _ := run["results"].([]any)
	if len(results) != want {
		t.Fatalf("%d results, want %d", len(results), want)
	}
	for _, x := range results {
		r := x.(map[string]any)
		idx, ok := ids[r["ruleId"].(string)]
		if !ok || r["ruleIndex"] != idx {
			t.Errorf("ruleId %v ruleIndex %v", r["ruleId"], r["ruleIndex"])
		}
		if msg, _ := r["message"].(map[string]any); msg == nil || msg["text"] == "" {
			t.Errorf("message %v", r["message"])
		}
		locs, _ := r["locations"].([]any)
		if len(locs) == 0 {
			t.Fatalf("no locations: %v", r)
		}
		pl := locs[0].(map[string]any)["physicalLocation"].(map[string]any)
		if pl["artifactLocation"].(map[string]any)["uri"] == "" || pl["region"].(map[string]any)["startLine"].(float64) < 1 {
			t.Errorf("location %v", pl)
		}
		if fp, _ := r["partialFingerprints"].(map[string]any); len(fp) == 0 {
			t.Errorf("no partialFingerprints: %v", r)
		}
	}
	if inv, _ := run["invocations"].([]any); len(inv) == 0 {
		t.Error("no invocations (skipped files are its notifications)")
	}
}

// TestScanTableQuotesPaths: a file name from the scanned tree that holds
// control characters is quoted in the table, so it cannot send escape
// sequences to the reader's terminal or break the table's rows.
func TestScanTableQuotesPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	evil := "\x1b]0;owned\x07\x1b[2J\tx\ny.env"
	writeFile(t, filepath.Join(dir, evil), "aws_access_key_id: "+awsKeyID(t)+"\n")
	writeFile(t, filepath.Join(dir, "bin\x1b[31m.dat"), "\x00\x01binary")
	writeFile(t, filepath.Join(dir, "plain name.env"), "aws_access_key_id: "+awsKeyID(t)+"\n")
	r := run(t, "--data-dir", t.TempDir(), "scan", dir, "--offline", "--no-history")
	if r.code != 0 {
		t.Fatal(r)
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Errorf("the table holds raw control characters:\n%q", r.stdout)
	}
	for _, w := range []string{`"\x1b]0;owned\a\x1b[2J\tx\ny.env":1`, `"bin\x1b[31m.dat"`, "plain name.env:1"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("table lacks %s:\n%s", w, r.stdout)
		}
	}
}
