package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/store"
)

// offboardJSON is the subset of the offboard answer the tests read.
type offboardJSON struct {
	DryRun     bool   `json:"dry_run"`
	Action     string `json:"action"`
	Matched    int    `json:"matched"`
	Changed    int    `json:"changed"`
	Unchanged  int    `json:"unchanged"`
	Identities []struct {
		ClientID  string `json:"client_id"`
		Name      string `json:"name"`
		Owner     string `json:"owner"`
		Status    string `json:"status"`
		NewStatus string `json:"new_status"`
		Changed   bool   `json:"changed"`
	} `json:"identities"`
}

// statuses maps every client id to its status.
func (s *server) statuses(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, c := range decodeJSON[[]clientView](t, s.cliOK(t, "client", "list", "--limit", "1000", "-o", "json")) {
		m[c.ClientID] = c.Status
	}
	return m
}

func (s *server) adminLog(t *testing.T) []store.AdminEvent {
	t.Helper()
	return decodeJSON[[]store.AdminEvent](t, s.cliOK(t, "admin-log", "--limit", "1000", "-o", "json"))
}

func TestOffboard(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "svc")
	dpopKey := filepath.Join(dir, "dpop.pem")
	runOK(t, "keygen", "--key", dpopKey)
	create := func(name, owner, env, vendor string) string {
		t.Helper()
		args := createArgs(jwks, "--name", name, "--owner", owner, "--environment", env, "-o", "json")
		if vendor != "" {
			args = append(args, "--vendor", vendor)
		}
		return decodeJSON[clientView](t, s.cliOK(t, args...)).ClientID
	}
	a1 := create("a1", "team-a@example.com", "prod", "acme")
	a2 := create("a2", "team-a@example.com", "dev", "")
	a3 := create("a3", "team-a@example.com", "prod", "")
	b1 := create("b1", "team-b@example.com", "prod", "acme")
	token := func(id string) result {
		return s.cli(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey)
	}
	if r := token(a1); r.code != 0 {
		t.Fatalf("a token before offboarding: %s", r)
	}
	want := func(t *testing.T, m map[string]string) {
		t.Helper()
		got := s.statuses(t)
		for id, st := range m {
			if got[id] != st {
				t.Errorf("%s is %q, want %q", id, got[id], st)
			}
		}
	}

	t.Run("dry run changes nothing", func(t *testing.T) {
		before, events := s.statuses(t), len(s.adminLog(t))
		res := decodeJSON[offboardJSON](t, s.cliOK(t, "offboard", "--owner", "team-a@example.com", "--environment", "prod", "--dry-run", "-o", "json"))
		if !res.DryRun || res.Action != "suspend" || res.Matched != 2 || res.Changed != 2 || res.Unchanged != 0 {
			t.Errorf("dry run answer %+v", res)
		}
		ids := map[string]bool{}
		for _, it := range res.Identities {
			ids[it.ClientID] = true
			if it.Status != "active" || it.NewStatus != "suspended" || !it.Changed || it.Owner != "team-a@example.com" {
				t.Errorf("dry run item %+v", it)
			}
		}
		if !ids[a1] || !ids[a3] {
			t.Errorf("dry run lists %v, want %s and %s", ids, a1, a3)
		}
		table := s.cliOK(t, "offboard", "--owner", "team-a@example.com", "--environment", "prod", "--dry-run")
		for _, w := range []string{"CLIENT_ID", "NEW_STATUS", a1, a3, "would change", "nothing was changed"} {
			if !strings.Contains(table, w) {
				t.Errorf("dry-run table lacks %q:\n%s", w, table)
			}
		}
		want(t, before)
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("a dry run wrote %d admin events", n-events)
		}
		if r := token(a1); r.code != 0 {
			t.Errorf("a dry run stopped the identity: %s", r)
		}
	})

	t.Run("suspends all matching and only matching", func(t *testing.T) {
		events := len(s.adminLog(t))
		out := s.cliOK(t, "offboard", "--owner", "team-a@example.com", "--environment", "prod", "--reason", "team a left prod")
		for _, w := range []string{a1, a3, "changed", "2 matching, 2 suspended, 0 unchanged"} {
			if !strings.Contains(out, w) {
				t.Errorf("report lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, a2) || strings.Contains(out, b1) {
			t.Errorf("report names an identity outside the filter:\n%s", out)
		}
		want(t, map[string]string{a1: "suspended", a3: "suspended", a2: "active", b1: "active"})
		log := s.adminLog(t)
		if len(log) != events+2 {
			t.Fatalf("%d new admin events, want 2", len(log)-events)
		}
		targets := map[string]bool{}
		for _, ev := range log[:2] {
			targets[ev.Target] = true
			if ev.Action != "client.offboard.suspend" || ev.Actor != s.adminID ||
				ev.Changes["status"] != "active -> suspended" || ev.Changes["reason"] != "team a left prod" ||
				ev.Changes["filter"] != "owner=team-a@example.com environment=prod" {
				t.Errorf("admin event %+v", ev)
			}
		}
		if !targets[a1] || !targets[a3] {
			t.Errorf("admin events name %v, want %s and %s", targets, a1, a3)
		}
	})

	t.Run("token refused right after", func(t *testing.T) {
		checkFailure(t, token(a1), 1, "invalid_client")
		checkFailure(t, token(a3), 1, "invalid_client")
		if r := token(a2); r.code != 0 {
			t.Errorf("an identity outside the filter lost its tokens: %s", r)
		}
	})

	t.Run("again changes nothing", func(t *testing.T) {
		events := len(s.adminLog(t))
		res := decodeJSON[offboardJSON](t, s.cliOK(t, "offboard", "--owner", "team-a@example.com", "--environment", "prod", "-o", "json"))
		if res.Matched != 2 || res.Changed != 0 || res.Unchanged != 2 {
			t.Errorf("second run %+v", res)
		}
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("an offboarding that changed nothing wrote %d admin events", n-events)
		}
	})

	t.Run("vendor", func(t *testing.T) {
		res := decodeJSON[offboardJSON](t, s.cliOK(t, "offboard", "--vendor", "acme", "--dry-run", "-o", "json"))
		if res.Matched != 2 || res.Changed != 1 { // a1 is already suspended, b1 would be
			t.Errorf("vendor dry run %+v", res)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		events := len(s.adminLog(t))
		out := s.cliOK(t, "offboard", "--owner", "team-a@example.com", "--action", "revoke", "--reason", "team a gone")
		if !strings.Contains(out, "3 matching, 3 revoked, 0 unchanged") {
			t.Errorf("revoke report:\n%s", out)
		}
		want(t, map[string]string{a1: "revoked", a2: "revoked", a3: "revoked", b1: "active"})
		log := s.adminLog(t)
		if len(log) != events+3 {
			t.Fatalf("%d new admin events, want 3", len(log)-events)
		}
		for _, ev := range log[:3] {
			if ev.Action != "client.offboard.revoke" || ev.Actor != s.adminID {
				t.Errorf("admin event %+v", ev)
			}
		}
		checkFailure(t, token(a2), 1, "invalid_client")

		// Revoking is final: neither suspend nor revoke touches them again.
		events = len(s.adminLog(t))
		res := decodeJSON[offboardJSON](t, s.cliOK(t, "offboard", "--owner", "team-a@example.com", "-o", "json"))
		if res.Matched != 3 || res.Changed != 0 || res.Unchanged != 3 {
			t.Errorf("suspend after revoke %+v", res)
		}
		for _, it := range res.Identities {
			if it.Status != "revoked" || it.NewStatus != "revoked" || it.Changed {
				t.Errorf("revoked identity reported as %+v", it)
			}
		}
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("%d admin events for revoked identities", n-events)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before, events := s.statuses(t), len(s.adminLog(t))
		checkFailure(t, s.cli(t, "offboard"), 2, "--owner", "--vendor", "--environment")
		checkFailure(t, s.cli(t, "offboard", "--purpose", "   ", "--dry-run"), 1, "filter")
		checkFailure(t, s.cli(t, "offboard", "--owner", "team-b@example.com", "--action", "delete"), 2, "--action")
		checkFailure(t, s.cli(t, "offboard", "--owner", strings.Repeat("x", 300)), 1, "owner", "longer than 256")
		checkFailure(t, s.cli(t, "offboard", "--owner", "team-b@example.com", "-o", "yaml"), 2, "--output")
		want(t, before)
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("refused offboardings wrote %d admin events", n-events)
		}
	})
}
