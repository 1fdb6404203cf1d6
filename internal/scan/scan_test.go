package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// gitRun runs git in dir with a fixed identity and no user or system
// configuration, and returns its trimmed output.
func gitRun(t *testing.T, dir string, args ...string) string {
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

func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (scripts/test.sh installs it)")
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertNoSecret fails if any secret appears in out.
func assertNoSecret(t *testing.T, out []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output holds a secret in full (%s)", Preview(s))
		}
		// Not even a long piece of it.
		if len(s) > 16 && bytes.Contains(out, []byte(s[4:16])) {
			t.Errorf("output holds part of a secret (%s)", Preview(s))
		}
	}
}

func findingAt(rep *Report, path string) []Finding {
	var out []Finding
	for _, f := range rep.Findings {
		if f.Path == path {
			out = append(out, f)
		}
	}
	return out
}

func skippedReason(rep *Report, path string) string {
	for _, s := range rep.Skipped {
		if s.Path == path {
			return s.Reason
		}
	}
	return ""
}

func TestScanTree(t *testing.T) {
	dir := t.TempDir()
	kbs, aws := keyboundSecret(t), "AKIA"+randomFrom(t, upperDigits, 16)
	write(t, filepath.Join(dir, "config", "app.env"), "# settings\nKEYBOUND_SECRET="+kbs+"\n")
	write(t, filepath.Join(dir, "deploy.yaml"), "aws:\n  key: "+aws+"\n")
	write(t, filepath.Join(dir, "README.md"), "no secrets here\n")
	write(t, filepath.Join(dir, "logo.png"), "\x89PNG\r\n\x1a\n\x00\x00"+kbs)
	write(t, filepath.Join(dir, "dump.sql"), strings.Repeat("x", 2048)+kbs)
	if err := os.Symlink(filepath.Join(dir, "config", "app.env"), filepath.Join(dir, "link.env")); err != nil {
		t.Fatal(err)
	}

	rep, err := Scan(context.Background(), dir, Options{MaxFileBytes: 1024, NoHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 3 || rep.History {
		t.Errorf("files %d history %v, want 3 files and no history", rep.Files, rep.History)
	}
	if fs := findingAt(rep, "config/app.env"); len(fs) != 1 || fs[0].Rule != "keybound-secret" || fs[0].Line != 2 || fs[0].Column != 17 ||
		fs[0].Preview != "kbs_…(47)" || fs[0].Status != StatusUnchecked || fs[0].Commit != "" || len(fs[0].Fingerprint) != 16 {
		t.Errorf("config/app.env: %+v", fs)
	}
	if fs := findingAt(rep, "deploy.yaml"); len(fs) != 1 || fs[0].Rule != "aws-access-key-id" || fs[0].Line != 2 {
		t.Errorf("deploy.yaml: %+v", fs)
	}
	if len(rep.Findings) != 2 {
		t.Errorf("%d findings, want 2: %+v", len(rep.Findings), rep.Findings)
	}
	for path, want := range map[string]string{
		"logo.png": "binary file",
		"dump.sql": "larger than 1024 bytes",
		"link.env": "symbolic link",
	} {
		if got := skippedReason(rep, path); !strings.Contains(got, want) {
			t.Errorf("%s skipped for %q, want %q", path, got, want)
		}
	}
	b, _ := json.Marshal(rep)
	assertNoSecret(t, b, kbs, aws)
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, rep); err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, buf.Bytes(), kbs, aws)
}

