package clientauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Cache bounds. Every cache is keyed by content hashes, so a stale entry
// can never stand for other content: a rotated JWKS, another certificate or
// a changed registration simply misses.
const (
	// maxCachedKeySets bounds parsed client key sets.
	maxCachedKeySets = 4096
	// maxCachedChains bounds verified certificate chains.
	maxCachedChains = 4096
	// maxCachedSubjects bounds remembered subject DN comparisons.
	maxCachedSubjects = 4096
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
	m  map[[32]byte]chainEntry
}

// chainEntry is a verified chain: until when it is trusted, and whether it
// verified to a workload CA root.
type chainEntry struct {
	until    time.Time
	workload bool
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

// verified reports whether the chain k verified and is still trusted at
// now, and if so whether it verified to a workload CA root.
func (c *chainCache) verified(k [32]byte, now time.Time) (ok, workload bool) {
	c.mu.Lock()
	e, found := c.m[k]
	c.mu.Unlock()
	if !found || !now.Before(e.until) {
		return false, false
	}
	return true, e.workload
}

func (c *chainCache) remember(k [32]byte, certs []*x509.Certificate, now time.Time, workload bool) {
	until := now.Add(chainCacheTTL)
	for _, cert := range certs {
		if cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedChains {
		c.m = map[[32]byte]chainEntry{}
	}
	c.m[k] = chainEntry{until: until, workload: workload}
	c.mu.Unlock()
}

// subjectCache remembers subjectMatches' answers by SHA-256 of the
// certificate's raw subject and the registered DN: the answer depends on
// nothing else, and parsing both names (the certificate's through
// encoding/asn1) cost about 4 % of an mTLS token's CPU when done on every
// request. The zero value is ready to use.
type subjectCache struct {
	mu sync.Mutex
	m  map[[32]byte]bool
}

func (c *subjectCache) matches(leaf *x509.Certificate, registered string) bool {
	// The raw subject is DER and may hold any byte, so it is
	// length-prefixed to keep (subject, registered) pairs apart.
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(leaf.RawSubject)))
	h.Write(n[:])
	h.Write(leaf.RawSubject)
	h.Write([]byte(registered))
	var key [32]byte
	h.Sum(key[:0])
	c.mu.Lock()
	ok, found := c.m[key]
	c.mu.Unlock()
	if found {
		return ok
	}
	ok = subjectMatches(leaf, registered)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedSubjects {
		c.m = map[[32]byte]bool{}
	}
	c.m[key] = ok
	c.mu.Unlock()
	return ok
}
