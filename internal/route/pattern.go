package route

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

type segKind uint8

const (
	literal segKind = iota
	param
	catchAll
)

// segment is one "/"-separated piece of a pattern. lit holds a literal's
// decoded text, which is what request segments are compared with.
type segment struct {
	kind segKind
	lit  string
	name string
}

// pattern is a compiled path pattern.
type pattern struct {
	segs    []segment
	nparams int
	// shape identifies patterns that match exactly the same paths (literals
	// decoded, parameter names dropped), for duplicate detection.
	shape string
}

// parsePattern compiles a path pattern. Its segments are those of the path
// after the leading "/": "/" has one empty segment, "/a/" has "a" and "".
// An empty segment is allowed only last (a trailing slash).
func parsePattern(p string) (pattern, error) {
	if p == "" {
		return pattern{}, errors.New("is required")
	}
	if p[0] != '/' {
		return pattern{}, errors.New(`must start with "/"`)
	}
	if len(p) > MaxPatternLen {
		return pattern{}, fmt.Errorf("is longer than %d bytes", MaxPatternLen)
	}
	raw := strings.Split(p[1:], "/")
	if len(raw) > MaxSegments {
		return pattern{}, fmt.Errorf("has %d segments; at most %d are allowed", len(raw), MaxSegments)
	}
	var pat pattern
	var shape strings.Builder
	seen := make(map[string]bool)
	for i, s := range raw {
		last := i == len(raw)-1
		if strings.ContainsAny(s, "{}") {
			if s[0] != '{' || s[len(s)-1] != '}' || strings.Count(s, "{") != 1 || strings.Count(s, "}") != 1 {
				return pattern{}, fmt.Errorf("segment %q: a parameter must be a whole segment, {name} or {name...}", s)
			}
			name := s[1 : len(s)-1]
			kind := param
			if n, ok := strings.CutSuffix(name, "..."); ok {
				if !last {
					return pattern{}, fmt.Errorf("segment %q: a catch-all {name...} must be the last segment", s)
				}
				name, kind = n, catchAll
			}
			if err := checkParamName(name); err != nil {
				return pattern{}, fmt.Errorf("segment %q: %w", s, err)
			}
			if seen[name] {
				return pattern{}, fmt.Errorf("parameter %q appears twice", name)
			}
			seen[name] = true
			pat.segs = append(pat.segs, segment{kind: kind, name: name})
			pat.nparams++
			if kind == param {
				shape.WriteString("\x00{}")
			} else {
				shape.WriteString("\x00{...}")
			}
			continue
		}
		if s == "" && !last {
			return pattern{}, errors.New(`must not contain an empty segment ("//")`)
		}
		for j := 0; j < len(s); j++ {
			if !isPchar(s[j]) {
				return pattern{}, fmt.Errorf("segment %q: character %q is not allowed in a path segment (RFC 3986 section 3.3); percent-encode it", s, s[j])
			}
		}
		dec, err := url.PathUnescape(s)
		if err != nil {
			return pattern{}, fmt.Errorf("segment %q: malformed percent-encoding", s)
		}
		if err := checkSegment(dec); err != nil {
			return pattern{}, fmt.Errorf("segment %q: %w", s, err)
		}
		pat.segs = append(pat.segs, segment{kind: literal, lit: dec})
		shape.WriteString("\x00L")
		shape.WriteString(dec)
	}
	pat.shape = shape.String()
	return pat, nil
}

func checkParamName(name string) error {
	if name == "" {
		return errors.New("parameter name is empty")
	}
	if len(name) > MaxParamNameLen {
		return fmt.Errorf("parameter name is longer than %d bytes", MaxParamNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return fmt.Errorf("parameter name %q must be letters, digits and _, not starting with a digit", name)
	}
	return nil
}

// isPchar reports whether c may appear in a path segment as written (RFC
// 3986 section 3.3: unreserved, sub-delims, ":", "@", and "%" starting an
// escape, which url.PathUnescape checks).
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', // unreserved
		'!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', // sub-delims
		':', '@', '%':
		return true
	}
	return false
}

var (
	errDotSegment = errors.New(`a segment must not be "." or ".." (nor decode to one)`)
	errControl    = errors.New("a segment must not contain control characters")
)

// checkSegment refuses a decoded segment that some server between here and
// the application could treat as a dot segment: "." or "..", or one that a
// server decoding %2F or %5C, or dropping ";parameters" (as Tomcat does),
// would see as containing one. It also refuses control bytes.
func checkSegment(dec string) error {
	for i := 0; i < len(dec); i++ {
		if c := dec[i]; c < 0x20 || c == 0x7f {
			return errControl
		}
	}
	start := 0
	for i := 0; i <= len(dec); i++ {
		if i < len(dec) && dec[i] != '/' && dec[i] != '\\' {
			continue
		}
		part := dec[start:i]
		if j := strings.IndexByte(part, ';'); j >= 0 {
			part = part[:j]
		}
		if part == "." || part == ".." {
			return errDotSegment
		}
		start = i + 1
	}
	return nil
}
