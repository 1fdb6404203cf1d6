package posture

import (
	"iter"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/route"
)

// Report is the posture report: how an inventory of machine identities is
// protected and used, computed from the inventory, the gateway route table
// and the audit trail. Figures the data cannot support are reported as not
// tracked (Tracked false, Count nil), never as zero.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	// PeriodDays is the window of the traffic figures.
	PeriodDays  int            `json:"period_days"`
	IdleDays    int            `json:"idle_days"`
	MaxSources  int            `json:"max_sources"`
	RoutesKnown bool           `json:"routes_known"`
	Inventory   Inventory      `json:"inventory"`
	Traffic     Traffic        `json:"traffic"`
	Identities  []Finding      `json:"identities"`
	Routes      RouteAlignment `json:"routes"`
	Risks       []Risk         `json:"owasp_nhi_top10"`
	Trend       Trend          `json:"trend"`
}

// Bucket is a count under a key.
type Bucket struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// Inventory counts identities. The credential and binding breakdowns count
// active identities: the ones that can authenticate.
type Inventory struct {
	Total    int      `json:"total"`
	Active   int      `json:"active"`
	ByStatus []Bucket `json:"by_status"`
	// ByCredentialType is by token endpoint authentication method.
	ByCredentialType []Bucket `json:"by_credential_type"`
	ByBinding        []Bucket `json:"by_binding"`
	// Matrix is every credential type and binding pair with its count.
	Matrix []MatrixCell `json:"matrix"`
}

// MatrixCell counts the active identities with one credential type and
// binding.
type MatrixCell struct {
	CredentialType identity.AuthMethod `json:"credential_type"`
	Binding        identity.Binding    `json:"binding"`
	Count          int                 `json:"count"`
}

// Credential classes of a request, weakest first.
const (
	ClassStaticSecret      = "static_secret"
	ClassBearer            = "bearer"
	ClassSenderConstrained = "sender_constrained"
)

// Share is how the requests the gateway allowed in the period were
// authenticated. A request is static_secret when it carried a static API
// key or a token issued to a client that authenticates with a shared
// secret (such tokens are marked static_secret at issue); otherwise bearer
// for an unbound bearer token, sender_constrained for a DPoP- or
// certificate-bound one. Anonymous requests (public routes, no credential)
// are counted apart. The percentages are of Authenticated, and nil when
// nothing was authenticated: the share of nothing is not zero.
type Share struct {
	// Class is "all" or a route sensitivity class ("unknown" for routes no
	// longer configured, or when no route table is known).
	Class             string `json:"class"`
	StaticSecret      int64  `json:"static_secret"`
	Bearer            int64  `json:"bearer"`
	SenderConstrained int64  `json:"sender_constrained"`
	// Other is authenticated requests with a credential type this version
	// does not know.
	Other                int64    `json:"other"`
	Authenticated        int64    `json:"authenticated"`
	Anonymous            int64    `json:"anonymous"`
	Denied               int64    `json:"denied"`
	StaticSecretPct      *float64 `json:"static_secret_pct"`
	BearerPct            *float64 `json:"bearer_pct"`
	SenderConstrainedPct *float64 `json:"sender_constrained_pct"`
}

// Traffic is the credential shares of the period, overall and per route
// sensitivity class.
type Traffic struct {
	Days          int     `json:"days"`
	Overall       Share   `json:"overall"`
	BySensitivity []Share `json:"by_sensitivity"`
}

// Finding is one identity-hygiene rule and the active identities it
// finds.
type Finding struct {
	Key   string `json:"key"`
	Title string `json:"title"`
	// Tracked is false when keybound holds no data to decide the rule;
	// Count is then nil.
	Tracked bool `json:"tracked"`
	Count   *int `json:"count"`
	// ClientIDs are the first MaxListedIDs identities found, in inventory
	// order.
	ClientIDs []string `json:"client_ids"`
	// Note states the rule, or why it is not tracked.
	Note string `json:"note"`
}

// RouteAlignment checks each route's accepted credentials against its data
// class.
type RouteAlignment struct {
	Tracked    bool         `json:"tracked"`
	Note       string       `json:"note"`
	Misaligned int          `json:"misaligned"`
	Routes     []RouteCheck `json:"routes"`
}

