package identity

import "encoding/hex"

// FingerprintLen is the number of hex digits of a secret fingerprint.
const FingerprintLen = 16

// SecretFingerprint is how a secret is shown and logged: the first
// FingerprintLen hex digits (64 bits) of its lookup digest (SecretLookup).
//
// Why a prefix? It names one secret unambiguously in reports, admin events
// and SARIF files, which travel further than the store (code-scanning
// dashboards, tickets), while holding less of the digest an attacker could
// test guesses of a low-entropy imported secret against. 64 bits make an
// accidental collision between two secrets of one inventory negligible.
func SecretFingerprint(lookup []byte) string {
	if len(lookup) > FingerprintLen/2 {
		lookup = lookup[:FingerprintLen/2]
	}
	return hex.EncodeToString(lookup)
}
