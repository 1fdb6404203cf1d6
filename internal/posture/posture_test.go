package posture

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
)

// The rules are tested end to end through the CLI and the admin API
// (internal/cli, internal/app); these cases pin the edges those fixtures
// do not reach.

var now = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

func client(id string, m identity.AuthMethod, scopes ...string) *identity.Client {
	return &identity.Client{ID: id, Owner: "o", Environment: "prod", Status: identity.StatusActive, CreatedAt: now.Add(-100 * 24 * time.Hour),
		ExpiresAt: now.Add(24 * time.Hour), AuthMethod: m, Binding: identity.BindingDPoP, Scopes: scopes}
}

func routes(t *testing.T, specs ...route.Spec) *Routes {
	t.Helper()
	tb, err := route.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	return NewRoutes(tb.Routes(), true)
}

func row(client, rt, method, cred, decision string, n int64) store.UsageCount {
	return store.UsageCount{ClientID: client, Route: rt, Method: method, CredentialType: cred, Decision: decision, Counts: []int64{n, n, n}, Last: now}
}

func TestSuddenSpreadNeedsMoreNewThanBefore(t *testing.T) {
	src := func(host string, firstDaysAgo int) store.UsageSource {
		return store.UsageSource{ClientID: "c", Source: host, Events: 2, First: now.Add(-time.Duration(firstDaysAgo) * 24 * time.Hour), Last: now}
	}
	for _, tc := range []struct {
		name    string
		sources []store.UsageSource
		spread  bool
	}{
		{"three new against two before", []store.UsageSource{src("a", 1), src("b", 2), src("c", 3), src("x", 20), src("y", 30)}, true},
		{"three new against three before", []store.UsageSource{src("a", 1), src("b", 2), src("c", 3), src("x", 20), src("y", 30), src("z", 40)}, false},
		{"two new against one before", []store.UsageSource{src("a", 1), src("b", 2), src("x", 20)}, false},
		{"a new identity's first addresses", []store.UsageSource{src("a", 1), src("b", 2), src("c", 3), src("d", 3)}, false},
	} {
		rep := ComputeUsage(Input{Now: now, Clients: []*identity.Client{client("c", identity.AuthPrivateKeyJWT, "s")}, Trail: &Trail{Sources: tc.sources}})
		if got := rep.Identities[0].AddressSpread; got != tc.spread {
			t.Errorf("%s: spread %v (%s), want %v", tc.name, got, rep.Identities[0].SpreadReason, tc.spread)
		}
	}
}

func TestRestrictedFloorCountsSecretClientsBelow(t *testing.T) {
	in := Input{
		Now: now,
		Clients: []*identity.Client{
			client("key", identity.AuthPrivateKeyJWT, "p"),
			client("secret", identity.AuthClientSecretPost, "p"),
		},
		Routes: routes(t, route.Spec{Name: "vault", Path: "/v", Upstream: "http://u", Sensitivity: "restricted", AllowWeakerAssurance: true, Scopes: route.ScopeSpec{All: []string{"p"}}},
			route.Spec{Name: "docs", Path: "/d", Upstream: "http://u", Sensitivity: "confidential", Scopes: route.ScopeSpec{All: []string{"p"}}}),
		Trail: &Trail{Counts: []store.UsageCount{
			row("key", "vault", "GET", "dpop", "allow", 5),
			row("secret", "vault", "GET", "dpop", "allow", 2), // bound token, but a shared secret behind it
			row("secret", "docs", "GET", "dpop", "allow", 3),  // fine on confidential
		}},
	}
	r := Build(in)
	by := map[string]RouteCheck{}
	for _, rc := range r.Routes.Routes {
		by[rc.Route] = rc
	}
	if rc := by["vault"]; rc.Requests != 7 || rc.WeakRequests != 2 || rc.Aligned {
		t.Errorf("vault %+v", rc)
	}
	if rc := by["docs"]; rc.Requests != 3 || rc.WeakRequests != 0 || !rc.Aligned {
		t.Errorf("docs %+v", rc)
	}
	// Both secret-client rows count as static secrets in the shares.
	if ov := r.Traffic.Overall; ov.StaticSecret != 5 || ov.SenderConstrained != 5 {
		t.Errorf("shares %+v", ov)
	}
}

