// Package dpop implements RFC 9449 DPoP proofs: it makes them (Signer),
// checks them against the request they arrived with (Verifier), computes the
// RFC 7638 JWK thumbprints that bind tokens to keys, and issues server nonces
// (Nonces).
//
// It checks one proof against one request and nothing more: it does not read
// HTTP headers, decide whether a token must be DPoP-bound, compare the proof
// key with a token's cnf.jkt, or render wire errors. Callers do those and map
// ErrInvalidProof, ErrUseNonce and ErrReplay to oauth error codes at the edge.
//
// Proofs are parsed and verified by hand with the standard library's crypto
// rather than go-jose, because a DPoP proof has one fixed shape (compact JWS,
// embedded public JWK, five algorithms) and a purpose-built parser into fixed
// structs costs a fraction of a general JOSE library's allocations on the
// gateway's per-request path while exposing less parsing surface to attackers.
package dpop
