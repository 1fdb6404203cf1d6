package notify

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// t0 is the fixed instant service tests start from; the sweep is given its
// clock, so nothing waits.
var t0 = time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keybound.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addClient(t *testing.T, s *sqlite.Store, id string, expires time.Time) {
	t.Helper()
	c := &identity.Client{ID: id, Name: "svc " + id, Owner: "team-a@example.com", Purpose: "tests", Environment: "prod",
		Status: identity.StatusActive, CreatedAt: t0.Add(-30 * day), UpdatedAt: t0.Add(-30 * day), ExpiresAt: expires,
		AuthMethod: identity.AuthPrivateKeyJWT, Binding: identity.BindingDPoP}
	if err := s.CreateClient(t.Context(), c, store.AdminEvent{Time: t0, Actor: "test", Action: "client.create", Target: id}); err != nil {
		t.Fatal(err)
	}
}

func newService(t *testing.T, s *sqlite.Store, rc *receiver, maxAttempts int) (*Service, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc := &Service{Store: s, LeadTimes: []time.Duration{14 * day, 3 * day, day}, Issuer: "https://kb.example",
		MaxAttempts: maxAttempts, Metrics: NewMetrics(reg), rnd: func() float64 { return 0 }}
	if rc != nil {
		svc.Webhook = rc.webhook(t, "/hook", time.Second)
	}
	return svc, reg
}

func sweep(t *testing.T, svc *Service, now time.Time) {
	t.Helper()
	if err := svc.Sweep(t.Context(), now); err != nil {
		t.Fatalf("Sweep at %s: %v", now, err)
	}
}

