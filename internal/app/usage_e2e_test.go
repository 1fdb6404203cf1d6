package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/sdk"
)

// usageAPI calls GET /admin/v1/usage?query and decodes the answer.
func (g *gwHarness) usageAPI(query string) posture.UsageReport {
	g.t.Helper()
	r := g.adminRaw("GET", "/usage?"+query, "", nil)
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
		g.t.Fatalf("usage?%s: %d %s", query, r.status, r.body)
	}
	var rep posture.UsageReport
	if err := json.Unmarshal(r.body, &rep); err != nil {
		g.t.Fatal(err)
	}
	return rep
}

func (g *gwHarness) postureAPI(query string) posture.Report {
	g.t.Helper()
	r := g.adminRaw("GET", "/reports/posture?"+query, "", nil)
	if r.status != http.StatusOK {
		g.t.Fatalf("reports/posture?%s: %d %s", query, r.status, r.body)
	}
	var rep posture.Report
	if err := json.Unmarshal(r.body, &rep); err != nil {
		g.t.Fatal(err)
	}
	return rep
}

// TestUsageFromGatewayTraffic drives real requests through the gateway and
// reads them back as usage and posture through the admin API: the audit
// writer, the rollups kept in AppendAuditEvents and the route table of the
// running gateway, end to end.
func TestUsageFromGatewayTraffic(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		up := c.Gateway.Routes[0].Upstream
		for i := range c.Gateway.Routes {
			c.Gateway.Routes[i].Environment = "prod"
		}
		c.Gateway.Routes = append(c.Gateway.Routes, route.Spec{Name: "staging-reports", Path: "/staging/reports/{id}", Methods: []string{"GET"},
			Upstream: up, Scopes: route.ScopeSpec{All: []string{"reports:read"}}, Sensitivity: "internal", Environment: "staging"})
	})
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read invoices:write reports:read", Environment: "prod"})
	cfg := &sdk.Config{TokenURL: g.issuer + "/oauth2/token", ClientID: ck.id, Key: ck.key, KeyID: ck.kid, DPoP: true, DPoPKey: newEC(t), HTTPClient: g.httpClient(nil)}
	hc := cfg.Client(context.Background())
	g.expectStatus(hc, "GET", "/invoices/1", 200)
	g.expectStatus(hc, "GET", "/invoices/2", 200)
	g.expectStatus(hc, "GET", "/staging/reports/7", 200)
	g.expectStatus(hc, "GET", "/payroll/1", 403) // no payroll:read
	g.expectStatus(nil, "GET", "/status", 200)
	g.waitForAuditEvents(5)

	rep := g.usageAPI("client_id=" + ck.id)
	if len(rep.Identities) != 1 || !rep.RoutesKnown || !rep.EnvironmentsTagged {
		t.Fatalf("usage: %+v", rep)
	}
	u := rep.Identities[0]
	if u.LastUsed == nil || time.Since(*u.LastUsed) > time.Minute || u.Allowed != (posture.Counts{D7: 3, D30: 3, D90: 3}) || u.Denied.D7 != 1 {
		t.Errorf("last used %v, allowed %+v, denied %+v", u.LastUsed, u.Allowed, u.Denied)
	}
	routes := map[string]posture.RouteUsage{}
	for _, r := range u.Routes {
		routes[r.Route+" "+r.Method] = r
	}
	if r := routes["invoices GET"]; r.Allowed.D7 != 2 || r.Sensitivity != "confidential" || !slices.Equal(r.CredentialTypes, []string{"dpop"}) {
		t.Errorf("invoices GET %+v", r)
	}
	if r := routes["payroll GET"]; r.Denied.D7 != 1 || r.Allowed.D7 != 0 {
		t.Errorf("payroll GET %+v", r)
	}
	if !slices.Equal(u.UnusedScopes, []string{"invoices:write"}) {
		t.Errorf("unused scopes %v", u.UnusedScopes)
	}
	if !slices.Equal(u.Environments, []string{"prod", "staging"}) || !u.CrossEnvironment || !slices.Contains(u.Findings, posture.FindingCrossEnvironment) {
		t.Errorf("environments %v cross %v findings %v", u.Environments, u.CrossEnvironment, u.Findings)
	}
	// The scopes were granted just now: too young to be called unused.
	if slices.Contains(u.Findings, posture.FindingUnusedScopes) || u.Idle {
		t.Errorf("a new identity is flagged: %v", u.Findings)
	}
	if u.Sources.Distinct.D7 != 1 {
		t.Errorf("sources %+v: every request came from 127.0.0.1", u.Sources)
	}

	first := g.postureAPI("")
	if ov := first.Traffic.Overall; ov.SenderConstrained != 3 || ov.Anonymous != 1 || ov.Denied != 1 || ov.StaticSecret != 0 {
		t.Errorf("traffic %+v", ov)
	}
	if first.Trend.PreviousAt != nil || !first.Routes.Tracked || len(first.Routes.Routes) != 5 {
		t.Errorf("first report: previous %v, routes %+v", first.Trend.PreviousAt, first.Routes)
	}
	preview := g.postureAPI("snapshot=false")
	second := g.postureAPI("idle_days=7")
	if preview.Trend.PreviousAt == nil || !preview.Trend.PreviousAt.Equal(first.GeneratedAt) ||
		second.Trend.PreviousAt == nil || !second.Trend.PreviousAt.Equal(first.GeneratedAt) || second.IdleDays != 7 {
		t.Errorf("trend: preview after %v, second after %v; want both after the first, %v", preview.Trend.PreviousAt, second.Trend.PreviousAt, first.GeneratedAt)
	}
}