func TestTrendIgnoresUnreadableSnapshots(t *testing.T) {
	r := Build(Input{Now: now, Clients: []*identity.Client{client("c", identity.AuthPrivateKeyJWT, "s")}})
	for _, body := range []string{`not json`, `{"version":99,"metrics":{"idle":5}}`} {
		r.ApplyTrend(&store.PostureSnapshot{Time: now.Add(-time.Hour), Body: []byte(body)})
		if r.Trend.PreviousAt != nil || r.Trend.Changes[0].Previous != nil {
			t.Errorf("snapshot %q was read: %+v", body, r.Trend)
		}
	}
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(snap.Body), "share_pct") {
		t.Errorf("a share of no requests was stored as a number: %s", snap.Body)
	}
	r.ApplyTrend(&snap)
	if r.Trend.PreviousAt == nil || *r.Trend.Changes[0].Delta != 0 {
		t.Errorf("own snapshot: %+v", r.Trend)
	}
}

func TestMarkdownEscapesCells(t *testing.T) {
	c := client("a|b\nc", identity.AuthPrivateKeyJWT, "s")
	c.Owner = ""
	var b bytes.Buffer
	if err := Build(Input{Now: now, Clients: []*identity.Client{c}}).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `a\|b c`) {
		t.Errorf("client id not escaped:\n%s", b.String())
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "| No owner") && strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") != 5 {
			t.Errorf("row broken by a pipe: %q", line)
		}
	}
}

func TestFilter(t *testing.T) {
	cs := []*identity.Client{client("a", identity.AuthPrivateKeyJWT, "s"), client("b", identity.AuthPrivateKeyJWT, "s"), client("c", identity.AuthPrivateKeyJWT, "keybound:admin")}
	rep := ComputeUsage(Input{Now: now, Clients: cs, Routes: NewRoutes(nil, true)})
	rep.Filter(FindingIdle, 1)
	if len(rep.Identities) != 1 || rep.Identities[0].ClientID != "a" || !rep.Truncated || rep.Summary.Idle != 2 || rep.Summary.NotObservable != 1 {
		t.Errorf("filtered %+v", rep)
	}
	if !slices.Equal(rep.Identities[0].UnusedScopes, []string{"s"}) {
		t.Errorf("unused %v", rep.Identities[0].UnusedScopes)
	}
}

// TestRouteMisalignmentIsNHI4: a route accepting credentials below its
// data class needs attention under NHI4 even before any identity or
// request uses it; NHI6 is not tracked whatever the routes say.
func TestRouteMisalignmentIsNHI4(t *testing.T) {
	for _, misaligned := range []int{0, 1} {
		r := &Report{Routes: RouteAlignment{Tracked: true, Misaligned: misaligned, Routes: make([]RouteCheck, 2)}}
		risks := risksOf(r)
		byID := map[string]Risk{}
		for _, rk := range risks {
			byID[rk.ID] = rk
		}
		nhi4, nhi6 := byID["NHI4:2025"], byID["NHI6:2025"]
		if got, want := nhi4.Status == StatusAttention, misaligned > 0; got != want {
			t.Errorf("misaligned=%d: NHI4 status %s", misaligned, nhi4.Status)
		}
		if !strings.Contains(nhi4.Evidence, fmt.Sprintf("%d of 2 gateway routes", misaligned)) {
			t.Errorf("NHI4 evidence %q", nhi4.Evidence)
		}
		if nhi6.Status != StatusNotTracked {
			t.Errorf("misaligned=%d: NHI6 status %s, want not tracked", misaligned, nhi6.Status)
		}
	}
}
