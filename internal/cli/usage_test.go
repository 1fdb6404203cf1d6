package cli_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// seedClients writes clients straight to the running server's store, so
// they can have a past creation time, no owner or no expiry (which the
// admin API refuses to register).
func (s *server) seedClients(t *testing.T, cs ...*identity.Client) {
	t.Helper()
	s.withStore(t, func(ctx context.Context, st *sqlite.Store) {
		for _, c := range cs {
			if err := st.CreateClient(ctx, c, store.AdminEvent{Time: c.CreatedAt, Actor: "test", Action: "client.create", Target: c.ID}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// seedAdminEvents appends to the running server's admin log, as the
// inventory does.
func (s *server) seedAdminEvents(t *testing.T, evs ...store.AdminEvent) {
	t.Helper()
	s.withStore(t, func(ctx context.Context, st *sqlite.Store) {
		for _, ev := range evs {
			if err := st.AppendAdminEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// usageRoutes is the gateway route table of the usage tests: confidential
// and internal routes in prod, one internal route in staging, a restricted
// route that lowers its floor, and a public route without an environment.
func usageRoutes() []route.Spec {
	up := "http://127.0.0.1:9"
	return []route.Spec{
		{Name: "invoices", Path: "/invoices/{id}", Methods: []string{"GET", "POST"}, Upstream: up, Environment: "prod", Sensitivity: "confidential",
			Scopes: route.ScopeSpec{ByMethod: map[string][]string{"GET": {"invoices:read"}, "POST": {"invoices:write"}}}},
		{Name: "reports", Path: "/reports/{id}", Methods: []string{"GET"}, Upstream: up, Environment: "prod", Sensitivity: "internal",
			Scopes: route.ScopeSpec{All: []string{"reports:read"}}, AllowStaticKeys: true},
		{Name: "payroll", Path: "/payroll/{id}", Methods: []string{"GET"}, Upstream: up, Environment: "prod", Sensitivity: "restricted",
			Scopes: route.ScopeSpec{All: []string{"payroll:read"}}, AllowWeakerAssurance: true},
		{Name: "staging-invoices", Path: "/staging/invoices/{id}", Methods: []string{"GET"}, Upstream: up, Environment: "staging", Sensitivity: "internal",
			Scopes: route.ScopeSpec{All: []string{"invoices:read"}}},
		{Name: "status", Path: "/status", Upstream: up, Sensitivity: "public"},
	}
}

// usageFixture is the inventory and traffic every usage rule is checked
// against, relative to now.
type usageFixture struct {
	now     time.Time
	clients []*identity.Client
	events  []store.AuditEvent
}

func newUsageFixture(now time.Time) usageFixture {
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	day := 24 * time.Hour
	mk := func(id, env string, m identity.AuthMethod, b identity.Binding, created time.Duration, expires time.Time, scopes ...string) *identity.Client {
		return &identity.Client{ID: id, Name: id + " svc", Owner: "team-" + id + "@example.com", Purpose: "tests", Environment: env,
			Status: identity.StatusActive, CreatedAt: ago(created), UpdatedAt: ago(created), ExpiresAt: expires,
			Scopes: scopes, AuthMethod: m, Binding: b}
	}
	jwt, secret := identity.AuthPrivateKeyJWT, identity.AuthClientSecretBasic
	dpop, mtls, bearer := identity.BindingDPoP, identity.BindingMTLS, identity.BindingBearer
	f := usageFixture{now: now}
	noOwner := mk("c-noowner", "prod", jwt, dpop, 10*day, time.Time{}, "reports:read")
	noOwner.Owner = ""
	never := mk("c-never", "dev", secret, bearer, 40*day, now.Add(30*day), "reports:read")
	never.Vendor = "acme"
	suspended := mk("c-suspended", "prod", jwt, dpop, 100*day, now.Add(30*day), "reports:read")
	suspended.Status = identity.StatusSuspended
	f.clients = []*identity.Client{
		mk("c-used", "prod", jwt, dpop, 100*day, now.Add(60*day), "invoices:read", "invoices:write", "reports:read"),
		mk("c-idle", "prod", jwt, mtls, 100*day, now.Add(30*day), "reports:read"),
		never,
		mk("c-static", "prod", secret, dpop, 50*day, now.Add(30*day), "reports:read"),
		mk("c-sudden", "prod", jwt, dpop, 60*day, now.Add(30*day), "invoices:read"),
		mk("c-bearer", "prod", jwt, bearer, 95*day, now.Add(30*day), "payroll:read"),
		mk("c-young", "prod", jwt, dpop, 2*day, now.Add(30*day), "reports:read"),
		mk("c-introspect", "prod", jwt, dpop, 100*day, now.Add(30*day), "keybound:introspect"),
		noOwner,
		mk("c-expired", "prod", jwt, dpop, 100*day, ago(day), "reports:read"),
		suspended,
		mk("c-carried", "prod", jwt, dpop, 40*day, now.Add(30*day), "a:read", "b:write"),
	}
	n := 0
	ev := func(client, rt, method, cred string, at time.Time, addr string, scopes ...string) store.AuditEvent {
		n++
		return store.AuditEvent{Time: at, RequestID: fmt.Sprintf("req-%d", n), ClientID: client, CredentialType: cred,
			TokenJTI: fmt.Sprintf("jti-%d", n), Scopes: scopes, Route: rt, Method: method, PathTemplate: "/" + rt,
			Status: 200, SourceAddr: addr, Decision: "allow", Reason: "ok"}
	}
	deny := func(e store.AuditEvent, reason string) store.AuditEvent {
		e.Decision, e.Reason, e.Status = "deny", reason, 429
		return e
	}
	f.events = []store.AuditEvent{
		ev("c-used", "invoices", "GET", "dpop", ago(time.Hour), "192.0.2.1:1000", "invoices:read", "invoices:write", "reports:read"),
		ev("c-used", "invoices", "GET", "dpop", ago(10*day), "192.0.2.1:1001", "invoices:read"),
		ev("c-used", "invoices", "GET", "dpop", ago(40*day), "192.0.2.1:1002", "invoices:read"),
		ev("c-used", "reports", "GET", "dpop", ago(2*day), "192.0.2.1:1003", "reports:read"),
		ev("c-used", "staging-invoices", "GET", "dpop", ago(3*time.Hour), "192.0.2.1:1004", "invoices:read"),
		deny(ev("c-used", "invoices", "GET", "dpop", ago(5*time.Minute), "192.0.2.1:1005", "invoices:read"), "rate_limited"),
		ev("c-idle", "reports", "GET", "mtls", ago(45*day), "192.0.2.2:1", "reports:read"),
		ev("c-sudden", "invoices", "GET", "dpop", ago(20*day), "198.51.100.1:1", "invoices:read"),
		ev("c-bearer", "payroll", "GET", "bearer", ago(day), "192.0.2.9:1", "payroll:read"),
		ev("c-carried", "old-api", "GET", "dpop", ago(5*day), "192.0.2.10:1", "b:write"),
		ev("", "status", "GET", "", ago(time.Minute), "203.0.113.1:1"),
		// A token of c-expired refused after its expiry: expired but still used.
		deny(ev("c-expired", "reports", "GET", "dpop", ago(2*time.Hour), "192.0.2.11:1", "reports:read"), "client_expired"),
	}
	for i := range 12 {
		f.events = append(f.events, ev("c-static", "reports", "GET", "static_key", ago(time.Duration(i+1)*time.Hour), fmt.Sprintf("10.0.0.%d:5000", i+1), "reports:read"))
	}
	for i := range 4 {
		f.events = append(f.events, ev("c-sudden", "invoices", "GET", "dpop", ago(time.Duration(i+1)*time.Hour), fmt.Sprintf("198.51.100.%d:1", i+10), "invoices:read"))
	}
	return f
}

func startUsageServer(t *testing.T) (*server, usageFixture) {
	t.Helper()
	s := startServerWith(t, func(c *config.Config) {
		c.Gateway.Addr = "127.0.0.1:0"
		c.Gateway.Routes = usageRoutes()
	})
	f := newUsageFixture(time.Now().UTC())
	s.seedClients(t, f.clients...)
	s.seedAudit(t, f.events...)
	return s, f
}

func findUsage(t *testing.T, rep posture.UsageReport, id string) posture.IdentityUsage {
	t.Helper()
	for _, iu := range rep.Identities {
		if iu.ClientID == id {
			return iu
		}
	}
	t.Fatalf("no usage for %s", id)
	return posture.IdentityUsage{}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	s, f := startUsageServer(t)
	rep := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "-o", "json"))
	if !rep.RoutesKnown || !rep.EnvironmentsTagged || rep.IdleDays != 30 || rep.MaxSources != 10 || !slices.Equal(rep.WindowsDays, []int{7, 30, 90}) {
		t.Errorf("report header: %+v", rep)
	}
	// Every seeded identity and the admin identity, in inventory order.
	if len(rep.Identities) != len(f.clients)+1 || rep.Truncated {
		t.Fatalf("%d identities (truncated %v), want %d", len(rep.Identities), rep.Truncated, len(f.clients)+1)
	}
	findings := map[string][]string{}
	for _, iu := range rep.Identities {
		findings[iu.ClientID] = iu.Findings
	}
	want := map[string][]string{
		"c-used":       {"unused_scopes", "cross_environment"},
		"c-idle":       {"idle"},
		"c-never":      {"idle", "unused_scopes"},
		"c-static":     {"address_spread"},
		"c-sudden":     {"address_spread"},
		"c-bearer":     {},
		"c-young":      {}, // too young to be idle
		"c-introspect": {}, // keybound's own scope only: not observable
		"c-noowner":    {},
		"c-expired":    {"idle", "unused_scopes"}, // never offboarded, never used
		"c-suspended":  {},                        // not active
		"c-carried":    {"unused_scopes"},
		s.adminID:      {},
	}
	for id, w := range want {
		if !slices.Equal(findings[id], w) {
			t.Errorf("%s findings = %v, want %v", id, findings[id], w)
		}
	}
	sum := rep.Summary
	if sum.Identities != 13 || sum.Idle != 3 || sum.UnusedScopes != 4 || sum.CrossEnvironment != 1 || sum.AddressSpread != 2 || sum.NotObservable != 2 || sum.UsedIn90Days != 6 {
		t.Errorf("summary %+v", sum)
	}

	t.Run("last used and calls per window", func(t *testing.T) {
		u := findUsage(t, rep, "c-used")
		if u.LastUsed == nil || !u.LastUsed.Equal(f.now.Add(-time.Hour).Truncate(0)) {
			t.Errorf("last_used %v, want %v (the newest allowed call)", u.LastUsed, f.now.Add(-time.Hour))
		}
		if u.LastSeen == nil || !u.LastSeen.Equal(f.now.Add(-5*time.Minute)) {
			t.Errorf("last_seen %v, want the denied call 5 minutes ago", u.LastSeen)
		}
		if u.Allowed != (posture.Counts{D7: 3, D30: 4, D90: 5}) || u.Denied != (posture.Counts{D7: 1, D30: 1, D90: 1}) {
			t.Errorf("allowed %+v denied %+v", u.Allowed, u.Denied)
		}
		routes := map[string]posture.RouteUsage{}
		for _, r := range u.Routes {
			routes[r.Route+" "+r.Method] = r
		}
		inv := routes["invoices GET"]
		if inv.Allowed != (posture.Counts{D7: 1, D30: 2, D90: 3}) || inv.Denied.D7 != 1 || !inv.Configured || inv.Sensitivity != "confidential" ||
			inv.Environment != "prod" || !slices.Equal(inv.CredentialTypes, []string{"dpop"}) {
			t.Errorf("invoices GET: %+v", inv)
		}
		if r := routes["staging-invoices GET"]; r.Environment != "staging" || r.Allowed.D7 != 1 {
			t.Errorf("staging-invoices GET: %+v", r)
		}
		scopes := map[string]posture.ScopeUsage{}
		for _, sc := range u.Scopes {
			scopes[sc.Scope] = sc
		}
		// invoices:read is required by invoices GET and staging-invoices GET.
		if sc := scopes["invoices:read"]; sc.Calls != (posture.Counts{D7: 2, D30: 3, D90: 4}) || !sc.Granted {
			t.Errorf("invoices:read %+v", sc)
		}
		if sc := scopes["invoices:write"]; sc.Calls != (posture.Counts{}) {
			t.Errorf("invoices:write %+v: the token carried it, but no call needed it", sc)
		}
		if sc := scopes["reports:read"]; sc.Calls != (posture.Counts{D7: 1, D30: 1, D90: 1}) {
			t.Errorf("reports:read %+v", sc)
		}
		if !slices.Equal(u.UnusedScopes, []string{"invoices:write"}) {
			t.Errorf("unused scopes %v", u.UnusedScopes)
		}
		if !slices.Equal(u.Environments, []string{"prod", "staging"}) || !u.CrossEnvironment {
			t.Errorf("environments %v cross %v", u.Environments, u.CrossEnvironment)
		}
		if u.Sources.Distinct != (posture.Counts{D7: 1, D30: 1, D90: 1}) || u.AddressSpread {
			t.Errorf("sources %+v: ports of one host are one address", u.Sources)
		}
	})

	t.Run("idle", func(t *testing.T) {
		if u := findUsage(t, rep, "c-never"); u.LastUsed != nil || u.LastSeen != nil || !u.Idle || !slices.Equal(u.UnusedScopes, []string{"reports:read"}) {
			t.Errorf("never used: %+v", u)
		}
		// --idle-days 60: the identity last used 45 days ago is not idle.
		rep60 := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "--idle-days", "60", "-o", "json"))
		if u := findUsage(t, rep60, "c-idle"); u.Idle || rep60.IdleDays != 60 || rep60.Summary.Idle != 1 {
			t.Errorf("--idle-days 60: c-idle idle=%v, summary %+v", u.Idle, rep60.Summary)
		}
		if u := findUsage(t, rep60, "c-never"); !slices.Equal(u.Findings, []string{}) {
			t.Errorf("--idle-days 60: a 40-day-old identity gets the grace from idle and unused scopes: %v", u.Findings)
		}
		if u := findUsage(t, rep, "c-introspect"); u.Observable || u.Idle || u.UnusedScopes != nil {
			t.Errorf("keybound-only identity: %+v", u)
		}
	})

	t.Run("scopes of a route no longer configured", func(t *testing.T) {
		u := findUsage(t, rep, "c-carried")
		if !slices.Equal(u.UnusedScopes, []string{"a:read"}) {
			t.Errorf("unused %v: b:write was carried on a call to a removed route, so it is not called unused", u.UnusedScopes)
		}
		if len(u.Routes) != 1 || u.Routes[0].Configured || u.Routes[0].Sensitivity != "" {
			t.Errorf("routes %+v", u.Routes)
		}
	})

	t.Run("address spread", func(t *testing.T) {
		st := findUsage(t, rep, "c-static")
		if st.Sources.Distinct.D30 != 12 || !strings.Contains(st.SpreadReason, "12 source addresses in 30 days") {
			t.Errorf("c-static: %+v %q", st.Sources, st.SpreadReason)
		}
		sd := findUsage(t, rep, "c-sudden")
		if sd.Sources.New7d != 4 || sd.Sources.Before != 1 || !strings.Contains(sd.SpreadReason, "4 new source addresses") {
			t.Errorf("c-sudden: %+v %q", sd.Sources, sd.SpreadReason)
		}
		// A higher threshold clears the many-addresses rule, not the sudden one.
		r := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "--max-sources", "20", "--finding", "address_spread", "-o", "json"))
		if len(r.Identities) != 1 || r.Identities[0].ClientID != "c-sudden" {
			t.Errorf("--max-sources 20: %v", r.Identities)
		}
	})

	t.Run("filters and limits", func(t *testing.T) {
		r := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "--finding", "idle", "-o", "json"))
		var ids []string
		for _, iu := range r.Identities {
			ids = append(ids, iu.ClientID)
		}
		if !slices.Equal(ids, []string{"c-expired", "c-idle", "c-never"}) || r.Summary.Identities != 13 {
			t.Errorf("--finding idle: %v (summary %+v)", ids, r.Summary)
		}
		r = decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "--limit", "2", "-o", "json"))
		if len(r.Identities) != 2 || !r.Truncated {
			t.Errorf("--limit 2: %d identities, truncated %v", len(r.Identities), r.Truncated)
		}
		res := s.cli(t, "usage", "--limit", "2")
		if res.code != 0 || !strings.Contains(res.stderr, "stopped at --limit 2") {
			t.Errorf("table at the limit: %s", res)
		}
		one := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "--client", "c-bearer", "-o", "json"))
		if len(one.Identities) != 1 || one.Identities[0].ClientID != "c-bearer" || one.Summary.Identities != 1 {
			t.Errorf("--client: %+v", one)
		}
	})

	t.Run("table", func(t *testing.T) {
		out := s.cliOK(t, "usage")
		lines := strings.Split(out, "\n")
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"CLIENT", "NAME", "OWNER", "ENV", "STATUS", "LAST", "USED", "7D", "30D", "90D", "UNUSED", "SCOPES", "FINDINGS"}) {
			t.Errorf("header %q", lines[0])
		}
		var row []string
		for _, l := range lines {
			if strings.HasPrefix(l, "c-used ") {
				row = strings.Fields(l)
			}
		}
		if len(row) < 5 || !slices.Equal(row[len(row)-5:], []string{"3", "4", "5", "invoices:write", "unused_scopes,cross_environment"}) {
			t.Errorf("c-used row %q", row)
		}
		if !strings.Contains(out, "13 identities: 6 used in 90 days, 3 idle (30 days), 4 with unused scopes, 1 cross-environment, 2 with unusual address spread, 2 not observable") {
			t.Errorf("summary line missing:\n%s", out)
		}
		detail := s.cliOK(t, "usage", "--client", "c-used")
		for _, w := range []string{"last_used", "environments reached", "prod,staging", "unused_scopes", "invoices:write",
			"ROUTE", "invoices", "confidential", "1/2/3", "SCOPE", "invoices:read", "2/3/4"} {
			if !strings.Contains(detail, w) {
				t.Errorf("detail lacks %q:\n%s", w, detail)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			want []string
		}{
			{[]string{"usage", "--idle-days", "0"}, 2, []string{"--idle-days", "1 to 3650"}},
			{[]string{"usage", "--max-sources", "-1"}, 2, []string{"--max-sources"}},
			{[]string{"usage", "--finding", "lazy"}, 2, []string{"--finding", "idle, unused_scopes"}},
			{[]string{"usage", "--limit", "0", "--idle-days", "99999"}, 2, []string{"--limit", "--idle-days"}},
			{[]string{"usage", "-o", "yaml"}, 2, []string{"json or table"}},
			{[]string{"usage", "--client", "kb-nobody"}, 1, []string{"not found"}},
			{[]string{"usage", "extra"}, 2, nil},
		} {
			r := s.cli(t, tc.args...)
			if tc.want == nil {
				if r.code != tc.code {
					t.Errorf("%v: %s", tc.args, r)
				}
				continue
			}
			checkFailure(t, r, tc.code, tc.want...)
			if r.stdout != "" {
				t.Errorf("%v: stdout on failure: %q", tc.args, r.stdout)
			}
		}
	})
}