func TestUsageAPIRefusals(t *testing.T) {
	g := startGateway(t, nil)
	for _, tc := range []struct {
		path   string
		status int
		fields []string
	}{
		{"/usage?idle_days=0&bogus=1", 400, []string{"idle_days", "bogus"}},
		{"/usage?finding=lazy&limit=99999", 400, []string{"finding", "limit"}},
		{"/usage?client_id=a&client_id=b", 400, []string{"client_id"}},
		{"/usage?max_sources=x", 400, []string{"max_sources"}},
		{"/usage?idle_days=%zz", 400, nil},
		{"/usage?client_id=kb-nobody", 404, nil},
		{"/reports/posture?snapshot=maybe&client_id=x", 400, []string{"snapshot", "client_id"}},
	} {
		r := g.adminRaw("GET", tc.path, "", nil)
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.path, r.status, r.body, tc.status)
			continue
		}
		p := r.problem(t)
		var fields []string
		for _, e := range p.Errors {
			fields = append(fields, e.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %v, want %v (%s)", tc.path, fields, tc.fields, r.body)
		}
	}
	// A refused posture request stores no snapshot: the next report is the first.
	if rep := g.postureAPI(""); rep.Trend.PreviousAt != nil {
		t.Errorf("a refused request stored a snapshot: %v", rep.Trend.PreviousAt)
	}
	// No admin token, no answer.
	for _, p := range []string{"/usage", "/reports/posture"} {
		r := g.do(nil, "GET", adminapi.Prefix+p, "", nil, nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "keybound-admin") {
			t.Errorf("%s without a token: %d %v", p, r.status, r.header)
		}
	}
	// A non-admin identity's token is refused too.
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	cfg := &sdk.Config{TokenURL: g.issuer + "/oauth2/token", ClientID: ck.id, Key: ck.key, KeyID: ck.kid, DPoP: true, DPoPKey: newEC(t), HTTPClient: g.httpClient(nil)}
	if r := g.do(cfg.Client(context.Background()), "GET", adminapi.Prefix+"/reports/posture", "", nil, nil); r.status != http.StatusForbidden {
		t.Errorf("posture as a non-admin: %d %s", r.status, r.body)
	}
}
