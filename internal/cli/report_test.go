package cli_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/store"
)

func findingOf(t *testing.T, rep posture.Report, key string) posture.Finding {
	t.Helper()
	for _, f := range rep.Identities {
		if f.Key == key {
			return f
		}
	}
	t.Fatalf("report has no finding %q", key)
	return posture.Finding{}
}

func changeOf(t *testing.T, rep posture.Report, metric string) posture.Change {
	t.Helper()
	for _, c := range rep.Trend.Changes {
		if c.Metric == metric {
			return c
		}
	}
	t.Fatalf("trend has no metric %q", metric)
	return posture.Change{}
}

func pctIs(p *float64, want float64) bool { return p != nil && *p == want }

func TestReportPosture(t *testing.T) {
	t.Parallel()
	s, f := startUsageServer(t)
	rep := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json"))

	t.Run("inventory", func(t *testing.T) {
		inv := rep.Inventory
		if inv.Total != 13 || inv.Active != 12 {
			t.Errorf("total %d active %d", inv.Total, inv.Active)
		}
		get := func(bs []posture.Bucket, k string) int {
			for _, b := range bs {
				if b.Key == k {
					return b.Count
				}
			}
			return -1
		}
		if get(inv.ByStatus, "suspended") != 1 || get(inv.ByStatus, "revoked") != 0 {
			t.Errorf("by status %+v", inv.ByStatus)
		}
		// 10 seeded + the admin identity use private_key_jwt, one of them suspended.
		if get(inv.ByCredentialType, "private_key_jwt") != 10 || get(inv.ByCredentialType, "client_secret_basic") != 2 || get(inv.ByCredentialType, "tls_client_auth") != 0 {
			t.Errorf("by credential type %+v", inv.ByCredentialType)
		}
		if get(inv.ByBinding, "dpop") != 9 || get(inv.ByBinding, "mtls") != 1 || get(inv.ByBinding, "bearer") != 2 {
			t.Errorf("by binding %+v", inv.ByBinding)
		}
		if len(inv.Matrix) == 0 || inv.Matrix[0] != (posture.MatrixCell{CredentialType: "private_key_jwt", Binding: "dpop", Count: 8}) {
			t.Errorf("matrix %+v", inv.Matrix)
		}
	})

	t.Run("traffic shares", func(t *testing.T) {
		ov := rep.Traffic.Overall
		// 12 static-key calls, 1 bearer, 10 sender-constrained, 1 anonymous,
		// 2 denials (rate limited, and an expired identity's token); the
		// call 40 days ago is outside the 30 days.
		if ov.Authenticated != 23 || ov.StaticSecret != 12 || ov.Bearer != 1 || ov.SenderConstrained != 10 || ov.Anonymous != 1 || ov.Denied != 2 {
			t.Errorf("overall %+v", ov)
		}
		if !pctIs(ov.StaticSecretPct, 52.2) || !pctIs(ov.BearerPct, 4.3) || !pctIs(ov.SenderConstrainedPct, 43.5) {
			t.Errorf("overall percentages %v %v %v", *ov.StaticSecretPct, *ov.BearerPct, *ov.SenderConstrainedPct)
		}
		by := map[string]posture.Share{}
		for _, sh := range rep.Traffic.BySensitivity {
			by[sh.Class] = sh
		}
		if sh := by["public"]; sh.Anonymous != 1 || sh.Authenticated != 0 || sh.StaticSecretPct != nil {
			t.Errorf("public %+v: no authenticated request means no percentage, not 0%%", sh)
		}
		if sh := by["internal"]; sh.StaticSecret != 12 || sh.SenderConstrained != 2 || !pctIs(sh.StaticSecretPct, 85.7) {
			t.Errorf("internal %+v", sh)
		}
		if sh := by["confidential"]; sh.SenderConstrained != 7 || sh.Denied != 1 {
			t.Errorf("confidential %+v", sh)
		}
		if sh := by["restricted"]; sh.Bearer != 1 || !pctIs(sh.BearerPct, 100) {
			t.Errorf("restricted %+v", sh)
		}
		if sh := by["unknown"]; sh.SenderConstrained != 1 {
			t.Errorf("unknown (a route no longer configured) %+v", sh)
		}
	})

	t.Run("identity findings", func(t *testing.T) {
		for _, tc := range []struct {
			key string
			ids []string // nil: not tracked
		}{
			{posture.KeyNoOwner, []string{"c-noowner"}},
			{posture.KeyNoExpiry, []string{"c-noowner"}},
			{posture.KeyExpiredActive, []string{"c-expired"}},
			{posture.KeyExpiredUsed, []string{"c-expired"}}, // refused as client_expired two hours ago
			// Active prod identities created 90 or more days ago and never
			// attested (c-expired cannot be used, so it is not reviewed).
			{posture.KeyOverdueReview, []string{"c-idle", "c-introspect", "c-used", "c-bearer"}},
			{posture.KeyOrphaned, []string{}}, // the owner directory is kept: a real zero
			{posture.KeyLeaked, []string{}},   // the inventory records scan matches: a real zero
			{posture.KeyIdle, []string{"c-expired", "c-idle", "c-never"}},
			// Used in 90 days with unused scopes; c-never is idle instead.
			{posture.KeyOverPrivileged, []string{"c-used", "c-carried"}},
			{posture.KeyStaticSecret, []string{"c-static", "c-never"}},
			{posture.KeyBearer, []string{"c-bearer", "c-never"}},
			{posture.KeyThirdParty, []string{"c-never"}},
			{posture.KeyCrossEnvironment, []string{"c-used"}},
			{posture.KeyAddressSpread, []string{"c-sudden", "c-static"}},
		} {
			fd := findingOf(t, rep, tc.key)
			if tc.ids == nil {
				if fd.Tracked || fd.Count != nil || !strings.HasPrefix(fd.Note, "not tracked yet") {
					t.Errorf("%s: %+v, want not tracked, with no count", tc.key, fd)
				}
				continue
			}
			if !fd.Tracked || fd.Count == nil || *fd.Count != len(tc.ids) || !slices.Equal(fd.ClientIDs, tc.ids) {
				t.Errorf("%s: count %v ids %v, want %v", tc.key, fd.Count, fd.ClientIDs, tc.ids)
			}
		}
		// Long-lived: lifetime over 90 days or no expiry.
		if fd := findingOf(t, rep, posture.KeyLongLived); !slices.Contains(fd.ClientIDs, "c-noowner") || !slices.Contains(fd.ClientIDs, "c-used") || slices.Contains(fd.ClientIDs, "c-static") {
			t.Errorf("long-lived %v", fd.ClientIDs)
		}
	})

	t.Run("route alignment", func(t *testing.T) {
		if !rep.Routes.Tracked || rep.Routes.Misaligned != 1 || len(rep.Routes.Routes) != 5 {
			t.Fatalf("routes %+v", rep.Routes)
		}
		by := map[string]posture.RouteCheck{}
		for _, rc := range rep.Routes.Routes {
			by[rc.Route] = rc
		}
		if rc := by["payroll"]; rc.Aligned || rc.Requests != 1 || rc.WeakRequests != 1 || len(rc.Problems) != 2 ||
			!strings.Contains(rc.Problems[0], "allow_weaker_assurance") || !slices.Contains(rc.Accepts, "bearer") {
			t.Errorf("payroll %+v", rc)
		}
		if rc := by["reports"]; !rc.Aligned || rc.Accepts[0] != "static_key" || len(rc.Notes) != 1 || rc.Requests != 13 {
			t.Errorf("reports (internal, static keys: aligned, with a note) %+v", rc)
		}
		if rc := by["invoices"]; !rc.Aligned || slices.Contains(rc.Accepts, "bearer") || rc.Requests != 7 || rc.Environment != "prod" {
			t.Errorf("invoices %+v", rc)
		}
	})

	t.Run("OWASP NHI Top 10", func(t *testing.T) {
		want := []struct{ id, name, status string }{
			{"NHI1:2025", "Improper Offboarding", posture.StatusAttention},
			{"NHI2:2025", "Secret Leakage", posture.StatusPartial},
			{"NHI3:2025", "Vulnerable Third-Party NHI", posture.StatusPartial},
			{"NHI4:2025", "Insecure Authentication", posture.StatusAttention},
			{"NHI5:2025", "Overprivileged NHI", posture.StatusAttention},
			{"NHI6:2025", "Insecure Cloud Deployment Configurations", posture.StatusNotTracked},
			{"NHI7:2025", "Long-Lived Secrets", posture.StatusAttention},
			{"NHI8:2025", "Environment Isolation", posture.StatusAttention},
			{"NHI9:2025", "NHI Reuse", posture.StatusAttention},
			{"NHI10:2025", "Human Use of NHI", posture.StatusPartial},
		}
		if len(rep.Risks) != len(want) {
			t.Fatalf("%d risks", len(rep.Risks))
		}
		csf := []string{"Govern", "Identify", "Protect", "Detect", "Respond", "Recover"}
		for i, w := range want {
			rk := rep.Risks[i]
			if rk.ID != w.id || rk.Name != w.name || rk.Status != w.status || rk.Evidence == "" || len(rk.CSF) == 0 {
				t.Errorf("risk %d = %+v, want %s %s %s", i, rk, w.id, w.name, w.status)
			}
			for _, fn := range rk.CSF {
				if !slices.Contains(csf, fn) {
					t.Errorf("%s: %q is not a NIST CSF 2.0 function", rk.ID, fn)
				}
			}
		}
		if ev := rep.Risks[3].Evidence; !strings.Contains(ev, "52.2% rested on static secrets") || !strings.Contains(ev, "gateway routes accept credentials below their data class") {
			t.Errorf("NHI4 evidence %q", ev)
		}
		if nt := rep.Risks[1].NotTracked; !strings.Contains(nt, "keybound scan was not run on") {
			t.Errorf("NHI2 says what is not tracked: %q", nt)
		}
	})

	t.Run("trend", func(t *testing.T) {
		if rep.Trend.PreviousAt != nil {
			t.Errorf("first report has a previous one: %v", rep.Trend.PreviousAt)
		}
		if c := changeOf(t, rep, "idle"); c.Current != 3 || c.Previous != nil || c.Delta != nil {
			t.Errorf("first report idle %+v", c)
		}
		if c := changeOf(t, rep, "overdue_reviews"); c.Current != 4 || c.Previous != nil {
			t.Errorf("first report overdue_reviews %+v", c)
		}
		if c := changeOf(t, rep, "orphaned"); c.Current != 0 {
			t.Errorf("first report orphaned %+v", c)
		}
		second := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json"))
		if second.Trend.PreviousAt == nil || !second.Trend.PreviousAt.Equal(rep.GeneratedAt) {
			t.Errorf("second report's previous_at %v, want %v", second.Trend.PreviousAt, rep.GeneratedAt)
		}
		if c := changeOf(t, second, "idle"); c.Previous == nil || *c.Previous != 3 || *c.Delta != 0 {
			t.Errorf("second report idle %+v", c)
		}
		// c-idle is used again and c-static's key goes to a token: idle -1.
		s.seedAudit(t, store.AuditEvent{Time: time.Now().UTC(), RequestID: "again", ClientID: "c-idle", CredentialType: "mtls",
			Route: "reports", Method: "GET", Status: 200, SourceAddr: "192.0.2.2:1", Decision: "allow", Reason: "ok", Scopes: []string{"reports:read"}})
		preview := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json", "--no-snapshot"))
		if c := changeOf(t, preview, "idle"); c.Current != 2 || *c.Delta != -1 || !c.LowerIsBetter {
			t.Errorf("preview idle %+v", c)
		}
		if c := changeOf(t, preview, "sender_constrained_share_pct"); c.Current != 45.8 || *c.Delta != 2.3 {
			t.Errorf("preview sender-constrained share %+v", c)
		}
		// The preview stored nothing: the next report still compares with the second.
		third := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json"))
		if !third.Trend.PreviousAt.Equal(second.GeneratedAt) {
			t.Errorf("after --no-snapshot, previous_at %v, want the second report's %v", third.Trend.PreviousAt, second.GeneratedAt)
		}
		md := s.cliOK(t, "report", "posture", "--no-snapshot")
		if !strings.Contains(md, "| Idle identities | 2 | 2 | 0 |") || !strings.Contains(md, "Changes are against the previous report, "+third.GeneratedAt.Format(time.RFC3339)) {
			t.Errorf("markdown trend:\n%s", md)
		}
	})

	t.Run("markdown", func(t *testing.T) {
		md := s.cliOK(t, "report", "posture", "-o", "markdown", "--no-snapshot")
		for _, w := range []string{
			"# keybound posture report", "## Inventory", "| private_key_jwt | 10 |", "## Requests by credential, last 30 days",
			"| all | 24 | 12 (50.0%) | 1 (4.2%) | 11 (45.8%) | 1 | 2 |", "| Orphaned | 0 |", "| Overdue access reviews | 4 |", "| Leaked | 0 |", "| No owner | 1 |",
			"| payroll | restricted | prod |", "misaligned: allow_weaker_assurance", "| NHI8:2025 Environment Isolation | Needs attention |",
			"| NHI2:2025 Secret Leakage | Partly tracked |", "Govern, Identify, Protect",
		} {
			if !strings.Contains(md, w) {
				t.Errorf("markdown lacks %q", w)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		checkFailure(t, s.cli(t, "report", "posture", "-o", "pdf"), 2, "json, markdown or html")
		checkFailure(t, s.cli(t, "report", "posture", "--idle-days", "0"), 2, "--idle-days", "1 to 3650")
		checkFailure(t, s.cli(t, "report", "posture", "--max-sources", "0"), 2, "--max-sources")
		if r := s.cli(t, "report", "nope"); r.code != 2 {
			t.Errorf("unknown report: %s", r)
		}
		if r := s.cli(t, "report", "posture", "extra"); r.code != 2 {
			t.Errorf("positional argument: %s", r)
		}
	})
	_ = f
}

// TestReportPostureWithoutGateway: what needs routes is not tracked, and
// says why.
func TestReportPostureWithoutGateway(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	f := newUsageFixture(time.Now().UTC())
	s.seedClients(t, f.clients...)
	s.seedAudit(t, f.events...)
	rep := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json"))
	if rep.RoutesKnown || rep.Routes.Tracked || !strings.Contains(rep.Routes.Note, "no gateway route table") {
		t.Errorf("routes %+v", rep.Routes)
	}
	for _, k := range []string{posture.KeyOverPrivileged, posture.KeyCrossEnvironment} {
		if fd := findingOf(t, rep, k); fd.Tracked || fd.Count != nil {
			t.Errorf("%s without routes: %+v", k, fd)
		}
	}
	// Traffic shares need no routes; the classes do.
	if rep.Traffic.Overall.Authenticated != 23 || len(rep.Traffic.BySensitivity) != 5 || rep.Traffic.BySensitivity[4].Class != "unknown" {
		t.Errorf("traffic %+v", rep.Traffic)
	}
	statuses := map[string]string{}
	for _, rk := range rep.Risks {
		statuses[rk.ID] = rk.Status
	}
	if statuses["NHI5:2025"] != posture.StatusNotTracked || statuses["NHI8:2025"] != posture.StatusNotTracked || statuses["NHI6:2025"] != posture.StatusNotTracked {
		t.Errorf("statuses without routes: %v", statuses)
	}
	for _, c := range rep.Trend.Changes {
		if c.Metric == "over_privileged" || c.Metric == "misaligned_routes" || c.Metric == "cross_environment" {
			t.Errorf("untracked metric in the trend: %+v", c)
		}
	}
	md := s.cliOK(t, "report", "posture", "--no-snapshot")
	if !strings.Contains(md, "No gateway route table is running") || !strings.Contains(md, fmt.Sprintf("| Over-privileged | %s |", "not tracked yet")) {
		t.Errorf("markdown without routes:\n%s", md)
	}
}

// TestReportPostureLeaks: an identity whose current secret the inventory
// recorded as leaked (a secret-scan match) is counted; one whose leaked
// secret was rotated since is not.
func TestReportPostureLeaks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	now := time.Now().UTC()
	secret := func(id, key string) *identity.Client {
		return &identity.Client{ID: id, Name: id, Owner: "team@example.com", Purpose: "tests", Environment: "prod", Status: identity.StatusActive,
			CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(24 * time.Hour), Scopes: []string{"reports:read"},
			AuthMethod: identity.AuthClientSecretBasic, Binding: identity.BindingDPoP,
			Secret: &identity.SecretHash{Salt: []byte("0123456789abcdef"), Hash: make([]byte, 32), Lookup: identity.SecretLookup(key)}}
	}
	s.seedClients(t, secret("c-leaked", "kbs_current"), secret("c-rotated", "kbs_new"))
	leak := func(id, key string) store.AdminEvent {
		return store.AdminEvent{Time: now, Actor: "scanner", Action: inventory.ActionLeaked, Target: id,
			Changes: map[string]string{"fingerprint": identity.SecretFingerprint(identity.SecretLookup(key)), "location": "app.env:3"}}
	}
	s.seedAdminEvents(t, leak("c-leaked", "kbs_current"), leak("c-rotated", "kbs_old"))
	rep := decodeJSON[posture.Report](t, s.cliOK(t, "report", "posture", "-o", "json"))
	if fd := findingOf(t, rep, posture.KeyLeaked); !fd.Tracked || fd.Count == nil || *fd.Count != 1 || !slices.Equal(fd.ClientIDs, []string{"c-leaked"}) {
		t.Errorf("leaked %+v", fd)
	}
	if rk := rep.Risks[1]; rk.ID != "NHI2:2025" || rk.Status != posture.StatusAttention || !strings.Contains(rk.Evidence, "1 identity's secret was found leaked") {
		t.Errorf("NHI2 %+v", rk)
	}
	if c := changeOf(t, rep, "leaked"); c.Current != 1 {
		t.Errorf("trend %+v", c)
	}
}
