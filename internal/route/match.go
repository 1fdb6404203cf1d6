package route

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ErrNoRoute means no route matches the request's host and path, or the
// path was refused by the path rule (see the package doc). The gateway
// answers 404.
var ErrNoRoute = errors.New("route: no route matches the request")

// ErrAmbiguousPath means the path matched one route, but read the way a
// lenient upstream reads paths (case-insensitive, ";" parameters dropped,
// an encoded "/" or "\\" decoded, a trailing "/" ignored) it would match
// another route on the same upstream with a stricter policy: the upstream
// could serve that route's resource under this route's weaker policy. errors.Is(err, ErrNoRoute) holds for it, so it is
// answered as no route unless the caller asks for the reason.
var ErrAmbiguousPath = fmt.Errorf("%w: the path reads as another route's path once case, ';' parameters, an encoded '/' or '\\', or a trailing '/' are ignored; send the exact path of the route you mean", ErrNoRoute)

// ErrMethodNotAllowed means routes match the host and path but none accepts
// the method. The gateway answers 405 with an Allow header built from
// MatchError.Allowed.
var ErrMethodNotAllowed = errors.New("route: method not allowed")

// MatchError is returned for ErrMethodNotAllowed, with the methods that
// would have matched. errors.Is(err, ErrMethodNotAllowed) holds for it.
type MatchError struct {
	Err     error    // ErrMethodNotAllowed
	Allowed []string // upper case, in a fixed order
}

func (e *MatchError) Error() string {
	return e.Err.Error() + " (allowed: " + strings.Join(e.Allowed, ", ") + ")"
}

func (e *MatchError) Unwrap() error { return e.Err }

// Param is one path parameter: its name in the pattern and its decoded
// value.
type Param struct {
	Name, Value string
}

// Params are a match's path parameters in pattern order.
type Params []Param

// Get returns the value of the named parameter.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Match is the result of a successful lookup.
type Match struct {
	Route *Route
	// Params holds the path parameters. A single parameter's value is its
	// segment percent-decoded; a catch-all's value is the rest of the path
	// with each segment decoded and joined by "/", so an encoded "%2F" in
	// it cannot be told from a separator: forward the original path, not
	// the value.
	Params Params
	// Template is the route's path pattern, for audit records.
	Template string

	inline [inlineParams]Param
}

// Match finds the route for a request. host is the request's Host (any port
// and trailing dot are ignored; compared case-insensitively), method is
// compared exactly (HTTP methods are case-sensitive), and path must be the
// raw escaped path (url.URL.EscapedPath), matched by the rule in the package
// doc.
//
// It returns ErrNoRoute, or a *MatchError wrapping ErrMethodNotAllowed.
// A nil Table matches nothing. Match allocates only the *Match (and decoded
// values when the path contains escapes).
func (t *Table) Match(host, method, path string) (*Match, error) {
	if t == nil || !validPath(path) {
		return nil, ErrNoRoute
	}
	host = requestHost(host)
	rest := path[1:]
	r := t.root.find(rest, true, host, method)
	if r == nil {
		var allowed methodSet
		t.root.collect(rest, true, host, &allowed)
		if allowed != 0 {
			return nil, &MatchError{Err: ErrMethodNotAllowed, Allowed: allowed.names()}
		}
		return nil, ErrNoRoute
	}
	if (t.foldLits || readsLeniently(path)) && t.ambiguous(path, host, method, r) {
		return nil, ErrAmbiguousPath
	}
	m := &Match{Route: r, Template: r.Spec.Path}
	if r.pat.nparams <= inlineParams {
		m.Params = m.inline[:0:r.pat.nparams]
	} else {
		m.Params = make(Params, 0, r.pat.nparams)
	}
	for _, s := range r.pat.segs {
		var seg string
		switch s.kind {
		case literal:
			_, rest, _ = strings.Cut(rest, "/")
		case param:
			seg, rest, _ = strings.Cut(rest, "/")
			m.Params = append(m.Params, Param{s.name, unescape(seg)})
		case catchAll:
			m.Params = append(m.Params, Param{s.name, unescapeEach(rest)})
		}
	}
	return m, nil
}

