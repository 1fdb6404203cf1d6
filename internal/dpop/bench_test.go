package dpop

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/replay"
)

func BenchmarkVerify(b *testing.B) {
	keys(b)
	req := Request{Method: "GET", URL: testURL, AccessToken: testToken}
	for _, s := range []*Signer{newSigner(b, p256Key), newSigner(b, edKey), newSigner(b, rsaKey)} {
		// One proof verified over and over, with a replay cache that accepts
		// everything: Verify's own cost, without the cache.
		b.Run(s.Algorithm(), func(b *testing.B) {
			p, err := s.Proof("GET", testURL, ProofOptions{Now: t0, AccessToken: testToken})
			if err != nil {
				b.Fatal(err)
			}
			v := &Verifier{Replay: alwaysNew{}, Now: fixedClock(t0)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(p, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// ES256 with a real replay cache: every iteration a distinct proof, as
	// in production.
	b.Run("ES256+replay.Cache", func(b *testing.B) {
		s := newSigner(b, p256Key)
		proofs := make([]string, b.N)
		for i := range proofs {
			var err error
			if proofs[i], err = s.Proof("GET", testURL, ProofOptions{Now: t0, AccessToken: testToken}); err != nil {
				b.Fatal(err)
			}
		}
		v := &Verifier{Replay: replay.New(0, fixedClock(t0)), Now: fixedClock(t0)}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := v.Verify(proofs[i], req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Cheap rejections must stay cheap: these never reach the signature.
	b.Run("reject-garbage", func(b *testing.B) {
		v := &Verifier{Replay: alwaysNew{}, Now: fixedClock(t0)}
		p := strings.Repeat("A", 200)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(p, req); err == nil {
				b.Fatal("accepted garbage")
			}
		}
	})
}

// BenchmarkRawECDSAVerify is the floor BenchmarkVerify/ES256 is measured
// against: one SHA-256 and one P-256 verification with a parsed key.
func BenchmarkRawECDSAVerify(b *testing.B) {
	keys(b)
	msg := []byte(strings.Repeat("x", 400)) // about a proof's signing input
	sum := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, p256Key, sum[:])
	if err != nil {
		b.Fatal(err)
	}
	pub := &p256Key.PublicKey
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pub, sum[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkProof(b *testing.B) {
	keys(b)
	for _, s := range []*Signer{newSigner(b, p256Key), newSigner(b, edKey)} {
		b.Run(s.Algorithm(), func(b *testing.B) {
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Proof("GET", testURL, ProofOptions{Now: now, AccessToken: testToken}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNoncesValid(b *testing.B) {
	n, err := NewNonces(nil, time.Minute, nil)
	if err != nil {
		b.Fatal(err)
	}
	cur := n.Current()
	b.ReportAllocs()
	for b.Loop() {
		if !n.Valid(cur) {
			b.Fatal("current nonce refused")
		}
	}
}
