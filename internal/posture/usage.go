// Package posture measures how machine identities are used and how well
// they are protected. From the inventory, the gateway's route table and the
// audit trail's usage rollups (store.UsageStore) it computes per-identity
// usage analytics (last use; calls per route and per scope over 7, 30 and
// 90 days; granted scopes never used; idle identities; identities whose
// credentials reach another environment or an unusual spread of source
// addresses) and the posture report, with its Markdown and HTML renderings
// and the trend against the previous report.
//
// It reads and computes; it must not change an identity or the trail. It
// never reports a figure it cannot measure as a zero: what the data does
// not hold is reported as not tracked, with the reason.
package posture

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/store"
)

// Usage findings: the reasons an identity is flagged.
const (
	FindingIdle             = "idle"
	FindingUnusedScopes     = "unused_scopes"
	FindingCrossEnvironment = "cross_environment"
	FindingAddressSpread    = "address_spread"
)

// Findings lists the usage findings in the order they are reported.
var Findings = []string{FindingIdle, FindingUnusedScopes, FindingCrossEnvironment, FindingAddressSpread}

// ownScopePrefix marks keybound's own scopes (keybound:admin,
// keybound:introspect). They are exercised at the token service and the
// admin API, which do not write to the gateway audit trail, so their use
// cannot be observed there.
const ownScopePrefix = "keybound:"

// Counts is a number of events per usage window.
type Counts struct {
	D7  int64 `json:"7d"`
	D30 int64 `json:"30d"`
	D90 int64 `json:"90d"`
}

func (c *Counts) add(v []int64) {
	c.D7 += v[0]
	c.D30 += v[1]
	c.D90 += v[2]
}

// Reader is the part of the store that usage reads.
type Reader interface {
	UsageCounts(ctx context.Context, f store.UsageFilter) ([]store.UsageCount, error)
	UsageSources(ctx context.Context, f store.UsageFilter) ([]store.UsageSource, error)
	ClientActivity(ctx context.Context, clientID string) ([]store.ClientActivity, error)
}

// Trail is what the audit trail's rollups say, as Load reads it: counts per
// Windows, source addresses, and all-time activity.
type Trail struct {
	Counts   []store.UsageCount
	Sources  []store.UsageSource
	Activity []store.ClientActivity
}

