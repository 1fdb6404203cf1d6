package dpop

import (
	"net"
	"net/url"
	"strings"
)

// matchHTU reports whether a proof's htu names the request URL (RFC 9449
// section 4.3 step 9): both are compared without query and fragment, after
// the syntax- and scheme-based normalisation of RFC 3986 sections 6.2.2 and
// 6.2.3 (case of scheme and host, default port, percent-encoding, dot
// segments, empty path).
func matchHTU(htu, reqURL string) bool {
	htu, reqURL = stripQuery(htu), stripQuery(reqURL)
	// Fast path: most clients send back the URL exactly as the server sees it.
	if htu == reqURL && (strings.HasPrefix(reqURL, "https://") || strings.HasPrefix(reqURL, "http://")) {
		return true
	}
	a, ok := normalizeURL(htu)
	if !ok {
		return false
	}
	b, ok := normalizeURL(reqURL)
	return ok && a == b
}

func stripQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// normalizeURL returns the comparable form scheme://host[:port]/path of an
// absolute http or https URL without query or fragment, or false if raw is
// not one. Userinfo is refused: a target URI has none.
func normalizeURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	var defaultPort string
	switch scheme {
	case "https":
		defaultPort = "443"
	case "http":
		defaultPort = "80"
	default:
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", false
	}
	port := strings.TrimLeft(u.Port(), "0")
	if port == defaultPort || (port == "" && u.Port() == "") {
		port = ""
	} else if port == "" { // a port of all zeros
		port = "0"
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	path, ok := normalizePercent(u.EscapedPath())
	if !ok {
		return "", false
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// normalizePercent decodes percent-encoded unreserved characters and
// upper-cases the hex digits of the rest (RFC 3986 section 6.2.2.1-2).
func normalizePercent(p string) (string, bool) {
	if strings.IndexByte(p, '%') < 0 {
		return p, true
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", false
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upper(p[i+1]))
			b.WriteByte(upper(p[i+2]))
		}
		i += 2
	}
	return b.String(), true
}

// removeDotSegments is RFC 3986 section 5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string
	for len(in) > 0 {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			start := 0
			if in[0] == '/' {
				start = 1
			}
			end := strings.IndexByte(in[start:], '/')
			if end < 0 {
				end = len(in)
			} else {
				end += start
			}
			out = append(out, in[:end])
			in = in[end:]
		}
	}
	return strings.Join(out, "")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
