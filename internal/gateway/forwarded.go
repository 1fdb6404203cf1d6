package gateway

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"sync"
)

// maxForwardedCerts bounds the forwarded certificates kept parsed. A
// fronting proxy forwards the certificates of a fleet's workloads, a few
// hundred at most; a flood of distinct ones only empties the cache.
const maxForwardedCerts = 1024

// forwardedCerts keeps the certificates parsed from a trusted proxy's
// forwarded-certificate header, keyed by the SHA-256 of the header value.
// The same workload sends the same certificate on every request, and
// unescaping, decoding and parsing it (x509.ParseCertificate) cost more than
// the rest of the mTLS binding check. Only certificates that parsed are
// kept: a bad header is refused again, the same way, each time it comes.
//
// A parsed certificate is never modified after parsing, so one value is
// safely shared by concurrent requests.
type forwardedCerts struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*x509.Certificate
}

// parse returns the certificate in v, a URL-escaped PEM CERTIFICATE block,
// or nil if v holds none. v must already be within MaxForwardedCertBytes.
func (f *forwardedCerts) parse(v string) *x509.Certificate {
	k := sha256.Sum256([]byte(v))
	f.mu.Lock()
	c := f.m[k]
	f.mu.Unlock()
	if c != nil {
		return c
	}
	if c = parseForwardedCert(v); c == nil {
		return nil
	}
	f.mu.Lock()
	if f.m == nil || len(f.m) >= maxForwardedCerts {
		f.m = make(map[[sha256.Size]byte]*x509.Certificate)
	}
	f.m[k] = c
	f.mu.Unlock()
	return c
}

func parseForwardedCert(v string) *x509.Certificate {
	raw, err := url.QueryUnescape(v)
	if err != nil {
		return nil
	}
	blk, _ := pem.Decode([]byte(raw))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil
	}
	return c
}
