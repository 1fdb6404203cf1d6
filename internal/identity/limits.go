package identity

// Bounds on registration fields. Each keeps one stored row, one token and
// one admin audit entry small enough that no client can exhaust memory or
// bloat every token it is issued.
const (
	// MaxScopes bounds granted scopes; tokens repeat them, so they stay short.
	MaxScopes = 64
	// MaxScopeLen bounds one scope token.
	MaxScopeLen = 128
	// MaxAudiences bounds the resource indicators a client may be granted.
	MaxAudiences = 16
	// MaxTextLen bounds free-text fields (name, owner, purpose, vendor).
	MaxTextLen = 256
	// MaxJWKSBytes bounds a registered JWK set (a few RSA-4096 keys with x5c).
	MaxJWKSBytes = 64 << 10
	// MaxJWKSKeys bounds the keys in a registered set (rotation overlap needs 2-3).
	MaxJWKSKeys = 8
	// MaxTags bounds the application tags of one identity.
	MaxTags = 16
)
