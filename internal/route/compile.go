package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/keybound/keybound/internal/identity"
)

// methodSet is a set of HTTP methods as bits; anyMethod stands for every
// method, including ones this package does not know.
type methodSet uint16

const anyMethod methodSet = 1 << 15

// knownMethods are the methods a route may list. CONNECT and TRACE are left
// out on purpose: a gateway has no business tunnelling or echoing requests.
var knownMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func methodBit(m string) methodSet {
	switch m {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "DELETE":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	}
	return 0
}

func (s methodSet) allows(m string) bool { return s&anyMethod != 0 || s&methodBit(m) != 0 }

func (s methodSet) overlaps(o methodSet) bool {
	return s&anyMethod != 0 || o&anyMethod != 0 || s&o != 0
}

// names returns the known methods in s, in knownMethods order.
func (s methodSet) names() []string {
	var out []string
	for _, m := range knownMethods {
		if s&methodBit(m) != 0 {
			out = append(out, m)
		}
	}
	return out
}

// Table is a compiled route table. It is immutable after Compile and safe
// for concurrent use. A nil *Table matches nothing.
type Table struct {
	root   *node
	routes []*Route
	// foldLits is set when a route's path has an upper-case ASCII letter:
	// then a request with none can still read, case-insensitively, as that
	// route's path, so Match checks every request for ambiguity.
	foldLits bool
}

// node is one level of the matching trie. Literal children are keyed by
// their decoded text; all parameters at one position share one child.
type node struct {
	lits     map[string]*node
	param    *node
	catchAll []*Route // patterns ending in a catch-all here
	end      []*Route // patterns ending exactly here
}

// Routes returns the compiled routes in configuration order. The slice is a
// copy; the routes are shared and must not be modified.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return slices.Clone(t.routes)
}

