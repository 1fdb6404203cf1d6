package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// AlgES256 is the JWS algorithm of every key the ring creates (RFC 7518
// section 3.4: ECDSA with P-256 and SHA-256).
//
// Why ES256: it is the asymmetric JWS algorithm resource servers support most
// widely, and it is cheap on both sides. On the reference machine
// (shared/DEPENDENCIES.md) a P-256 signature costs ~40 µs and a verification
// ~80 µs, against ~1.1 ms to sign with RSA-2048, which would put RSA on every
// token issuance. Ed25519 is faster still (~26 µs / ~65 µs) but fewer
// third-party verifiers accept EdDSA, and keybound's tokens are verified by
// resource servers it does not control.
const AlgES256 = "ES256"

// SigningKey is one private signing key of the ring: the thing that signs
// access tokens. It implements crypto.Signer, so it can sign without handing
// out the private key.
//
// It never reveals the private key by accident: String, GoString, LogValue
// and MarshalJSON all redact it. Values are not comparable with == (compare
// KID instead). The zero value refuses to sign. A *SigningKey is immutable
// and safe for concurrent use.
type SigningKey struct {
	_    [0]func() // not comparable
	kid  string
	alg  string
	priv *ecdsa.PrivateKey
}

// KID returns the key id: the RFC 7638 JWK thumbprint of the public key.
func (k *SigningKey) KID() string { return k.kid }

// Algorithm returns the JWS algorithm the key signs with, e.g. "ES256".
func (k *SigningKey) Algorithm() string { return k.alg }

// Public returns the public key (*ecdsa.PublicKey), or nil for the zero value.
func (k *SigningKey) Public() crypto.PublicKey {
	if k == nil || k.priv == nil {
		return nil
	}
	return &k.priv.PublicKey
}

// ErrZeroKey is returned when a zero or nil SigningKey is asked to sign.
var ErrZeroKey = errors.New("keys: signing key is empty; take one from Ring.Current")

// Sign signs digest, which must be a SHA-256 hash for ES256, and returns the
// ASN.1 DER signature that crypto.Signer prescribes. JWS wants the fixed-size
// R||S form instead (RFC 7518 section 3.4); converting is the caller's job.
func (k *SigningKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, ErrZeroKey
	}
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return nil, fmt.Errorf("keys: %s key %s signs SHA-256 digests only", k.alg, k.kid)
	}
	return k.priv.Sign(rand, digest, opts)
}

// String describes the key without its private part.
func (k *SigningKey) String() string {
	if k == nil {
		return "keys.SigningKey(nil)"
	}
	return "keys.SigningKey(kid=" + k.kid + ", alg=" + k.alg + ", private key [redacted])"
}

// GoString keeps %#v from printing the private key's fields.
func (k *SigningKey) GoString() string { return k.String() }

// LogValue logs the key id and algorithm only.
func (k *SigningKey) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("[redacted]")
	}
	return slog.GroupValue(slog.String("kid", k.kid), slog.String("alg", k.alg), slog.String("private", "[redacted]"))
}

// MarshalJSON refuses to serialise the private key: it always writes
// "[redacted]". Persisting a key goes through the ring, never through JSON.
func (k *SigningKey) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// MarshalText redacts too, so encoders that prefer TextMarshaler (YAML, slog
// text handlers) cannot reach the private key either.
func (k *SigningKey) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// newES256 generates a fresh P-256 key. Since Go 1.26 the randomness source is
// always the system's secure one.
func newES256() (*SigningKey, []byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: generating a P-256 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: encoding the new key: %w", err)
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return &SigningKey{kid: kid, alg: AlgES256, priv: priv}, der, nil
}

// parseStored turns a stored PKCS #8 key back into a SigningKey and checks
// that it is what the record says: the algorithm keybound uses and the key id
// that is the key's own thumbprint. A record that disagrees is refused rather
// than published under a name that is not its own.
func parseStored(kid, alg string, der []byte) (*SigningKey, error) {
	if alg != AlgES256 {
		return nil, fmt.Errorf("keys: stored key %s has algorithm %q; only %s is supported", kid, alg, AlgES256)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: stored key %s is not a valid PKCS #8 key: %w", kid, err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("keys: stored key %s is not a P-256 ECDSA key", kid)
	}
	tp, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	if tp != kid {
		return nil, fmt.Errorf("keys: stored key %s does not match its key id (thumbprint %s)", kid, tp)
	}
	return &SigningKey{kid: kid, alg: alg, priv: priv}, nil
}

// ecCoordinates returns the base64url x and y of a P-256 public key.
func ecCoordinates(pub *ecdsa.PublicKey) (x, y string, err error) {
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil || len(b) != 65 {
		return "", "", fmt.Errorf("keys: invalid P-256 public key")
	}
	return base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:]), nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC
// key: the hash of the required members in lexicographic order, no spaces.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := ecCoordinates(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
