package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
)

// UsageStore is what the usage and posture endpoints read and write: the
// audit trail's usage rollups and the posture snapshots. store.Store
// implements it.
type UsageStore interface {
	posture.Reader
	AppendPostureSnapshot(ctx context.Context, s store.PostureSnapshot) (int64, error)
	LatestPostureSnapshot(ctx context.Context) (store.PostureSnapshot, error)
}

// RouteLister lists the gateway's running routes.
type RouteLister interface {
	RouteTable() []*route.Route
}

// Bounds of a usage query.
const (
	// DefaultUsageLimit is how many identities a usage answer lists when no
	// limit is given; the summary always counts them all.
	DefaultUsageLimit = 100
	// MaxUsageLimit bounds one answer: an identity with its routes and
	// scopes is a few hundred bytes to a few KiB of JSON, and the CLI reads
	// at most 8 MiB.
	MaxUsageLimit = 2000
)

// Usage and posture query parameters.
const (
	paramIdleDays   = "idle_days"
	paramMaxSources = "max_sources"
	paramFinding    = "finding"
	paramSnapshot   = "snapshot"
)

var (
	usageParams   = []string{paramClientID, paramIdleDays, paramMaxSources, paramFinding, paramLimit}
	postureParams = []string{paramIdleDays, paramMaxSources, paramSnapshot}
)

// UsageQuery is a parsed usage request.
type UsageQuery struct {
	ClientID string
	Options  posture.Options
	Finding  string
	Limit    int
}

// queryParser reads a query string strictly: repeated and unknown
// parameters are errors, and every problem is reported at once.
type queryParser struct {
	q       url.Values
	allowed []string
	errs    []problem.FieldError
}

func newQueryParser(raw string, allowed []string) (*queryParser, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		pd := badQuery()
		pd.Detail = "the query string is malformed; encode it as application/x-www-form-urlencoded (a literal ; or % is not allowed)"
		return nil, pd
	}
	return &queryParser{q: q, allowed: allowed}, nil
}

func (p *queryParser) bad(param, format string, args ...any) {
	p.errs = append(p.errs, problem.FieldError{Field: param, Detail: fmt.Sprintf(format, args...)})
}

func (p *queryParser) get(param string) string {
	vs := p.q[param]
	if len(vs) > 1 {
		p.bad(param, "is given %d times; give it once", len(vs))
		return ""
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// intIn reads param as an integer from lo to hi, or def when absent.
func (p *queryParser) intIn(param string, lo, hi, def int) int {
	v := p.get(param)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.bad(param, "must be a whole number from %d to %d, not %q", lo, hi, v)
		return def
	}
	return n
}

func (p *queryParser) done() error {
	var unknown []string
	for k := range p.q {
		if !slices.Contains(p.allowed, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		p.bad(k, "is not a parameter of this endpoint; use %s", strings.Join(p.allowed, ", "))
	}
	if len(p.errs) == 0 {
		return nil
	}
	pd := badQuery()
	pd.Errors = p.errs
	return pd
}

func (p *queryParser) options() posture.Options {
	return posture.Options{
		IdleDays:   p.intIn(paramIdleDays, 1, posture.MaxIdleDays, posture.DefaultIdleDays),
		MaxSources: p.intIn(paramMaxSources, 1, posture.MaxMaxSources, posture.DefaultMaxSources),
	}
}

// ParseUsageQuery reads the query of GET /admin/v1/usage: client_id (one
// identity), idle_days (N of "idle for N days", 1 to 3650, default 30),
// max_sources (1 to 1000000, default 10), finding (only identities with
// that finding: idle, unused_scopes, cross_environment or address_spread)
// and limit (1 to MaxUsageLimit, default DefaultUsageLimit). Unknown and
// repeated parameters are refused, every problem at once.
func ParseUsageQuery(raw string) (UsageQuery, error) {
	p, err := newQueryParser(raw, usageParams)
	if err != nil {
		return UsageQuery{}, err
	}
	u := UsageQuery{ClientID: p.get(paramClientID), Options: p.options()}
	if f := p.get(paramFinding); f != "" {
		if !slices.Contains(posture.Findings, f) {
			p.bad(paramFinding, "must be one of %s, not %q", strings.Join(posture.Findings, ", "), f)
		}
		u.Finding = f
	}
	u.Limit = p.intIn(paramLimit, 1, MaxUsageLimit, DefaultUsageLimit)
	return u, p.done()
}

func (a *API) usageStore() (UsageStore, error) {
	if a.Usage != nil {
		return a.Usage, nil
	}
	return nil, problem.New(http.StatusNotImplemented, "no-usage", "No usage analytics", "this server's store does not keep usage rollups of the gateway audit trail")
}

// routeSet returns the running gateway's routes, or an unknown set when no
// gateway runs here.
func (a *API) routeSet() *posture.Routes {
	if a.RouteTable == nil {
		return posture.NewRoutes(nil, false)
	}
	return posture.NewRoutes(a.RouteTable.RouteTable(), true)
}

// usageInput gathers what a usage computation or posture report reads:
// the identities (one, or all), the routes and the rollups.
func (a *API) usageInput(ctx context.Context, clientID string, opts posture.Options) (posture.Input, UsageStore, error) {
	us, err := a.usageStore()
	if err != nil {
		return posture.Input{}, nil, err
	}
	var clients []*identity.Client
	if clientID != "" {
		c, err := a.Inventory.Get(ctx, clientID)
		if err != nil {
			return posture.Input{}, nil, err
		}
		clients = []*identity.Client{c}
	} else if clients, err = a.Inventory.List(ctx, store.ClientFilter{}); err != nil {
		return posture.Input{}, nil, err
	}
	now := a.now()
	trail, err := posture.Load(ctx, us, clientID, now)
	if err != nil {
		return posture.Input{}, nil, err
	}
	return posture.Input{Now: now, Clients: clients, Routes: a.routeSet(), Trail: trail, Options: opts}, us, nil
}

// getUsage serves GET /admin/v1/usage: per-identity usage analytics from
// the audit trail's rollups.
func (a *API) getUsage(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	q, err := ParseUsageQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	in, _, err := a.usageInput(r.Context(), q.ClientID, q.Options)
	if err != nil {
		return err
	}
	rep := posture.ComputeUsage(in)
	rep.Filter(q.Finding, q.Limit)
	return writeJSON(w, http.StatusOK, rep)
}
