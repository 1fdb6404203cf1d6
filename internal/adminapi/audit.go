package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// Bounds of an audit query.
const (
	// DefaultAuditLimit is how many events or summary rows a query without
	// a limit parameter returns.
	DefaultAuditLimit = 100
	// MaxAuditLimit bounds one answer: 10000 events of about 500 bytes of
	// JSON each stay well under the 8 MiB the CLI reads, and one query
	// cannot make the server build an unbounded response.
	MaxAuditLimit = 10000
)

// Audit query parameters, in the order their errors are reported.
const (
	paramClientID = "client_id"
	paramRoute    = "route"
	paramDecision = "decision"
	paramReason   = "reason"
	paramSince    = "since"
	paramUntil    = "until"
	paramLimit    = "limit"
)

var auditParams = []string{paramClientID, paramRoute, paramDecision, paramReason, paramSince, paramUntil, paramLimit}

// Decisions the gateway records.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
)

// auditTimeFloor and auditTimeCeiling bound since and until: no gateway
// event predates the Unix epoch, and every store keeps times as int64 Unix
// nanoseconds, which end in April 2262.
var (
	auditTimeFloor   = time.Unix(0, 0).UTC()
	auditTimeCeiling = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// AuditTrail reads the gateway's audit trail. The store behind Events
// implements it (store.Store does); see auditTrail.
type AuditTrail interface {
	ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error)
	SummarizeAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditSummaryRow, error)
}