// Load reads the rollups of clientID ("" for every client) for the Windows
// ending on the UTC day of now.
func Load(ctx context.Context, r Reader, clientID string, now time.Time) (*Trail, error) {
	f := store.UsageFilter{ClientID: clientID, Now: now, Days: Windows}
	counts, err := r.UsageCounts(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	sources, err := r.UsageSources(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	act, err := r.ClientActivity(ctx, clientID)
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	return &Trail{Counts: counts, Sources: sources, Activity: act}, nil
}

// Routes is the gateway route table as posture reads it. Known is false
// when no gateway runs in this process: nothing can then be said about the
// scopes a call exercised, a route's sensitivity or its environment, and
// the figures that need them are reported as not tracked.
type Routes struct {
	Known  bool
	List   []*route.Route
	byName map[string]*route.Route
}

// NewRoutes indexes list. known says whether a route table exists at all
// (a running gateway with an empty table is known and empty).
func NewRoutes(list []*route.Route, known bool) *Routes {
	r := &Routes{Known: known, List: list, byName: make(map[string]*route.Route, len(list))}
	for _, rt := range list {
		r.byName[rt.Name] = rt
	}
	return r
}

func (r *Routes) get(name string) *route.Route {
	if r == nil {
		return nil
	}
	return r.byName[name]
}

// environmentsTagged reports whether any route names its environment.
func (r *Routes) environmentsTagged() bool {
	if r == nil {
		return false
	}
	return slices.ContainsFunc(r.List, func(rt *route.Route) bool { return rt.Environment != "" })
}

// Options are the thresholds of the usage rules; zero fields take the
// defaults.
type Options struct {
	// IdleDays is N of "idle: no allowed request in N days".
	IdleDays int
	// MaxSources is the most distinct source addresses in 30 days that are
	// not an unusual spread.
	MaxSources int
}

func (o Options) withDefaults() Options {
	if o.IdleDays <= 0 {
		o.IdleDays = DefaultIdleDays
	}
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	return o
}

// Input is what a usage computation or a posture report reads.
type Input struct {
	Now     time.Time
	Clients []*identity.Client
	Routes  *Routes
	Trail   *Trail
	Options Options
	// LeaksTracked says whether the inventory records leaked secrets (the
	// secret scanner's matches); Leaks then holds, per client id, when the
	// identity's current secret was recorded as leaked.
	LeaksTracked bool
	Leaks        map[string]time.Time
	// ReviewsTracked says whether access reviews are recorded;
	// OverdueReviews then holds the ids of identities whose review is
	// overdue (lapsed ones included). OwnersTracked says whether the owner
	// directory is kept; Orphaned then holds the ids of identities whose
	// owner departed.
	ReviewsTracked bool
	OverdueReviews map[string]bool
	OwnersTracked  bool
	Orphaned       map[string]bool
	// ExpiredUsedTracked says whether the gateway audit trail was asked
	// for refusals of expired identities; ExpiredUsed then holds, per
	// client id, how many requests the gateway refused in the period
	// because the identity had expired (reason client_expired).
	ExpiredUsedTracked bool
	ExpiredUsed        map[string]int64
}

// UsageReport is the usage analytics of a set of identities.
type UsageReport struct {
	GeneratedAt time.Time `json:"generated_at"`
	WindowsDays []int     `json:"windows_days"`
	IdleDays    int       `json:"idle_days"`
	MaxSources  int       `json:"max_sources"`
	// RoutesKnown is false when no gateway route table was available: the
	// scopes calls exercised (and so unused scopes) and route environments
	// are then unknown.
	RoutesKnown bool `json:"routes_known"`
	// EnvironmentsTagged is true when at least one route names its
	// environment; without it, cross-environment use cannot be seen.
	EnvironmentsTagged bool            `json:"environments_tagged"`
	Summary            UsageSummary    `json:"summary"`
	Identities         []IdentityUsage `json:"identities"`
	// Truncated is set when Identities stops at a limit; Summary still
	// counts every identity.
	Truncated bool `json:"truncated"`
}

// UsageSummary counts the identities of a report and its findings.
type UsageSummary struct {
	Identities       int `json:"identities"`
	UsedIn90Days     int `json:"used_90d"`
	NotObservable    int `json:"not_observable"`
	Idle             int `json:"idle"`
	UnusedScopes     int `json:"unused_scopes"`
	CrossEnvironment int `json:"cross_environment"`
	AddressSpread    int `json:"address_spread"`
}

// IdentityUsage is one identity's use of the gateway.
type IdentityUsage struct {
	ClientID    string              `json:"client_id"`
	Name        string              `json:"name"`
	Owner       string              `json:"owner"`
	Environment string              `json:"environment"`
	Vendor      string              `json:"vendor,omitempty"`
	Status      identity.Status     `json:"status"`
	AuthMethod  identity.AuthMethod `json:"auth_method"`
	Binding     identity.Binding    `json:"binding"`
	CreatedAt   time.Time           `json:"created_at"`
	ExpiresAt   time.Time           `json:"expires_at"`

	// LastUsed is the newest allowed request, ever; nil if none.
	LastUsed *time.Time `json:"last_used"`
	// LastSeen is the newest request whatever the decision; nil if none.
	LastSeen *time.Time `json:"last_seen"`
	Allowed  Counts     `json:"allowed"`
	Denied   Counts     `json:"denied"`

	Routes []RouteUsage `json:"routes"`
	Scopes []ScopeUsage `json:"scopes"`
	// UnusedScopes are granted scopes that no allowed request exercised in
	// 90 days; nil (JSON null) when that cannot be known (no route table,
	// or the identity is not observable).
	UnusedScopes []string `json:"unused_scopes"`
	// Observable is false for identities whose scopes are all keybound's
	// own: they are used at the token service and admin API, which the
	// gateway trail does not see, so they are never called idle.
	Observable bool `json:"observable"`
	Idle       bool `json:"idle"`

	// Environments are the environments of the routes the gateway allowed
	// this identity to call in 90 days; Attempted are those it was only
	// refused on.
	Environments          []string `json:"environments"`
	AttemptedEnvironments []string `json:"attempted_environments"`
	CrossEnvironment      bool     `json:"cross_environment"`

	Sources       SourceSpread `json:"sources"`
	AddressSpread bool         `json:"address_spread"`
	// SpreadReason says which spread rule fired, for a reader.
	SpreadReason string `json:"spread_reason,omitempty"`

	// Findings are the usage findings, in Findings order.
	Findings []string `json:"findings"`
}

// RouteUsage is one identity's requests to one route and method.
type RouteUsage struct {
	Route  string `json:"route"`
	Method string `json:"method"`
	// Configured is false for a route the running table no longer has (or
	// when no table is known); Sensitivity and Environment are then "".
	Configured  bool   `json:"configured"`
	Sensitivity string `json:"sensitivity"`
	Environment string `json:"environment"`
	Allowed     Counts `json:"allowed"`
	Denied      Counts `json:"denied"`
	// CredentialTypes are how the requests were authenticated (dpop, mtls,
	// bearer, static_key).
	CredentialTypes []string  `json:"credential_types"`
	Last            time.Time `json:"last"`
}

// ScopeUsage is the allowed requests that exercised one scope: requests to
// a route and method that requires it.
type ScopeUsage struct {
	Scope string `json:"scope"`
	// Granted is false for a scope exercised by requests but no longer
	// registered to the identity.
	Granted bool   `json:"granted"`
	Calls   Counts `json:"calls"`
}

// SourceSpread is how many distinct source addresses (hosts, without the
// port) an identity's requests came from.
type SourceSpread struct {
	Distinct Counts `json:"distinct"`
	// New7d are the addresses of the 90 days first seen ever in the last 7
	// days; Before are the others: addresses of the 90 days already seen
	// before those 7.
	New7d  int `json:"new_7d"`
	Before int `json:"before_7d"`
}

// dayStart is midnight UTC of the day n days before now's UTC day: the
// first instant of an n+1-day window.
func dayStart(now time.Time, n int) time.Time {
	u := now.UTC()
	return time.Date(u.Year(), u.Month(), u.Day()-n, 0, 0, 0, 0, time.UTC)
}

func isOwnScope(s string) bool { return strings.HasPrefix(s, ownScopePrefix) }

// observable reports whether the gateway trail can see c's use.
func observable(c *identity.Client) bool {
	return len(c.Scopes) == 0 || slices.ContainsFunc(c.Scopes, func(s string) bool { return !isOwnScope(s) })
}

// ComputeUsage computes the usage of in.Clients, in their order.
func ComputeUsage(in Input) *UsageReport {
	o := in.Options.withDefaults()
	trail := in.Trail
	if trail == nil {
		trail = &Trail{}
	}
	rows := make(map[string][]*store.UsageCount)
	for i := range trail.Counts {
		r := &trail.Counts[i]
		if r.ClientID != "" {
			rows[r.ClientID] = append(rows[r.ClientID], r)
		}
	}
	sources := make(map[string][]*store.UsageSource)
	for i := range trail.Sources {
		s := &trail.Sources[i]
		sources[s.ClientID] = append(sources[s.ClientID], s)
	}
	act := make(map[string]*store.ClientActivity, len(trail.Activity))
	for i := range trail.Activity {
		act[trail.Activity[i].ClientID] = &trail.Activity[i]
	}
	rep := &UsageReport{
		GeneratedAt:        in.Now.UTC(),
		WindowsDays:        slices.Clone(Windows),
		IdleDays:           o.IdleDays,
		MaxSources:         o.MaxSources,
		RoutesKnown:        in.Routes != nil && in.Routes.Known,
		EnvironmentsTagged: in.Routes.environmentsTagged(),
		Identities:         make([]IdentityUsage, 0, len(in.Clients)),
	}
	for _, c := range in.Clients {
		iu := identityUsage(in.Now, c, in.Routes, rows[c.ID], sources[c.ID], act[c.ID], o)
		s := &rep.Summary
		s.Identities++
		if iu.Allowed.D90 > 0 {
			s.UsedIn90Days++
		}
		if !iu.Observable {
			s.NotObservable++
		}
		for _, f := range iu.Findings {
			switch f {
			case FindingIdle:
				s.Idle++
			case FindingUnusedScopes:
				s.UnusedScopes++
			case FindingCrossEnvironment:
				s.CrossEnvironment++
			case FindingAddressSpread:
				s.AddressSpread++
			}
		}
		rep.Identities = append(rep.Identities, iu)
	}
	return rep
}

func identityUsage(now time.Time, c *identity.Client, routes *Routes, rows []*store.UsageCount, sources []*store.UsageSource,
	act *store.ClientActivity, o Options) IdentityUsage {
	iu := IdentityUsage{
		ClientID: c.ID, Name: c.Name, Owner: c.Owner, Environment: c.Environment, Vendor: c.Vendor,
		Status: c.Status, AuthMethod: c.AuthMethod, Binding: c.Binding, CreatedAt: c.CreatedAt.UTC(), ExpiresAt: c.ExpiresAt.UTC(),
		Observable: observable(c), Routes: []RouteUsage{}, Scopes: []ScopeUsage{}, Environments: []string{},
		AttemptedEnvironments: []string{}, Findings: []string{},
	}
	if act != nil {
		last := act.Last.UTC()
		iu.LastSeen = &last
		if !act.LastAllowed.IsZero() {
			used := act.LastAllowed.UTC()
			iu.LastUsed = &used
		}
	}

	type rk struct{ route, method string }
	byRoute := make(map[rk]*RouteUsage)
	exercised := make(map[string]*Counts)
	carried := make(map[string]bool) // scopes of tokens used on routes no longer configured
	reached, attempted := map[string]bool{}, map[string]bool{}
	for _, r := range rows {
		k := rk{r.Route, r.Method}
		ru := byRoute[k]
		rt := routes.get(r.Route)
		if ru == nil {
			ru = &RouteUsage{Route: r.Route, Method: r.Method, CredentialTypes: []string{}}
			if rt != nil {
				ru.Configured, ru.Sensitivity, ru.Environment = true, rt.Sensitivity.String(), rt.Environment
			}
			byRoute[k] = ru
		}
		if r.Last.After(ru.Last) {
			ru.Last = r.Last.UTC()
		}
		if r.CredentialType != "" && !slices.Contains(ru.CredentialTypes, r.CredentialType) {
			ru.CredentialTypes = append(ru.CredentialTypes, r.CredentialType)
		}
		if r.Decision != "allow" {
			ru.Denied.add(r.Counts)
			iu.Denied.add(r.Counts)
			if rt != nil && rt.Environment != "" {
				attempted[rt.Environment] = true
			}
			continue
		}
		ru.Allowed.add(r.Counts)
		iu.Allowed.add(r.Counts)
		switch {
		case rt != nil:
			for _, s := range rt.RequiredScopes(r.Method) {
				if exercised[s] == nil {
					exercised[s] = &Counts{}
				}
				exercised[s].add(r.Counts)
			}
			if rt.Environment != "" {
				reached[rt.Environment] = true
			}
		case routes != nil && routes.Known:
			// The route is gone, so which scope the call needed is unknown.
			// Count every scope its token carried as possibly used rather
			// than call one unused that was not.
			for _, s := range strings.Fields(r.Scopes) {
				carried[s] = true
			}
		}
	}
	for _, ru := range byRoute {
		slices.Sort(ru.CredentialTypes)
		iu.Routes = append(iu.Routes, *ru)
	}
	slices.SortFunc(iu.Routes, func(a, b RouteUsage) int {
		return cmp.Or(cmp.Compare(b.Allowed.D90+b.Denied.D90, a.Allowed.D90+a.Denied.D90), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
	})

	for _, s := range c.Scopes {
		su := ScopeUsage{Scope: s, Granted: true}
		if n := exercised[s]; n != nil {
			su.Calls = *n
		}
		iu.Scopes = append(iu.Scopes, su)
	}
	var extra []string
	for s := range exercised {
		if !slices.Contains(c.Scopes, s) {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	for _, s := range extra {
		iu.Scopes = append(iu.Scopes, ScopeUsage{Scope: s, Calls: *exercised[s]})
	}

	oldEnough := !c.CreatedAt.After(now.Add(-time.Duration(o.IdleDays) * 24 * time.Hour))
	active := c.Status == identity.StatusActive
	if routes != nil && routes.Known && iu.Observable {
		iu.UnusedScopes = []string{}
		for _, s := range c.Scopes {
			if isOwnScope(s) || carried[s] {
				continue
			}
			if n := exercised[s]; n == nil || n.D90 == 0 {
				iu.UnusedScopes = append(iu.UnusedScopes, s)
			}
		}
	}

	iu.Idle = active && iu.Observable && oldEnough &&
		(iu.LastUsed == nil || iu.LastUsed.Before(now.Add(-time.Duration(o.IdleDays)*24*time.Hour)))

	for e := range reached {
		iu.Environments = append(iu.Environments, e)
		if !strings.EqualFold(e, c.Environment) {
			iu.CrossEnvironment = true
		}
	}
	for e := range attempted {
		if !reached[e] {
			iu.AttemptedEnvironments = append(iu.AttemptedEnvironments, e)
		}
	}
	slices.Sort(iu.Environments)
	slices.Sort(iu.AttemptedEnvironments)

	start7, start30, start90 := dayStart(now, Windows[0]-1), dayStart(now, Windows[1]-1), dayStart(now, Windows[2]-1)
	end := dayStart(now, -1)
	for _, s := range sources {
		if s.Last.Before(start90) || !s.Last.Before(end) {
			continue
		}
		iu.Sources.Distinct.D90++
		if !s.Last.Before(start30) {
			iu.Sources.Distinct.D30++
		}
		if !s.Last.Before(start7) {
			iu.Sources.Distinct.D7++
		}
		if s.First.Before(start7) {
			iu.Sources.Before++
		} else {
			iu.Sources.New7d++
		}
	}
	sp := iu.Sources
	switch {
	case sp.Distinct.D30 > int64(o.MaxSources):
		iu.AddressSpread = true
		iu.SpreadReason = fmt.Sprintf("used from %d source addresses in 30 days, more than %d", sp.Distinct.D30, o.MaxSources)
	case sp.Before > 0 && sp.New7d >= SuddenNewSources && sp.New7d > sp.Before:
		iu.AddressSpread = true
		iu.SpreadReason = fmt.Sprintf("%d new source addresses in the last 7 days, against %d known before", sp.New7d, sp.Before)
	}

	if iu.Idle {
		iu.Findings = append(iu.Findings, FindingIdle)
	}
	if active && oldEnough && len(iu.UnusedScopes) > 0 {
		iu.Findings = append(iu.Findings, FindingUnusedScopes)
	}
	if iu.CrossEnvironment {
		iu.Findings = append(iu.Findings, FindingCrossEnvironment)
	}
	if iu.AddressSpread {
		iu.Findings = append(iu.Findings, FindingAddressSpread)
	}
	return iu
}

// Filter keeps the identities with finding (every identity for ""), and at
// most limit of them (no limit for limit <= 0). The summary is unchanged.
func (r *UsageReport) Filter(finding string, limit int) {
	if finding != "" {
		r.Identities = slices.DeleteFunc(r.Identities, func(iu IdentityUsage) bool { return !slices.Contains(iu.Findings, finding) })
	}
	if limit > 0 && len(r.Identities) > limit {
		r.Identities = r.Identities[:limit]
		r.Truncated = true
	}
}