// Compile validates specs and builds a Table. It reports every problem it
// finds, joined with errors.Join, each prefixed with its configuration key
// path ("gateway.routes[2].path: ..."), and returns no Table if there is
// any: a reload either gets a whole valid table or keeps the old one.
func Compile(specs []Spec) (*Table, error) {
	if len(specs) > MaxRoutes {
		return nil, fmt.Errorf("%s: %d routes are configured; at most %d are allowed", ConfigKey, len(specs), MaxRoutes)
	}
	var errs []error
	names := make(map[string]int, len(specs))
	type shapeKey struct{ host, shape string }
	shapes := make(map[shapeKey][]*Route)
	t := &Table{root: &node{}, routes: make([]*Route, 0, len(specs))}
	for i, s := range specs {
		r, problems := compileRoute(i, s)
		errs = append(errs, problems...)
		if s.Name != "" {
			if j, dup := names[s.Name]; dup {
				errs = append(errs, fmt.Errorf("%s[%d].name: %q is already the name of %s[%d]; names must be unique", ConfigKey, i, s.Name, ConfigKey, j))
			} else {
				names[s.Name] = i
			}
		}
		if r == nil {
			continue
		}
		k := shapeKey{r.host, r.pat.shape}
		for _, o := range shapes[k] {
			if o.methods.overlaps(r.methods) {
				errs = append(errs, fmt.Errorf("%s[%d].path: %s[%d] (%q) has the same host, an equivalent pattern and overlapping methods, so it is ambiguous which applies", ConfigKey, i, ConfigKey, o.Index, o.Name))
				break
			}
		}
		shapes[k] = append(shapes[k], r)
		t.routes = append(t.routes, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, r := range t.routes {
		t.root.insert(r)
		if strings.ContainsFunc(r.Spec.Path, func(c rune) bool { return 'A' <= c && c <= 'Z' }) {
			t.foldLits = true
		}
	}
	t.root.sortRoutes()
	return t, nil
}

func (n *node) insert(r *Route) {
	for _, s := range r.pat.segs {
		switch s.kind {
		case literal:
			if n.lits == nil {
				n.lits = make(map[string]*node)
			}
			c := n.lits[s.lit]
			if c == nil {
				c = &node{}
				n.lits[s.lit] = c
			}
			n = c
		case param:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case catchAll:
			n.catchAll = append(n.catchAll, r)
			return
		}
	}
	n.end = append(n.end, r)
}

// sortRoutes orders each list host-specific first, then by configuration
// order, which is what makes matching deterministic.
func (n *node) sortRoutes() {
	less := func(a, b *Route) int {
		if (a.host == "") != (b.host == "") {
			if a.host != "" {
				return -1
			}
			return 1
		}
		return a.Index - b.Index
	}
	slices.SortStableFunc(n.end, less)
	slices.SortStableFunc(n.catchAll, less)
	for _, c := range n.lits {
		c.sortRoutes()
	}
	if n.param != nil {
		n.param.sortRoutes()
	}
}

// compileRoute validates one spec. It returns the route only when there is
// no problem.
func compileRoute(i int, s Spec) (*Route, []error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s[%d].%s: %s", ConfigKey, i, field, fmt.Sprintf(format, args...)))
	}
	r := &Route{Spec: s, Index: i}
	r.Spec.Methods = slices.Clone(s.Methods)
	r.Spec.Audiences = slices.Clone(s.Audiences)
	r.Spec.Scopes = ScopeSpec{All: slices.Clone(s.Scopes.All)}
	if s.Scopes.ByMethod != nil {
		r.Spec.Scopes.ByMethod = make(map[string][]string, len(s.Scopes.ByMethod))
		for m, l := range s.Scopes.ByMethod {
			r.Spec.Scopes.ByMethod[m] = slices.Clone(l)
		}
	}
	if s.RateLimit != nil {
		rl := *s.RateLimit
		r.Spec.RateLimit = &rl
	}

	if err := checkName(s.Name); err != nil {
		bad("name", "%v", err)
	}

	if h, err := parseHost(s.Host); err != nil {
		bad("host", "%v", err)
	} else {
		r.host = h
	}

	if p, err := parsePattern(s.Path); err != nil {
		bad("path", "%v", err)
	} else {
		r.pat = p
	}

	for j, m := range r.Spec.Methods {
		u := strings.ToUpper(m)
		b := methodBit(u)
		switch {
		case b == 0:
			bad(fmt.Sprintf("methods[%d]", j), "unknown method %q: use one of %s", m, strings.Join(knownMethods[:], ", "))
		case r.methods&b != 0:
			bad(fmt.Sprintf("methods[%d]", j), "method %s is listed twice", u)
		}
		r.methods |= b
		r.Spec.Methods[j] = u
	}
	if len(r.Spec.Methods) == 0 {
		r.methods = anyMethod
	}

	if u, err := parseUpstream(s.Upstream); err != nil {
		bad("upstream", "%v", err)
	} else {
		r.Upstream = u
	}

	errs = append(errs, compileScopes(i, r)...)

	if len(s.Audiences) > MaxAudiences {
		bad("audiences", "%d audiences are listed; at most %d are allowed", len(s.Audiences), MaxAudiences)
	}
	for j, a := range s.Audiences {
		if err := checkAudience(a); err != nil {
			bad(fmt.Sprintf("audiences[%d]", j), "%v", err)
		} else if slices.Index(s.Audiences, a) < j {
			bad(fmt.Sprintf("audiences[%d]", j), "%q is listed twice", a)
		}
	}

	if s.Sensitivity == "" {
		bad("sensitivity", "is required: use public, internal, confidential or restricted")
	} else if lv, err := ParseSensitivity(s.Sensitivity); err != nil {
		bad("sensitivity", "unknown sensitivity %q: use public, internal, confidential or restricted", s.Sensitivity)
	} else {
		r.Sensitivity = lv
	}

	if r.Sensitivity == Public {
		// A public route serves callers without a token. Scopes, audiences
		// and a per-identity rate limit would bind only the callers who
		// chose to send one, so the configuration would look enforced
		// while anyone could skip it by leaving the token out.
		const why = "a public route serves callers without a token, so this would bind only callers who send one; remove it or raise the sensitivity to internal"
		if len(s.Scopes.All) > 0 || len(s.Scopes.ByMethod) > 0 {
			bad("scopes", why)
		}
		if len(s.Audiences) > 0 {
			bad("audiences", why)
		}
		if s.RateLimit != nil {
			bad("rate_limit", "is per identity, and "+why)
		}
	}

	if s.RateLimit != nil {
		rate, err := parseRate(*s.RateLimit)
		if err != nil {
			bad("rate_limit."+err.field, "%v", err.err)
		}
		r.Limit = rate
	}

	switch {
	case s.AllowStaticKeys:
		if s.StaticKeyHeader == "" {
			r.StaticKeyHeader = DefaultStaticKeyHeader
		} else if err := checkKeyHeader(s.StaticKeyHeader); err != nil {
			bad("static_key_header", "%v", err)
		} else {
			r.StaticKeyHeader = http.CanonicalHeaderKey(s.StaticKeyHeader)
		}
		if r.Sensitivity >= Confidential && !s.AllowWeakerAssurance {
			bad("allow_static_keys", "a %s route needs sender-constrained tokens and cannot accept static API keys (unbound shared secrets); lower the sensitivity or set allow_weaker_assurance, which is logged", r.Sensitivity)
		}
	case s.StaticKeyHeader != "":
		bad("static_key_header", "is only used with allow_static_keys: true")
	}

	if s.Environment != "" {
		if err := checkName(s.Environment); err != nil {
			bad("environment", "%v", err)
		}
	}

	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// checkKeyHeader accepts an HTTP field name (RFC 9110 token) that is not
// one the gateway reads or sets itself.
func checkKeyHeader(h string) error {
	if len(h) > MaxNameLen {
		return fmt.Errorf("is longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return fmt.Errorf("%q is not an HTTP header name", h)
	}
	switch k := http.CanonicalHeaderKey(h); {
	case k == "Authorization" || k == "Dpop" || k == "Cookie" || k == "Host" || strings.HasPrefix(k, "X-Keybound-"):
		return fmt.Errorf("%q is reserved; use a header such as %s", h, DefaultStaticKeyHeader)
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return errors.New("is required")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("is longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			continue
		}
		return fmt.Errorf("%q: use letters, digits, '-', '_' and '.' only", n)
	}
	return nil
}

// parseHost returns the canonical (lower-case, no trailing dot) form of a
// route's host: a DNS name or a bracketed IPv6 literal, never a port.
func parseHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if strings.HasPrefix(h, "[") {
		a, err := netip.ParseAddr(strings.TrimSuffix(h[1:], "]"))
		if err != nil || !strings.HasSuffix(h, "]") || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("%q is not a bracketed IPv6 address", h)
		}
		return h, nil
	}
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("%q: give the host without a port or scheme; ports are ignored when matching", h)
	}
	if len(h) > 253 {
		return "", fmt.Errorf("%q is longer than 253 bytes", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q is not a valid host name (empty or over-long label)", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", fmt.Errorf("%q is not a valid host name: use letters, digits, '-' and '.'; wildcards are not supported", h)
			}
		}
	}
	return h, nil
}

func parseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("is required: an absolute http or https URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q must be an absolute http or https URL", s)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q must not carry userinfo; credentials do not belong in configuration URLs", s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("%q must not have a query", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%q must not have a fragment", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q has an invalid port", s)
		}
	}
	return u, nil
}

// compileScopes validates the route's scopes and fills defaultScopes and
// methodScopes. Every method the route accepts must end up covered.
func compileScopes(i int, r *Route) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s[%d].%s: %s", ConfigKey, i, field, fmt.Sprintf(format, args...)))
	}
	checkList := func(field string, l []string) {
		if len(l) > identity.MaxScopes {
			bad(field, "%d scopes are listed; at most %d are allowed", len(l), identity.MaxScopes)
		}
		for j, sc := range l {
			if err := checkScope(sc); err != nil {
				bad(fmt.Sprintf("%s[%d]", field, j), "%v", err)
			}
		}
	}
	sp := r.Spec.Scopes
	checkList("scopes", sp.All)
	r.defaultScopes = slices.Clip(dedupe(sp.All))
	if len(sp.ByMethod) == 0 {
		return errs
	}
	norm := make(map[string][]string, len(sp.ByMethod))
	keys := make([]string, 0, len(sp.ByMethod))
	for k := range sp.ByMethod {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field := "scopes." + k
		u := strings.ToUpper(k)
		switch {
		case u != "*" && methodBit(u) == 0:
			bad(field, "unknown method %q: use one of %s, or \"*\"", k, strings.Join(knownMethods[:], ", "))
			continue
		case u != "*" && !r.methods.allows(u):
			bad(field, "method %s is not in this route's methods", u)
			continue
		}
		if _, dup := norm[u]; dup {
			bad(field, "method %s is given twice", u)
			continue
		}
		checkList(field, sp.ByMethod[k])
		norm[u] = slices.Clip(dedupe(append(slices.Clone(sp.All), sp.ByMethod[k]...)))
	}
	star, hasStar := norm["*"]
	if !hasStar {
		var missing []string
		if r.methods&anyMethod != 0 {
			missing = []string{"methods not listed"}
		} else {
			for _, m := range r.methods.names() {
				if _, ok := norm[m]; !ok {
					missing = append(missing, m)
				}
			}
		}
		if len(missing) > 0 {
			bad("scopes", "no scopes are given for %s: add an entry per method or a \"*\" entry", strings.Join(missing, ", "))
		}
	} else {
		r.defaultScopes = star
		delete(norm, "*")
	}
	r.methodScopes = norm
	return errs
}

