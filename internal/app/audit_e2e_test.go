package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
)

// auditEventWire is an event of GET /admin/v1/audit/events as a client
// decodes it, by wire name.
type auditEventWire struct {
	ID             int64     `json:"id"`
	Time           time.Time `json:"time"`
	RequestID      string    `json:"request_id"`
	ClientID       string    `json:"client_id"`
	Owner          string    `json:"owner"`
	CredentialType string    `json:"credential_type"`
	TokenJTI       string    `json:"token_jti"`
	Scopes         []string  `json:"scopes"`
	Route          string    `json:"route"`
	Method         string    `json:"method"`
	PathTemplate   string    `json:"path_template"`
	ObjectID       string    `json:"object_id"`
	Status         int       `json:"status"`
	BytesIn        int64     `json:"bytes_in"`
	BytesOut       int64     `json:"bytes_out"`
	LatencyMicros  int64     `json:"latency_micros"`
	SourceAddr     string    `json:"source_addr"`
	Decision       string    `json:"decision"`
	Reason         string    `json:"reason"`
}

// auditRowWire is a row of GET /admin/v1/audit/summary, by wire name.
type auditRowWire struct {
	ClientID string    `json:"client_id"`
	Route    string    `json:"route"`
	Method   string    `json:"method"`
	Scopes   []string  `json:"scopes"`
	Decision string    `json:"decision"`
	Count    int64     `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// key names the group a row or event belongs to.
func (r auditRowWire) key() string {
	return r.ClientID + "|" + r.Route + "|" + r.Method + "|" + r.Decision
}

// jwsPattern matches a compact JWS such as an access token: a base64url
// JSON header ("eyJ"), a payload and the start of a signature.
var jwsPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.`)

// auditQuery calls GET /admin/v1/audit/{endpoint} with q as the admin
// identity and fails unless it answers 200 with JSON that is no-store and
// holds no token.
func (g *gwHarness) auditQuery(endpoint string, q url.Values, into any) {
	g.t.Helper()
	r := g.adminRaw("GET", "/audit/"+endpoint+"?"+q.Encode(), "", nil)
	if r.status != http.StatusOK {
		g.t.Fatalf("audit %s?%s: %d %s", endpoint, q.Encode(), r.status, r.body)
	}
	if ct, cc := r.header.Get("Content-Type"), r.header.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		g.t.Errorf("audit %s: Content-Type %q, Cache-Control %q", endpoint, ct, cc)
	}
	if jwsPattern.Match(r.body) {
		g.t.Errorf("audit %s answer holds a JWS: %s", endpoint, r.body)
	}
	if err := json.Unmarshal(r.body, into); err != nil {
		g.t.Fatalf("audit %s: %v: %s", endpoint, err, r.body)
	}
}

func (g *gwHarness) auditEventsAPI(q url.Values) []auditEventWire {
	g.t.Helper()
	var out struct {
		Events []auditEventWire `json:"events"`
	}
	g.auditQuery("events", q, &out)
	if out.Events == nil {
		g.t.Fatalf("audit events?%s: no events list", q.Encode())
	}
	return out.Events
}

func (g *gwHarness) auditSummaryAPI(q url.Values) []auditRowWire {
	g.t.Helper()
	var out struct {
		Summary []auditRowWire `json:"summary"`
	}
	g.auditQuery("summary", q, &out)
	if out.Summary == nil {
		g.t.Fatalf("audit summary?%s: no summary list", q.Encode())
	}
	return out.Summary
}

// waitForAuditEvents waits until the trail holds n events: the gateway
// writes them in batches after answering.
func (g *gwHarness) waitForAuditEvents(n int) {
	g.t.Helper()
	var got int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = len(g.auditEventsAPI(url.Values{"limit": {"10000"}})); got >= n {
			break
		}
	}
	if got != n {
		g.t.Fatalf("the audit trail holds %d events, want %d", got, n)
	}
}