func list(t *testing.T, s *sqlite.Store, f store.NotificationFilter) []*store.Notification {
	t.Helper()
	ns, err := s.ListNotifications(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// bodies decodes what the receiver got, checking every signature.
func bodies(t *testing.T, rc *receiver) []Warning {
	t.Helper()
	var out []Warning
	for _, r := range rc.requests() {
		if err := Verify(testSecret, r.header.Get(SignatureHeader), r.body, time.Now(), 0); err != nil {
			t.Errorf("request not verifiable: %v", err)
		}
		var w Warning
		if err := json.Unmarshal(r.body, &w); err != nil {
			t.Fatal(err)
		}
		out = append(out, w)
	}
	return out
}

func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

// TestSweepWarnsOncePerLeadTime follows one identity from 20 days before
// its expiry to past it, sweeping often: each lead time and the expiry
// produce exactly one delivered warning.
func TestSweepWarnsOncePerLeadTime(t *testing.T) {
	s := openStore(t)
	exp := t0.Add(20 * day)
	addClient(t, s, "kb-a", exp)
	addClient(t, s, "kb-later", t0.Add(80*day)) // never in a window here
	rc := newReceiver(t, nil)
	svc, reg := newService(t, s, rc, 3)

	type step struct {
		at   time.Time
		want []string // event type and lead of each delivery, cumulative
	}
	steps := []step{
		{t0, nil},
		{exp.Add(-14*day - time.Second), nil},
		{exp.Add(-14 * day), []string{"identity.expiring/336h0m0s"}},
		{exp.Add(-10 * day), []string{"identity.expiring/336h0m0s"}},
		{exp.Add(-3*day + time.Hour), []string{"identity.expiring/336h0m0s", "identity.expiring/72h0m0s"}},
		{exp.Add(-day / 2), []string{"identity.expiring/336h0m0s", "identity.expiring/72h0m0s", "identity.expiring/24h0m0s"}},
		{exp.Add(-time.Nanosecond), []string{"identity.expiring/336h0m0s", "identity.expiring/72h0m0s", "identity.expiring/24h0m0s"}},
		{exp, []string{"identity.expiring/336h0m0s", "identity.expiring/72h0m0s", "identity.expiring/24h0m0s", "identity.expired/"}},
		{exp.Add(29 * day), []string{"identity.expiring/336h0m0s", "identity.expiring/72h0m0s", "identity.expiring/24h0m0s", "identity.expired/"}},
	}
	for _, st := range steps {
		sweep(t, svc, st.at)
		sweep(t, svc, st.at) // a second sweep at the same time sends nothing more
		var got []string
		for _, w := range bodies(t, rc) {
			got = append(got, w.Type+"/"+w.LeadTime)
			if w.ClientID != "kb-a" || w.Name != "svc kb-a" || w.Owner != "team-a@example.com" || w.Environment != "prod" || !w.ExpiresAt.Equal(exp) || w.Issuer != "https://kb.example" {
				t.Errorf("warning fields: %+v", w)
			}
		}
		if strings.Join(got, " ") != strings.Join(st.want, " ") {
			t.Fatalf("at expiry%+v: deliveries %v, want %v", st.at.Sub(exp), got, st.want)
		}
	}
	ids := map[string]bool{}
	for _, w := range bodies(t, rc) {
		if ids[w.ID] {
			t.Errorf("delivery id %s used twice", w.ID)
		}
		ids[w.ID] = true
	}
	if n := len(list(t, s, store.NotificationFilter{Status: store.NotificationDelivered})); n != 4 {
		t.Errorf("%d delivered notifications stored, want 4", n)
	}
	if got := metric(t, reg, "keybound_notify_warnings_created_total", "type", EventExpiring); got != 3 {
		t.Errorf("created metric %v, want 3", got)
	}
	if got := metric(t, reg, "keybound_notify_deliveries_total", "outcome", "delivered"); got != 4 {
		t.Errorf("delivered metric %v, want 4", got)
	}
}

// TestSweepSupersededLeads: an identity first seen two days before its
// expiry gets the 3-day warning only, not the 14-day one too; one already
// long expired gets no warning at all.
func TestSweepSupersededLeads(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-soon", t0.Add(2*day))
	addClient(t, s, "kb-ancient", t0.Add(-31*day))
	addClient(t, s, "kb-recent", t0.Add(-29*day))
	rc := newReceiver(t, nil)
	svc, _ := newService(t, s, rc, 3)
	sweep(t, svc, t0)
	got := map[string]string{}
	for _, w := range bodies(t, rc) {
		got[w.ClientID] = w.Type + "/" + w.LeadTime
	}
	want := map[string]string{"kb-soon": "identity.expiring/72h0m0s", "kb-recent": "identity.expired/"}
	if len(got) != len(want) || got["kb-soon"] != want["kb-soon"] || got["kb-recent"] != want["kb-recent"] {
		t.Errorf("deliveries %v, want %v", got, want)
	}
}

// TestSweepRetriesWithBackoff: a receiver that fails twice then takes the
// warning; each retry waits longer, the attempts and reasons are recorded,
// and no retry goes out before its time.
func TestSweepRetriesWithBackoff(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-a", t0.Add(day/2))
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	svc, reg := newService(t, s, rc, 5)
	get := func() *store.Notification {
		t.Helper()
		ns := list(t, s, store.NotificationFilter{})
		if len(ns) != 1 {
			t.Fatalf("%d notifications", len(ns))
		}
		return ns[0]
	}
	sweep(t, svc, t0)
	n := get()
	if n.Status != store.NotificationPending || n.Attempts != 1 || !n.NextAttemptAt.Equal(t0.Add(DefaultBaseDelay)) || n.LastError != "receiver answered 503 Service Unavailable" {
		t.Fatalf("after the first failure: %+v", n)
	}
	if got := metric(t, reg, "keybound_notify_notifications", "status", "pending"); got != 1 {
		t.Errorf("pending gauge %v, want 1", got)
	}
	// Not yet due: nothing is sent.
	sweep(t, svc, t0.Add(DefaultBaseDelay-time.Second))
	if len(rc.requests()) != 1 {
		t.Fatalf("a retry went out early: %d requests", len(rc.requests()))
	}
	t1 := t0.Add(DefaultBaseDelay)
	sweep(t, svc, t1)
	n = get()
	if n.Attempts != 2 || !n.NextAttemptAt.Equal(t1.Add(2*DefaultBaseDelay)) {
		t.Fatalf("after the second failure: %+v (want the wait doubled)", n)
	}
	t2 := t1.Add(2 * DefaultBaseDelay)
	sweep(t, svc, t2)
	n = get()
	if n.Status != store.NotificationDelivered || n.Attempts != 3 || !n.DeliveredAt.Equal(t2) || n.LastError != "" || !n.NextAttemptAt.IsZero() {
		t.Fatalf("after delivery: %+v", n)
	}
	ws := bodies(t, rc)
	if len(ws) != 3 || ws[0].ID != ws[2].ID {
		t.Errorf("retries must carry the same delivery id: %v", ws)
	}
	sweep(t, svc, t2.Add(time.Hour))
	if len(rc.requests()) != 3 {
		t.Errorf("a delivered warning was sent again")
	}
	if r := metric(t, reg, "keybound_notify_deliveries_total", "outcome", "retry"); r != 2 {
		t.Errorf("retry metric %v, want 2", r)
	}
}

func TestSweepHonoursRetryAfter(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-a", t0.Add(day/2))
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	svc, _ := newService(t, s, rc, 5)
	sweep(t, svc, t0)
	n := list(t, s, store.NotificationFilter{})[0]
	if !n.NextAttemptAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("next attempt at %s, want Retry-After's hour (%s)", n.NextAttemptAt, t0.Add(time.Hour))
	}
	sweep(t, svc, t0.Add(59*time.Minute))
	if len(rc.requests()) != 1 {
		t.Errorf("retried before Retry-After")
	}
}

// TestSweepFailures: a permanent refusal fails at once; retryable failures
// fail after MaxAttempts; both stay visible with a reason, count in the
// failed gauge, and are not sent again.
func TestSweepFailures(t *testing.T) {
	t.Run("permanent", func(t *testing.T) {
		s := openStore(t)
		addClient(t, s, "kb-a", t0.Add(day/2))
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
		logs := &bytes.Buffer{}
		svc, reg := newService(t, s, rc, 5)
		svc.OpLog = slog.New(slog.NewJSONHandler(logs, nil))
		sweep(t, svc, t0)
		sweep(t, svc, t0.Add(time.Hour))
		ns := list(t, s, store.NotificationFilter{Status: store.NotificationFailed})
		if len(ns) != 1 || ns[0].Attempts != 1 || ns[0].LastError != "receiver answered 400 Bad Request" || len(rc.requests()) != 1 {
			t.Fatalf("failed: %+v, %d requests", ns, len(rc.requests()))
		}
		if got := metric(t, reg, "keybound_notify_notifications", "status", "failed"); got != 1 {
			t.Errorf("failed gauge %v", got)
		}
		if !strings.Contains(logs.String(), "expiry warning not delivered") || strings.Contains(logs.String(), "/hook") || strings.Contains(logs.String(), string(testSecret)) {
			t.Errorf("operational log: %s", logs)
		}
	})
	t.Run("attempts run out", func(t *testing.T) {
		s := openStore(t)
		addClient(t, s, "kb-a", t0.Add(day/2))
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) })
		svc, _ := newService(t, s, rc, 2)
		for i := range 10 {
			sweep(t, svc, t0.Add(time.Duration(i)*time.Hour))
		}
		ns := list(t, s, store.NotificationFilter{})
		if len(ns) != 1 || ns[0].Status != store.NotificationFailed || ns[0].Attempts != 2 ||
			ns[0].LastError != "gave up after 2 attempts: receiver answered 502 Bad Gateway" || len(rc.requests()) != 2 {
			t.Fatalf("%+v, %d requests", ns[0], len(rc.requests()))
		}
	})
	t.Run("unavailable receiver holds the rest", func(t *testing.T) {
		s := openStore(t)
		for _, id := range []string{"kb-a", "kb-b", "kb-c"} {
			addClient(t, s, id, t0.Add(day/2))
		}
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
		svc, _ := newService(t, s, rc, 5)
		sweep(t, svc, t0)
		if n := len(rc.requests()); n != 1 {
			t.Errorf("%d attempts in one sweep against a down receiver, want 1", n)
		}
		if n := len(list(t, s, store.NotificationFilter{Status: store.NotificationPending})); n != 3 {
			t.Errorf("%d pending, want 3", n)
		}
	})
}

