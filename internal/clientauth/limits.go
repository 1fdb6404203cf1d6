package clientauth

import "time"

// Bounds on what a client may send and on what the server does per request.
// Each keeps one token request cheap no matter what an unauthenticated caller
// sends.
const (
	// MaxAssertionBytes bounds a client_assertion before it is decoded. An
	// ES256 or EdDSA assertion is under 1 KiB and an RS256 one with a 4096-bit
	// key under 2 KiB; 8 KiB leaves room for extra claims and no more.
	MaxAssertionBytes = 8 << 10
	// MaxJTILen bounds the jti a replay cache must remember.
	MaxJTILen = 256
	// MaxClientIDLen bounds a client_id (form, Basic user or assertion sub)
	// before it is used as a store key.
	MaxClientIDLen = 256
	// MinRSABits is the smallest RSA modulus accepted for private_key_jwt
	// (RFC 7518 section 3.3 requires 2048).
	MinRSABits = 2048
	// MaxPeerCertificates bounds the chain a client may present for
	// tls_client_auth; longer chains are refused before verification.
	MaxPeerCertificates = 8

	// DefaultMaxAssertionLifetime is used when MaxAssertionLifetime is zero.
	DefaultMaxAssertionLifetime = 5 * time.Minute
	// DefaultLeeway is used when Leeway is zero. It absorbs clock skew
	// between the client and the server.
	DefaultLeeway = 30 * time.Second
)
