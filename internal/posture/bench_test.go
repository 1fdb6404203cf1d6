package posture_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// The benchmarks run usage analytics and the posture report over a store
// of KEYBOUND_BENCH_EVENTS audit events (default 1,000,000) and
// KEYBOUND_BENCH_CLIENTS identities (default 10,000), generated once per
// process through the store's own AppendAuditEvents in the gateway
// writer's batches of 256, so the rollups are built the way production
// builds them.
//
// KEYBOUND_BENCH_DB, when set, is a database file to reuse across runs: it
// is generated there if missing and kept (delete it after changing the
// generator or the schema).
//
// KEYBOUND_BENCH_DIST picks who sends the traffic: "zipf" (the default, a
// few busy services and a long tail, 30% of identities silent) or
// "uniform" (every identity alike, each calling on most days: the worst
// case for the rollups, which then hold nearly one row per event).
//
//	go test -run '^$' -bench . -benchtime 5x ./internal/posture/

const day = 24 * time.Hour

var (
	benchOnce sync.Once
	benchDir  string
	benchPath string
	benchErr  error
	benchNow  = time.Now().UTC()
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchRoutes are 50 routes over the four classes and three environments,
// each requiring its own read or write scope.
func benchRoutes() []route.Spec {
	classes := []string{"internal", "confidential", "internal", "restricted", "public"}
	envs := []string{"prod", "prod", "staging", "dev"}
	var out []route.Spec
	for i := range 50 {
		s := route.Spec{Name: fmt.Sprintf("r%02d", i), Path: fmt.Sprintf("/r%02d/{id}", i), Methods: []string{"GET", "POST"},
			Upstream: "http://127.0.0.1:9", Sensitivity: classes[i%len(classes)], Environment: envs[i%len(envs)],
			Scopes: route.ScopeSpec{ByMethod: map[string][]string{"GET": {fmt.Sprintf("s%02d:read", i)}, "POST": {fmt.Sprintf("s%02d:write", i)}}}}
		if i%10 == 0 {
			s.AllowStaticKeys = s.Sensitivity == "internal" || s.Sensitivity == "public"
		}
		if i%17 == 3 {
			s.AllowWeakerAssurance = true
		}
		out = append(out, s)
	}
	return out
}

type benchClient struct {
	c      *identity.Client
	idx    int
	routes []int
	hosts  int
}

func benchClients(n int, rng *rand.Rand) []benchClient {
	envs := []string{"prod", "prod", "staging", "dev"}
	out := make([]benchClient, n)
	for i := range out {
		created := benchNow.Add(-time.Duration(10+rng.IntN(400)) * day)
		c := &identity.Client{ID: fmt.Sprintf("kb-bench-%05d", i), Name: "svc", Owner: fmt.Sprintf("team-%d@example.com", i%300),
			Purpose: "bench", Environment: envs[i%len(envs)], Status: identity.StatusActive, CreatedAt: created, UpdatedAt: created,
			ExpiresAt: created.Add(time.Duration(30+rng.IntN(400)) * day), AuthMethod: identity.AuthPrivateKeyJWT, Binding: identity.BindingDPoP}
		switch k := i % 20; {
		case k < 2:
			c.AuthMethod, c.Binding = identity.AuthTLSClient, identity.BindingMTLS
		case k < 4:
			c.AuthMethod = identity.AuthClientSecretBasic
		case k == 4:
			c.Binding = identity.BindingBearer
		case k == 5 && i%100 == 5:
			c.Scopes = []string{"keybound:introspect"}
		}
		if i%50 == 0 {
			c.Status = identity.StatusSuspended
		}
		if i%37 == 0 {
			c.Vendor = "acme"
		}
		bc := benchClient{c: c, idx: i, hosts: 1 + rng.IntN(3)}
		if i%97 == 0 {
			bc.hosts = 30
		}
		for range 1 + rng.IntN(3) {
			r := rng.IntN(50)
			bc.routes = append(bc.routes, r)
			if c.Scopes == nil || c.Scopes[0] != "keybound:introspect" {
				c.Scopes = append(c.Scopes, fmt.Sprintf("s%02d:read", r), fmt.Sprintf("s%02d:write", r))
			}
		}
		out[i] = bc
	}
	return out
}

// benchStore returns the path of the generated database, building it on
// first use.
func benchStore(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		if p := os.Getenv("KEYBOUND_BENCH_DB"); p != "" {
			benchPath = p
			if _, err := os.Stat(p); err == nil {
				b.Logf("reusing %s", p)
				return
			}
		} else {
			if benchDir, benchErr = os.MkdirTemp("", "keybound-bench-"); benchErr != nil {
				return
			}
			benchPath = filepath.Join(benchDir, "keybound.db")
		}
		benchErr = generate(b, benchPath)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath
}

func generate(b *testing.B, path string) error {
	ctx := context.Background()
	events, clients := envInt("KEYBOUND_BENCH_EVENTS", 1_000_000), envInt("KEYBOUND_BENCH_CLIENTS", 10_000)
	dist := os.Getenv("KEYBOUND_BENCH_DIST")
	if dist == "" {
		dist = "zipf"
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	cs := benchClients(clients, rng)
	start := time.Now()
	for _, bc := range cs {
		if err := st.CreateClient(ctx, bc.c, store.AdminEvent{Time: bc.c.CreatedAt, Actor: "bench", Action: "client.create", Target: bc.c.ID}); err != nil {
			return err
		}
	}
	clientTime := time.Since(start)

	// Callers: zipf over a shuffled 70% of the identities, or uniform over all.
	order := rng.Perm(len(cs))
	callers := order[:len(cs)*7/10]
	zipf := rand.NewZipf(rng, 1.1, 8, uint64(len(callers)-1))
	pick := func() *benchClient {
		if dist == "uniform" {
			return &cs[rng.IntN(len(cs))]
		}
		return &cs[callers[zipf.Uint64()]]
	}
	const batchSize = 256
	batch := make([]store.AuditEvent, 0, batchSize)
	span := 90 * day
	from := benchNow.Add(-span)
	start = time.Now()
	cpu0 := cpuTime()
	for i := range events {
		bc := pick()
		r := bc.routes[rng.IntN(len(bc.routes))]
		method, scope := "GET", fmt.Sprintf("s%02d:read", r)
		if rng.IntN(5) == 0 {
			method, scope = "POST", fmt.Sprintf("s%02d:write", r)
		}
		cred := string(bc.c.Binding)
		if bc.c.AuthMethod.IsStaticSecret() && r%10 == 0 {
			cred = "static_key"
		}
		ev := store.AuditEvent{
			Time: from.Add(time.Duration(int64(span) / int64(events) * int64(i))), RequestID: strconv.Itoa(i), ClientID: bc.c.ID,
			Owner: bc.c.Owner, CredentialType: cred, TokenJTI: "jti-" + strconv.Itoa(i/50), Scopes: []string{scope},
			Route: fmt.Sprintf("r%02d", r), Method: method, PathTemplate: fmt.Sprintf("/r%02d/{id}", r), ObjectID: strconv.Itoa(i % 1000),
			Status: 200, BytesIn: 100, BytesOut: 2000, LatencyMicros: 900,
			SourceAddr: fmt.Sprintf("10.%d.%d.%d:%d", bc.idx/256, bc.idx%256, rng.IntN(bc.hosts), 40000+i%20000),
			Decision:   "allow", Reason: "ok",
		}
		if rng.IntN(40) == 0 {
			ev.Decision, ev.Reason, ev.Status = "deny", "insufficient_scope", 403
		}
		if rng.IntN(200) == 0 {
			ev.ClientID, ev.Owner, ev.CredentialType, ev.TokenJTI, ev.Scopes = "", "", "", "", nil
			ev.Decision, ev.Reason, ev.Status = "deny", "invalid_token", 401
		} else if rng.IntN(1000) == 0 {
			// A token of an identity refused after its expiry.
			ev.Decision, ev.Reason, ev.Status = "deny", "client_expired", 401
		}
		batch = append(batch, ev)
		if len(batch) == batchSize || i == events-1 {
			if err := st.AppendAuditEvents(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	appendTime, appendCPU := time.Since(start), cpuTime()-cpu0
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		return err
	}
	defer db.Close()
	var usageRows, sourceRows int
	_ = db.QueryRow(`SELECT COUNT(*) FROM audit_usage_daily`).Scan(&usageRows)
	_ = db.QueryRow(`SELECT COUNT(*) FROM audit_client_sources`).Scan(&sourceRows)
	fi, _ := os.Stat(path)
	b.Logf("generated (%s): %d identities in %v; %d events in %v through AppendAuditEvents in batches of %d: %.1f µs/event wall, %.1f µs/event CPU (this process, generator included); rollups: %d usage rows, %d source rows; file %d MiB",
		dist, clients, clientTime.Round(time.Millisecond), events, appendTime.Round(time.Second), batchSize,
		float64(appendTime.Microseconds())/float64(events), float64(appendCPU.Microseconds())/float64(events), usageRows, sourceRows, fi.Size()>>20)
	return nil
}

func openBench(b *testing.B) *sqlite.Store {
	b.Helper()
	st, err := sqlite.Open(context.Background(), benchStore(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func benchRouteSet(b *testing.B) *posture.Routes {
	tb, err := route.Compile(benchRoutes())
	if err != nil {
		b.Fatal(err)
	}
	return posture.NewRoutes(tb.Routes(), true)
}

// BenchmarkUsageAll is GET /admin/v1/usage for every identity, less HTTP:
// list the inventory, read the rollups, compute.
func BenchmarkUsageAll(b *testing.B) {
	st := openBench(b)
	rs := benchRouteSet(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cs, err := st.ListClients(ctx, store.ClientFilter{})
		if err != nil {
			b.Fatal(err)
		}
		trail, err := posture.Load(ctx, st, "", benchNow)
		if err != nil {
			b.Fatal(err)
		}
		rep := posture.ComputeUsage(posture.Input{Now: benchNow, Clients: cs, Routes: rs, Trail: trail})
		if rep.Summary.Identities == 0 {
			b.Fatal("no identities")
		}
	}
}

// BenchmarkUsageOneClient is GET /admin/v1/usage?client_id= for the
// busiest identity.
func BenchmarkUsageOneClient(b *testing.B) {
	st := openBench(b)
	rs := benchRouteSet(b)
	ctx := context.Background()
	acts, err := st.ClientActivity(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	busiest := acts[0]
	for _, a := range acts {
		if a.Events > busiest.Events {
			busiest = a
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := st.GetClient(ctx, busiest.ClientID)
		if err != nil {
			b.Fatal(err)
		}
		trail, err := posture.Load(ctx, st, c.ID, benchNow)
		if err != nil {
			b.Fatal(err)
		}
		posture.ComputeUsage(posture.Input{Now: benchNow, Clients: []*identity.Client{c}, Routes: rs, Trail: trail})
	}
	b.ReportMetric(float64(busiest.Events), "events/client")
}

// BenchmarkPostureReport is GET /admin/v1/reports/posture less HTTP, plus
// both renderings: inventory, rollups, review and owner reads, expired
// identities' refusals, report, trend against the stored snapshot, a new
// snapshot, Markdown and HTML.
func BenchmarkPostureReport(b *testing.B) {
	st := openBench(b)
	rs := benchRouteSet(b)
	ctx := context.Background()
	var out bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cs, err := st.ListClients(ctx, store.ClientFilter{})
		if err != nil {
			b.Fatal(err)
		}
		trail, err := posture.Load(ctx, st, "", benchNow)
		if err != nil {
			b.Fatal(err)
		}
		// The inputs the admin API adds: the review history and the owner
		// directory (evaluated in memory by package review), and the
		// gateway's client_expired refusals of the period.
		if _, err := st.LatestReviews(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := st.ListOwners(ctx); err != nil {
			b.Fatal(err)
		}
		expired, err := st.SummarizeAudit(ctx, store.AuditFilter{Reason: "client_expired", Since: benchNow.Add(-posture.PeriodDays * 24 * time.Hour), Limit: 10000})
		if err != nil {
			b.Fatal(err)
		}
		in := posture.Input{Now: benchNow, Clients: cs, Routes: rs, Trail: trail, ExpiredUsedTracked: true, ExpiredUsed: map[string]int64{}}
		for _, r := range expired {
			in.ExpiredUsed[r.ClientID] += r.Count
		}
		rep := posture.Build(in)
		if prev, err := st.LatestPostureSnapshot(ctx); err == nil {
			rep.ApplyTrend(&prev)
		}
		snap, err := rep.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.AppendPostureSnapshot(ctx, snap); err != nil {
			b.Fatal(err)
		}
		out.Reset()
		if err := rep.WriteMarkdown(&out); err != nil {
			b.Fatal(err)
		}
		if err := rep.WriteHTML(&out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUsageRawGroupBy is the alternative the rollups replace: the
// same 7/30/90-day counts by GROUP BY over audit_events and its time
// index, with no pre-aggregation. Read-only, on the same data.
func BenchmarkUsageRawGroupBy(b *testing.B) {
	path := benchStore(b)
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	d := func(n int) int64 {
		u := benchNow
		return time.Date(u.Year(), u.Month(), u.Day()-n, 0, 0, 0, 0, time.UTC).UnixNano()
	}
	q := `SELECT client_id, route, method, scopes, credential_type, decision, reason,
		SUM(time >= ?1), SUM(time >= ?2), COUNT(*), MAX(time)
		FROM audit_events WHERE time >= ?3
		GROUP BY client_id, route, method, scopes, credential_type, decision, reason`
	b.ResetTimer()
	for b.Loop() {
		rows, err := db.Query(q, d(6), d(29), d(89))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if n == 0 {
			b.Fatal("no rows")
		}
	}
}

// cpuTime is the user and system CPU time of this process so far: unlike
// wall time, it does not count other processes sharing the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
