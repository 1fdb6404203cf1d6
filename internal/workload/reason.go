package workload

import (
	"fmt"
	"strings"
)

// Reason is an RFC 5280 section 5.3.1 CRLReason, as keybound uses it: the
// reasons an operator can give for revoking a workload certificate. Its
// value is the code the CRL entry carries.
type Reason int

// Reasons keybound accepts. Other RFC 5280 codes (cACompromise,
// certificateHold, removeFromCRL, privilegeWithdrawn, aACompromise) do not
// apply to short-lived workload certificates.
const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
)

var reasonNames = map[Reason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "key-compromise",
	ReasonAffiliationChanged:   "affiliation-changed",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessation-of-operation",
}

// ReasonNames lists the names ParseReason accepts, in code order.
var ReasonNames = []string{"unspecified", "key-compromise", "affiliation-changed", "superseded", "cessation-of-operation"}

// String returns the reason's name, e.g. "key-compromise".
func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ParseReason reads a reason name; "" is unspecified.
func ParseReason(s string) (Reason, error) {
	if s == "" {
		return ReasonUnspecified, nil
	}
	for r, n := range reasonNames {
		if n == s {
			return r, nil
		}
	}
	return 0, refuse(ErrBadRequest, "the revocation reason must be one of "+strings.Join(ReasonNames, ", "))
}

// The store keeps one free-text revocation_reason per certificate, written
// before reason codes existed. To stay compatible without a schema change,
// a reason code other than unspecified is stored as a prefix of that text:
// "key-compromise" or "key-compromise: laptop lost". Anything else, and
// every value stored before codes existed, reads as unspecified with the
// whole text as its comment. An unspecified comment that would read as a
// code is stored behind "unspecified: ".

// EncodeRevocation is the stored form of a reason and its comment.
func EncodeRevocation(r Reason, comment string) string {
	if r == ReasonUnspecified {
		if got, _ := DecodeRevocation(comment); got == ReasonUnspecified && !strings.HasPrefix(comment, "unspecified") {
			return comment
		}
	}
	if comment == "" {
		return r.String()
	}
	return r.String() + ": " + comment
}

// DecodeRevocation splits a stored revocation reason into its code and
// comment.
func DecodeRevocation(stored string) (Reason, string) {
	for r, n := range reasonNames {
		if stored == n {
			return r, ""
		}
		if rest, ok := strings.CutPrefix(stored, n+": "); ok {
			return r, rest
		}
	}
	return ReasonUnspecified, stored
}