func TestScanCandidates(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.env"), "API_KEY=partnerkey000000001\nTOKEN="+randomFrom(t, alnum, 24)+"\n")
	rep, err := Scan(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Line != 2 {
		t.Fatalf("without Candidates: %+v", rep.Findings)
	}
	rep, err = Scan(context.Background(), dir, Options{Candidates: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 2 || !rep.Findings[0].Candidate || rep.Findings[1].Candidate {
		t.Fatalf("with Candidates: %+v", rep.Findings)
	}
	leaked := rep.Findings[0]
	leaked.Status = StatusLeaked
	rep.Findings = append(rep.Findings, leaked)
	if n := rep.PruneCandidates(); n != 1 || len(rep.Findings) != 2 || rep.Findings[1].Status != StatusLeaked {
		t.Errorf("PruneCandidates removed %d, left %+v", n, rep.Findings)
	}
}

func TestScanSingleFile(t *testing.T) {
	dir := t.TempDir()
	kbs := keyboundSecret(t)
	path := filepath.Join(dir, "one.env")
	write(t, path, "S="+kbs+"\n")
	rep, err := Scan(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Path != "one.env" {
		t.Errorf("findings %+v", rep.Findings)
	}
}

func TestScanBadPath(t *testing.T) {
	_, err := Scan(context.Background(), filepath.Join(t.TempDir(), "nope"), Options{})
	if !errors.Is(err, ErrPath) || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("err = %v, want ErrPath naming the reason", err)
	}
	if os.Geteuid() == 0 {
		return // root reads everything; the unreadable case cannot be built
	}
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked")
	if err := os.Mkdir(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
	if _, err := Scan(context.Background(), locked, Options{}); !errors.Is(err, ErrPath) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable root: err = %v", err)
	}
	rep, err := Scan(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := skippedReason(rep, "locked"); !strings.Contains(got, "permission denied") {
		t.Errorf("unreadable subdirectory skipped for %q", got)
	}
}

func TestScanGitHistory(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	gone, kept := keyboundSecret(t), keyboundSecret(t)
	gitRun(t, dir, "init", "-q")

	write(t, filepath.Join(dir, "app", "secrets.env"), "KEYBOUND_SECRET="+gone+"\n")
	write(t, filepath.Join(dir, "app", "config.env"), "OTHER="+kept+"\n")
	write(t, filepath.Join(dir, "blob.bin"), "\x00\x01binary "+gone)
	write(t, filepath.Join(dir, "big.txt"), strings.Repeat("y", 4096))
	gitRun(t, dir, "add", "-A")
	gitRun(t, dir, "commit", "-q", "-m", "add config")
	added := gitRun(t, dir, "rev-parse", "HEAD")

	for _, p := range []string{"app/secrets.env", "blob.bin", "big.txt"} {
		gitRun(t, dir, "rm", "-q", p)
	}
	gitRun(t, dir, "commit", "-q", "-m", "remove the secret")

	rep, err := Scan(context.Background(), dir, Options{MaxFileBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.History || rep.Commits != 2 {
		t.Errorf("history %v commits %d, want 2 commits scanned", rep.History, rep.Commits)
	}
	hist := findingAt(rep, "app/secrets.env")
	if len(hist) != 1 || hist[0].Commit != added || hist[0].Line != 1 || hist[0].Rule != "keybound-secret" {
		t.Fatalf("the deleted secret: %+v (want it found in commit %s)", hist, added)
	}
	work := findingAt(rep, "app/config.env")
	if len(work) != 1 || work[0].Commit != "" {
		t.Errorf("the work-tree secret must be reported once, from the work tree: %+v", work)
	}
	if got := skippedReason(rep, "blob.bin"); got != "in history: binary file" {
		t.Errorf("history binary skipped for %q", got)
	}
	if got := skippedReason(rep, "big.txt"); !strings.Contains(got, "in history: larger than 1024 bytes") {
		t.Errorf("history big file skipped for %q", got)
	}
	if len(rep.Findings) != 2 {
		t.Errorf("findings %+v", rep.Findings)
	}
	b, _ := json.Marshal(rep)
	assertNoSecret(t, b, gone, kept)

	t.Run("subdirectory", func(t *testing.T) {
		write(t, filepath.Join(dir, "other", "x.env"), "nothing\n")
		rep, err := Scan(context.Background(), filepath.Join(dir, "app"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range rep.Findings {
			paths = append(paths, f.Path+"@"+f.Commit)
		}
		slices.Sort(paths)
		if want := []string{"config.env@", "secrets.env@" + added}; !slices.Equal(paths, want) {
			t.Errorf("findings %v, want %v (paths relative to the scanned directory)", paths, want)
		}
		for _, s := range rep.Skipped {
			if s.Path == "blob.bin" || s.Path == "big.txt" {
				t.Errorf("a blob outside the scanned directory was considered: %+v", s)
			}
		}
	})

	t.Run("no history", func(t *testing.T) {
		rep, err := Scan(context.Background(), dir, Options{NoHistory: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.History || len(findingAt(rep, "app/secrets.env")) != 0 {
			t.Errorf("history was scanned: %+v", rep)
		}
	})

	t.Run("git missing", func(t *testing.T) {
		rep, err := Scan(context.Background(), dir, Options{Git: filepath.Join(dir, "no-such-git")})
		if err != nil {
			t.Fatal(err)
		}
		if got := skippedReason(rep, ".git"); !strings.Contains(got, "git executable not found") {
			t.Errorf(".git skipped for %q", got)
		}
		if len(findingAt(rep, "app/config.env")) != 1 {
			t.Error("the work tree was not scanned")
		}
	})
}

func TestScanEmptyRepository(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q")
	rep, err := Scan(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.History || rep.Commits != 0 || len(rep.Findings) != 0 {
		t.Errorf("report %+v", rep)
	}
}

func TestSARIF(t *testing.T) {
	dir := t.TempDir()
	kbs := keyboundSecret(t)
	write(t, filepath.Join(dir, "my dir", "a.env"), "\nS="+kbs+"\n")
	write(t, filepath.Join(dir, "b.bin"), "\x00")
	rep, err := Scan(context.Background(), dir, Options{NoHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	rep.Findings[0].Status = StatusLeaked
	rep.Findings[0].Identity = &Identity{ClientID: "kb-1", Name: "svc", Owner: "team@example.com", Status: "active"}
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, rep); err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, buf.Bytes(), kbs)
	checkSARIF(t, buf.Bytes(), 1)

	var log struct {
		Runs []struct {
			Results []struct {
				Level     string `json:"level"`
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine, StartColumn int }
					}
				}
			}
			Invocations []struct {
				ToolExecutionNotifications []struct{ Message struct{ Text string } }
			}
		}
	}
	_ = json.Unmarshal(buf.Bytes(), &log)
	r := log.Runs[0].Results[0]
	loc := r.Locations[0].PhysicalLocation
	if r.Level != "error" || loc.ArtifactLocation.URI != "my%20dir/a.env" || loc.Region.StartLine != 2 || loc.Region.StartColumn != 3 ||
		!strings.Contains(r.Message.Text, "kb-1") || !strings.Contains(r.Message.Text, "leaked") {
		t.Errorf("result %+v", r)
	}
	if n := log.Runs[0].Invocations[0].ToolExecutionNotifications; len(n) != 1 || !strings.Contains(n[0].Message.Text, "binary file") {
		t.Errorf("notifications %+v", n)
	}
}

// checkSARIF validates the structure of a SARIF 2.1.0 log against the
// properties the specification requires (sections 3.13 to 3.27) and that
// code-scanning services read, and that it has want results.
func checkSARIF(t *testing.T, b []byte, want int) {
	t.Helper()
	var log map[string]any
	if err := json.Unmarshal(b, &log); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if log["version"] != "2.1.0" || log["$schema"] == nil {
		t.Errorf("version %v schema %v", log["version"], log["$schema"])
	}
	runs, _ := log["runs"].([]any)
	if len(runs) != 1 {
		t.Fatalf("runs: %v", log["runs"])
	}
	run := runs[0].(map[string]any)
	driver, _ := run["tool"].(map[string]any)["driver"].(map[string]any)
	if driver == nil || driver["name"] != "keybound" {
		t.Fatalf("tool.driver: %v", run["tool"])
	}
	ruleIDs := map[string]int{}
	for i, r := range driver["rules"].([]any) {
		rule := r.(map[string]any)
		id, _ := rule["id"].(string)
		if id == "" || rule["shortDescription"] == nil || rule["help"] == nil {
			t.Errorf("rule %d incomplete: %v", i, rule)
		}
		if _, dup := ruleIDs[id]; dup {
			t.Errorf("rule id %s twice", id)
		}
		ruleIDs[id] = i
	}
	results, ok := run["results"].([]any)
	if !ok || len(results) != want {
		t.Fatalf("results: %v", run["results"])
	}
	for _, x := range results {
		r := x.(map[string]any)
		id, _ := r["ruleId"].(string)
		idx, known := ruleIDs[id]
		if !known || r["ruleIndex"] != float64(idx) {
			t.Errorf("result rule %v index %v", r["ruleId"], r["ruleIndex"])
		}
		if lvl := r["level"]; lvl != "error" && lvl != "warning" && lvl != "note" {
			t.Errorf("level %v", lvl)
		}
		if msg, _ := r["message"].(map[string]any); msg == nil || msg["text"] == "" {
			t.Errorf("message %v", r["message"])
		}
		locs, _ := r["locations"].([]any)
		if len(locs) != 1 {
			t.Fatalf("locations %v", r["locations"])
		}
		pl := locs[0].(map[string]any)["physicalLocation"].(map[string]any)
		art := pl["artifactLocation"].(map[string]any)
		region := pl["region"].(map[string]any)
		if art["uri"] == "" || art["uriBaseId"] == nil || region["startLine"].(float64) < 1 || region["startColumn"].(float64) < 1 {
			t.Errorf("location %v", pl)
		}
		if base, _ := run["originalUriBaseIds"].(map[string]any)[art["uriBaseId"].(string)].(map[string]any); base == nil || !strings.HasSuffix(base["uri"].(string), "/") {
			t.Errorf("uriBaseId %v is not defined with a trailing slash in originalUriBaseIds", art["uriBaseId"])
		}
		fp, _ := r["partialFingerprints"].(map[string]any)
		if len(fp) == 0 {
			t.Errorf("no partialFingerprints: %v", r)
		}
		for _, v := range fp {
			if s, _ := v.(string); len(s) != 16 {
				t.Errorf("fingerprint %v is not a 16-digit prefix", v)
			}
		}
	}
}

// TestScanCandidatesCannotHideASecret: a file with more low-entropy
// candidate matches than the per-file cap still reports the real secret
// after them, with or without candidates asked for.
func TestScanCandidatesCannotHideASecret(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range maxFindingsPerFile + 5 {
		b.WriteString("API_KEY=partnerkey" + strings.Repeat("0", 8) + string(rune('a'+i%26)) + "\n")
	}
	aws := "AKIA" + randomFrom(t, upperDigits, 16)
	b.WriteString("aws_access_key_id = " + aws + "\n")
	write(t, filepath.Join(dir, "generated.env"), b.String())
	for _, cand := range []bool{false, true} {
		rep, err := Scan(context.Background(), dir, Options{Candidates: cand})
		if err != nil {
			t.Fatal(err)
		}
		found := slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Rule == "aws-access-key-id" })
		if !found {
			t.Errorf("candidates=%v: the AWS key after %d candidate lines was not reported (%d findings)", cand, maxFindingsPerFile+5, len(rep.Findings))
		}
	}
}

// TestScanSymlinkedRoot: a root the user names through a symbolic link is
// scanned; links below it are still not followed.
func TestScanSymlinkedRoot(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "repo")
	write(t, filepath.Join(real, "a.env"), "TOKEN="+randomFrom(t, alnum, 24)+"\n")
	if err := os.Symlink(filepath.Join(dir, "outside"), filepath.Join(real, "out")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "outside", "b.env"), "TOKEN="+randomFrom(t, alnum, 24)+"\n")
	link := filepath.Join(dir, "link-to-repo")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	rep, err := Scan(context.Background(), link, Options{NoHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 1 || len(rep.Findings) != 1 || rep.Findings[0].Path != "a.env" {
		t.Errorf("scan through a linked root: %d files, findings %+v", rep.Files, rep.Findings)
	}
	if !strings.Contains(skippedReason(rep, "out"), "not followed") {
		t.Errorf("a link below the root was followed: %+v", rep.Skipped)
	}
}

// TestSARIFSameSecretTwoFiles: code scanning folds results with equal
// partialFingerprints into one alert; the same secret in two files must
// stay two alerts, and columns are declared as counted in code points.
func TestSARIFSameSecretTwoFiles(t *testing.T) {
	dir := t.TempDir()
	secret := "TOKEN=" + randomFrom(t, alnum, 24) + "\n"
	write(t, filepath.Join(dir, "a.env"), secret)
	write(t, filepath.Join(dir, "b.env"), secret)
	rep, err := Scan(context.Background(), dir, Options{NoHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteSARIF(&out, rep); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Runs []struct {
			ColumnKind string `json:"columnKind"`
			Results    []struct {
				PartialFingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if run.ColumnKind != "unicodeCodePoints" || len(run.Results) != 2 {
		t.Fatalf("columnKind %q, %d results", run.ColumnKind, len(run.Results))
	}
	a, b := run.Results[0].PartialFingerprints, run.Results[1].PartialFingerprints
	if a[sarifFingerprintKey] != b[sarifFingerprintKey] {
		t.Error("the same secret has two secret fingerprints")
	}
	if maps.Equal(a, b) {
		t.Errorf("two files share partialFingerprints %v: code scanning would show one alert", a)
	}
}

// TestScanSkippedIsBounded: past maxSkippedListed, skipped files are
// counted in one entry instead of listed, so a tree of binaries cannot
// grow the report without bound.
func TestScanSkippedIsBounded(t *testing.T) {
	dir := t.TempDir()
	for i := range maxSkippedListed + 5 {
		if err := os.WriteFile(filepath.Join(dir, "bin"+strconv.Itoa(i)), []byte{0, 1, 2}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Scan(context.Background(), dir, Options{NoHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) != maxSkippedListed+1 {
		t.Fatalf("%d skipped entries, want %d listed and one count", len(rep.Skipped), maxSkippedListed)
	}
	if last := rep.Skipped[len(rep.Skipped)-1]; !strings.Contains(last.Reason, "5 more files or blobs not scanned") {
		t.Errorf("last entry %+v", last)
	}
}
