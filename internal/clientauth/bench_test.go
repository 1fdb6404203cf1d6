package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// acceptAll is a ReplayCache that never refuses, so one assertion can be
// verified b.N times; the benchmark measures verification, not the cache.
type acceptAll struct{}

func (acceptAll) Claim(context.Context, string, string, time.Time) (bool, error) { return true, nil }

// BenchmarkPrivateKeyJWT is the whole private_key_jwt path for an ES256
// assertion: parse, client lookup (in-memory fake), JWKS parse, signature,
// claims. Compare with BenchmarkECDSAVerifyP256, the signature alone.
func BenchmarkPrivateKeyJWT(b *testing.B) {
	f := loadFixture(b)
	a, _ := f.authenticator()
	a.Replay = acceptAll{}
	req := Request{Form: assertionForm(sign(b, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "bench", nil), nil))}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkECDSAVerifyP256 is the baseline: SHA-256 over the same signing
// input and one ecdsa.Verify.
func BenchmarkECDSAVerifyP256(b *testing.B) {
	f := loadFixture(b)
	assertion := sign(b, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "bench", nil), nil)
	input := []byte(assertion[:strings.LastIndexByte(assertion, '.')])
	h := sha256.Sum256(input)
	r, s, err := ecdsa.Sign(rand.Reader, f.ecKey, h[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(input)
		if !ecdsa.Verify(&f.ecKey.PublicKey, h[:], r, s) {
			b.Fatal("verify failed")
		}
	}
}
