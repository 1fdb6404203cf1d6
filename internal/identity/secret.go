package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
)

// SecretPrefix marks secrets keybound generated, so secret scanners (ours and
// others') can recognise a leaked one.
const SecretPrefix = "kbs_"

// SecretHash is the stored form of a legacy shared secret: a random salt and
// SHA-256(salt || secret), plus Lookup, the unsalted SHA-256 of the secret.
//
// Why an unsalted lookup digest as well? A static API key arrives at the
// gateway without a client id, so the inventory must find its client by the
// key alone: Lookup is that index (and the fingerprint secret scanning
// matches against). It reveals no more than the salted hash does for a
// 256-bit random secret. The salted hash is still what a presented secret
// is verified against, in constant time.
//
// Why not a password hash (bcrypt, scrypt, argon2)? keybound generates every
// secret with 256 bits of entropy, so there is nothing to brute-force and a
// stretched hash would only add milliseconds of CPU to each token request.
type SecretHash struct {
	Salt   []byte `json:"salt"`
	Hash   []byte `json:"hash"`
	Lookup []byte `json:"lookup,omitempty"`
}

// NewSecret returns a fresh secret, shown once to the caller, and its hash.
func NewSecret() (string, *SecretHash, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	secret := SecretPrefix + base64.RawURLEncoding.EncodeToString(raw)
	h, err := HashSecret(secret)
	return secret, h, err
}

// HashSecret salts and hashes secret for storage.
func HashSecret(secret string) (*SecretHash, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return &SecretHash{Salt: salt, Hash: digest(salt, secret), Lookup: SecretLookup(secret)}, nil
}

// SecretLookup is the digest a secret is found by: SHA-256 of the secret.
func SecretLookup(secret string) []byte {
	d := sha256.Sum256([]byte(secret))
	return d[:]
}

// ErrSecretMismatch is returned when a presented secret does not match.
var ErrSecretMismatch = errors.New("identity: secret does not match")

// Verify compares secret with the stored hash in constant time. A nil or
// empty hash never matches.
func (h *SecretHash) Verify(secret string) error {
	if h == nil || len(h.Hash) != sha256.Size || len(h.Salt) == 0 {
		return ErrSecretMismatch
	}
	if subtle.ConstantTimeCompare(digest(h.Salt, secret), h.Hash) != 1 {
		return ErrSecretMismatch
	}
	return nil
}

// LogValue keeps the hash out of logs.
func (h *SecretHash) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func digest(salt []byte, secret string) []byte {
	d := sha256.New()
	d.Write(salt)
	d.Write([]byte(secret))
	return d.Sum(nil)
}