// RouteCheck is one route: what it accepts and whether that proves enough
// for its class.
type RouteCheck struct {
	Route       string `json:"route"`
	Sensitivity string `json:"sensitivity"`
	Environment string `json:"environment"`
	// Accepts are the credential kinds the route lets through.
	Accepts []string `json:"accepts"`
	Aligned bool     `json:"aligned"`
	// Problems say how the route goes below its class; Notes are what a
	// reviewer should know without it being misaligned.
	Problems []string `json:"problems"`
	Notes    []string `json:"notes"`
	// Requests and WeakRequests are the allowed requests of the period, and
	// those among them authenticated below the class's floor.
	Requests     int64 `json:"requests"`
	WeakRequests int64 `json:"weak_requests"`
}

// Accepted credential kinds, as RouteCheck.Accepts names them.
const (
	acceptAnonymous         = "anonymous"
	acceptStaticKey         = "static_key"
	acceptBearer            = "bearer"
	acceptSecretClients     = "tokens_of_shared_secret_clients"
	acceptSenderConstrained = "sender_constrained"
)

// Build computes the report. Its Trend has no previous values until
// ApplyTrend is given the previous snapshot.
func Build(in Input) *Report {
	o := in.Options.withDefaults()
	in.Options = o
	usage := ComputeUsage(in)
	r := &Report{
		GeneratedAt: in.Now.UTC(),
		PeriodDays:  PeriodDays,
		IdleDays:    o.IdleDays,
		MaxSources:  o.MaxSources,
		RoutesKnown: usage.RoutesKnown,
		Trend:       Trend{Changes: []Change{}},
	}
	r.Inventory = inventoryOf(in.Clients)
	r.Traffic = trafficOf(in)
	r.Identities = findingsOf(in, usage)
	r.Routes = alignmentOf(in)
	r.Risks = risksOf(r)
	r.ApplyTrend(nil)
	return r
}

// periodIndex is PeriodDays' index in Windows.
var periodIndex = slices.Index(Windows, PeriodDays)

