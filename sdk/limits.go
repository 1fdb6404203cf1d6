package sdk

import "time"

// Bounds and defaults. Each bound keeps a misbehaving server or a wrong file
// from making the client read or remember without limit.
const (
	// maxKeyFileBytes bounds a key file read by LoadPrivateKey. An RSA-4096
	// PKCS#8 PEM is about 3.3 KiB and its private JWK about 4 KiB.
	maxKeyFileBytes = 64 << 10
	// maxTokenResponseBytes bounds a token endpoint response body. A token
	// response is a few KiB; anything larger is not one.
	maxTokenResponseBytes = 1 << 20
	// maxErrorBodyBytes bounds how much of a refused response is drained so
	// that its connection can be reused before a retry.
	maxErrorBodyBytes = 64 << 10
	// maxNonceOrigins bounds the DPoP nonces remembered by one TokenSource,
	// one per origin; a client that talks to more origins forgets them all
	// and learns each again through one use_dpop_nonce retry.
	maxNonceOrigins = 256
	// maxNonceLen bounds one remembered DPoP-Nonce value.
	maxNonceLen = 1 << 10
	// minRSABits is the smallest RSA modulus used for signing (RFC 7518
	// section 3.3 requires 2048; the keybound server refuses smaller ones).
	minRSABits = 2048

	// assertionLifetime is the exp - iat of a client assertion. It is used
	// once, right away, so it only has to outlast clock skew and one request.
	assertionLifetime = 60 * time.Second
	// maxRefreshMargin is how long before expiry a token is refreshed at most;
	// shorter tokens are refreshed when a tenth of their lifetime remains.
	maxRefreshMargin = 30 * time.Second
	// refreshRetryDelay is how long a still-valid token keeps being served
	// after a failed early refresh before the next refresh is tried.
	refreshRetryDelay = 5 * time.Second
	// maxCachedLifetime caps how long a token is cached, whatever expires_in
	// claims, and keeps the arithmetic from overflowing.
	maxCachedLifetime = 24 * time.Hour
	// defaultTokenTimeout bounds one token request when Config.HTTPClient is
	// nil.
	defaultTokenTimeout = 30 * time.Second
)
