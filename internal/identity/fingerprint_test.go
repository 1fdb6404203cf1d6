package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestSecretFingerprint(t *testing.T) {
	d := sha256.Sum256([]byte("a secret"))
	want := hex.EncodeToString(d[:])[:FingerprintLen]
	if got := SecretFingerprint(SecretLookup("a secret")); got != want {
		t.Errorf("SecretFingerprint = %q, want the first %d hex digits of SHA-256, %q", got, FingerprintLen, want)
	}
	if got := SecretFingerprint([]byte{0xab}); got != "ab" {
		t.Errorf("short digest: %q", got)
	}
}
