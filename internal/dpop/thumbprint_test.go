package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestThumbprintRFCVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc7638/section-3.1.json")
	if err != nil {
		t.Fatal(err)
	}
	var rfc7638 struct{ N, E, Thumbprint string }
	if err := json.Unmarshal(raw, &rfc7638); err != nil {
		t.Fatal(err)
	}
	vec := loadRFC9449(t)
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, append(mustB64(t, vec.X), mustB64(t, vec.Y)...)...))
	if err != nil {
		t.Fatal(err)
	}
	rsaPub := &rsa.PublicKey{N: new(big.Int).SetBytes(mustB64(t, rfc7638.N)), E: int(new(big.Int).SetBytes(mustB64(t, rfc7638.E)).Int64())}

	tests := []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"RFC 7638 section 3.1 RSA", rsaPub, rfc7638.Thumbprint},
		{"RFC 7638 section 3.1 RSA by value", *rsaPub, rfc7638.Thumbprint},
		{"RFC 9449 section 6.1 EC P-256", ecPub, vec.JKT},
		{"RFC 9449 section 6.1 EC P-256 by value", *ecPub, vec.JKT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Thumbprint(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Thumbprint = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestThumbprintMatchesGoJose cross-checks every key type with go-jose.
func TestThumbprintMatchesGoJose(t *testing.T) {
	keys(t)
	for _, k := range []crypto.Signer{p256Key, p384Key, p521Key, edKey, rsaKey} {
		got, err := Thumbprint(k.Public())
		if err != nil {
			t.Fatalf("%T: %v", k, err)
		}
		tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := b64.EncodeToString(tp); got != want {
			t.Errorf("%T: Thumbprint = %q, go-jose = %q", k, got, want)
		}
		if s := newSigner(t, k); s.Thumbprint() != got {
			t.Errorf("%T: Signer.Thumbprint = %q, want %q", k, s.Thumbprint(), got)
		}
	}
}

func TestThumbprintErrors(t *testing.T) {
	tests := []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"nil", nil, "unsupported public key type"},
		{"string", "key", "unsupported public key type"},
		{"short Ed25519", ed25519.PublicKey{1, 2, 3}, "Ed25519 public key is 3 bytes"},
		{"P-224", &ecdsa.PublicKey{Curve: elliptic.P224()}, "unsupported ECDSA curve"},
		{"empty RSA", &rsa.PublicKey{}, "invalid RSA public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Thumbprint(tt.pub)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Thumbprint error = %v, want %q", err, tt.want)
			}
		})
	}
}
