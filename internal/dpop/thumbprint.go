package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
)

var b64 = base64.RawURLEncoding.Strict()

// Thumbprint returns the RFC 7638 SHA-256 JWK thumbprint, base64url, of a
// public key (ECDSA P-256/P-384/P-521, Ed25519, RSA). It is the value of a
// DPoP-bound token's cnf.jkt (RFC 9449 section 6.1).
func Thumbprint(pub crypto.PublicKey) (string, error) {
	m, err := publicMembers(pub)
	if err != nil {
		return "", err
	}
	return m.thumbprint(), nil
}

// members are the required public members of a JWK (RFC 7638 section 3.2),
// each already in canonical base64url form.
type members struct {
	kty, crv, x, y, n, e string
}

// thumbprint hashes the members in the lexicographic order and compact
// form RFC 7638 section 3 prescribes. No value needs JSON escaping: curve
// names are fixed and the rest are base64url.
func (m *members) thumbprint() string {
	buf := make([]byte, 0, 256+len(m.n))
	switch m.kty {
	case "EC":
		buf = append(buf, `{"crv":"`...)
		buf = append(buf, m.crv...)
		buf = append(buf, `","kty":"EC","x":"`...)
		buf = append(buf, m.x...)
		buf = append(buf, `","y":"`...)
		buf = append(buf, m.y...)
		buf = append(buf, `"}`...)
	case "OKP":
		buf = append(buf, `{"crv":"`...)
		buf = append(buf, m.crv...)
		buf = append(buf, `","kty":"OKP","x":"`...)
		buf = append(buf, m.x...)
		buf = append(buf, `"}`...)
	case "RSA":
		buf = append(buf, `{"e":"`...)
		buf = append(buf, m.e...)
		buf = append(buf, `","kty":"RSA","n":"`...)
		buf = append(buf, m.n...)
		buf = append(buf, `"}`...)
	}
	sum := sha256.Sum256(buf)
	return b64.EncodeToString(sum[:])
}

// publicMembers encodes a Go public key as JWK members.
func publicMembers(pub crypto.PublicKey) (*members, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		crv, size := curveName(k.Curve)
		if crv == "" {
			return nil, fmt.Errorf("dpop: unsupported ECDSA curve; use P-256, P-384 or P-521")
		}
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("dpop: invalid ECDSA public key: %w", err)
		}
		return &members{kty: "EC", crv: crv, x: b64.EncodeToString(b[1 : 1+size]), y: b64.EncodeToString(b[1+size:])}, nil
	case ecdsa.PublicKey:
		return publicMembers(&k)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("dpop: Ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return &members{kty: "OKP", crv: "Ed25519", x: b64.EncodeToString(k)}, nil
	case *rsa.PublicKey:
		if k.N == nil || k.N.Sign() <= 0 || k.E < 2 {
			return nil, errors.New("dpop: invalid RSA public key")
		}
		return &members{kty: "RSA", n: b64.EncodeToString(k.N.Bytes()), e: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	case rsa.PublicKey:
		return publicMembers(&k)
	default:
		return nil, fmt.Errorf("dpop: unsupported public key type %T; use ECDSA, Ed25519 or RSA", pub)
	}
}

// curveName returns the JWK crv name and coordinate size of a NIST curve.
func curveName(c elliptic.Curve) (string, int) {
	switch c {
	case elliptic.P256():
		return "P-256", 32
	case elliptic.P384():
		return "P-384", 48
	case elliptic.P521():
		return "P-521", 66
	}
	return "", 0
}
