package accesstoken

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestIssueTooLargeSentinel checks that a grant too large for one token is
// told apart from every other Issue failure, so the token endpoint can
// answer it as the client's to fix (invalid_scope) and not as a server
// fault; the other refusals must not match it.
func TestIssueTooLargeSentinel(t *testing.T) {
	k := current(t, newRing(t))
	c := testClaims()
	c.Scope = nil
	for i := range 200 {
		c.Scope = append(c.Scope, fmt.Sprintf("scope-%03d:%s", i, strings.Repeat("x", 40)))
	}
	if _, err := Issue(k, c); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Issue of an oversized grant = %v, want ErrTooLarge", err)
	}
	c = testClaims()
	c.JTI = ""
	if _, err := Issue(k, c); err == nil || errors.Is(err, ErrTooLarge) {
		t.Fatalf("Issue without jti = %v, want an error that is not ErrTooLarge", err)
	}
}
