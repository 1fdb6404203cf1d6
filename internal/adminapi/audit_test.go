package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/store"
)

// jsonName is the name a struct field has on the wire.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// TestAuditEventViewHasEveryField keeps the promise that the API shows every
// field of the audit event under its audit-stream name: when
// store.AuditEvent grows, this fails until the view grows too.
func TestAuditEventViewHasEveryField(t *testing.T) {
	ev, view := reflect.TypeFor[store.AuditEvent](), reflect.TypeFor[AuditEventView]()
	if ev.NumField() != view.NumField() {
		t.Errorf("store.AuditEvent has %d fields, AuditEventView %d", ev.NumField(), view.NumField())
	}
	for i := range ev.NumField() {
		f := ev.Field(i)
		vf, ok := view.FieldByName(f.Name)
		if !ok {
			t.Errorf("AuditEventView lacks %s", f.Name)
			continue
		}
		if jsonName(vf) != jsonName(f) {
			t.Errorf("%s is %q in the view, %q in the audit stream", f.Name, jsonName(vf), jsonName(f))
		}
		if strings.Contains(vf.Tag.Get("json"), "omitempty") {
			t.Errorf("%s is omitted when empty; every event must have every key", f.Name)
		}
	}

	// An event with empty optional fields still has every key, and scopes
	// is a list, never null.
	b, err := json.Marshal(auditEventView(store.AuditEvent{Time: time.Unix(1, 0), Decision: "deny"}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for i := range view.NumField() {
		if _, ok := m[jsonName(view.Field(i))]; !ok {
			t.Errorf("%s has no %q key", b, jsonName(view.Field(i)))
		}
	}
	if s, ok := m["scopes"].([]any); !ok || len(s) != 0 {
		t.Errorf("scopes = %#v, want []", m["scopes"])
	}
}

func TestParseAuditQuery(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		query string
		want  store.AuditFilter
	}{
		{"defaults", "", store.AuditFilter{Limit: DefaultAuditLimit}},
		{"empty values are absent", "client_id=&route=&decision=&since=&until=&limit=", store.AuditFilter{Limit: DefaultAuditLimit}},
		{"exact filters", "client_id=kb-1&route=invoices&decision=deny&limit=5", store.AuditFilter{ClientID: "kb-1", Route: "invoices", Decision: "deny", Limit: 5}},
		{"allow", "decision=allow", store.AuditFilter{Decision: "allow", Limit: DefaultAuditLimit}},
		{"reason", "reason=client_expired", store.AuditFilter{Reason: "client_expired", Limit: DefaultAuditLimit}},
		{"RFC 3339 range", "since=2026-02-01T00:00:00Z&until=2026-02-02T00:00:00.5%2B01:00",
			store.AuditFilter{Since: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 2, 1, 23, 0, 0, 5e8, time.UTC), Limit: DefaultAuditLimit}},
		{"relative since", "since=24h", store.AuditFilter{Since: now.Add(-24 * time.Hour), Limit: DefaultAuditLimit}},
		{"relative days", "since=7d&until=90m", store.AuditFilter{Since: now.Add(-7 * 24 * time.Hour), Until: now.Add(-90 * time.Minute), Limit: DefaultAuditLimit}},
		{"largest limit", "limit=10000", store.AuditFilter{Limit: 10000}},
		{"smallest limit", "limit=1", store.AuditFilter{Limit: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuditQuery(tt.query, now)
			if err != nil {
				t.Fatalf("ParseAuditQuery(%q): %v", tt.query, err)
			}
			if !got.Since.Equal(tt.want.Since) || !got.Until.Equal(tt.want.Until) {
				t.Errorf("range %v..%v, want %v..%v", got.Since, got.Until, tt.want.Since, tt.want.Until)
			}
			got.Since, got.Until, tt.want.Since, tt.want.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseAuditQueryErrors(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// want maps each parameter named in errors to a phrase of its detail,
	// in the order they are reported.
	type fe struct{ field, detail string }
	tests := []struct {
		name  string
		query string
		want  []fe
	}{
		{"decision", "decision=maybe", []fe{{"decision", "must be allow or deny"}}},
		{"decision is case-sensitive", "decision=ALLOW", []fe{{"decision", "must be allow or deny"}}},
		{"reason with other characters", "reason=client-expired", []fe{{"reason", "must be a reason code"}}},
		{"reason too long", "reason=" + strings.Repeat("a", 65), []fe{{"reason", "must be a reason code"}}},
		{"limit zero", "limit=0", []fe{{"limit", "must be between 1 and 10000"}}},
		{"limit too large", "limit=10001", []fe{{"limit", "must be between 1 and 10000"}}},
		{"limit not a number", "limit=ten", []fe{{"limit", "must be between 1 and 10000"}}},
		{"since garbage", "since=yesterday", []fe{{"since", "RFC 3339"}}},
		{"since negative duration", "since=-1h", []fe{{"since", "duration before now"}}},
		{"since zero duration", "since=0s", []fe{{"since", "duration before now"}}},
		{"since zero days", "since=0d", []fe{{"since", "duration before now"}}},
		{"until garbage", "until=soon", []fe{{"until", "RFC 3339"}}},
		{"unencoded plus", "since=2026-02-01T00:00:00+01:00", []fe{{"since", "%2B"}}},
		{"date without time", "since=2026-02-01", []fe{{"since", "RFC 3339"}}},
		{"until before since", "since=2026-02-02T00:00:00Z&until=2026-02-01T00:00:00Z", []fe{{"until", "must be after since"}}},
		{"until equal to since", "since=2026-02-01T00:00:00Z&until=2026-02-01T00:00:00Z", []fe{{"until", "must be after since"}}},
		{"relative until before relative since", "since=1h&until=2h", []fe{{"until", "must be after since"}}},
		{"before the epoch", "since=1960-01-01T00:00:00Z", []fe{{"since", "must be from 1970"}}},
		{"too far back", "since=1000000h", []fe{{"since", "must be from 1970"}}},
		{"past the ceiling", "until=2300-01-01T00:00:00Z", []fe{{"until", "up to 2262"}}},
		{"repeated", "decision=allow&decision=deny", []fe{{"decision", "give it once"}}},
		{"unknown", "client=kb-1", []fe{{"client", "not a parameter"}}},
		{"every problem at once", "decision=x&since=x&until=x&limit=x&zz=1&aa=1", []fe{
			{"decision", "allow or deny"}, {"since", "RFC 3339"}, {"until", "RFC 3339"}, {"limit", "between"}, {"aa", "not a parameter"}, {"zz", "not a parameter"}}},
		{"malformed query", "client_id=%zz", []fe{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAuditQuery(tt.query, now)
			var pd *problem.Details
			if !errors.As(err, &pd) {
				t.Fatalf("ParseAuditQuery(%q) = %v, want a problem", tt.query, err)
			}
			if pd.Status != http.StatusBadRequest || pd.Type != "urn:keybound:problem:invalid-parameter" || pd.Detail == "" {
				t.Errorf("problem %+v", pd)
			}
			if len(pd.Errors) != len(tt.want) {
				t.Fatalf("errors %+v, want %d", pd.Errors, len(tt.want))
			}
			for i, w := range tt.want {
				if g := pd.Errors[i]; g.Field != w.field || !strings.Contains(g.Detail, w.detail) {
					t.Errorf("error %d = %s %q, want %s ...%s...", i, g.Field, g.Detail, w.field, w.detail)
				}
			}
		})
	}
}

// fakeTrail is an event log that also keeps an audit trail.
type fakeTrail struct {
	EventLog
	events []store.AuditEvent
	rows   []store.AuditSummaryRow
	got    store.AuditFilter
}

func (f *fakeTrail) ListAuditEvents(_ context.Context, flt store.AuditFilter) ([]store.AuditEvent, error) {
	f.got = flt
	return f.events, nil
}

func (f *fakeTrail) SummarizeAudit(_ context.Context, flt store.AuditFilter) ([]store.AuditSummaryRow, error) {
	f.got = flt
	return f.rows, nil
}

func TestAuditHandlers(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	trail := &fakeTrail{
		events: []store.AuditEvent{{ID: 7, Time: at, ClientID: "kb-1", Scopes: []string{"a", "b"}, Route: "invoices", Decision: "allow", Reason: "ok", Status: 200}},
		rows:   []store.AuditSummaryRow{{ClientID: "kb-1", Route: "invoices", Method: "GET", Scopes: "a b", Decision: "allow", Count: 3, First: at, Last: at.Add(time.Minute)}, {Route: "status", Method: "GET", Decision: "allow", Count: 1, First: at, Last: at}},
	}
	a := &API{Audit: trail, Now: func() time.Time { return at }}

	rec := httptest.NewRecorder()
	if err := a.listAuditEvents(rec, httptest.NewRequest("GET", Prefix+"/audit/events?since=1h&decision=allow", nil), nil); err != nil {
		t.Fatal(err)
	}
	if want := (store.AuditFilter{Decision: "allow", Since: at.Add(-time.Hour).UTC(), Limit: DefaultAuditLimit}); trail.got != want {
		t.Errorf("filter %+v, want %+v", trail.got, want)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", rec.Header())
	}
	var evs struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs.Events) != 1 || evs.Events[0]["time"] != "2026-03-01T11:00:00Z" || evs.Events[0]["id"] != float64(7) ||
		!reflect.DeepEqual(evs.Events[0]["scopes"], []any{"a", "b"}) {
		t.Errorf("events %s", rec.Body)
	}

	rec = httptest.NewRecorder()
	if err := a.summarizeAudit(rec, httptest.NewRequest("GET", Prefix+"/audit/summary?route=invoices&limit=2", nil), nil); err != nil {
		t.Fatal(err)
	}
	if trail.got.Route != "invoices" || trail.got.Limit != 2 {
		t.Errorf("filter %+v", trail.got)
	}
	var sum struct {
		Summary []AuditSummaryView `json:"summary"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	want := []AuditSummaryView{
		{ClientID: "kb-1", Route: "invoices", Method: "GET", Scopes: []string{"a", "b"}, Decision: "allow", Count: 3, First: at.UTC(), Last: at.Add(time.Minute).UTC()},
		{Route: "status", Method: "GET", Scopes: []string{}, Decision: "allow", Count: 1, First: at.UTC(), Last: at.UTC()},
	}
	if !reflect.DeepEqual(sum.Summary, want) {
		t.Errorf("summary\n got %+v\nwant %+v", sum.Summary, want)
	}
	if !strings.Contains(rec.Body.String(), `"scopes":[]`) {
		t.Errorf("a row without scopes must show scopes as []: %s", rec.Body)
	}

	// A bad query never reaches the store.
	trail.got = store.AuditFilter{}
	err := a.summarizeAudit(httptest.NewRecorder(), httptest.NewRequest("GET", Prefix+"/audit/summary?decision=maybe", nil), nil)
	var pd *problem.Details
	if !errors.As(err, &pd) || pd.Status != 400 || trail.got != (store.AuditFilter{}) {
		t.Errorf("bad query: %v, store saw %+v", err, trail.got)
	}

	// A server without a trail says so; it never answers an empty trail.
	a.Audit = nil
	for _, h := range []handlerFunc{a.listAuditEvents, a.summarizeAudit} {
		err := h(httptest.NewRecorder(), httptest.NewRequest("GET", Prefix+"/audit/events", nil), nil)
		if !errors.As(err, &pd) || pd.Status != http.StatusNotImplemented {
			t.Errorf("no trail: %v", err)
		}
	}
}
