package sdk

import (
	"strings"
	"sync"
)

// nonceCache remembers the last DPoP-Nonce (RFC 9449 section 8) each origin
// sent. The zero value is ready to use and it is safe for concurrent use.
type nonceCache struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *nonceCache) get(origin string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[origin]
}

// set remembers nonce for origin. Over maxNonceOrigins it forgets every other
// origin: a forgotten nonce costs one use_dpop_nonce retry, unbounded memory
// costs more.
func (c *nonceCache) set(origin, nonce string) {
	if len(nonce) > maxNonceLen || !isNonce(nonce) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || (len(c.m) >= maxNonceOrigins && c.m[origin] == "") {
		c.m = make(map[string]string)
	}
	c.m[origin] = nonce
}

// isNonce reports whether s has the syntax of RFC 9449 section 8.1
// (1*NQCHAR), so a hostile server cannot inject anything into a proof.
func isNonce(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// challengeError returns the error parameter of the DPoP challenge among the
// WWW-Authenticate values (RFC 9449 section 7.1), or "" if there is none. It
// reads only what it needs: a challenge starting with the DPoP scheme and an
// error="..." or error=token parameter in it.
func challengeError(values []string) string {
	for _, v := range values {
		for _, ch := range splitChallenges(v) {
			scheme, params, _ := strings.Cut(strings.TrimSpace(ch), " ")
			if !strings.EqualFold(scheme, "DPoP") {
				continue
			}
			for _, p := range splitParams(params) {
				k, val, ok := strings.Cut(p, "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "error") {
					return strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
		}
	}
	return ""
}

// splitParams splits an auth-param list on commas outside quoted strings.
func splitParams(s string) []string {
	var out []string
	inQuote := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// splitChallenges splits a WWW-Authenticate value holding several challenges
// ("Bearer realm=x, DPoP error=...") where a comma is followed by a token that
// is not itself followed by "=", i.e. a new scheme.
func splitChallenges(v string) []string {
	parts := splitParams(v)
	var out []string
	for _, p := range parts {
		t := strings.TrimSpace(p)
		name, _, _ := strings.Cut(t, " ")
		if len(out) == 0 || (name != "" && !strings.Contains(name, "=")) {
			out = append(out, t)
			continue
		}
		out[len(out)-1] += ", " + t
	}
	return out
}