// TestSweepSkipsWarningsThatNoLongerApply: an expiry extended or an
// identity revoked before delivery leaves the old warning skipped, unsent.
func TestSweepSkipsWarningsThatNoLongerApply(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-a", t0.Add(day/2))
	down := true
	var mu sync.Mutex
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	svc, _ := newService(t, s, rc, 5)
	sweep(t, svc, t0)
	c, err := s.GetClient(t.Context(), "kb-a")
	if err != nil {
		t.Fatal(err)
	}
	prev := c.UpdatedAt
	c.ExpiresAt, c.UpdatedAt = t0.Add(80*day), t0.Add(time.Minute)
	if err := s.UpdateClient(t.Context(), c, prev, store.AdminEvent{Time: t0, Actor: "test", Action: "client.update", Target: "kb-a"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	sweep(t, svc, t0.Add(time.Hour))
	ns := list(t, s, store.NotificationFilter{})
	if len(ns) != 1 || ns[0].Status != store.NotificationSkipped || len(rc.requests()) != 1 {
		t.Fatalf("%+v, %d requests", ns, len(rc.requests()))
	}
}

// TestSweepTwoNodes: two services on one store sweeping at once deliver
// each warning once.
func TestSweepTwoNodes(t *testing.T) {
	s := openStore(t)
	for _, id := range []string{"kb-a", "kb-b", "kb-c", "kb-d"} {
		addClient(t, s, id, t0.Add(2*day))
	}
	rc := newReceiver(t, nil)
	a, _ := newService(t, s, rc, 3)
	b, _ := newService(t, s, rc, 3)
	for i := range 5 {
		now := t0.Add(time.Duration(i) * time.Minute)
		var wg sync.WaitGroup
		for _, svc := range []*Service{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); sweep(t, svc, now) }()
		}
		wg.Wait()
	}
	seen := map[string]int{}
	for _, w := range bodies(t, rc) {
		seen[w.ClientID]++
	}
	if len(seen) != 4 {
		t.Errorf("warned %v, want the 4 identities", seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s warned %d times", id, n)
		}
	}
}

