package app_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/keybound/keybound/internal/inventory"
)

// metric returns the value of one series in the Prometheus text exposition,
// or -1 when the series is absent.
func (g *gwHarness) metric(series string) float64 {
	g.t.Helper()
	body := string(g.do(nil, "GET", "/metrics", "", nil, nil).body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		g.t.Fatalf("series %s: %v", series, err)
	}
	return v
}

func TestGatewayCacheAndAuditMetrics(t *testing.T) {
	g := startGateway(t, nil)
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	for i := 0; i < 3; i++ {
		r := g.send(nil, "GET", "/invoices/1", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", g.gw+"/invoices/1", tok)})
		if r.status != 200 {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
	}
	// One token, three requests: the signature is checked once.
	if hit, miss := g.metric(`keybound_cache_lookups_total{cache="token",result="hit"}`), g.metric(`keybound_cache_lookups_total{cache="token",result="miss"}`); hit != 2 || miss != 1 {
		t.Errorf("token cache: %v hits, %v misses; want 2 and 1", hit, miss)
	}
	if hit := g.metric(`keybound_cache_lookups_total{cache="client",result="hit"}`); hit < 1 {
		t.Errorf("client cache hits %v, want at least 1", hit)
	}
	if v := g.metric("keybound_audit_events_dropped_total"); v != 0 {
		t.Errorf("audit drops %v, want 0", v)
	}
	if v := g.metric("keybound_audit_queue_depth"); v < 0 {
		t.Error("audit queue depth is not exported")
	}
	if v := g.metric("keybound_audit_failing"); v != 0 {
		t.Errorf("audit failing %v, want 0", v)
	}
	if v := g.metric(`keybound_gateway_requests_total{decision="allow",reason="ok",route="invoices"}`); v != 3 {
		t.Errorf("allowed requests on invoices %v, want 3", v)
	}
}