// find returns the best route for the segments in rest (present when more is
// true; "" with more true is one empty segment). Literal children are tried
// before the parameter child, and both before catch-alls; each trie node is
// visited at most once, so the cost is bounded by the table's size.
func (n *node) find(rest string, more bool, host, method string) *Route {
	if !more {
		return pick(n.end, host, method)
	}
	seg, next, hasNext := strings.Cut(rest, "/")
	if n.lits != nil {
		if c := n.lits[unescape(seg)]; c != nil {
			if r := c.find(next, hasNext, host, method); r != nil {
				return r
			}
		}
	}
	if n.param != nil && seg != "" {
		if r := n.param.find(next, hasNext, host, method); r != nil {
			return r
		}
	}
	return pick(n.catchAll, host, method)
}

// collect adds to allowed the methods of every route matching host and the
// path, whatever the method; it runs only after find failed.
func (n *node) collect(rest string, more bool, host string, allowed *methodSet) {
	add := func(rs []*Route) {
		for _, r := range rs {
			if r.host == "" || strings.EqualFold(r.host, host) {
				*allowed |= r.methods
			}
		}
	}
	if !more {
		add(n.end)
		return
	}
	seg, next, hasNext := strings.Cut(rest, "/")
	if c := n.lits[unescape(seg)]; c != nil {
		c.collect(next, hasNext, host, allowed)
	}
	if n.param != nil && seg != "" {
		n.param.collect(next, hasNext, host, allowed)
	}
	add(n.catchAll)
}

// pick returns the first route in rs (host-specific ones come first) whose
// host and methods admit the request.
func pick(rs []*Route, host, method string) *Route {
	for _, r := range rs {
		if r.host != "" && !strings.EqualFold(r.host, host) {
			continue
		}
		if r.methods.allows(method) {
			return r
		}
	}
	return nil
}

// validPath applies the path rule in the package doc.
func validPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	rest := p[1:]
	for {
		seg, next, more := strings.Cut(rest, "/")
		if seg == "" && more {
			return false
		}
		dec := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if dec, err = url.PathUnescape(seg); err != nil {
				return false
			}
		}
		if checkSegment(dec) != nil {
			return false
		}
		if !more {
			return true
		}
		rest = next
	}
}

// lenientPath returns p as a lenient upstream may read it: ASCII letters
// lower-cased (ASP.NET Core, Express), ";" parameters dropped from each
// segment (Tomcat, Jetty, Spring), "%2F" and "%5C" taken as separators
// (servers that decode before routing, IIS), empty segments and a trailing
// "/" ignored (Express, Spring 5). A path that reads the same, the common
// case, costs one scan and is returned as it is.
func lenientPath(p string) string {
	if !readsLeniently(p) {
		return p
	}
	b := make([]byte, 0, len(p))
	param := false // inside a ';' parameter, up to the next '/'
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			if h, l := p[i+1], p[i+2]|0x20; (h == '2' && l == 'f') || (h == '5' && l == 'c') {
				c = '/'
				i += 2
			}
		}
		switch {
		case c == '/':
			param = false
			if len(b) == 0 || b[len(b)-1] != '/' {
				b = append(b, '/')
			}
			continue
		case param:
			continue
		case c == ';':
			param = true
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	if len(b) > 1 && b[len(b)-1] == '/' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		b = append(b, '/')
	}
	return string(b)
}

// lenientReadings returns the ways a lenient upstream may read p: the
// lenient path, and when p ends in '/', that path with its '/' kept (for
// routes whose pattern ends in '/').
func lenientReadings(p string) []string {
	alt := lenientPath(p)
	out := []string{alt}
	if len(p) > 1 && p[len(p)-1] == '/' && alt != "/" {
		out = append(out, alt+"/")
	}
	return out
}