// TestSweepWithoutWebhook: the log notifier alone; the warning is logged
// once, by the node that recorded it, and is delivered at once.
func TestSweepWithoutWebhook(t *testing.T) {
	s := openStore(t)
	addClient(t, s, "kb-a", t0.Add(2*day))
	var logs bytes.Buffer
	svc, _ := newService(t, s, nil, 3)
	svc.Log = &Log{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	sweep(t, svc, t0)
	sweep(t, svc, t0.Add(time.Minute))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), logs.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["level"] != "WARN" || rec["client_id"] != "kb-a" || rec["event"] != EventExpiring || rec["lead_time"] != "72h0m0s" || rec["owner"] != "team-a@example.com" {
		t.Errorf("log record %v", rec)
	}
	ns := list(t, s, store.NotificationFilter{})
	if len(ns) != 1 || ns[0].Status != store.NotificationDelivered || !ns[0].DeliveredAt.Equal(t0) {
		t.Errorf("%+v", ns)
	}
	if _, err := svc.Test(t.Context(), t0); err != ErrNoWebhook {
		t.Errorf("Test without a webhook = %v", err)
	}
}

func TestServiceTest(t *testing.T) {
	s := openStore(t)
	rc := newReceiver(t, nil)
	svc, _ := newService(t, s, rc, 3)
	res, err := svc.Test(t.Context(), t0)
	if err != nil || !res.Delivered || res.Status != 204 || res.Webhook != rc.URL {
		t.Fatalf("Test = %+v, %v", res, err)
	}
	ws := bodies(t, rc)
	if len(ws) != 1 || ws[0].Type != EventTest || ws[0].ID != res.DeliveryID {
		t.Errorf("test body %+v", ws)
	}
	if ns := list(t, s, store.NotificationFilter{}); len(ns) != 0 {
		t.Errorf("a test delivery was recorded: %v", ns)
	}
	bad := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) })
	svc.Webhook = bad.webhook(t, "/", time.Second)
	res, err = svc.Test(t.Context(), t0)
	if err != nil || res.Delivered || res.Status != 401 || res.Error != "receiver answered 401 Unauthorized" {
		t.Errorf("Test against a refusing receiver = %+v, %v", res, err)
	}
}