func inventoryOf(clients []*identity.Client) Inventory {
	inv := Inventory{Total: len(clients)}
	status := map[string]int{}
	creds := map[string]int{}
	binds := map[string]int{}
	type pair struct {
		m identity.AuthMethod
		b identity.Binding
	}
	matrix := map[pair]int{}
	for _, c := range clients {
		status[string(c.Status)]++
		if c.Status != identity.StatusActive {
			continue
		}
		inv.Active++
		creds[string(c.AuthMethod)]++
		binds[string(c.Binding)]++
		matrix[pair{c.AuthMethod, c.Binding}]++
	}
	inv.ByStatus = buckets(status, []string{string(identity.StatusActive), string(identity.StatusSuspended), string(identity.StatusRevoked)})
	var methods []string
	for _, m := range identity.AuthMethods {
		methods = append(methods, string(m))
	}
	inv.ByCredentialType = buckets(creds, methods)
	inv.ByBinding = buckets(binds, []string{string(identity.BindingDPoP), string(identity.BindingMTLS), string(identity.BindingBearer)})
	inv.Matrix = []MatrixCell{}
	for k, n := range matrix {
		inv.Matrix = append(inv.Matrix, MatrixCell{CredentialType: k.m, Binding: k.b, Count: n})
	}
	slices.SortFunc(inv.Matrix, func(a, b MatrixCell) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if a.CredentialType != b.CredentialType {
			return compareStr(string(a.CredentialType), string(b.CredentialType))
		}
		return compareStr(string(a.Binding), string(b.Binding))
	})
	return inv
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// buckets lists the known keys in order (zero counts included, so a reader
// sees what is absent), then any other key in sorted order.
func buckets(m map[string]int, known []string) []Bucket {
	out := make([]Bucket, 0, len(known))
	for _, k := range known {
		out = append(out, Bucket{Key: k, Count: m[k]})
	}
	var rest []string
	for k := range m {
		if !slices.Contains(known, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		out = append(out, Bucket{Key: k, Count: m[k]})
	}
	return out
}

// classOf is the credential class of allowed requests of a client with
// credential type cred. "" is anonymous.
func classOf(cred string, c *identity.Client) string {
	switch cred {
	case "", "none":
		return ""
	case "static_key":
		return ClassStaticSecret
	}
	if c != nil && c.AuthMethod.IsStaticSecret() {
		return ClassStaticSecret
	}
	switch cred {
	case "bearer":
		return ClassBearer
	case "dpop", "mtls":
		return ClassSenderConstrained
	}
	return "other"
}

func (s *Share) add(class string, n int64) {
	switch class {
	case "":
		s.Anonymous += n
		return
	case ClassStaticSecret:
		s.StaticSecret += n
	case ClassBearer:
		s.Bearer += n
	case ClassSenderConstrained:
		s.SenderConstrained += n
	default:
		s.Other += n
	}
	s.Authenticated += n
}

func pct(n, of int64) *float64 {
	if of == 0 {
		return nil
	}
	v := math.Round(float64(n)*1000/float64(of)) / 10
	return &v
}

func (s *Share) finish() {
	s.StaticSecretPct = pct(s.StaticSecret, s.Authenticated)
	s.BearerPct = pct(s.Bearer, s.Authenticated)
	s.SenderConstrainedPct = pct(s.SenderConstrained, s.Authenticated)
}

const classUnknown = "unknown"

func trafficOf(in Input) Traffic {
	clients := make(map[string]*identity.Client, len(in.Clients))
	for _, c := range in.Clients {
		clients[c.ID] = c
	}
	t := Traffic{Days: PeriodDays, Overall: Share{Class: "all"}}
	by := map[string]*Share{}
	for _, lv := range []route.Sensitivity{route.Public, route.Internal, route.Confidential, route.Restricted} {
		by[lv.String()] = &Share{Class: lv.String()}
	}
	by[classUnknown] = &Share{Class: classUnknown}
	if in.Trail != nil {
		for i := range in.Trail.Counts {
			row := &in.Trail.Counts[i]
			n := row.Counts[periodIndex]
			if n == 0 {
				continue
			}
			class := classUnknown
			if rt := in.Routes.get(row.Route); rt != nil {
				class = rt.Sensitivity.String()
			}
			sh := by[class]
			if row.Decision != "allow" {
				t.Overall.Denied += n
				sh.Denied += n
				continue
			}
			cc := classOf(row.CredentialType, clients[row.ClientID])
			t.Overall.add(cc, n)
			sh.add(cc, n)
		}
	}
	t.Overall.finish()
	for _, k := range []string{"public", "internal", "confidential", "restricted", classUnknown} {
		sh := by[k]
		if k == classUnknown && sh.Authenticated+sh.Anonymous+sh.Denied == 0 {
			continue
		}
		sh.finish()
		t.BySensitivity = append(t.BySensitivity, *sh)
	}
	return t
}

// Identity finding keys, in report order.
const (
	KeyNoOwner          = "no_owner"
	KeyNoExpiry         = "no_expiry"
	KeyLongLived        = "long_lived"
	KeyExpiredActive    = "expired_not_offboarded"
	KeyExpiredUsed      = "expired_still_used"
	KeyOverdueReview    = "overdue_reviews"
	KeyOrphaned         = "orphaned"
	KeyIdle             = "idle"
	KeyOverPrivileged   = "over_privileged"
	KeyLeaked           = "leaked"
	KeyStaticSecret     = "static_secret"
	KeyBearer           = "bearer"
	KeyThirdParty       = "third_party"
	KeyCrossEnvironment = "cross_environment"
	KeyAddressSpread    = "address_spread"
)

func findingsOf(in Input, usage *UsageReport) []Finding {
	now := in.Now
	o := in.Options
	routesKnown := in.Routes != nil && in.Routes.Known
	active := func(yield func(int, *identity.Client) bool) {
		for i, c := range in.Clients {
			if c.Status == identity.StatusActive && !yield(i, c) {
				return
			}
		}
	}
	all := slices.All(in.Clients)
	// countOver counts the identities of over that match; measured counts
	// the active ones.
	countOver := func(over iter.Seq2[int, *identity.Client], key, title, note string, match func(i int, c *identity.Client) bool) Finding {
		f := Finding{Key: key, Title: title, Tracked: true, ClientIDs: []string{}, Note: note}
		n := 0
		for i, c := range over {
			if match(i, c) {
				n++
				if len(f.ClientIDs) < MaxListedIDs {
					f.ClientIDs = append(f.ClientIDs, c.ID)
				}
			}
		}
		f.Count = &n
		return f
	}
	measured := func(key, title, note string, match func(i int, c *identity.Client) bool) Finding {
		return countOver(active, key, title, note, match)
	}
	notTracked := func(key, title, why string) Finding {
		return Finding{Key: key, Title: title, ClientIDs: []string{}, Note: why}
	}
	hasFinding := func(i int, f string) bool { return slices.Contains(usage.Identities[i].Findings, f) }

	out := []Finding{
		measured(KeyNoOwner, "No owner", "active identities with no owner recorded",
			func(_ int, c *identity.Client) bool { return c.Owner == "" }),
		measured(KeyNoExpiry, "No expiry", "active identities with no expiry",
			func(_ int, c *identity.Client) bool { return c.ExpiresAt.IsZero() }),
		measured(KeyLongLived, "Long-lived", "active identities valid for more than 90 days from creation, or with no expiry",
			func(_ int, c *identity.Client) bool {
				return c.ExpiresAt.IsZero() || c.ExpiresAt.Sub(c.CreatedAt) > LongLivedDays*24*time.Hour
			}),
		measured(KeyExpiredActive, "Expired, not offboarded", "identities past their expiry that are still active rather than revoked (they cannot authenticate)",
			func(_ int, c *identity.Client) bool { return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt) }),
		// Whatever their status: something still holds a credential that
		// was meant to be gone.
		trackedIf(in.ExpiredUsedTracked, countOver(all, KeyExpiredUsed, "Expired but still used",
			"identities whose token or static key the gateway refused in the last "+itoa(PeriodDays)+
				" days because the identity had expired (keybound audit events --reason client_expired)",
			func(_ int, c *identity.Client) bool { return in.ExpiredUsed[c.ID] > 0 }),
			notTracked(KeyExpiredUsed, "Expired but still used", "not tracked: this keybound keeps no gateway audit trail")),
		trackedIf(in.ReviewsTracked, measured(KeyOverdueReview, "Overdue access reviews", "active identities whose owner has not re-attested them by the review due date (keybound review list --state overdue)",
			func(_ int, c *identity.Client) bool { return in.OverdueReviews[c.ID] }),
			notTracked(KeyOverdueReview, "Overdue access reviews", "not tracked: this keybound runs no access reviews")),
		trackedIf(in.OwnersTracked, measured(KeyOrphaned, "Orphaned", "active identities whose owner is marked departed in the owner directory (transfer them with keybound owner transfer)",
			func(_ int, c *identity.Client) bool { return in.Orphaned[c.ID] }),
			notTracked(KeyOrphaned, "Orphaned", "not tracked: this keybound keeps no owner directory")),
		measured(KeyIdle, "Idle", "active identities at least "+itoa(o.IdleDays)+" days old with no request allowed by the gateway in "+itoa(o.IdleDays)+
			" days (gateway traffic only; identities with only keybound's own scopes are left out)",
			func(i int, _ *identity.Client) bool { return hasFinding(i, FindingIdle) }),
	}
	if routesKnown {
		out = append(out, measured(KeyOverPrivileged, "Over-privileged", "active identities used in 90 days that hold granted scopes no allowed request exercised in 90 days",
			func(i int, _ *identity.Client) bool {
				return hasFinding(i, FindingUnusedScopes) && usage.Identities[i].Allowed.D90 > 0
			}))
	} else {
		out = append(out, notTracked(KeyOverPrivileged, "Over-privileged", "not tracked: no gateway route table is running, so which scopes requests exercised is unknown"))
	}
	if in.LeaksTracked {
		out = append(out, measured(KeyLeaked, "Leaked", "active identities whose current secret keybound scan found in code or configuration, not rotated since",
			func(_ int, c *identity.Client) bool { _, ok := in.Leaks[c.ID]; return ok }))
	} else {
		out = append(out, notTracked(KeyLeaked, "Leaked", "not tracked yet: this keybound records no secret-scan findings"))
	}
	out = append(out,
		measured(KeyStaticSecret, "Static secrets", "active identities that authenticate with a shared secret (client_secret_basic or client_secret_post)",
			func(_ int, c *identity.Client) bool { return c.AuthMethod.IsStaticSecret() }),
		measured(KeyBearer, "Unbound bearer tokens", "active identities registered for unbound bearer tokens",
			func(_ int, c *identity.Client) bool { return c.Binding == identity.BindingBearer }),
		measured(KeyThirdParty, "Third-party", "active identities with a vendor recorded",
			func(_ int, c *identity.Client) bool { return c.Vendor != "" }),
	)
	if routesKnown && usage.EnvironmentsTagged {
		out = append(out, measured(KeyCrossEnvironment, "Cross-environment", "active identities allowed in 90 days on a route tagged with an environment other than their own",
			func(i int, c *identity.Client) bool { return hasFinding(i, FindingCrossEnvironment) }))
	} else {
		out = append(out, notTracked(KeyCrossEnvironment, "Cross-environment", "not tracked: no gateway route names its environment (set environment on routes)"))
	}
	out = append(out, measured(KeyAddressSpread, "Unusual address spread", "active identities used from more than "+itoa(o.MaxSources)+
		" source addresses in 30 days, or from more new addresses in the last 7 days (at least 3) than known ones",
		func(i int, _ *identity.Client) bool { return hasFinding(i, FindingAddressSpread) }))
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// trackedIf is the measured finding when its data is tracked, else the
// not-tracked one.
func trackedIf(tracked bool, measured, notTracked Finding) Finding {
	if tracked {
		return measured
	}
	return notTracked
}

func alignmentOf(in Input) RouteAlignment {
	if in.Routes == nil || !in.Routes.Known {
		return RouteAlignment{Note: "not tracked: no gateway route table is running in this keybound", Routes: []RouteCheck{}}
	}
	clients := make(map[string]*identity.Client, len(in.Clients))
	for _, c := range in.Clients {
		clients[c.ID] = c
	}
	type agg struct{ all, weak int64 }
	per := map[string]*agg{}
	if in.Trail != nil {
		for i := range in.Trail.Counts {
			row := &in.Trail.Counts[i]
			rt := in.Routes.get(row.Route)
			n := row.Counts[periodIndex]
			if rt == nil || n == 0 || row.Decision != "allow" {
				continue
			}
			a := per[row.Route]
			if a == nil {
				a = &agg{}
				per[row.Route] = a
			}
			a.all += n
			if belowFloor(rt.Sensitivity, row.CredentialType, clients[row.ClientID]) {
				a.weak += n
			}
		}
	}
	ra := RouteAlignment{Tracked: true, Note: "each route's accepted credentials against the floor of its sensitivity class", Routes: []RouteCheck{}}
	for _, rt := range in.Routes.List {
		rc := RouteCheck{Route: rt.Name, Sensitivity: rt.Sensitivity.String(), Environment: rt.Environment, Aligned: true, Problems: []string{}, Notes: []string{}}
		weaker := rt.AllowWeakerAssurance
		switch rt.Sensitivity {
		case route.Public:
			rc.Accepts = []string{acceptAnonymous, acceptBearer, acceptSenderConstrained}
		case route.Internal:
			rc.Accepts = []string{acceptBearer, acceptSecretClients, acceptSenderConstrained}
		case route.Confidential:
			rc.Accepts = []string{acceptSecretClients, acceptSenderConstrained}
			if weaker {
				rc.Accepts = []string{acceptBearer, acceptSecretClients, acceptSenderConstrained}
				rc.Problems = append(rc.Problems, "allow_weaker_assurance lets unbound bearer tokens reach confidential data")
			}
		default: // restricted, and fail closed for anything else
			rc.Accepts = []string{acceptSenderConstrained}
			if weaker {
				rc.Accepts = []string{acceptBearer, acceptSecretClients, acceptSenderConstrained}
				rc.Problems = append(rc.Problems, "allow_weaker_assurance lets bearer tokens and clients with shared secrets reach restricted data")
			}
		}
		if rt.AllowStaticKeys {
			rc.Accepts = append([]string{acceptStaticKey}, rc.Accepts...)
			if rt.Sensitivity >= route.Confidential {
				rc.Problems = append(rc.Problems, "allow_static_keys accepts unbound shared secrets on "+rt.Sensitivity.String()+" data")
			} else {
				rc.Notes = append(rc.Notes, "accepts static API keys: the migration path, counted in the traffic shares")
			}
		}
		if weaker && rt.Sensitivity < route.Confidential {
			rc.Notes = append(rc.Notes, "allow_weaker_assurance is set but changes nothing below confidential")
		}
		if a := per[rt.Name]; a != nil {
			rc.Requests, rc.WeakRequests = a.all, a.weak
		}
		if rc.WeakRequests > 0 {
			rc.Problems = append(rc.Problems, plural(int(rc.WeakRequests), "request|requests")+" in "+itoa(PeriodDays)+" days authenticated below the "+rt.Sensitivity.String()+" floor")
		}
		rc.Aligned = len(rc.Problems) == 0
		if !rc.Aligned {
			ra.Misaligned++
		}
		ra.Routes = append(ra.Routes, rc)
	}
	return ra
}

// belowFloor reports whether an allowed request with credential type cred
// of client c proves less than class lv requires: the gateway's own floor
// (gateway.assurance), which only allow_weaker_assurance lets a request
// below.
func belowFloor(lv route.Sensitivity, cred string, c *identity.Client) bool {
	sender := cred == "dpop" || cred == "mtls"
	switch {
	case lv >= route.Restricted:
		return !sender || c == nil || c.AuthMethod.IsStaticSecret()
	case lv >= route.Confidential:
		return !sender
	}
	return false
}
