package cli_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/config"
)

// importSecret is a distinct legacy API key, built at run time.
func importSecret(n int) string {
	return fmt.Sprintf("legacy-api-key-%03d-%s", n, strings.Repeat("x9Y", 6))
}

const importHeader = "name,owner,purpose,environment,expires_at,secret,vendor,scope\n"

// csvRow is one valid CSV row with a distinct secret.
func csvRow(n int) string {
	return fmt.Sprintf("partner-%d,team-partners@example.com,partner feed %d,prod,%s,%s,acme,feed:read\n",
		n, n, time.Now().Add(60*24*time.Hour).UTC().Format(time.DateOnly), importSecret(n))
}

// state counts the clients and admin events the server holds.
func (s *server) state(t *testing.T) (clients, events int) {
	t.Helper()
	clients = len(decodeJSON[[]clientView](t, s.cliOK(t, "client", "list", "--limit", "1000", "-o", "json")))
	events = len(decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--limit", "1000", "-o", "json")))
	return clients, events
}

func TestImport(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}

	t.Run("csv", func(t *testing.T) {
		c0, e0 := s.state(t)
		path := file("good.csv", importHeader+csvRow(1)+csvRow(2))
		r := s.cli(t, "import", path)
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		noSecrets(t, r, importSecret(1), importSecret(2))
		for _, w := range []string{"CLIENT_ID", "partner-1", "partner-2", "team-partners@example.com", "Imported 2 identities"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output lacks %q:\n%s", w, r.stdout)
			}
		}
		c1, e1 := s.state(t)
		if c1 != c0+2 || e1 != e0+2 {
			t.Errorf("clients %d -> %d, events %d -> %d; want 2 more of each", c0, c1, e0, e1)
		}
		var imported []clientView
		for _, c := range decodeJSON[[]clientView](t, s.cliOK(t, "client", "list", "--owner", "team-partners@example.com", "-o", "json")) {
			imported = append(imported, c)
		}
		if len(imported) != 2 {
			t.Fatalf("imported clients %+v", imported)
		}
		for _, c := range imported {
			if c.AuthMethod != "client_secret_basic" || !c.DPoPBound || c.Status != "active" || c.Scope != "feed:read" || c.Environment != "prod" || c.ClientSecret != "" {
				t.Errorf("imported client %+v", c)
			}
		}
		evs := decodeJSON[[]map[string]any](t, s.cliOK(t, "admin-log", "--target", imported[0].ClientID, "-o", "json"))
		if len(evs) != 1 || evs[0]["action"] != "client.import" {
			t.Errorf("admin log of an imported client: %v", evs)
		}
	})

	t.Run("json", func(t *testing.T) {
		exp := time.Now().Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339)
		path := file("good.json", fmt.Sprintf(`[
  {"name": "json-1", "owner": "team-json@example.com", "purpose": "sync", "environment": "staging", "expires_at": %q, "secret": %q},
  {"name": "json-2", "owner": "team-json@example.com", "purpose": "sync", "environment": "staging", "expires_at": %q, "secret": %q, "scope": "a b", "vendor": null}
]`, exp, importSecret(10), exp, importSecret(11)))
		r := s.cli(t, "import", path, "-o", "json")
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		noSecrets(t, r, importSecret(10), importSecret(11))
		out := decodeJSON[struct {
			Imported int          `json:"imported"`
			Clients  []clientView `json:"clients"`
		}](t, r.stdout)
		if out.Imported != 2 || len(out.Clients) != 2 || out.Clients[1].Scope != "a b" || out.Clients[0].Environment != "staging" {
			t.Errorf("json import: %s", r.stdout)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		c0, e0 := s.state(t)
		r := s.cli(t, "import", file("dry.csv", importHeader+csvRow(20)), "--dry-run")
		if r.code != 0 || !strings.Contains(r.stdout, "All 1 rows") || !strings.Contains(r.stdout, "Nothing was imported") {
			t.Fatal(r)
		}
		if c1, e1 := s.state(t); c1 != c0 || e1 != e0 {
			t.Error("a dry run stored something")
		}
	})

	// Every kind of bad row: the whole import is refused, every problem is
	// listed with its row and field, and nothing is stored.
	type want struct{ row, field, about string }
	badRows := []struct {
		name    string
		file    string
		content string
		want    []want
	}{
		{"missing owner", "owner.csv", importHeader + csvRow(30) + strings.Replace(csvRow(31), "team-partners@example.com", "", 1),
			[]want{{"row 3", "owner", "is required"}}},
		{"bad expiry", "expiry.csv", importHeader + strings.Replace(csvRow(32), time.Now().Add(60*24*time.Hour).UTC().Format(time.DateOnly), "31/12/2027", 1),
			[]want{{"row 2", "expires_at", "is not a date"}}},
		{"expiry in the past", "past.csv", importHeader + strings.Replace(csvRow(33), time.Now().Add(60*24*time.Hour).UTC().Format(time.DateOnly), "2001-01-01", 1),
			[]want{{"row 2", "expires_at", "must be in the future"}}},
		{"duplicate secret in the file", "dup.csv", importHeader + csvRow(34) + csvRow(35) + strings.Replace(csvRow(36), importSecret(36), importSecret(34), 1),
			[]want{{"row 4", "secret", "same secret as row 2"}}},
		{"secret already in the inventory", "again.csv", importHeader + csvRow(37) + csvRow(1),
			[]want{{"row 3", "secret", "already the secret of registered identity"}}},
		{"unknown column", "column.csv", strings.Replace(importHeader, "scope\n", "scope,colour\n", 1) + strings.TrimSuffix(csvRow(38), "\n") + ",blue\n",
			[]want{{"row 1", "header", `column 9: "colour" is not an import field`}}},
		{"missing column", "nocol.csv", "name,owner,purpose,environment,secret\nx,o,p,prod," + importSecret(39) + "\n",
			[]want{{"row 1", "header", "has no expires_at column"}, {"row 2", "expires_at", "is required"}}},
		{"wrong number of fields", "fields.csv", importHeader + csvRow(40) + "a,b,c\n",
			[]want{{"row 3", "csv", "has 3 fields; the header names 8"}}},
		{"empty file", "empty.csv", "", []want{{"file", "file", "is empty"}}},
		{"blank file", "blank.json", "  \n\t\n", []want{{"file", "file", "is empty"}}},
		{"header only", "header.csv", importHeader, []want{{"file", "file", "has a header but no rows"}}},
		{"empty JSON array", "empty.json", "[]", []want{{"file", "file", "empty JSON array"}}},
		{"JSON unknown field", "unknown.json", `[{"name":"n","owner":"o","purpose":"p","environment":"prod","expires_at":"2099-01-01","secret":"` + importSecret(41) + `","colour":"blue"}]`,
			[]want{{"row 1", "colour", "is not an import field"}}},
		{"JSON number", "number.json", `[{"name":"n","owner":"o","purpose":"p","environment":"prod","expires_at":"2099-01-01","secret":12345678901234567890}]`,
			[]want{{"row 1", "secret", "must be a JSON string"}}},
		{"not JSON", "broken.json", `[{"name": `, []want{{"file", "file", "is not a JSON array of objects"}}},
		{"every problem at once", "many.csv", strings.Replace(importHeader, "scope\n", "scope,colour\n", 1) +
			strings.Replace(strings.TrimSuffix(csvRow(42), "\n"), "team-partners@example.com", "", 1) + ",blue\n" +
			strings.Replace(strings.TrimSuffix(csvRow(43), "\n"), importSecret(43), "short-key", 1) + ",blue\n",
			[]want{{"row 1", "header", "colour"}, {"row 2", "owner", "is required"}, {"row 3", "secret", "at least 16"}}},
	}
	for _, tc := range badRows {
		t.Run(tc.name, func(t *testing.T) {
			c0, e0 := s.state(t)
			path := file(tc.file, tc.content)
			r := s.cli(t, "import", path)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("want exit 1 and no stdout:\n%s", r)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "keybound: import refused: ") || !strings.Contains(last, "nothing was imported") ||
				!strings.Contains(last, fmt.Sprintf("%d problem", len(tc.want))) {
				t.Errorf("last line %q", last)
			}
			if got := strings.Fields(lines[0]); len(got) != 3 || got[0] != "ROW" {
				t.Errorf("no problem table header: %q", lines[0])
			}
			problems := lines[1 : len(lines)-1]
			if len(problems) != len(tc.want) {
				t.Fatalf("%d problems listed, want %d:\n%s", len(problems), len(tc.want), r.stderr)
			}
			for i, w := range tc.want {
				p := problems[i]
				if !strings.HasPrefix(p, w.row+" ") || !strings.Contains(p, " "+w.field+" ") || !strings.Contains(p, w.about) {
					t.Errorf("problem %d = %q, want %s, %s, %q", i, p, w.row, w.field, w.about)
				}
			}
			for n := 0; n < 50; n++ {
				noSecrets(t, r, importSecret(n))
			}
			if c1, e1 := s.state(t); c1 != c0 || e1 != e0 {
				t.Errorf("a refused import changed the store: clients %d -> %d, events %d -> %d", c0, c1, e0, e1)
			}
		})
	}

	t.Run("problems as json", func(t *testing.T) {
		r := s.cli(t, "import", file("jsonout.csv", importHeader+csvRow(44)+strings.Replace(csvRow(45), "prod", "prod eu", 1)), "-o", "json")
		if r.code != 1 {
			t.Fatal(r)
		}
		out := decodeJSON[struct {
			Imported int `json:"imported"`
			Problems []struct {
				Row    int    `json:"row"`
				Field  string `json:"field"`
				Detail string `json:"detail"`
			} `json:"problems"`
		}](t, r.stdout)
		if out.Imported != 0 || len(out.Problems) != 1 || out.Problems[0].Row != 3 || out.Problems[0].Field != "environment" {
			t.Errorf("json problems %s", r.stdout)
		}
		checkFailure(t, r, 1, "import refused")
	})

	errCases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"file does not exist", []string{"import", filepath.Join(dir, "nope.csv")}, 1, []string{"cannot read", "nope.csv", "no such file or directory"}},
		{"a directory", []string{"import", dir}, 1, []string{"cannot read", "is a directory"}},
		{"no file", []string{"import"}, 2, nil},
		{"bad output", []string{"import", filepath.Join(dir, "good.csv"), "-o", "sarif"}, 2, []string{"json or table"}},
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
		})
	}
}

// TestImportTooLargeIsAFailure: the server refusing an import for its size
// is a failure (exit 1), not a usage error, though its message says
// "accepts", as cobra's argument errors do.
func TestImportTooLargeIsAFailure(t *testing.T) {
	t.Parallel()
	s := startServerWith(t, func(cfg *config.Config) { cfg.Server.MaxBodyBytes = 1024 })
	rows := importHeader
	for n := range 20 {
		rows += csvRow(100 + n)
	}
	path := filepath.Join(t.TempDir(), "big.csv")
	writeFile(t, path, rows)
	checkFailure(t, s.cli(t, "import", path), 1, "larger than the server accepts")
	// A wrong argument count is still a usage error.
	checkFailure(t, s.cli(t, "import", path, "extra"), 2, "accepts 1 arg")
}
