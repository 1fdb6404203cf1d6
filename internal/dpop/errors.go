package dpop

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on with errors.Is. Every error Verify
// returns for a bad proof wraps exactly one of them and says, in its text,
// what the client must fix.
var (
	// ErrInvalidProof means the proof is malformed, does not verify, or does
	// not match the request: answer invalid_dpop_proof (RFC 9449 section 7.1).
	ErrInvalidProof = errors.New("dpop: invalid proof")
	// ErrUseNonce means a server nonce is required and the proof carried none
	// or an unknown one: answer use_dpop_nonce with a DPoP-Nonce header
	// holding Verifier.Nonce.Current() (RFC 9449 section 8).
	ErrUseNonce = errors.New("dpop: proof must carry the current server nonce")
	// ErrReplay means the proof's jti was already used within its window. It
	// also matches ErrInvalidProof, the code the client is sent.
	ErrReplay = errors.New("dpop: proof was already used")
	// ErrKeyMismatch means the proof key is not the one Request.JKT names
	// (the access token's cnf.jkt): a token used with someone else's key.
	// It also matches ErrInvalidProof, the code the client is sent.
	ErrKeyMismatch = errors.New("dpop: proof key is not the key the token is bound to")
	// ErrUnavailable means the proof could not be checked for replay
	// because the replay cache had no room for its jti. The proof may be
	// fine: answer a temporary server failure (503), not
	// invalid_dpop_proof, and let the client retry. It does not match
	// ErrInvalidProof.
	ErrUnavailable = errors.New("dpop: replay protection is out of capacity")
)

// proofError carries a message for the client, the sentinel it matches and,
// for ErrUnavailable, the replay cache's own error.
type proofError struct {
	msg   string
	kind  error
	cause error
}

func (e *proofError) Error() string { return "dpop: " + e.msg }

func (e *proofError) Unwrap() []error {
	switch {
	case e.kind == ErrReplay || e.kind == ErrKeyMismatch:
		// Kinds of invalid proof that callers may want to tell apart.
		return []error{e.kind, ErrInvalidProof}
	case e.cause != nil:
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

func invalidf(format string, args ...any) error {
	return &proofError{msg: fmt.Sprintf(format, args...), kind: ErrInvalidProof}
}

// clip shortens a client-supplied value quoted back in an error so that an
// error message (and the log line it lands in) stays small.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