// expectStatus sends method path through c (nil: no credentials) and
// fails unless the gateway answers want.
func (g *gwHarness) expectStatus(c *http.Client, method, path string, want int) {
	g.t.Helper()
	req, _ := http.NewRequest(method, g.gw+path, nil)
	if c == nil {
		c = g.httpClient(nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		g.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
}

// TestAuditTrailQueries drives the real gateway with allowed and denied
// calls from two identities and an anonymous caller, then asks the admin
// API who called what, as an operator would.
func TestAuditTrailQueries(t *testing.T) {
	g := startGateway(t, nil)
	start := time.Now().UTC()
	readerHC, reader, _ := g.dpopClient("invoices:read")
	reporterHC, reporter, _ := g.dpopClient("reports:read")

	// Before mid: the reader reads two invoices, then tries to write one
	// and to read a report, which its scope does not allow.
	g.expectStatus(readerHC, "GET", "/invoices/1", 200)
	g.expectStatus(readerHC, "GET", "/invoices/2", 200)
	g.expectStatus(readerHC, "POST", "/invoices/3", 403)
	g.expectStatus(readerHC, "GET", "/reports/9", 403)
	g.waitForAuditEvents(4)
	mid := time.Now().UTC()
	// After mid: the reporter reads past its burst of 2, and someone reads
	// the public status page.
	g.expectStatus(reporterHC, "GET", "/reports/7", 200)
	g.expectStatus(reporterHC, "GET", "/reports/7", 200)
	g.expectStatus(reporterHC, "GET", "/reports/7", 429)
	g.expectStatus(nil, "GET", "/status", 200)
	g.waitForAuditEvents(8)
	end := time.Now().UTC()
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	A, B := reader.id, reporter.id
	if tok := g.tokenFor(reader, newEC(t)); !jwsPattern.MatchString(tok) {
		t.Fatalf("jwsPattern does not match an access token, so it proves nothing: %.20s...", tok)
	}

	t.Run("summary: who called what, with which scope, how often", func(t *testing.T) {
		rows := g.auditSummaryAPI(nil)
		want := map[string]struct {
			count  int64
			scopes []string
		}{
			A + "|invoices|GET|allow": {2, []string{"invoices:read"}},
			A + "|invoices|POST|deny": {1, []string{"invoices:read"}},
			A + "|reports|GET|deny":   {1, []string{"invoices:read"}},
			B + "|reports|GET|allow":  {2, []string{"reports:read"}},
			B + "|reports|GET|deny":   {1, []string{"reports:read"}},
			"|status|GET|allow":       {1, []string{}},
		}
		if len(rows) != len(want) {
			t.Errorf("%d rows, want %d: %+v", len(rows), len(want), rows)
		}
		for i, r := range rows {
			w, ok := want[r.key()]
			if !ok {
				t.Errorf("unexpected row %+v", r)
				continue
			}
			if r.Count != w.count || !slices.Equal(r.Scopes, w.scopes) || r.Scopes == nil {
				t.Errorf("row %s: count %d scopes %q, want %d %q", r.key(), r.Count, r.Scopes, w.count, w.scopes)
			}
			if r.First.Before(start) || r.Last.After(end) || r.Last.Before(r.First) {
				t.Errorf("row %s: first %v last %v, outside %v..%v", r.key(), r.First, r.Last, start, end)
			}
			if i > 0 && rows[i-1].Count < r.Count {
				t.Errorf("rows are not most frequent first: %+v", rows)
			}
		}
	})

	t.Run("summary filters", func(t *testing.T) {
		tests := []struct {
			name  string
			query url.Values
			want  []string // keys with counts, in order
		}{
			{"one client", url.Values{"client_id": {B}}, []string{B + "|reports|GET|allow=2", B + "|reports|GET|deny=1"}},
			{"one route since mid", url.Values{"route": {"reports"}, "since": {rfc(mid)}}, []string{B + "|reports|GET|allow=2", B + "|reports|GET|deny=1"}},
			{"one route until mid", url.Values{"route": {"reports"}, "until": {rfc(mid)}}, []string{A + "|reports|GET|deny=1"}},
			{"client and decision", url.Values{"client_id": {A}, "decision": {"deny"}}, []string{A + "|invoices|POST|deny=1", A + "|reports|GET|deny=1"}},
			{"nothing", url.Values{"client_id": {"kb-nobody"}}, []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := []string{}
				for _, r := range g.auditSummaryAPI(tt.query) {
					got = append(got, r.key()+"="+strconv.FormatInt(r.Count, 10))
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("summary?%s = %q, want %q", tt.query.Encode(), got, tt.want)
				}
			})
		}
		deny := g.auditSummaryAPI(url.Values{"decision": {"deny"}})
		if len(deny) != 3 {
			t.Errorf("deny rows %+v, want 3", deny)
		}
		for _, r := range deny {
			if r.Decision != "deny" || r.Count != 1 {
				t.Errorf("deny row %+v", r)
			}
		}
		if top := g.auditSummaryAPI(url.Values{"limit": {"1"}}); len(top) != 1 || top[0].Count != 2 {
			t.Errorf("limit=1: %+v, want the one most frequent row", top)
		}
	})

	all := g.auditEventsAPI(nil)
	t.Run("events: newest first, every field", func(t *testing.T) {
		if len(all) != 8 {
			t.Fatalf("%d events, want 8", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].Time.After(all[i-1].Time) {
				t.Errorf("event %d (%v) is newer than event %d (%v)", i, all[i].Time, i-1, all[i-1].Time)
			}
		}
		// The newest is the anonymous status call, with no identity.
		if e := all[0]; e.ClientID != "" || e.Route != "status" || e.Decision != "allow" || e.TokenJTI != "" || len(e.Scopes) != 0 {
			t.Errorf("newest event %+v, want the anonymous status call", e)
		}
		// The oldest is the reader's first call; compare it field by field
		// with what the gateway wrote to its JSON-lines file.
		e := all[len(all)-1]
		if e.ID <= 0 || e.RequestID == "" || e.ClientID != A || e.Owner != "team-a@example.com" || e.CredentialType != "dpop" ||
			e.TokenJTI == "" || !slices.Equal(e.Scopes, []string{"invoices:read"}) || e.Route != "invoices" || e.Method != "GET" ||
			e.PathTemplate != "/invoices/{id}" || e.ObjectID != "1" || e.Status != 200 || e.BytesOut <= 0 || e.LatencyMicros < 0 ||
			!strings.HasPrefix(e.SourceAddr, "127.0.0.1:") || e.Decision != "allow" || e.Reason != "ok" || e.Time.Before(start) {
			t.Errorf("oldest event %+v", e)
		}
		var fromFile map[string]any
		for _, f := range g.auditEvents(A) {
			if f["request_id"] == e.RequestID {
				fromFile = f
			}
		}
		if fromFile == nil || fromFile["token_jti"] != e.TokenJTI || fromFile["object_id"] != e.ObjectID || fromFile["source_addr"] != e.SourceAddr {
			t.Errorf("the API's event %+v differs from the trail file's %v", e, fromFile)
		}
		// Every key is present even when empty.
		r := g.adminRaw("GET", "/audit/events?limit=1", "", nil)
		var raw struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(r.body, &raw); err != nil || len(raw.Events) != 1 {
			t.Fatalf("%v: %s", err, r.body)
		}
		for _, k := range []string{"id", "time", "request_id", "client_id", "owner", "credential_type", "token_jti", "scopes", "route", "method",
			"path_template", "object_id", "status", "bytes_in", "bytes_out", "latency_micros", "source_addr", "decision", "reason"} {
			if _, ok := raw.Events[0][k]; !ok {
				t.Errorf("event lacks %q: %s", k, r.body)
			}
		}
	})

	t.Run("event filters", func(t *testing.T) {
		tests := []struct {
			name    string
			query   url.Values
			want    int
			reasons []string // sorted reasons of the events, when checked
		}{
			{"client", url.Values{"client_id": {A}}, 4, nil},
			{"client denials", url.Values{"client_id": {A}, "decision": {"deny"}}, 2, []string{"insufficient_scope", "insufficient_scope"}},
			{"allowed", url.Values{"decision": {"allow"}}, 5, []string{"ok", "ok", "ok", "ok", "ok"}},
			{"denied", url.Values{"decision": {"deny"}}, 3, []string{"insufficient_scope", "insufficient_scope", "rate_limited"}},
			{"route", url.Values{"route": {"reports"}}, 4, nil},
			{"route denials", url.Values{"route": {"reports"}, "decision": {"deny"}}, 2, []string{"insufficient_scope", "rate_limited"}},
			{"since mid", url.Values{"since": {rfc(mid)}}, 4, nil},
			{"until mid", url.Values{"until": {rfc(mid)}}, 4, nil},
			{"whole range", url.Values{"since": {rfc(start)}, "until": {rfc(end)}}, 8, nil},
			{"relative since", url.Values{"since": {"1h"}}, 8, nil},
			{"after everything", url.Values{"since": {rfc(end)}}, 0, nil},
			{"before everything", url.Values{"until": {rfc(start)}}, 0, nil},
			{"unknown client", url.Values{"client_id": {"kb-nobody"}}, 0, nil},
			{"limit", url.Values{"limit": {"3"}}, 3, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				evs := g.auditEventsAPI(tt.query)
				if len(evs) != tt.want {
					t.Fatalf("events?%s: %d, want %d", tt.query.Encode(), len(evs), tt.want)
				}
				var reasons []string
				for _, e := range evs {
					reasons = append(reasons, e.Reason)
					if c := tt.query.Get("client_id"); c != "" && e.ClientID != c {
						t.Errorf("event of %q under client_id=%s", e.ClientID, c)
					}
					if d := tt.query.Get("decision"); d != "" && e.Decision != d {
						t.Errorf("%s event under decision=%s", e.Decision, d)
					}
					if rt := tt.query.Get("route"); rt != "" && e.Route != rt {
						t.Errorf("route %s under route=%s", e.Route, rt)
					}
				}
				if tt.reasons != nil {
					slices.Sort(reasons)
					if !slices.Equal(reasons, tt.reasons) {
						t.Errorf("reasons %q, want %q", reasons, tt.reasons)
					}
				}
			})
		}
		// since and until split the trail at mid: the reader's calls before,
		// the reporter's and the anonymous one after.
		for _, e := range g.auditEventsAPI(url.Values{"until": {rfc(mid)}}) {
			if e.ClientID != A {
				t.Errorf("before mid: %+v", e)
			}
		}
		for _, e := range g.auditEventsAPI(url.Values{"since": {rfc(mid)}}) {
			if e.ClientID == A {
				t.Errorf("after mid: %+v", e)
			}
		}
		// limit keeps the newest.
		if top := g.auditEventsAPI(url.Values{"limit": {"3"}}); top[0].ID != all[0].ID || top[2].ID != all[2].ID {
			t.Errorf("limit=3 gave %d..%d, want the newest %d..%d", top[0].ID, top[2].ID, all[0].ID, all[2].ID)
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		tests := []struct {
			name   string
			query  string
			field  string
			detail string
		}{
			{"decision", "decision=maybe", "decision", "must be allow or deny"},
			{"limit zero", "limit=0", "limit", "must be between 1 and 10000"},
			{"limit too large", "limit=10001", "limit", "must be between 1 and 10000"},
			{"limit not a number", "limit=all", "limit", "must be between 1 and 10000"},
			{"since not a time", "since=yesterday", "since", "RFC 3339"},
			{"until not a time", "until=later", "until", "RFC 3339"},
			{"until before since", url.Values{"since": {rfc(end)}, "until": {rfc(start)}}.Encode(), "until", "must be after since"},
			{"unencoded offset", "since=2026-01-01T00:00:00+01:00", "since", "%2B"},
			{"unknown parameter", "client=" + A, "client", "not a parameter"},
			{"repeated parameter", "decision=allow&decision=deny", "decision", "give it once"},
		}
		for _, tt := range tests {
			for _, endpoint := range []string{"events", "summary"} {
				t.Run(tt.name+" "+endpoint, func(t *testing.T) {
					r := g.adminRaw("GET", "/audit/"+endpoint+"?"+tt.query, "", nil)
					if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" {
						t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
					}
					p := r.problem(t)
					if p.Status != 400 || p.Type != "urn:keybound:problem:invalid-parameter" || p.Instance != adminapi.Prefix+"/audit/"+endpoint {
						t.Errorf("problem %+v", p)
					}
					if len(p.Errors) != 1 || p.Errors[0].Field != tt.field || !strings.Contains(p.Errors[0].Detail, tt.detail) {
						t.Errorf("errors %+v, want %s ...%s...", p.Errors, tt.field, tt.detail)
					}
				})
			}
		}
		r := g.adminRaw("GET", "/audit/events?decision=maybe&limit=0&since=x", "", nil)
		var fields []string
		for _, e := range r.problem(t).Errors {
			fields = append(fields, e.Field)
		}
		if !slices.Equal(fields, []string{"decision", "since", "limit"}) {
			t.Errorf("every bad parameter is named at once: got %q", fields)
		}
	})

	t.Run("only admins read the trail", func(t *testing.T) {
		for _, endpoint := range []string{"events", "summary"} {
			if r := g.do(nil, "GET", adminapi.Prefix+"/audit/"+endpoint, "", nil, nil); r.status != 401 || strings.Contains(string(r.body), `"events"`) {
				t.Errorf("%s without a token: %d %s", endpoint, r.status, r.body)
			}
			// A gateway caller's own valid token lacks keybound:admin.
			if r := g.do(readerHC, "GET", adminapi.Prefix+"/audit/"+endpoint, "", nil, nil); r.status != 403 || r.problem(t).Code != "insufficient_scope" {
				t.Errorf("%s with a non-admin token: %d %s", endpoint, r.status, r.body)
			}
		}
	})
}
