// Package route compiles the gateway's route table and matches requests
// against it: host, method and path pattern to one route, with its path
// parameters.
//
// It decides only which route a request belongs to. It must not decide
// whether the request is allowed (that is policy), must not proxy, and must
// not do I/O; a Table is built once by Compile and then only read.
//
// # Path rule
//
// Match works on the raw, escaped request path (url.URL.EscapedPath, never
// the decoded Path). The path is split on "/" and only there; each segment is
// then percent-decoded on its own, so "%2F" inside a segment decodes into that
// segment's value (a parameter value, or the text compared with a literal)
// and never acts as a separator. Because literals are compared decoded,
// "/adm%69n" matches the route for "/admin" and cannot slip past it to a
// catch-all route with a weaker policy.
//
// A path is refused (ErrNoRoute) before any route is consulted when it does
// not start with "/", contains an empty segment ("//") other than a trailing
// slash, contains a malformed escape, or has a segment that decodes to "."
// or "..", to a control byte, or to text that a server decoding "%2F" or
// "%5C" would split into "." or ".." parts. The gateway forwards the path
// unchanged, so an upstream sees exactly the path that was matched.
//
// An upstream may still read that path its own way: case-insensitively, with
// ";" parameters dropped, "%2F" or "%5C" taken as separators, or a trailing
// "/" ignored. When the path, read that way, would match another route on
// the same upstream whose policy the matched route lacks (higher
// sensitivity, scopes, audiences, or no static keys), Match refuses it with
// ErrAmbiguousPath: "/ADMIN/5" cannot reach a restricted "/admin/{id}"
// through an internal catch-all. Ambiguity without such a policy gap is
// left alone, so mixed-case identifiers keep working.
//
// # Precedence
//
// Patterns are compared segment by segment from the left: a literal segment
// beats a parameter, which beats a catch-all. Among routes with the same
// pattern, a route naming the request's host beats an any-host route.
// Compile rejects two routes with the same host, the same pattern shape and
// overlapping methods, so every request has at most one best route.
package route

import (
	"fmt"
	"net/url"
	"strings"
)

// Sensitivity is how much damage a misuse of a route could do. Policy sets a
// floor on the assurance a caller must show for each level. Levels are
// ordered: Public < Internal < Confidential < Restricted.
//
// The zero value is not a level: it is what an unset field holds, and
// callers must treat it as Restricted (fail closed). Compile never produces
// a Route with the zero value.
type Sensitivity int

// Sensitivity levels, from least to most sensitive.
const (
	Public Sensitivity = iota + 1
	Internal
	Confidential
	Restricted
)

var sensitivityNames = [...]string{Public: "public", Internal: "internal", Confidential: "confidential", Restricted: "restricted"}

// String returns the configuration name of s ("public", ...), or
// "Sensitivity(N)" for a value that is not a level.
func (s Sensitivity) String() string {
	if s.Valid() {
		return sensitivityNames[s]
	}
	return fmt.Sprintf("Sensitivity(%d)", int(s))
}

// Valid reports whether s is one of the four levels.
func (s Sensitivity) Valid() bool { return s >= Public && s <= Restricted }

// ParseSensitivity parses a configuration name, case-insensitively.
func ParseSensitivity(s string) (Sensitivity, error) {
	for i, n := range sensitivityNames {
		if i != 0 && strings.EqualFold(s, n) {
			return Sensitivity(i), nil
		}
	}
	return 0, fmt.Errorf("route: unknown sensitivity %q: use public, internal, confidential or restricted", s)
}

// Rate is a compiled per-identity rate limit: PerSecond tokens are added to
// a bucket of Burst tokens each second. The zero Rate means the route sets no
// limit of its own.
type Rate struct {
	PerSecond float64
	Burst     int
}

// IsZero reports whether r sets no limit.
func (r Rate) IsZero() bool { return r.PerSecond == 0 && r.Burst == 0 }

// Route is one compiled route. It is built by Compile and must not be
// modified afterwards: the Table that holds it is shared by every request.
//
// The embedded Spec is a copy of the configured one with Methods upper-cased;
// Route's own Sensitivity and Upstream fields are the parsed forms of the
// Spec fields of the same name.
type Route struct {
	Spec
	// Index is the route's position in the slice given to Compile.
	Index       int
	Sensitivity Sensitivity
	Upstream    *url.URL
	// Limit is the parsed rate_limit; zero when the route has none.
	Limit Rate

	host    string // lower case, "" for any host
	methods methodSet
	pat     pattern

	defaultScopes []string            // for methods without their own entry
	methodScopes  map[string][]string // method -> scopes, when configured per method
}

// RequiredScopes returns the scopes a token must hold to call this route
// with method: the list form applies to every method; with the map form, the
// method's own entry, or the "*" entry for methods without one. Compile
// guarantees every method the route accepts is covered. The returned slice
// is shared and must not be modified.
func (r *Route) RequiredScopes(method string) []string {
	if s, ok := r.methodScopes[method]; ok {
		return s
	}
	return r.defaultScopes
}

// Template returns the path pattern as configured, for audit records.
func (r *Route) Template() string { return r.Spec.Path }