// each calls visit for every route whose pattern matches rest and that
// admits host and method, following every branch (a literal, the parameter
// and a catch-all may all match), until visit returns true. With fold,
// literal segments compare case-insensitively.
func (n *node) each(rest string, more bool, host, method string, fold bool, visit func(*Route) bool) bool {
	routes := func(rs []*Route) bool {
		for _, r := range rs {
			if r.host != "" && !strings.EqualFold(r.host, host) || !r.methods.allows(method) {
				continue
			}
			if visit(r) {
				return true
			}
		}
		return false
	}
	if !more {
		return routes(n.end)
	}
	seg, next, hasNext := strings.Cut(rest, "/")
	dec := unescape(seg)
	if fold {
		for lit, c := range n.lits {
			if strings.EqualFold(lit, dec) && c.each(next, hasNext, host, method, fold, visit) {
				return true
			}
		}
	} else if c := n.lits[dec]; c != nil && c.each(next, hasNext, host, method, fold, visit) {
		return true
	}
	if n.param != nil && seg != "" && n.param.each(next, hasNext, host, method, fold, visit) {
		return true
	}
	return routes(n.catchAll)
}

// ambiguous reports whether a lenient reading of path (lenientReadings,
// literals compared case-insensitively) matches a route with a policy
// matched lacks (bypasses) that the exact path does not match: a route the
// exact path also matches lost to matched by precedence, which a lenient
// upstream applies too.
func (t *Table) ambiguous(path, host, method string, matched *Route) bool {
	var exact []*Route // a few at most: the routes sharing this path
	t.root.each(path[1:], true, host, method, false, func(r *Route) bool { exact = append(exact, r); return false })
	for _, alt := range lenientReadings(path) {
		if t.root.each(alt[1:], true, host, method, true, func(r *Route) bool {
			return !slices.Contains(exact, r) && bypasses(matched, r, method)
		}) {
			return true
		}
	}
	return false
}

// bypasses reports whether serving a request under matched when a lenient
// upstream reads it as lenient's would let the caller skip part of
// lenient's policy: both routes send to the same upstream, and lenient
// has a higher sensitivity, scopes for method that matched does not also
// require, audiences matched does not also restrict to, or no static keys
// where matched takes them.
func bypasses(matched, lenient *Route, method string) bool {
	if matched.Upstream.Scheme != lenient.Upstream.Scheme || matched.Upstream.Host != lenient.Upstream.Host {
		return false
	}
	if lenient.Sensitivity > matched.Sensitivity {
		return true
	}
	// The same class, but matched is allowed below its floor, or lenient
	// limits callers where matched does not.
	if matched.AllowWeakerAssurance && !lenient.AllowWeakerAssurance || !lenient.Limit.IsZero() && matched.Limit.IsZero() {
		return true
	}
	have := matched.RequiredScopes(method)
	for _, s := range lenient.RequiredScopes(method) {
		if !slices.Contains(have, s) {
			return true
		}
	}
	if len(lenient.Audiences) > 0 {
		if len(matched.Audiences) == 0 {
			return true
		}
		for _, a := range matched.Audiences {
			if !slices.Contains(lenient.Audiences, a) {
				return true
			}
		}
	}
	return matched.StaticKeyHeader != "" && lenient.StaticKeyHeader == ""
}

// readsLeniently reports whether p holds anything lenientPath changes:
// an upper-case ASCII letter, ';', an encoded '/' or '\', or a trailing
// '/' after the root.
func readsLeniently(p string) bool {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return true
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'A' <= c && c <= 'Z', c == ';':
			return true
		case c == '%' && i+2 < len(p):
			if h, l := p[i+1], p[i+2]|0x20; (h == '2' && l == 'f') || (h == '5' && l == 'c') {
				return true
			}
			// An encoded letter (%41 is 'A') reads as a letter, in any case.
			if d, err := url.PathUnescape(p[i : i+3]); err == nil && len(d) == 1 && ('A' <= d[0] && d[0] <= 'Z' || 'a' <= d[0] && d[0] <= 'z') {
				return true
			}
		}
	}
	return false
}

// requestHost strips a port and a trailing dot from a Host header value.
func requestHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
		return h
	}
	if i := strings.IndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i+1:], ':') < 0 {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// unescape decodes a segment already checked by validPath.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	d, err := url.PathUnescape(s)
	if err != nil {
		return s // unreachable: validPath refused it
	}
	return d
}

func unescapeEach(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = unescape(p)
	}
	return strings.Join(parts, "/")
}