// TestUsageWithoutGateway: with no route table, what needs the routes is
// unknown, and said so, never guessed.
func TestUsageWithoutGateway(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	f := newUsageFixture(time.Now().UTC())
	s.seedClients(t, f.clients...)
	s.seedAudit(t, f.events...)
	rep := decodeJSON[posture.UsageReport](t, s.cliOK(t, "usage", "-o", "json"))
	if rep.RoutesKnown || rep.EnvironmentsTagged {
		t.Errorf("routes known %v, tagged %v", rep.RoutesKnown, rep.EnvironmentsTagged)
	}
	u := findUsage(t, rep, "c-used")
	if u.UnusedScopes != nil || u.CrossEnvironment || len(u.Environments) != 0 || u.Routes[0].Configured {
		t.Errorf("c-used without routes: %+v", u)
	}
	if u.Allowed != (posture.Counts{D7: 3, D30: 4, D90: 5}) || !slices.Equal(u.Findings, []string{}) {
		t.Errorf("counts and findings still come from the trail: %+v %v", u.Allowed, u.Findings)
	}
	r := s.cli(t, "usage")
	if r.code != 0 || !strings.Contains(r.stderr, "no gateway route table") || !strings.Contains(r.stdout, "?") {
		t.Errorf("table without routes: %s", r)
	}
}
