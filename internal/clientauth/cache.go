package clientauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Cache bounds. Both caches are keyed by content hashes, so a stale entry
// can never stand for other content: a rotated JWKS or another certificate
// simply misses.
const (
	// maxCachedKeySets bounds parsed client key sets.
	maxCachedKeySets = 4096
	// maxCachedChains bounds verified certificate chains.
	maxCachedChains = 4096
	// chainCacheTTL bounds how long a verified chain is trusted without
	// verifying it again.
	chainCacheTTL = 5 * time.Minute
)

// keySetCache remembers parsed registered JWK sets by SHA-256 of their bytes
// and the kid asked for: parsing is a tenth of a private_key_jwt check.
// The zero value is ready to use.
type keySetCache struct {
	mu sync.Mutex
	m  map[[32]byte][]jose.JSONWebKey
}

func (c *keySetCache) get(raw json.RawMessage, kid string) ([]jose.JSONWebKey, error) {
	h := sha256.New()
	h.Write(raw)
	h.Write([]byte{0})
	h.Write([]byte(kid))
	var key [32]byte
	h.Sum(key[:0])
	c.mu.Lock()
	keys, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return keys, nil
	}
	keys, err := parseJWKS(raw, kid)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedKeySets {
		c.m = map[[32]byte][]jose.JSONWebKey{}
	}
	c.m[key] = keys
	c.mu.Unlock()
	return keys, nil
}

// chainCache remembers certificate chains that verified, by SHA-256 of the
// presented certificates, until the earliest of their expiries or
// chainCacheTTL. A chain verify costs a signature check per certificate on
// every mTLS token request otherwise. The zero value is ready to use.
type chainCache struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time
}

func chainKey(certs []*x509.Certificate) [32]byte {
	h := sha256.New()
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		h.Write(sum[:])
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *chainCache) verified(k [32]byte, now time.Time) bool {
	c.mu.Lock()
	until, ok := c.m[k]
	c.mu.Unlock()
	return ok && now.Before(until)
}

func (c *chainCache) remember(k [32]byte, certs []*x509.Certificate, now time.Time) {
	until := now.Add(chainCacheTTL)
	for _, cert := range certs {
		if cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedChains {
		c.m = map[[32]byte]time.Time{}
	}
	c.m[k] = until
	c.mu.Unlock()
}
