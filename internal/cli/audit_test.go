package cli_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// seedAudit appends evs to the running server's store, as the gateway's
// audit writer does, so the CLI is tested against a trail with known
// times. (internal/app's end-to-end test drives the real gateway.)
func (s *server) seedAudit(t *testing.T, evs ...store.AuditEvent) {
	t.Helper()
	s.withStore(t, func(ctx context.Context, st *sqlite.Store) {
		if err := st.AppendAuditEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	})
}

// withStore opens the running server's store, as a second process would,
// runs fn with it and closes it again.
func (s *server) withStore(t *testing.T, fn func(ctx context.Context, st *sqlite.Store)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(s.dataDir, "keybound.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fn(ctx, st)
}

// auditEventJSON is an event as `keybound audit events -o json` prints it.
type auditEventJSON map[string]any

func (e auditEventJSON) str(k string) string { s, _ := e[k].(string); return s }

// auditSummaryJSON is a row as `keybound audit summary -o json` prints it.
type auditSummaryJSON struct {
	ClientID string    `json:"client_id"`
	Route    string    `json:"route"`
	Method   string    `json:"method"`
	Scopes   []string  `json:"scopes"`
	Decision string    `json:"decision"`
	Count    int64     `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

func TestAudit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	ev := func(n int, at time.Time, client, route, method, obj string, status int, decision, reason string, scopes ...string) store.AuditEvent {
		e := store.AuditEvent{Time: at, RequestID: "req-" + string(rune('a'+n)), ClientID: client, Route: route, Method: method,
			PathTemplate: "/" + route + "/{id}", ObjectID: obj, Status: status, Decision: decision, Reason: reason,
			Scopes: scopes, CredentialType: "dpop", SourceAddr: "127.0.0.1:5000" + string(rune('0'+n)), BytesOut: 42}
		if client != "" {
			e.Owner, e.TokenJTI = "team-"+client+"@example.com", "jti-"+string(rune('a'+n))
		} else {
			e.CredentialType, e.PathTemplate = "none", "/"+route
		}
		return e
	}
	const a, b = "kb-svc-a", "kb-svc-b"
	s.seedAudit(t,
		ev(0, ago(48*time.Hour), a, "invoices", "GET", "0", 200, "allow", "ok", "invoices:read"),
		ev(1, ago(10*time.Minute), a, "invoices", "GET", "1", 200, "allow", "ok", "invoices:read"),
		ev(2, ago(9*time.Minute), a, "invoices", "GET", "2", 200, "allow", "ok", "invoices:read"),
		ev(3, ago(8*time.Minute), a, "invoices", "POST", "3", 403, "deny", "insufficient_scope", "invoices:read"),
		ev(4, ago(7*time.Minute), b, "reports", "GET", "7", 429, "deny", "rate_limited", "reports:read", "reports:export"),
		ev(5, ago(6*time.Minute), "", "status", "GET", "", 200, "allow", "ok"),
	)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }

	t.Run("events table", func(t *testing.T) {
		r := s.cli(t, "audit", "events")
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"TIME", "CLIENT", "ROUTE", "METHOD", "PATH", "OBJECT", "STATUS", "DECISION", "REASON"}) {
			t.Errorf("header %q", lines[0])
		}
		want := [][]string{
			{rfc(ago(6 * time.Minute)), "-", "status", "GET", "/status", "-", "200", "allow", "ok"},
			{rfc(ago(7 * time.Minute)), b, "reports", "GET", "/reports/{id}", "7", "429", "deny", "rate_limited"},
			{rfc(ago(8 * time.Minute)), a, "invoices", "POST", "/invoices/{id}", "3", "403", "deny", "insufficient_scope"},
			{rfc(ago(9 * time.Minute)), a, "invoices", "GET", "/invoices/{id}", "2", "200", "allow", "ok"},
			{rfc(ago(10 * time.Minute)), a, "invoices", "GET", "/invoices/{id}", "1", "200", "allow", "ok"},
			{rfc(ago(48 * time.Hour)), a, "invoices", "GET", "/invoices/{id}", "0", "200", "allow", "ok"},
		}
		if len(lines) != len(want)+1 {
			t.Fatalf("want a header and %d rows, newest first:\n%s", len(want), r.stdout)
		}
		for i, w := range want {
			if got := strings.Fields(lines[i+1]); !slices.Equal(got, w) {
				t.Errorf("row %d = %q, want %q", i, got, w)
			}
		}
	})

	t.Run("events json", func(t *testing.T) {
		out := s.cliOK(t, "audit", "events", "--client", a, "--decision", "deny", "-o", "json")
		evs := decodeJSON[[]auditEventJSON](t, out)
		if len(evs) != 1 {
			t.Fatalf("want the one denied call of %s:\n%s", a, out)
		}
		e := evs[0]
		for _, k := range []string{"id", "time", "request_id", "client_id", "owner", "credential_type", "token_jti", "scopes", "route", "method",
			"path_template", "object_id", "status", "bytes_in", "bytes_out", "latency_micros", "source_addr", "decision", "reason"} {
			if _, ok := e[k]; !ok {
				t.Errorf("event lacks %q: %v", k, e)
			}
		}
		if e.str("client_id") != a || e.str("owner") != "team-"+a+"@example.com" || e.str("route") != "invoices" || e.str("method") != "POST" ||
			e.str("object_id") != "3" || e["status"] != float64(403) || e.str("reason") != "insufficient_scope" || e.str("token_jti") != "jti-d" ||
			e.str("time") != rfc(ago(8*time.Minute)) {
			t.Errorf("event %v", e)
		}
		if sc, _ := e["scopes"].([]any); len(sc) != 1 || sc[0] != "invoices:read" {
			t.Errorf("scopes %v", e["scopes"])
		}
		if out := s.cliOK(t, "audit", "events", "--client", "kb-nobody", "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Errorf("no match is [], got %q", out)
		}
	})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want []string // objects of the events, newest first
		}{
			{"all", nil, []string{"", "7", "3", "2", "1", "0"}},
			{"client", []string{"--client", a}, []string{"3", "2", "1", "0"}},
			{"decision deny", []string{"--decision", "deny"}, []string{"7", "3"}},
			{"route and decision", []string{"--route", "invoices", "--decision", "allow"}, []string{"2", "1", "0"}},
			{"relative since", []string{"--since", "24h"}, []string{"", "7", "3", "2", "1"}},
			{"relative since in days", []string{"--since", "3d", "--client", a}, []string{"3", "2", "1", "0"}},
			{"since is inclusive", []string{"--since", rfc(ago(9 * time.Minute))}, []string{"", "7", "3", "2"}},
			{"until is exclusive", []string{"--until", rfc(ago(8 * time.Minute))}, []string{"2", "1", "0"}},
			{"range", []string{"--since", rfc(ago(9 * time.Minute)), "--until", rfc(ago(7 * time.Minute))}, []string{"3", "2"}},
			{"relative range", []string{"--since", "1h", "--until", "7m30s"}, []string{"3", "2", "1"}},
			{"limit keeps the newest", []string{"--limit", "2"}, []string{"", "7"}},
			{"nothing matches", []string{"--route", "payroll"}, []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				evs := decodeJSON[[]auditEventJSON](t, s.cliOK(t, append([]string{"audit", "events", "-o", "json"}, tt.args...)...))
				got := []string{}
				for _, e := range evs {
					got = append(got, e.str("object_id"))
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("audit events %v: objects %q, want %q", tt.args, got, tt.want)
				}
			})
		}
	})

	t.Run("summary table", func(t *testing.T) {
		r := s.cli(t, "audit", "summary")
		if r.code != 0 || r.stderr != "" {
			t.Fatal(r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"CLIENT", "ROUTE", "METHOD", "SCOPES", "DECISION", "COUNT", "FIRST", "LAST"}) {
			t.Errorf("header %q", lines[0])
		}
		// Most frequent first; ties by client ("" first), route, method.
		want := [][]string{
			{a, "invoices", "GET", "invoices:read", "allow", "3", rfc(ago(48 * time.Hour)), rfc(ago(9 * time.Minute))},
			{"-", "status", "GET", "-", "allow", "1", rfc(ago(6 * time.Minute)), rfc(ago(6 * time.Minute))},
			{a, "invoices", "POST", "invoices:read", "deny", "1", rfc(ago(8 * time.Minute)), rfc(ago(8 * time.Minute))},
			{b, "reports", "GET", "reports:read,reports:export", "deny", "1", rfc(ago(7 * time.Minute)), rfc(ago(7 * time.Minute))},
		}
		if len(lines) != len(want)+1 {
			t.Fatalf("want a header and %d rows:\n%s", len(want), r.stdout)
		}
		for i, w := range want {
			if got := strings.Fields(lines[i+1]); !slices.Equal(got, w) {
				t.Errorf("row %d = %q, want %q", i, got, w)
			}
		}
	})

	t.Run("summary json", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want []auditSummaryJSON
		}{
			{"last day of one client", []string{"--client", a, "--since", "24h"}, []auditSummaryJSON{
				{ClientID: a, Route: "invoices", Method: "GET", Scopes: []string{"invoices:read"}, Decision: "allow", Count: 2, First: ago(10 * time.Minute), Last: ago(9 * time.Minute)},
				{ClientID: a, Route: "invoices", Method: "POST", Scopes: []string{"invoices:read"}, Decision: "deny", Count: 1, First: ago(8 * time.Minute), Last: ago(8 * time.Minute)},
			}},
			{"denials", []string{"--decision", "deny", "--limit", "1"}, []auditSummaryJSON{
				{ClientID: a, Route: "invoices", Method: "POST", Scopes: []string{"invoices:read"}, Decision: "deny", Count: 1, First: ago(8 * time.Minute), Last: ago(8 * time.Minute)},
			}},
			{"anonymous calls have no scopes", []string{"--route", "status"}, []auditSummaryJSON{
				{Route: "status", Method: "GET", Scopes: []string{}, Decision: "allow", Count: 1, First: ago(6 * time.Minute), Last: ago(6 * time.Minute)},
			}},
			{"nothing matches", []string{"--route", "payroll"}, []auditSummaryJSON{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := decodeJSON[[]auditSummaryJSON](t, s.cliOK(t, append([]string{"audit", "summary", "-o", "json"}, tt.args...)...))
				if len(got) != len(tt.want) {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				for i := range got {
					g, w := got[i], tt.want[i]
					if g.ClientID != w.ClientID || g.Route != w.Route || g.Method != w.Method || !slices.Equal(g.Scopes, w.Scopes) ||
						g.Decision != w.Decision || g.Count != w.Count || !g.First.Equal(w.First) || !g.Last.Equal(w.Last) || g.Scopes == nil {
						t.Errorf("row %d = %+v, want %+v", i, g, w)
					}
				}
			})
		}
	})

	t.Run("limit reached is noted on stderr", func(t *testing.T) {
		for _, args := range [][]string{{"audit", "events", "--limit", "2"}, {"audit", "summary", "--limit", "2"}} {
			r := s.cli(t, args...)
			if r.code != 0 || strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "stopped at --limit 2") || !strings.Contains(r.stderr, "--limit") {
				t.Errorf("%v:\n%s", args, r)
			}
		}
		// JSON output stays clean for programs.
		if r := s.cli(t, "audit", "events", "--limit", "2", "-o", "json"); r.code != 0 || r.stderr != "" {
			t.Errorf("json with the limit reached:\n%s", r)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			code int
			want []string
		}{
			{"decision", []string{"events", "--decision", "maybe"}, 2, []string{"--decision must be allow or deny", "maybe"}},
			{"limit zero", []string{"events", "--limit", "0"}, 2, []string{"--limit must be between 1 and 10000"}},
			{"limit too large", []string{"summary", "--limit", "10001"}, 2, []string{"--limit must be between 1 and 10000"}},
			{"limit not a number", []string{"events", "--limit", "many"}, 2, []string{"--limit"}},
			{"since", []string{"events", "--since", "yesterday"}, 2, []string{"--since must be an RFC 3339 time", "24h"}},
			{"until", []string{"summary", "--until", "2026-13-01T00:00:00Z"}, 2, []string{"--until", "RFC 3339"}},
			{"until before since", []string{"events", "--since", "1h", "--until", "2h"}, 2, []string{"--until must be after --since"}},
			{"every problem at once", []string{"summary", "--decision", "x", "--limit", "0"}, 2, []string{"--decision", "--limit"}},
			{"output", []string{"events", "-o", "yaml"}, 2, []string{"json or table"}},
			{"argument", []string{"events", "extra"}, 2, nil},
			{"unknown verb", []string{"frobnicate"}, 2, []string{"unknown command"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := s.cli(t, append([]string{"audit"}, tt.args...)...)
				checkFailure(t, r, tt.code, tt.want...)
				if r.stdout != "" {
					t.Errorf("stdout on failure: %q", r.stdout)
				}
			})
		}
	})
}

func TestAuditNeedsServer(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty")
	for _, verb := range []string{"events", "summary"} {
		t.Run(verb, func(t *testing.T) {
			checkFailure(t, run(t, "--data-dir", empty, "audit", verb), 1, "keybound serve", empty)
		})
	}
}
