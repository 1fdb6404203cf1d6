package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/identity"
)

// reviewJSON is `keybound review list -o json`, as a script reads it.
type reviewJSON struct {
	Reviews []struct {
		ClientID       string `json:"client_id"`
		Owner          string `json:"owner"`
		Environment    string `json:"environment"`
		Status         string `json:"status"`
		State          string `json:"state"`
		Basis          string `json:"basis"`
		DueAt          string `json:"due_at"`
		Orphaned       bool   `json:"orphaned"`
		LastAttestedBy string `json:"last_attested_by"`
	} `json:"reviews"`
	Counts map[string]int `json:"counts"`
}

func (r reviewJSON) ids() []string {
	var out []string
	for _, it := range r.Reviews {
		out = append(out, it.ClientID)
	}
	slices.Sort(out)
	return out
}

func (r reviewJSON) state(id string) string {
	for _, it := range r.Reviews {
		if it.ClientID == id {
			return it.State
		}
	}
	return ""
}

func sorted(ids ...string) []string { slices.Sort(ids); return ids }

// TestReviews drives access reviews through the CLI against a served
// keybound whose sweep runs every second with auto-suspension on: identities
// are stored with creation times in the past, listed by review state,
// attested by their owner (and only their owner), and a lapsed one is
// suspended, loses token access, and is attested and resumed.
func TestReviews(t *testing.T) {
	s := startServerWith(t, func(c *config.Config) {
		c.Governance.SweepInterval = time.Second
		c.Governance.Reviews.AutoSuspend = true
	})
	dir := t.TempDir()
	key, jwksFile := keygen(t, dir, "svc")
	dpopKey := filepath.Join(dir, "dpop.pem")
	runOK(t, "keygen", "--key", dpopKey)
	jwks, err := os.ReadFile(jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	const day = 24 * time.Hour
	mk := func(id, env string, age time.Duration) *identity.Client {
		return &identity.Client{ID: id, Name: id, Owner: "team-" + id + "@example.com", Purpose: "reviews test", Environment: env,
			Status: identity.StatusActive, CreatedAt: now.Add(-age), UpdatedAt: now.Add(-age), ExpiresAt: now.Add(30 * day),
			Scopes: []string{"reports:read"}, AuthMethod: identity.AuthPrivateKeyJWT, JWKS: jwks, Binding: identity.BindingDPoP}
	}
	// prod reviews every 90 days, other environments every 180; grace 14 days.
	s.seedClients(t,
		mk("r-current", "dev", 10*day),
		mk("r-due", "prod", 80*day),
		mk("r-overdue", "prod", 95*day),
		mk("r-lapsed", "prod", 120*day),
		mk("r-dev-overdue", "dev", 185*day),
	)
	token := func(id string) result {
		return s.cli(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey)
	}
	waitSuspended := func(id string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.statuses(t)[id] != "suspended" {
			if time.Now().After(deadline) {
				t.Fatalf("the sweep did not suspend %s", id)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	list := func(args ...string) reviewJSON {
		t.Helper()
		return decodeJSON[reviewJSON](t, s.cliOK(t, append([]string{"review", "list", "-o", "json"}, args...)...))
	}

	t.Run("list by state", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{nil, sorted("r-due", "r-overdue", "r-lapsed", "r-dev-overdue")},
			{[]string{"--state", "due"}, []string{"r-due"}},
			{[]string{"--state", "overdue"}, sorted("r-overdue", "r-lapsed", "r-dev-overdue")},
			{[]string{"--state", "lapsed"}, []string{"r-lapsed"}},
			{[]string{"--state", "overdue", "--environment", "prod"}, sorted("r-overdue", "r-lapsed")},
			{[]string{"--state", "all", "--environment", "dev"}, sorted("r-current", "r-dev-overdue")},
			{[]string{"--owner", "team-r-due@example.com"}, []string{"r-due"}},
		} {
			if got := list(tc.args...).ids(); !slices.Equal(got, tc.want) {
				t.Errorf("review list %v = %v, want %v", tc.args, got, tc.want)
			}
		}
		res := list("--state", "all")
		if res.Counts["current"] < 2 || res.Counts["due"] != 1 || res.Counts["overdue"] != 2 || res.Counts["lapsed"] != 1 {
			t.Errorf("counts %v", res.Counts) // current: r-current and the admin identity
		}
		for _, it := range res.Reviews {
			if it.ClientID == "r-overdue" {
				due, _ := time.Parse(time.RFC3339, it.DueAt)
				if it.Basis != "created" || due.Sub(now.Add(-5*day)).Abs() > time.Second {
					t.Errorf("r-overdue schedule %+v, want due 90 days after creation", it)
				}
			}
		}
		table := s.cliOK(t, "review", "list", "--state", "overdue")
		for _, w := range []string{"CLIENT_ID", "REVIEW", "DUE", "LAST_ATTESTED", "r-overdue", "never", "2 overdue, 1 lapsed"} {
			if !strings.Contains(table, w) {
				t.Errorf("table lacks %q:\n%s", w, table)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		waitSuspended("r-lapsed") // so the sweep writes no event while this counts them
		events := len(s.adminLog(t))
		checkFailure(t, s.cli(t, "review", "list", "--state", "soon"), 2, "--state must be")
		checkFailure(t, s.cli(t, "review", "attest", "r-overdue", "--still-needed", "--purpose-ok", "--scopes-ok"), 2, "--by is required")
		checkFailure(t, s.cli(t, "review", "attest", "r-overdue", "--by", "team-r-due@example.com", "--still-needed", "--purpose-ok", "--scopes-ok"),
			1, "attestation refused", `"team-r-due@example.com" is not the owner of r-overdue`, "keybound client transfer")
		checkFailure(t, s.cli(t, "review", "attest", "r-overdue", "--by", "team-r-overdue@example.com", "--purpose-ok", "--scopes-ok"),
			1, "did not confirm that the identity is still needed", "keybound client revoke r-overdue")
		checkFailure(t, s.cli(t, "review", "attest", "r-overdue", "--by", "team-r-overdue@example.com", "--still-needed", "--purpose-ok"),
			1, "its scopes are still needed", "keybound client downscope r-overdue")
		checkFailure(t, s.cli(t, "review", "attest", "r-overdue", "--by", "team-r-overdue@example.com", "--still-needed", "--purpose-ok", "--scopes-ok", "--note", strings.Repeat("n", 300)),
			1, "note is longer than")
		checkFailure(t, s.cli(t, "review", "attest", "kb-nosuchclient", "--by", "x", "--still-needed", "--purpose-ok", "--scopes-ok"), 1, "not found")
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("refused attestations wrote %d admin events", n-events)
		}
		if got := list("--state", "overdue").state("r-overdue"); got != "overdue" {
			t.Errorf("r-overdue is %q after refused attestations", got)
		}
	})

	t.Run("attest", func(t *testing.T) {
		out := s.cliOK(t, "review", "attest", "r-overdue", "--by", "team-r-overdue@example.com", "--still-needed", "--purpose-ok", "--scopes-ok", "--note", "still reads reports")
		want := now.Add(90 * day).Format(time.DateOnly)
		if !strings.Contains(out, "r-overdue attested by team-r-overdue@example.com; next review due") {
			t.Errorf("attest output %q, want next due about %s", out, want)
		}
		if slices.Contains(list("--state", "overdue").ids(), "r-overdue") {
			t.Error("r-overdue is still overdue after its owner attested")
		}
		all := list("--state", "all")
		for _, it := range all.Reviews {
			if it.ClientID == "r-overdue" && (it.State != "current" || it.Basis != "attested" || it.LastAttestedBy != "team-r-overdue@example.com") {
				t.Errorf("after attesting: %+v", it)
			}
		}
		evs := decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--target", "r-overdue", "-o", "json"))
		if len(evs) == 0 || evs[0]["action"] != "client.attest" {
			t.Fatalf("admin log of r-overdue: %v", evs)
		}
		ch, _ := evs[0]["changes"].(map[string]any)
		if ch["owner"] != "team-r-overdue@example.com" || ch["still_needed"] != "yes" || ch["note"] != "still reads reports" {
			t.Errorf("attest event changes %v", ch)
		}
	})

	t.Run("lapsed review suspends, attest and resume restore", func(t *testing.T) {
		if r := token("r-current"); r.code != 0 {
			t.Fatalf("a current identity cannot get a token: %s", r)
		}
		waitSuspended("r-lapsed")
		checkFailure(t, token("r-lapsed"), 1, "invalid_client")
		for id, st := range s.statuses(t) {
			if st != "active" && id != "r-lapsed" {
				t.Errorf("%s is %s: only the lapsed identity may be suspended", id, st)
			}
		}
		var suspended map[string]any
		for _, ev := range decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--target", "r-lapsed", "-o", "json")) {
			if ev["action"] == "client.suspend" {
				suspended = ev
			}
		}
		ch, _ := suspended["changes"].(map[string]any)
		if suspended["actor"] != "keybound-governance" || !strings.Contains(ch["reason"].(string), "access review overdue since") {
			t.Errorf("suspension event %v", suspended)
		}

		out := s.cliOK(t, "review", "attest", "r-lapsed", "--by", "team-r-lapsed@example.com", "--still-needed", "--purpose-ok", "--scopes-ok")
		if !strings.Contains(out, "r-lapsed is suspended: resume it with `keybound client resume r-lapsed`") {
			t.Errorf("attesting a suspended identity: %q", out)
		}
		s.cliOK(t, "client", "resume", "r-lapsed", "--reason", "attested")
		time.Sleep(1500 * time.Millisecond) // at least one more sweep
		if st := s.statuses(t)["r-lapsed"]; st != "active" {
			t.Fatalf("r-lapsed is %s after attest and resume", st)
		}
		if r := token("r-lapsed"); r.code != 0 {
			t.Errorf("r-lapsed cannot get a token after attest and resume: %s", r)
		}
	})
}
