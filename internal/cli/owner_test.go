package cli_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/posture"
)

// ownerJSON is one entry of `keybound owner list -o json`.
type ownerJSON struct {
	Name       string `json:"name"`
	Contact    string `json:"contact"`
	Status     string `json:"status"`
	DepartedAt string `json:"departed_at"`
	Registered bool   `json:"registered"`
	Identities int    `json:"identities"`
}

type transferJSON struct {
	DryRun     bool   `json:"dry_run"`
	From       string `json:"from"`
	To         string `json:"to"`
	Moved      int    `json:"moved"`
	Identities []struct {
		ClientID string `json:"client_id"`
	} `json:"identities"`
}

// orphanedView is the part of a client view the owner tests read.
type orphanedView struct {
	ClientID string `json:"client_id"`
	Owner    string `json:"owner"`
	Orphaned bool   `json:"orphaned"`
}

// TestOwners drives the owner directory through the CLI against a served
// keybound that requires known owners: add, refuse unknown and departed
// owners on create, import and transfer, depart (orphaned in show, list,
// review list and the posture report), and transfer in one transaction.
func TestOwners(t *testing.T) {
	s := startServerWith(t, func(c *config.Config) { c.Governance.RequireKnownOwners = true })
	dir := t.TempDir()
	_, jwks := keygen(t, dir, "svc")
	const alice, payments = "alice@example.com", "team-payments@example.com"
	create := func(owner string) result {
		return s.cli(t, createArgs(jwks, "--owner", owner, "-o", "json")...)
	}
	owners := func() map[string]ownerJSON {
		m := map[string]ownerJSON{}
		for _, o := range decodeJSON[[]ownerJSON](t, s.cliOK(t, "owner", "list", "-o", "json")) {
			m[o.Name] = o
		}
		return m
	}
	show := func(id string) orphanedView {
		return decodeJSON[orphanedView](t, s.cliOK(t, "client", "show", id, "-o", "json"))
	}

	t.Run("add", func(t *testing.T) {
		if out := s.cliOK(t, "owner", "add", alice, "--contact", "alice.oncall@example.com"); !strings.Contains(out, "owner alice@example.com added") {
			t.Errorf("owner add: %q", out)
		}
		s.cliOK(t, "owner", "add", payments)
		events := len(s.adminLog(t))
		checkFailure(t, s.cli(t, "owner", "add", alice), 1, "owner not added", "already")
		checkFailure(t, s.cli(t, "owner", "add", "bob", "--contact", "not-an-address"), 1, "contact must be one e-mail address")
		checkFailure(t, s.cli(t, "owner", "add", " "), 1, "name is required")
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("refused owner adds wrote %d admin events", n-events)
		}
		m := owners()
		if o := m[alice]; o.Status != "active" || o.Contact != "alice.oncall@example.com" || !o.Registered {
			t.Errorf("alice %+v", o)
		}
		// The admin identity's owner is added at start when owners must be known.
		if o, ok := m["keybound operator"]; !ok || !o.Registered || o.Identities != 1 {
			t.Errorf("keybound operator %+v", o)
		}
		if table := s.cliOK(t, "owner", "list"); !strings.Contains(table, "OWNER") || !strings.Contains(table, alice) {
			t.Errorf("owner list table:\n%s", table)
		}
	})

	var a1, a2 string
	t.Run("create and import check owners", func(t *testing.T) {
		checkFailure(t, create("carol@example.com"), 1, "owner", "is not in the owner directory")
		a1 = decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks, "--owner", alice, "-o", "json")...)).ClientID
		a2 = decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks, "--owner", alice, "--environment", "dev", "-o", "json")...)).ClientID

		c0, e0 := s.state(t)
		good := strings.Replace(csvRow(1), "team-partners@example.com", alice, 1)
		bad := strings.Replace(csvRow(2), "team-partners@example.com", "dave@example.com", 1)
		path := filepath.Join(dir, "owners.csv")
		writeFile(t, path, importHeader+good+bad)
		r := s.cli(t, "import", path)
		// The import lists every problem (by file line) above its one-line error.
		if r.code != 1 || !strings.Contains(r.stderr, "row 3  owner  \"dave@example.com\" is not in the owner directory") ||
			strings.Contains(r.stderr, "row 2") || !strings.Contains(r.stderr, "keybound: import refused: 1 problem") {
			t.Errorf("import with an unknown owner:\n%s", r)
		}
		if c1, e1 := s.state(t); c1 != c0 || e1 != e0 {
			t.Errorf("a refused import changed clients %d -> %d, events %d -> %d", c0, c1, e0, e1)
		}
	})

	t.Run("depart orphans", func(t *testing.T) {
		out := s.cliOK(t, "owner", "depart", alice, "--reason", "left the company")
		for _, w := range []string{"owner alice@example.com marked departed; 2 identities are now orphaned", a1, a2, "keybound owner transfer --from alice@example.com"} {
			if !strings.Contains(out, w) {
				t.Errorf("depart output lacks %q:\n%s", w, out)
			}
		}
		checkFailure(t, s.cli(t, "owner", "depart", alice), 1, "departed already")
		checkFailure(t, s.cli(t, "owner", "depart", "nobody@example.com"), 1, "not found")
		if o := owners()[alice]; o.Status != "departed" || o.DepartedAt == "" || o.Identities != 2 {
			t.Errorf("alice after departing %+v", o)
		}
		if v := show(a1); !v.Orphaned {
			t.Errorf("client show %+v, want orphaned", v)
		}
		if table := s.cliOK(t, "client", "show", a1); !strings.Contains(table, "orphaned") || !strings.Contains(table, "keybound client transfer "+a1) {
			t.Errorf("client show table lacks the orphaned line:\n%s", table)
		}
		if table := s.cliOK(t, "client", "list"); !strings.Contains(table, alice+" (departed: orphaned)") {
			t.Errorf("client list table does not flag orphans:\n%s", table)
		}
		for _, c := range decodeJSON[[]orphanedView](t, s.cliOK(t, "client", "list", "-o", "json")) {
			if c.Orphaned != (c.ClientID == a1 || c.ClientID == a2) {
				t.Errorf("client list: %+v", c)
			}
		}
		for _, it := range decodeJSON[reviewJSON](t, s.cliOK(t, "review", "list", "--state", "all", "-o", "json")).Reviews {
			if it.Orphaned != (it.ClientID == a1 || it.ClientID == a2) {
				t.Errorf("review list: %+v", it)
			}
		}
		rep := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json", "--no-snapshot"))
		for _, f := range rep.Identities {
			if f.Key == posture.KeyOrphaned && (!f.Tracked || f.Count == nil || *f.Count != 2 || !slices.Contains(f.ClientIDs, a1)) {
				t.Errorf("posture orphaned finding %+v", f)
			}
		}
		checkFailure(t, s.cli(t, "review", "attest", a1, "--by", alice, "--still-needed", "--purpose-ok", "--scopes-ok"), 1, "has departed", "keybound client transfer")
		checkFailure(t, create(alice), 1, "has departed")
	})

	t.Run("transfer refusals", func(t *testing.T) {
		events := len(s.adminLog(t))
		checkFailure(t, s.cli(t, "owner", "transfer", "--from", alice), 2, "--from and --to")
		checkFailure(t, s.cli(t, "owner", "transfer", "--from", alice, "--to", "erin@example.com"), 1, "to ", "not in the owner directory")
		s.cliOK(t, "owner", "add", "frank@example.com")
		s.cliOK(t, "owner", "depart", "frank@example.com")
		events = len(s.adminLog(t))
		checkFailure(t, s.cli(t, "owner", "transfer", "--from", alice, "--to", "frank@example.com"), 1, "has departed")
		checkFailure(t, s.cli(t, "owner", "transfer", "--from", "nobody@example.com", "--to", payments), 1, "owns no identity")
		checkFailure(t, s.cli(t, "client", "transfer", a1, "--to", "frank@example.com"), 1, "has departed")
		checkFailure(t, s.cli(t, "client", "transfer", a1), 2, "--to is required")
		if n := len(s.adminLog(t)); n != events {
			t.Errorf("refused transfers wrote %d admin events", n-events)
		}
		if v := show(a1); v.Owner != alice {
			t.Errorf("a refused transfer moved %s to %s", a1, v.Owner)
		}
	})

	t.Run("transfer moves every identity", func(t *testing.T) {
		events := len(s.adminLog(t))
		dry := decodeJSON[transferJSON](t, s.cliOK(t, "owner", "transfer", "--from", alice, "--to", payments, "--dry-run", "-o", "json"))
		if !dry.DryRun || dry.Moved != 2 || show(a1).Owner != alice || len(s.adminLog(t)) != events {
			t.Fatalf("dry run %+v changed something", dry)
		}
		out := s.cliOK(t, "owner", "transfer", "--from", alice, "--to", payments, "--reason", "alice left")
		if !strings.Contains(out, "2 moved from alice@example.com to team-payments@example.com") {
			t.Errorf("transfer output:\n%s", out)
		}
		for _, id := range []string{a1, a2} {
			if v := show(id); v.Owner != payments || v.Orphaned {
				t.Errorf("%s after transfer: %+v", id, v)
			}
			evs := decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--target", id, "-o", "json"))
			ch, _ := evs[0]["changes"].(map[string]any)
			if evs[0]["action"] != "client.transfer" || ch["owner"] != alice+" -> "+payments || ch["reason"] != "alice left" {
				t.Errorf("%s transfer event %v", id, evs[0])
			}
		}
		if n := len(s.adminLog(t)); n != events+2 {
			t.Errorf("%d admin events for a transfer of 2", n-events)
		}
		for _, it := range decodeJSON[reviewJSON](t, s.cliOK(t, "review", "list", "--owner", payments, "-o", "json")).Reviews {
			if it.Basis != "transferred" || it.State != "overdue" {
				t.Errorf("a transferred identity's review %+v, want due at once", it)
			}
		}
		s.cliOK(t, "review", "attest", a1, "--by", payments, "--still-needed", "--purpose-ok", "--scopes-ok")

		s.cliOK(t, "owner", "add", "grace@example.com")
		one := decodeJSON[transferJSON](t, s.cliOK(t, "client", "transfer", a2, "--to", "grace@example.com", "-o", "json"))
		if one.Moved != 1 || one.From != payments || show(a2).Owner != "grace@example.com" || show(a1).Owner != payments {
			t.Errorf("client transfer %+v", one)
		}
	})
}
