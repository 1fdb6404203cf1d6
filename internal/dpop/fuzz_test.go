package dpop

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary proofs to Verify. Invariants: no panic; a
// rejection stores nothing; an acceptance round-trips (its JKT is the
// thumbprint of its key) and is stored once.
func FuzzVerify(f *testing.F) {
	keys(f)
	vec := loadRFC9449(f)
	f.Add(vec.Proof, vec.Method, vec.URL, "", true)
	for _, s := range []*Signer{newSigner(f, p256Key), newSigner(f, edKey), newSigner(f, rsaKey)} {
		p, err := s.Proof("GET", testURL, ProofOptions{Now: t0, AccessToken: testToken})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p, "GET", testURL, testToken, false)
	}
	f.Add("", "GET", testURL, "", false)
	f.Add("a.b.c", "GET", testURL, "", false)
	f.Add("e30.e30.AAAA", "GET", testURL, "", false)
	f.Add(strings.Repeat(".", 100), "GET", testURL, "", false)
	f.Add(b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"","y":""}}`))+".e30.AAAA", "GET", testURL, "", false)
	f.Add(b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"RS256","jwk":{"kty":"RSA","n":"AA","e":"AQAB"}}`))+".e30.AAAA", "GET", testURL, "", false)

	f.Fuzz(func(t *testing.T, proof, method, url, token string, rfcClock bool) {
		rp := newRecordingReplay()
		now := t0
		if rfcClock {
			now = time.Unix(vec.IAT, 0)
		}
		v := &Verifier{Replay: rp, Now: fixedClock(now), Algorithms: []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "RS256"}}
		p, err := v.Verify(proof, Request{Method: method, URL: url, AccessToken: token})
		if err != nil {
			if p != nil {
				t.Fatal("proof and error both returned")
			}
			if !errors.Is(err, ErrInvalidProof) && !errors.Is(err, ErrUseNonce) {
				t.Fatalf("error %v matches no sentinel", err)
			}
			if n := rp.len(); n != 0 {
				t.Fatalf("rejection stored %d replay entries", n)
			}
			return
		}
		if want, err := Thumbprint(p.PublicKey); err != nil || want != p.JKT {
			t.Fatalf("JKT %q, Thumbprint(PublicKey) = %q, %v", p.JKT, want, err)
		}
		if rp.len() != 1 {
			t.Fatalf("acceptance stored %d replay entries, want 1", rp.len())
		}
		if _, err := v.Verify(proof, Request{Method: method, URL: url, AccessToken: token}); !errors.Is(err, ErrReplay) {
			t.Fatalf("second Verify: %v, want ErrReplay", err)
		}
	})
}
