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

// boundedMap is a map keyed by a content hash that put empties when it
// holds its bound: every cache here holds what it can recompute, so
// forgetting is safe, and a flood of distinct keys only costs recomputing.
// The zero value is ready to use.
type boundedMap[V any] struct {
	mu sync.Mutex
	m  map[[32]byte]V
}

func (b *boundedMap[V]) get(k [32]byte) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	return v, ok
}

func (b *boundedMap[V]) put(k [32]byte, v V, bound int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || len(b.m) >= bound {
		b.m = make(map[[32]byte]V)
	}
	b.m[k] = v
}

// keySetCache remembers parsed registered JWK sets by SHA-256 of their bytes
// and the kid asked for: parsing is a tenth of a private_key_jwt check.
type keySetCache struct{ boundedMap[[]jose.JSONWebKey] }

func (c *keySetCache) get(raw json.RawMessage, kid string) ([]jose.JSONWebKey, error) {
	h := sha256.New()
	h.Write(raw)
	h.Write([]byte{0})
	h.Write([]byte(kid))
	var key [32]byte
	h.Sum(key[:0])
	if keys, ok := c.boundedMap.get(key); ok {
		return keys, nil
	}
	keys, err := parseJWKS(raw, kid)
	if err != nil {
		return nil, err
	}
	c.put(key, keys, maxCachedKeySets)
	return keys, nil
}

// chainCache remembers certificate chains that verified, by SHA-256 of the
// presented certificates, until the earliest of their expiries or
// chainCacheTTL. A chain verify costs a signature check per certificate on
// every mTLS token request otherwise.
type chainCache struct{ boundedMap[chainEntry] }

// chainEntry is a verified chain: until when it is trusted, and whether it
// is the workload CA's (WorkloadCerts.IssuedBy).
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
// now, and if so whether it is the workload CA's.
func (c *chainCache) verified(k [32]byte, now time.Time) (ok, workload bool) {
	e, found := c.get(k)
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
	c.put(k, chainEntry{until: until, workload: workload}, maxCachedChains)
}

// subjectCache remembers subjectMatches' answers by SHA-256 of the
// certificate's raw subject and the registered DN: the answer depends on
// nothing else, and parsing both names (the certificate's through
// encoding/asn1) cost about 4 % of an mTLS token's CPU when done on every
// request.
type subjectCache struct{ boundedMap[bool] }

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
	if ok, found := c.get(key); found {
		return ok
	}
	ok := subjectMatches(leaf, registered)
	c.put(key, ok, maxCachedSubjects)
	return ok
}
