package workload

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md).
// keybound names every registered identity spiffe://TRUST_DOMAIN/client/ID:
// the client id is unique and never reused, so the SPIFFE ID is bound to
// exactly one registration without any registration-time choice that two
// identities could make alike.

// clientPathPrefix is the path under which client ids appear.
const clientPathPrefix = "/client/"

// ValidTrustDomain checks td against the SPIFFE ID grammar: 1 to 255
// characters of lower-case letters, digits, '.', '-' and '_'.
func ValidTrustDomain(td string) error {
	if td == "" || len(td) > 255 {
		return errors.New("a trust domain must be 1 to 255 characters")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("trust domain %q may hold only lower-case letters, digits, '.', '-' and '_'", td)
		}
	}
	return nil
}

// validSegment reports whether s is a SPIFFE path segment: letters, digits,
// '.', '-' and '_', not "." or "..".
func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// SPIFFEID returns the SPIFFE ID of clientID in trustDomain, or an error if
// the client id cannot be a SPIFFE path segment.
func SPIFFEID(trustDomain, clientID string) (string, error) {
	if !validSegment(clientID) {
		return "", fmt.Errorf("client id %q cannot be named in a SPIFFE ID", clientID)
	}
	return "spiffe://" + trustDomain + clientPathPrefix + clientID, nil
}

// ClientFromSPIFFEID returns the client id that u names in trustDomain, or
// false if u is not a keybound client SPIFFE ID of that trust domain.
func ClientFromSPIFFEID(trustDomain string, u *url.URL) (string, bool) {
	if u == nil || u.Scheme != "spiffe" || u.Host != trustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.RawPath != "" {
		return "", false
	}
	id, ok := strings.CutPrefix(u.Path, clientPathPrefix)
	if !ok || !validSegment(id) {
		return "", false
	}
	return id, true
}
