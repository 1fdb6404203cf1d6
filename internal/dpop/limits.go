package dpop

import "time"

// Bounds on attacker-controlled input. Each is far above what an honest
// client sends and low enough that a proof costs little to reject.
const (
	// MaxProofBytes bounds a proof. An RSA-4096 proof is about 2.5 KiB; the
	// largest honest proof (RSA-8192 with a long htu) stays under 5 KiB.
	MaxProofBytes = 8 << 10
	// MaxJTILen bounds the jti. RFC 9449 asks for 96 bits of randomness (16
	// base64url characters) or a UUID (36); the jti is kept in the replay
	// cache for the whole window, so its length is memory.
	MaxJTILen = 128
	// MinRSABits is the smallest RSA modulus accepted (NIST SP 800-131A).
	MinRSABits = 2048
	// MaxRSABits is the largest RSA modulus accepted: verification cost grows
	// with the square of the size, and nobody needs more for a DPoP key.
	MaxRSABits = 8192
	// DefaultWindow is how old a proof's iat may be when Verifier.Window is
	// zero. RFC 9449 section 11.1 asks for a short window; 60 seconds covers
	// client clock drift and slow retries.
	DefaultWindow = 60 * time.Second
	// DefaultSkew is how far in the future a proof's iat may be when
	// Verifier.Skew is zero: clients whose clocks run a little fast.
	DefaultSkew = 5 * time.Second
	// DefaultNoncePeriod is how often Nonces rotates when given no period.
	DefaultNoncePeriod = 60 * time.Second
)