func dedupe(l []string) []string {
	var out []string
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkScope checks one scope token against RFC 6749 section 3.3
// (scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E).
func checkScope(s string) error {
	if s == "" {
		return errors.New("a scope must not be empty")
	}
	if len(s) > identity.MaxScopeLen {
		return fmt.Errorf("scope is longer than %d bytes", identity.MaxScopeLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return fmt.Errorf("scope %q contains %q, which RFC 6749 section 3.3 forbids (one scope per list entry, no spaces, quotes or backslashes)", s, c)
		}
	}
	return nil
}

func checkAudience(a string) error {
	if a == "" {
		return errors.New("an audience must not be empty")
	}
	if len(a) > MaxAudienceLen {
		return fmt.Errorf("audience is longer than %d bytes", MaxAudienceLen)
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= 0x20 || c == 0x7f {
			return fmt.Errorf("audience %q contains a space or control character", a)
		}
	}
	return nil
}

type rateError struct {
	field string
	err   error
}

// parseRate parses "N/s", "N/m" or "N/h" and the burst; burst 0 means N.
func parseRate(s RateSpec) (Rate, *rateError) {
	n, unit, ok := strings.Cut(s.PerIdentity, "/")
	var per float64
	switch unit {
	case "s":
		per = 1
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		ok = false
	}
	count, err := strconv.Atoi(n)
	if !ok || err != nil || n[0] == '+' || count < 1 || count > MaxRatePerUnit {
		if s.PerIdentity == "" {
			return Rate{}, &rateError{"per_identity", errors.New(`is required, e.g. "100/s"`)}
		}
		return Rate{}, &rateError{"per_identity", fmt.Errorf("%q: want N/s, N/m or N/h with N a whole number from 1 to %d", s.PerIdentity, MaxRatePerUnit)}
	}
	burst := s.Burst
	if burst == 0 {
		burst = min(count, MaxBurst)
	}
	if burst < 1 || burst > MaxBurst {
		return Rate{}, &rateError{"burst", fmt.Errorf("%d: want 1 to %d, or 0 for the per-period count", s.Burst, MaxBurst)}
	}
	return Rate{PerSecond: float64(count) / per, Burst: burst}, nil
}
