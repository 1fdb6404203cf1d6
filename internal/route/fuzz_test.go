package route

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzCompile compiles arbitrary patterns. Invariants: no panic; an accepted
// pattern matches a path built from it, with the parameter values put in.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"/", "/a", "/a/", "/a/{b}", "/a/{b}/c/{d...}", "/{x...}", "/a%20b/{c}", "/{}", "/{a}{b}",
		"/a/{x...}/b", "/a/{x}/{x}", "/a/../b", "/a//b", "/%2e%2e", "/a/{b", "a", "", "/a;b=c/@:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pat string) {
		tb, err := Compile([]Spec{spec("f", pat)})
		if err != nil {
			if tb != nil {
				t.Fatal("table returned with an error")
			}
			return
		}
		var path strings.Builder
		want := Params{}
		for i, s := range strings.Split(pat[1:], "/") {
			path.WriteByte('/')
			switch {
			case strings.HasSuffix(s, "...}"):
				name := s[1 : len(s)-4]
				path.WriteString("x/y%2Fz")
				want = append(want, Param{name, "x/y/z"})
			case strings.HasPrefix(s, "{"):
				name := s[1 : len(s)-1]
				v := fmt.Sprintf("v%d", i)
				path.WriteString(v)
				want = append(want, Param{name, v})
			default:
				path.WriteString(s)
			}
		}
		m, err := tb.Match("h", "GET", path.String())
		if err != nil {
			t.Fatalf("pattern %q does not match %q: %v", pat, path.String(), err)
		}
		if len(m.Params) != len(want) {
			t.Fatalf("pattern %q, path %q: params %v, want %v", pat, path.String(), m.Params, want)
		}
		for i := range want {
			if m.Params[i] != want[i] {
				t.Fatalf("pattern %q, path %q: params %v, want %v", pat, path.String(), m.Params, want)
			}
		}
	})
}

// FuzzMatch matches arbitrary requests against a fixed table. Invariants: no
// panic; a match admits the method and host and passes the path rule; a
// refusal is one of the two sentinels; a 405 lists methods.
func FuzzMatch(f *testing.F) {
	tb := table(f)
	for _, s := range []string{"/users/me", "/users/a%2Fb/posts/1", "/static/..", "//x", "/%zz", "/", "", "/dir/", "/static/a%2F..%2Fb"} {
		f.Add("api.example.com", "GET", s)
	}
	f.Add("[::1]:1", "DELETE", "/items/1")
	f.Fuzz(func(t *testing.T, host, method, path string) {
		m, err := tb.Match(host, method, path)
		if err != nil {
			var me *MatchError
			switch {
			case err == ErrNoRoute:
			case errors.As(err, &me) && me.Err == ErrMethodNotAllowed && len(me.Allowed) > 0:
			default:
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		r := m.Route
		if !validPath(path) || !r.methods.allows(method) || (r.host != "" && !strings.EqualFold(r.host, requestHost(host))) {
			t.Fatalf("Match(%q, %q, %q) = %q, which should not match", host, method, path, r.Name)
		}
		if len(m.Params) != r.pat.nparams {
			t.Fatalf("route %q: %d params, want %d", r.Name, len(m.Params), r.pat.nparams)
		}
		m2, err := tb.Match(host, method, path)
		if err != nil || m2.Route != r {
			t.Fatal("Match is not deterministic")
		}
	})
}