// AuditEventView is one gateway decision as the admin API shows it: every
// field of store.AuditEvent under its audit-stream name, none left out when
// empty, so the shape is the same for every event. It holds no token: the
// token appears only as its jti.
type AuditEventView struct {
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

func auditEventView(ev store.AuditEvent) AuditEventView {
	scopes := ev.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return AuditEventView{
		ID: ev.ID, Time: ev.Time.UTC(), RequestID: ev.RequestID, ClientID: ev.ClientID, Owner: ev.Owner,
		CredentialType: ev.CredentialType, TokenJTI: ev.TokenJTI, Scopes: scopes, Route: ev.Route,
		Method: ev.Method, PathTemplate: ev.PathTemplate, ObjectID: ev.ObjectID, Status: ev.Status,
		BytesIn: ev.BytesIn, BytesOut: ev.BytesOut, LatencyMicros: ev.LatencyMicros, SourceAddr: ev.SourceAddr,
		Decision: ev.Decision, Reason: ev.Reason,
	}
}

// AuditSummaryView is one row of "who called which endpoint, with what
// scope, how often": the events of one client, route, method, scope list
// and decision, how many there were, and the first and last of them.
// Scopes is a list, as in AuditEventView.
type AuditSummaryView struct {
	ClientID string    `json:"client_id"`
	Route    string    `json:"route"`
	Method   string    `json:"method"`
	Scopes   []string  `json:"scopes"`
	Decision string    `json:"decision"`
	Count    int64     `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

func auditSummaryView(r store.AuditSummaryRow) AuditSummaryView {
	scopes := []string{}
	if r.Scopes != "" {
		scopes = strings.Split(r.Scopes, " ")
	}
	return AuditSummaryView{
		ClientID: r.ClientID, Route: r.Route, Method: r.Method, Scopes: scopes, Decision: r.Decision,
		Count: r.Count, First: r.First.UTC(), Last: r.Last.UTC(),
	}
}

// auditTrail returns the audit trail to query. Without one the endpoints
// answer 501, never an empty trail that would read as "nobody called
// anything".
func (a *API) auditTrail() (AuditTrail, error) {
	if a.Audit != nil {
		return a.Audit, nil
	}
	return nil, problem.New(http.StatusNotImplemented, "no-audit-trail", "No audit trail", "this server's store does not keep the gateway audit trail")
}

// now is the API's clock in UTC: Now when set (tests), else the wall clock.
func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// auditRequest parses an audit query and returns the trail to ask; a bad
// query is refused before the trail is looked at.
func (a *API) auditRequest(r *http.Request) (AuditTrail, store.AuditFilter, error) {
	f, err := ParseAuditQuery(r.URL.RawQuery, a.now())
	if err != nil {
		return nil, f, err
	}
	trail, err := a.auditTrail()
	return trail, f, err
}

// listAuditEvents serves GET /admin/v1/audit/events: the gateway decisions
// matching the query, newest first.
func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	trail, f, err := a.auditRequest(r)
	if err != nil {
		return err
	}
	evs, err := trail.ListAuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]AuditEventView, 0, len(evs))
	for _, ev := range evs {
		out = append(out, auditEventView(ev))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// summarizeAudit serves GET /admin/v1/audit/summary: the matching events
// grouped by client, route, method, scopes and decision, most frequent
// first; limit bounds the rows, not the events counted.
func (a *API) summarizeAudit(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	trail, f, err := a.auditRequest(r)
	if err != nil {
		return err
	}
	rows, err := trail.SummarizeAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]AuditSummaryView, 0, len(rows))
	for _, row := range rows {
		out = append(out, auditSummaryView(row))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"summary": out})
}

// ParseAuditQuery turns the query string of an audit request into a filter.
// client_id, route, decision (allow or deny) and reason (a reason code
// such as client_expired) match exactly; since
// (inclusive) and until (exclusive) are RFC 3339 times or durations before
// now ("24h", "7d"); limit is 1 to MaxAuditLimit, DefaultAuditLimit when
// absent. An empty value is the same as leaving the parameter out.
//
// Every problem is reported at once, as a 400 problem whose errors name the
// parameter and say what to fix. Unknown and repeated parameters are
// refused: a mistyped filter must not silently widen the answer.
func ParseAuditQuery(rawQuery string, now time.Time) (store.AuditFilter, error) {
	f := store.AuditFilter{Limit: DefaultAuditLimit}
	p, err := newQueryParser(rawQuery, auditParams)
	if err != nil {
		return f, err
	}
	f.ClientID = p.get(paramClientID)
	f.Route = p.get(paramRoute)
	switch d := p.get(paramDecision); d {
	case "", decisionAllow, decisionDeny:
		f.Decision = d
	default:
		p.bad(paramDecision, "must be allow or deny, not %q", d)
	}
	if r := p.get(paramReason); r != "" {
		if len(r) > 64 || strings.Trim(r, "abcdefghijklmnopqrstuvwxyz_") != "" {
			p.bad(paramReason, "must be a reason code such as client_expired or invalid_token, not %q", r)
		}
		f.Reason = r
	}
	var sinceOK, untilOK bool
	if v := p.get(paramSince); v != "" {
		f.Since, sinceOK = parseAuditTime(v, now, func(d string) { p.bad(paramSince, "%s", d) })
	}
	if v := p.get(paramUntil); v != "" {
		f.Until, untilOK = parseAuditTime(v, now, func(d string) { p.bad(paramUntil, "%s", d) })
	}
	if sinceOK && untilOK && !f.Until.After(f.Since) {
		p.bad(paramUntil, "must be after since (since is %s, until is %s)", f.Since.Format(time.RFC3339Nano), f.Until.Format(time.RFC3339Nano))
	}
	if v := p.get(paramLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			p.bad(paramLimit, "must be between 1 and %d, not %q", MaxAuditLimit, v)
		} else {
			f.Limit = n
		}
	}
	return f, p.done()
}

// badQuery is the problem of a refused query string; the caller adds the
// errors or the detail.
func badQuery() *problem.Details {
	return problem.New(http.StatusBadRequest, "invalid-parameter", "Invalid query parameter", "fix the query parameters listed in errors and send the request again")
}

// parseAuditTime reads an RFC 3339 time or a duration before now. On a
// problem it calls bad with what to fix and returns false.
func parseAuditTime(v string, now time.Time, bad func(string)) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		d, derr := parseAgo(v)
		if derr != nil {
			msg := "must be an RFC 3339 time such as 2026-03-01T12:00:00Z, or a duration before now such as 24h or 7d"
			if strings.Contains(v, " ") && strings.Contains(v, "T") {
				msg += "; a + in a time zone offset must be sent as %2B"
			}
			bad(msg + fmt.Sprintf(", not %q", v))
			return time.Time{}, false
		}
		t = now.Add(-d)
	}
	t = t.UTC()
	if t.Before(auditTimeFloor) || !t.Before(auditTimeCeiling) {
		bad(fmt.Sprintf("must be from %s up to %s, not %q", auditTimeFloor.Format(time.RFC3339), auditTimeCeiling.Format(time.RFC3339), v))
		return time.Time{}, false
	}
	return t, true
}

// parseAgo reads a positive duration: a Go duration ("90m", "24h") or a
// whole number of days ("7d").
func parseAgo(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > maxAgoDays {
			return 0, fmt.Errorf("adminapi: %q is not a positive number of days", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("adminapi: %q is not a positive duration", s)
	}
	return d, nil
}

// maxAgoDays keeps a number of days inside time.Duration (about 292 years).
const maxAgoDays = 100_000
