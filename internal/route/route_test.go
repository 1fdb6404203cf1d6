package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func spec(name, path string, methods ...string) Spec {
	return Spec{Name: name, Path: path, Methods: methods, Upstream: "http://backend.internal:8080", Sensitivity: "internal"}
}

func mustCompile(t testing.TB, specs ...Spec) *Table {
	t.Helper()
	tb, err := Compile(specs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tb
}

func TestSensitivity(t *testing.T) {
	for _, lv := range []Sensitivity{Public, Internal, Confidential, Restricted} {
		got, err := ParseSensitivity(strings.ToUpper(lv.String()))
		if err != nil || got != lv {
			t.Errorf("ParseSensitivity(%q) = %v, %v", lv, got, err)
		}
	}
	if !(Public < Internal && Internal < Confidential && Confidential < Restricted) {
		t.Error("levels are not ordered")
	}
	if _, err := ParseSensitivity("secret"); err == nil {
		t.Error("unknown level accepted")
	}
	if _, err := ParseSensitivity(""); err == nil {
		t.Error("empty level accepted")
	}
	var zero Sensitivity
	if zero.Valid() || zero.String() != "Sensitivity(0)" {
		t.Errorf("zero value: Valid %v, String %q", zero.Valid(), zero)
	}
}

func TestCompileErrors(t *testing.T) {
	ok := spec("ok", "/ok")
	with := func(f func(*Spec)) []Spec {
		s := spec("r", "/r")
		f(&s)
		return []Spec{ok, s}
	}
	tests := []struct {
		name  string
		specs []Spec
		want  []string // each must appear in the error
	}{
		{"no name", with(func(s *Spec) { s.Name = "" }), []string{"gateway.routes[1].name: is required"}},
		{"bad name", with(func(s *Spec) { s.Name = "a b" }), []string{"gateway.routes[1].name:"}},
		{"duplicate name", with(func(s *Spec) { s.Name = "ok" }), []string{"gateway.routes[1].name:", "unique"}},
		{"no path", with(func(s *Spec) { s.Path = "" }), []string{"gateway.routes[1].path: is required"}},
		{"relative path", with(func(s *Spec) { s.Path = "r" }), []string{"gateway.routes[1].path:", `start with "/"`}},
		{"empty param", with(func(s *Spec) { s.Path = "/a/{}" }), []string{"gateway.routes[1].path:", "parameter name is empty"}},
		{"empty catch-all name", with(func(s *Spec) { s.Path = "/a/{...}" }), []string{"gateway.routes[1].path:", "parameter name is empty"}},
		{"two params in a segment", with(func(s *Spec) { s.Path = "/a/{x}{y}" }), []string{"gateway.routes[1].path:", "whole segment"}},
		{"param with prefix", with(func(s *Spec) { s.Path = "/a/v{x}" }), []string{"gateway.routes[1].path:", "whole segment"}},
		{"unbalanced brace", with(func(s *Spec) { s.Path = "/a/{x" }), []string{"gateway.routes[1].path:", "whole segment"}},
		{"duplicate param", with(func(s *Spec) { s.Path = "/a/{x}/b/{x}" }), []string{"gateway.routes[1].path:", `"x" appears twice`}},
		{"catch-all not last", with(func(s *Spec) { s.Path = "/a/{x...}/b" }), []string{"gateway.routes[1].path:", "last segment"}},
		{"bad param name", with(func(s *Spec) { s.Path = "/a/{1x}" }), []string{"gateway.routes[1].path:", "letters, digits"}},
		{"empty segment", with(func(s *Spec) { s.Path = "/a//b" }), []string{"gateway.routes[1].path:", "empty segment"}},
		{"space", with(func(s *Spec) { s.Path = "/a b" }), []string{"gateway.routes[1].path:", "RFC 3986"}},
		{"query", with(func(s *Spec) { s.Path = "/a?b" }), []string{"gateway.routes[1].path:", "RFC 3986"}},
		{"bad escape", with(func(s *Spec) { s.Path = "/a%zz" }), []string{"gateway.routes[1].path:", "percent-encoding"}},
		{"dot dot", with(func(s *Spec) { s.Path = "/a/../b" }), []string{"gateway.routes[1].path:", `".."`}},
		{"encoded dot dot", with(func(s *Spec) { s.Path = "/a/%2e%2E/b" }), []string{"gateway.routes[1].path:", `".."`}},
		{"too many segments", with(func(s *Spec) { s.Path = strings.Repeat("/a", MaxSegments+1) }), []string{"gateway.routes[1].path:", "segments"}},
		{"unknown method", with(func(s *Spec) { s.Methods = []string{"GET", "FETCH"} }), []string{"gateway.routes[1].methods[1]:", `"FETCH"`}},
		{"trace", with(func(s *Spec) { s.Methods = []string{"TRACE"} }), []string{"gateway.routes[1].methods[0]:"}},
		{"method twice", with(func(s *Spec) { s.Methods = []string{"GET", "get"} }), []string{"gateway.routes[1].methods[1]:", "twice"}},
		{"no upstream", with(func(s *Spec) { s.Upstream = "" }), []string{"gateway.routes[1].upstream: is required"}},
		{"relative upstream", with(func(s *Spec) { s.Upstream = "/backend" }), []string{"gateway.routes[1].upstream:", "absolute"}},
		{"ftp upstream", with(func(s *Spec) { s.Upstream = "ftp://x" }), []string{"gateway.routes[1].upstream:", "absolute"}},
		{"upstream without host", with(func(s *Spec) { s.Upstream = "http:///x" }), []string{"gateway.routes[1].upstream:", "no host"}},
		{"upstream query", with(func(s *Spec) { s.Upstream = "http://x/?a=b" }), []string{"gateway.routes[1].upstream:", "query"}},
		{"upstream empty query", with(func(s *Spec) { s.Upstream = "http://x/?" }), []string{"gateway.routes[1].upstream:", "query"}},
		{"upstream fragment", with(func(s *Spec) { s.Upstream = "http://x/#f" }), []string{"gateway.routes[1].upstream:", "fragment"}},
		{"upstream userinfo", with(func(s *Spec) { s.Upstream = "https://u:p@x/" }), []string{"gateway.routes[1].upstream:", "userinfo"}},
		{"upstream bad port", with(func(s *Spec) { s.Upstream = "https://x:99999/" }), []string{"gateway.routes[1].upstream:"}},
		{"no sensitivity", with(func(s *Spec) { s.Sensitivity = "" }), []string{"gateway.routes[1].sensitivity: is required"}},
		{"unknown sensitivity", with(func(s *Spec) { s.Sensitivity = "secret" }), []string{"gateway.routes[1].sensitivity:", `"secret"`}},
		{"host with port", with(func(s *Spec) { s.Host = "api.example.com:443" }), []string{"gateway.routes[1].host:", "port"}},
		{"wildcard host", with(func(s *Spec) { s.Host = "*.example.com" }), []string{"gateway.routes[1].host:", "wildcards"}},
		{"bad ipv6 host", with(func(s *Spec) { s.Host = "[zz]" }), []string{"gateway.routes[1].host:", "IPv6"}},
		{"scope with space", with(func(s *Spec) { s.Scopes.All = []string{"a b"} }), []string{"gateway.routes[1].scopes[0]:", "RFC 6749"}},
		{"scope with quote", with(func(s *Spec) { s.Scopes.All = []string{"ok", `a"`} }), []string{"gateway.routes[1].scopes[1]:", "RFC 6749"}},
		{"empty scope", with(func(s *Spec) { s.Scopes.All = []string{""} }), []string{"gateway.routes[1].scopes[0]:", "empty"}},
		{"scope unknown method", with(func(s *Spec) { s.Scopes.ByMethod = map[string][]string{"FETCH": {"a"}, "*": {"b"}} }), []string{"gateway.routes[1].scopes.FETCH:", "unknown method"}},
		{"scope method not routed", with(func(s *Spec) {
			s.Methods = []string{"GET"}
			s.Scopes.ByMethod = map[string][]string{"GET": {"a"}, "POST": {"b"}}
		}), []string{"gateway.routes[1].scopes.POST:", "not in this route's methods"}},
		{"scope method uncovered", with(func(s *Spec) {
			s.Methods = []string{"GET", "POST"}
			s.Scopes.ByMethod = map[string][]string{"GET": {"a"}}
		}), []string{"gateway.routes[1].scopes:", "POST"}},
		{"scope any method uncovered", with(func(s *Spec) { s.Scopes.ByMethod = map[string][]string{"GET": {"a"}} }), []string{"gateway.routes[1].scopes:", `"*"`}},
		{"bad map scope", with(func(s *Spec) { s.Scopes.ByMethod = map[string][]string{"*": {"a\\b"}} }), []string{"gateway.routes[1].scopes.*[0]:"}},
		{"empty audience", with(func(s *Spec) { s.Audiences = []string{""} }), []string{"gateway.routes[1].audiences[0]:"}},
		{"audience twice", with(func(s *Spec) { s.Audiences = []string{"a", "a"} }), []string{"gateway.routes[1].audiences[1]:", "twice"}},
		{"rate missing", with(func(s *Spec) { s.RateLimit = &RateSpec{} }), []string{"gateway.routes[1].rate_limit.per_identity: is required"}},
		{"rate unit", with(func(s *Spec) { s.RateLimit = &RateSpec{PerIdentity: "10/d"} }), []string{"gateway.routes[1].rate_limit.per_identity:", `"10/d"`}},
		{"rate zero", with(func(s *Spec) { s.RateLimit = &RateSpec{PerIdentity: "0/s"} }), []string{"gateway.routes[1].rate_limit.per_identity:"}},
		{"rate float", with(func(s *Spec) { s.RateLimit = &RateSpec{PerIdentity: "1.5/s"} }), []string{"gateway.routes[1].rate_limit.per_identity:"}},
		{"rate no unit", with(func(s *Spec) { s.RateLimit = &RateSpec{PerIdentity: "10"} }), []string{"gateway.routes[1].rate_limit.per_identity:"}},
		{"negative burst", with(func(s *Spec) { s.RateLimit = &RateSpec{PerIdentity: "10/s", Burst: -1} }), []string{"gateway.routes[1].rate_limit.burst:"}},
		{"ambiguous duplicate", []Spec{spec("a", "/x/{id}", "GET"), spec("b", "/x/{name}", "GET", "POST")}, []string{"gateway.routes[1].path:", "gateway.routes[0]", "ambiguous"}},
		{"ambiguous any method", []Spec{spec("a", "/x"), spec("b", "/x", "DELETE")}, []string{"gateway.routes[1].path:", "ambiguous"}},
		{"ambiguous encoded literal", []Spec{spec("a", "/x/a"), spec("b", "/x/%61")}, []string{"gateway.routes[1].path:", "ambiguous"}},
		{"ambiguous host case", []Spec{
			func() Spec { s := spec("a", "/x"); s.Host = "API.example.com"; return s }(),
			func() Spec { s := spec("b", "/x"); s.Host = "api.example.com."; return s }(),
		}, []string{"gateway.routes[1].path:", "ambiguous"}},
		{"static keys on confidential", with(func(s *Spec) { s.Sensitivity, s.AllowStaticKeys = "confidential", true }), []string{"gateway.routes[1].allow_static_keys:", "allow_weaker_assurance"}},
		{"static keys on restricted", with(func(s *Spec) { s.Sensitivity, s.AllowStaticKeys = "restricted", true }), []string{"gateway.routes[1].allow_static_keys:"}},
		{"key header without static keys", with(func(s *Spec) { s.StaticKeyHeader = "X-Key" }), []string{"gateway.routes[1].static_key_header:", "allow_static_keys"}},
		{"scopes on a public route", with(func(s *Spec) { s.Sensitivity, s.Scopes = "public", ScopeSpec{All: []string{"x:read"}} }), []string{"gateway.routes[1].scopes:", "serves callers without a token"}},
		{"per-method scopes on a public route", with(func(s *Spec) {
			s.Sensitivity, s.Scopes = "public", ScopeSpec{ByMethod: map[string][]string{"GET": {"x:read"}}}
		}), []string{"gateway.routes[1].scopes:", "raise the sensitivity to internal"}},
		{"audiences on a public route", with(func(s *Spec) { s.Sensitivity, s.Audiences = "public", []string{"https://api.example.com"} }), []string{"gateway.routes[1].audiences:"}},
		{"rate limit on a public route", with(func(s *Spec) { s.Sensitivity, s.RateLimit = "public", &RateSpec{PerIdentity: "10/s"} }), []string{"gateway.routes[1].rate_limit:", "per identity"}},
		{"key header not a token", with(func(s *Spec) { s.AllowStaticKeys, s.StaticKeyHeader = true, "X Key" }), []string{"gateway.routes[1].static_key_header:", "not an HTTP header name"}},
		{"key header authorization", with(func(s *Spec) { s.AllowStaticKeys, s.StaticKeyHeader = true, "authorization" }), []string{"gateway.routes[1].static_key_header:", "reserved"}},
		{"key header keybound", with(func(s *Spec) { s.AllowStaticKeys, s.StaticKeyHeader = true, "X-Keybound-Client-Id" }), []string{"gateway.routes[1].static_key_header:", "reserved"}},
		{"too many routes", make([]Spec, MaxRoutes+1), []string{"gateway.routes: 1001 routes"}},
		{"every problem reported", []Spec{{}}, []string{
			"gateway.routes[0].name:", "gateway.routes[0].path:", "gateway.routes[0].upstream:", "gateway.routes[0].sensitivity:",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := Compile(tt.specs)
			if err == nil {
				t.Fatal("Compile accepted it")
			}
			if tb != nil {
				t.Error("Compile returned a table with an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	s := spec("full", "/v1/orders/{id}/items/{rest...}", "get", "POST")
	s.Host = "API.Example.com."
	s.Upstream = "https://orders.internal/base"
	s.Audiences = []string{"https://api.example.com"}
	s.Sensitivity = "Confidential"
	s.RateLimit = &RateSpec{PerIdentity: "120/m"}
	s.Scopes = ScopeSpec{All: []string{"orders"}, ByMethod: map[string][]string{"POST": {"orders:write"}, "*": {"orders:read"}}}
	tb := mustCompile(t, s, spec("root", "/"), spec("v6", "/x"))
	r := tb.Routes()[0]
	if r.Sensitivity != Confidential || r.Upstream.Host != "orders.internal" || r.host != "api.example.com" {
		t.Errorf("route = %+v", r)
	}
	if want := (Rate{PerSecond: 2, Burst: 120}); r.Limit != want {
		t.Errorf("Limit = %+v, want %+v", r.Limit, want)
	}
	if !slices.Equal(r.Methods, []string{"GET", "POST"}) {
		t.Errorf("Methods = %v", r.Methods)
	}
	if got := r.RequiredScopes("POST"); !slices.Equal(got, []string{"orders", "orders:write"}) {
		t.Errorf("POST scopes = %v", got)
	}
	if got := r.RequiredScopes("GET"); !slices.Equal(got, []string{"orders", "orders:read"}) {
		t.Errorf("GET scopes = %v", got)
	}
	// Compile copies: changing the input afterwards changes nothing.
	s.Methods[0] = "DELETE"
	if r.Methods[0] != "GET" {
		t.Error("route shares the caller's Methods slice")
	}
	if tb.Routes()[1].Limit != (Rate{}) || !tb.Routes()[1].Limit.IsZero() {
		t.Error("route without rate_limit has a limit")
	}
}

func TestStaticKeyHeader(t *testing.T) {
	def := spec("def", "/a")
	def.AllowStaticKeys = true
	custom := spec("custom", "/b")
	custom.AllowStaticKeys, custom.StaticKeyHeader = true, "x-partner-token"
	over := spec("over", "/c")
	over.Sensitivity, over.AllowStaticKeys, over.AllowWeakerAssurance = "confidential", true, true
	none := spec("none", "/d")
	tb := mustCompile(t, def, custom, over, none)
	for i, want := range []string{"X-Api-Key", "X-Partner-Token", "X-Api-Key", ""} {
		if got := tb.Routes()[i].StaticKeyHeader; got != want {
			t.Errorf("route %s: StaticKeyHeader = %q, want %q", tb.Routes()[i].Name, got, want)
		}
	}
}

func TestRates(t *testing.T) {
	for _, tt := range []struct {
		in   RateSpec
		want Rate
	}{
		{RateSpec{PerIdentity: "100/s", Burst: 200}, Rate{100, 200}},
		{RateSpec{PerIdentity: "100/s"}, Rate{100, 100}},
		{RateSpec{PerIdentity: "60/m"}, Rate{1, 60}},
		{RateSpec{PerIdentity: "36/h", Burst: 1}, Rate{0.01, 1}},
	} {
		got, err := parseRate(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseRate(%+v) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestScopesYAML(t *testing.T) {
	tests := []struct {
		name, doc string
		want      ScopeSpec
		wantErr   bool
	}{
		{"list", "scopes: [a, b]", ScopeSpec{All: []string{"a", "b"}}, false},
		{"map", "scopes: {GET: [a], '*': [b]}", ScopeSpec{ByMethod: map[string][]string{"GET": {"a"}, "*": {"b"}}}, false},
		{"null", "scopes: ~", ScopeSpec{}, false},
		{"absent", "name: x", ScopeSpec{}, false},
		{"alias", "x: &s [a]\nscopes: *s", ScopeSpec{All: []string{"a"}}, false},
		{"string", "scopes: a b", ScopeSpec{}, true},
		{"map of string", "scopes: {GET: a}", ScopeSpec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v struct {
				Name   string    `yaml:"name"`
				X      []string  `yaml:"x"`
				Scopes ScopeSpec `yaml:"scopes"`
			}
			err := yaml.Unmarshal([]byte(tt.doc), &v)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && fmt.Sprint(v.Scopes) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v", v.Scopes, tt.want)
			}
		})
	}
}

func TestSpecYAML(t *testing.T) {
	doc := `
name: orders
host: api.example.com
path: /v1/orders/{id}
methods: [GET, DELETE]
upstream: https://orders.internal
scopes: {GET: [orders:read], DELETE: [orders:admin]}
audiences: [https://api.example.com]
sensitivity: restricted
rate_limit: {per_identity: "100/s", burst: 200}
allow_static_keys: true
allow_weaker_assurance: true
`
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	tb := mustCompile(t, s)
	m, err := tb.Match("api.example.com", "DELETE", "/v1/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	r := m.Route
	if r.Sensitivity != Restricted || !r.AllowStaticKeys || !r.AllowWeakerAssurance || r.Limit != (Rate{100, 200}) {
		t.Errorf("route = %+v", r)
	}
	if got := r.RequiredScopes("DELETE"); !slices.Equal(got, []string{"orders:admin"}) {
		t.Errorf("DELETE scopes = %v", got)
	}
}

// table is the routing fixture for the matching tests.
func table(t testing.TB) *Table {
	hosted := func(s Spec, h string) Spec { s.Host = h; return s }
	return mustCompile(t,
		spec("users-me", "/users/me", "GET"),
		spec("users-id", "/users/{id}"),
		spec("users-id-posts", "/users/{id}/posts/{post}", "GET", "POST"),
		spec("users-files", "/users/{id}/files/{path...}", "GET"),
		spec("static", "/static/{path...}", "GET", "HEAD"),
		spec("root", "/", "GET"),
		spec("fallback", "/{all...}", "GET"),
		spec("trailing", "/dir/", "GET"),
		spec("dir", "/dir", "GET"),
		spec("orders-any", "/orders", "GET"),
		hosted(spec("orders-api", "/orders", "GET"), "api.example.com"),
		hosted(spec("orders-v6", "/orders", "GET"), "[::1]"),
		spec("items", "/items/{id}", "GET"),
		spec("items-del", "/items/{id}", "DELETE"),
		hosted(spec("admin", "/admin/{op}", "POST"), "admin.example.com"),
		spec("enc", "/a%20b/c", "GET"),
	)
}

func TestMatch(t *testing.T) {
	tb := table(t)
	tests := []struct {
		host, method, path string
		route              string
		params             Params
	}{
		{"x", "GET", "/users/me", "users-me", Params{}},
		{"x", "POST", "/users/me", "users-id", Params{{"id", "me"}}}, // users-me is GET only; the parameter route accepts any method
		{"x", "GET", "/users/42", "users-id", Params{{"id", "42"}}},
		{"x", "PATCH", "/users/42", "users-id", Params{{"id", "42"}}},
		{"x", "GET", "/users/42/posts/7", "users-id-posts", Params{{"id", "42"}, {"post", "7"}}},
		{"x", "GET", "/users/me/posts/7", "users-id-posts", Params{{"id", "me"}, {"post", "7"}}},
		{"x", "GET", "/users/42/files/a/b/c.txt", "users-files", Params{{"id", "42"}, {"path", "a/b/c.txt"}}},
		{"x", "GET", "/users/42/files/", "users-files", Params{{"id", "42"}, {"path", ""}}},
		{"x", "GET", "/users/42/posts", "fallback", Params{{"all", "users/42/posts"}}},
		{"x", "GET", "/static/css/site.css", "static", Params{{"path", "css/site.css"}}},
		{"x", "HEAD", "/static/x", "static", Params{{"path", "x"}}},
		{"x", "GET", "/", "root", Params{}},
		{"x", "GET", "/nothing/here", "fallback", Params{{"all", "nothing/here"}}},
		{"x", "GET", "/dir/", "trailing", Params{}},
		{"x", "GET", "/dir", "dir", Params{}},
		{"x", "GET", "/static", "fallback", Params{{"all", "static"}}},
		// Host: specific beats any-host; case and port ignored.
		{"api.example.com", "GET", "/orders", "orders-api", Params{}},
		{"API.Example.COM:8443", "GET", "/orders", "orders-api", Params{}},
		{"api.example.com.", "GET", "/orders", "orders-api", Params{}},
		{"other.example.com", "GET", "/orders", "orders-any", Params{}},
		{"", "GET", "/orders", "orders-any", Params{}},
		{"[::1]:443", "GET", "/orders", "orders-v6", Params{}},
		// Same pattern, disjoint methods.
		{"x", "GET", "/items/1", "items", Params{{"id", "1"}}},
		{"x", "DELETE", "/items/1", "items-del", Params{{"id", "1"}}},
		{"admin.example.com", "POST", "/admin/reset", "admin", Params{{"op", "reset"}}},
		// Escapes: literals compare decoded, parameters decode, %2F never splits.
		{"x", "GET", "/users/%6De", "users-me", Params{}},
		{"x", "GET", "/users/a%2Fb", "users-id", Params{{"id", "a/b"}}},
		{"x", "GET", "/users/a%20b/posts/%7E", "users-id-posts", Params{{"id", "a b"}, {"post", "~"}}},
		{"x", "GET", "/a%20b/c", "enc", Params{}},
		{"x", "GET", "/static/a%2Fb/c", "static", Params{{"path", "a/b/c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.host+tt.path, func(t *testing.T) {
			m, err := tb.Match(tt.host, tt.method, tt.path)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if m.Route.Name != tt.route {
				t.Errorf("route = %q, want %q", m.Route.Name, tt.route)
			}
			if m.Template != m.Route.Path {
				t.Errorf("Template = %q, want %q", m.Template, m.Route.Path)
			}
			if !slices.Equal(m.Params, tt.params) {
				t.Errorf("params = %v, want %v", m.Params, tt.params)
			}
			for _, p := range tt.params {
				if v, ok := m.Params.Get(p.Name); !ok || v != p.Value {
					t.Errorf("Get(%q) = %q, %v", p.Name, v, ok)
				}
			}
		})
	}
}

func TestMatchRefusals(t *testing.T) {
	tb := table(t)
	tests := []struct {
		name, host, method, path string
		want                     error
		allowed                  []string
	}{
		{"method not allowed", "x", "DELETE", "/static/a", ErrMethodNotAllowed, []string{"GET", "HEAD"}},
		{"405 unions routes", "x", "PUT", "/items/1", ErrMethodNotAllowed, []string{"GET", "DELETE"}},
		{"405 with lower-case method", "x", "get", "/dir", ErrMethodNotAllowed, []string{"GET"}},
		{"405 counts other branches", "x", "PUT", "/users/42/files/x", ErrMethodNotAllowed, []string{"GET"}},
		{"host-specific route for other host", "other.example.com", "POST", "/admin/reset", ErrMethodNotAllowed, []string{"GET"}}, // fallback is GET only
		{"empty path", "x", "GET", "", ErrNoRoute, nil},
		{"relative path", "x", "GET", "users/me", ErrNoRoute, nil},
		{"double slash", "x", "GET", "/users//me", ErrNoRoute, nil},
		{"leading double slash", "x", "GET", "//users/me", ErrNoRoute, nil},
		{"dot dot", "x", "GET", "/static/../admin/x", ErrNoRoute, nil},
		{"trailing dot dot", "x", "GET", "/static/..", ErrNoRoute, nil},
		{"dot", "x", "GET", "/static/./x", ErrNoRoute, nil},
		{"encoded dot dot", "x", "GET", "/static/%2e%2e/admin", ErrNoRoute, nil},
		{"mixed encoded dot dot", "x", "GET", "/static/.%2E/admin", ErrNoRoute, nil},
		{"encoded slash traversal", "x", "GET", "/static/a%2F..%2Fadmin", ErrNoRoute, nil},
		{"encoded backslash traversal", "x", "GET", "/static/a%5C..%5Cadmin", ErrNoRoute, nil},
		{"backslash traversal", "x", "GET", `/static/..\admin`, ErrNoRoute, nil},
		{"tomcat path parameter", "x", "GET", "/static/..;/admin", ErrNoRoute, nil},
		{"encoded tomcat path parameter", "x", "GET", "/static/..%3Bx/admin", ErrNoRoute, nil},
		{"bad escape", "x", "GET", "/users/%zz", ErrNoRoute, nil},
		{"truncated escape", "x", "GET", "/users/%2", ErrNoRoute, nil},
		{"nul", "x", "GET", "/users/a%00b", ErrNoRoute, nil},
		{"newline", "x", "GET", "/users/a%0Ab", ErrNoRoute, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tb.Match(tt.host, tt.method, tt.path)
			if m != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Match = %v, %v; want %v", m, err, tt.want)
			}
			var me *MatchError
			if errors.As(err, &me) != (tt.allowed != nil) {
				t.Fatalf("error %v: MatchError presence wrong", err)
			}
			if me != nil && !slices.Equal(me.Allowed, tt.allowed) {
				t.Errorf("Allowed = %v, want %v", me.Allowed, tt.allowed)
			}
		})
	}

	// Without a catch-all, an unknown path is a 404.
	tb2 := mustCompile(t, spec("a", "/a", "GET"), func() Spec { s := spec("b", "/b"); s.Host = "b.example"; return s }())
	for _, p := range []string{"/", "/c", "/a/", "/A"} {
		if _, err := tb2.Match("x", "GET", p); err != ErrNoRoute {
			t.Errorf("Match(%q) = %v, want ErrNoRoute", p, err)
		}
	}
	if _, err := tb2.Match("other", "GET", "/b"); err != ErrNoRoute {
		t.Errorf("host-specific route matched another host: %v", err)
	}
	var nilTable *Table
	if _, err := nilTable.Match("x", "GET", "/a"); err != ErrNoRoute {
		t.Errorf("nil table: %v", err)
	}
}

// TestMatchBacktracks checks that a literal branch that fails deeper down
// gives way to the parameter branch, then to a catch-all.
func TestMatchBacktracks(t *testing.T) {
	tb := mustCompile(t,
		spec("lit", "/a/b/c"),
		spec("par", "/a/{x}/d"),
		spec("all", "/a/{rest...}"),
	)
	for path, want := range map[string]string{"/a/b/c": "lit", "/a/b/d": "par", "/a/b/e": "all", "/a/b": "all"} {
		m, err := tb.Match("h", "GET", path)
		if err != nil || m.Route.Name != want {
			t.Errorf("Match(%q) = %v, %v; want %s", path, m, err, want)
		}
	}
}

func TestManyParams(t *testing.T) {
	tb := mustCompile(t, spec("p", "/{a}/{b}/{c}/{d}/{e}/{f}"))
	m, err := tb.Match("h", "GET", "/1/2/3/4/5/6")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Params.Get("f"); v != "6" || len(m.Params) != 6 {
		t.Errorf("params = %v", m.Params)
	}
}

// benchTable builds 100 routes shaped like a real API: 20 services with
// five routes each.
func benchTable(b testing.TB) *Table {
	var specs []Spec
	for i := range 20 {
		svc := fmt.Sprintf("/svc%d", i)
		specs = append(specs,
			spec(fmt.Sprintf("s%d-list", i), svc+"/items", "GET", "POST"),
			spec(fmt.Sprintf("s%d-item", i), svc+"/items/{id}", "GET", "PUT", "DELETE"),
			spec(fmt.Sprintf("s%d-sub", i), svc+"/items/{id}/children/{child}", "GET"),
			spec(fmt.Sprintf("s%d-health", i), svc+"/healthz", "GET"),
			spec(fmt.Sprintf("s%d-files", i), svc+"/files/{path...}", "GET"),
		)
	}
	return mustCompile(b, specs...)
}

func BenchmarkMatch(b *testing.B) {
	tb := benchTable(b)
	for _, bc := range []struct{ name, path string }{
		{"literal", "/svc17/healthz"},
		{"params", "/svc17/items/12345/children/678"},
		{"catch-all", "/svc17/files/a/b/c.txt"},
		{"escaped", "/svc17/items/a%20b"},
		{"upper-case", "/svc17/items/ABC-12345"}, // read leniently too
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tb.Match("api.example.com", "GET", bc.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tb.Match("api.example.com", "GET", "/nope/x"); err != ErrNoRoute {
				b.Fatal(err)
			}
		}
	})
}

// TestAmbiguousPaths: a path that matched a weaker route but that a
// lenient upstream would read as a stricter route's path on the same
// upstream is refused; the exact path, ambiguity without a policy gap,
// and stricter routes on other upstreams still match.
func TestAmbiguousPaths(t *testing.T) {
	admin := spec("admin", "/admin/{id}")
	admin.Sensitivity, admin.Scopes = "restricted", ScopeSpec{All: []string{"admin"}}
	other := spec("other-admin", "/ops/{id}")
	other.Sensitivity, other.Upstream = "restricted", "http://ops.internal:8080"
	docs := spec("docs", "/docs/{page}")
	tb := mustCompile(t, admin, other, docs, spec("rest", "/{rest...}"))
	tests := []struct {
		path  string
		route string // "" means ErrAmbiguousPath
	}{
		{"/admin/5", "admin"},
		{"/ADMIN/5", ""},     // case-insensitive upstreams
		{"/Admin/5", ""},     //
		{"/admin;x=1/5", ""}, // ';' parameters dropped (Tomcat, Spring)
		{"/admin%2F5", ""},   // encoded '/' decoded before routing
		{"/admin%2f5", ""},   //
		{"/admin%5C5", ""},   // '\' as a separator (IIS)
		{"/%41dmin/5", ""},   // an encoded capital, read case-insensitively
		{"/admin/5/", ""},    // a trailing '/' ignored (Express, Spring 5)
		{"/adm/5/", "rest"},  // ambiguous with nothing
		{"/Docs/Intro", "rest"},
		{"/OPS/1", "rest"}, // the stricter route is on another upstream
		{"/users/ABC-123", "rest"},
	}
	for _, tt := range tests {
		m, err := tb.Match("x", "GET", tt.path)
		switch {
		case tt.route == "":
			if !errors.Is(err, ErrAmbiguousPath) || !errors.Is(err, ErrNoRoute) {
				t.Errorf("%s: route %v, err %v; want ErrAmbiguousPath (also ErrNoRoute)", tt.path, m, err)
			}
		case err != nil:
			t.Errorf("%s: %v, want route %s", tt.path, err, tt.route)
		case m.Route.Name != tt.route:
			t.Errorf("%s: route %s, want %s", tt.path, m.Route.Name, tt.route)
		}
	}
}

// TestAmbiguousPathsMore: upper-case route literals, encoded letters,
// routes ending in '/', and policy gaps other than sensitivity are caught;
// precedence between routes the exact path matches is not ambiguity.
func TestAmbiguousPathsMore(t *testing.T) {
	upper := spec("upper-admin", "/Admin/{id}")
	upper.Sensitivity = "restricted"
	slash := spec("slash-admin", "/tools/")
	slash.Sensitivity = "restricted"
	reports := spec("reports", "/reports/{id}")
	reports.Sensitivity = "confidential"
	weak := spec("weak", "/{rest...}")
	weak.Sensitivity, weak.AllowWeakerAssurance = "confidential", true
	me := spec("me", "/users/me", "GET")
	anyUser := spec("any-user", "/users/{id}")
	anyUser.Sensitivity = "restricted"
	tb := mustCompile(t, upper, slash, reports, weak, me, anyUser)
	tests := []struct {
		path  string
		route string // "" means ErrAmbiguousPath
	}{
		{"/Admin/5", "upper-admin"},
		{"/admin/5", ""},              // a case-insensitive upstream serves /Admin/5
		{"/ADMIN/5", ""},              //
		{"/%41dmin/5", "upper-admin"}, // decoded, it is the route's own literal
		{"/tools/", "slash-admin"},
		{"/TOOLS/", ""}, // the trailing '/' kept for a route ending in '/'
		{"/reports/1", "reports"},
		{"/Reports/1", ""},        // the catch-all is allowed below its floor; reports is not
		{"/users/me", "me"},       // precedence over /users/{id}, not ambiguity
		{"/users/42", "any-user"}, //
		{"/other", "weak"},
	}
	for _, tt := range tests {
		m, err := tb.Match("x", "GET", tt.path)
		switch {
		case tt.route == "":
			if !errors.Is(err, ErrAmbiguousPath) {
				t.Errorf("%s: route %v, err %v; want ErrAmbiguousPath", tt.path, m, err)
			}
		case err != nil:
			t.Errorf("%s: %v, want route %s", tt.path, err, tt.route)
		case m.Route.Name != tt.route:
			t.Errorf("%s: route %s, want %s", tt.path, m.Route.Name, tt.route)
		}
	}
	// A rate limit the catch-all lacks is a policy gap too.
	limited := spec("limited", "/export/{id}")
	limited.RateLimit = &RateSpec{PerIdentity: "1/s"}
	tb = mustCompile(t, limited, spec("rest", "/{rest...}"))
	if _, err := tb.Match("x", "GET", "/Export/1"); !errors.Is(err, ErrAmbiguousPath) {
		t.Errorf("/Export/1 past a rate-limited route: %v, want ErrAmbiguousPath", err)
	}
}
