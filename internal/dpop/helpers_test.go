package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// t0 is the injected "now" of every test.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// Keys are generated once per test binary; RSA generation is slow.
var (
	keysOnce sync.Once
	p256Key  *ecdsa.PrivateKey
	p256Alt  *ecdsa.PrivateKey
	p384Key  *ecdsa.PrivateKey
	p521Key  *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		p256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		p256Alt, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		p384Key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		p521Key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
	})
}

func newSigner(t testing.TB, k crypto.Signer) *Signer {
	t.Helper()
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordingReplay is a hand-written ReplayCache that remembers every claim,
// so tests can assert that a rejected proof stored nothing.
type recordingReplay struct {
	mu   sync.Mutex
	keys map[string]time.Time
}

func newRecordingReplay() *recordingReplay {
	return &recordingReplay{keys: map[string]time.Time{}}
}

func (r *recordingReplay) Claim(key string, exp time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[key]; ok {
		return false
	}
	r.keys[key] = exp
	return true
}

func (r *recordingReplay) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// alwaysNew accepts every key: it isolates Verify's own cost in benchmarks.
type alwaysNew struct{}

func (alwaysNew) Claim(string, time.Time) bool { return true }

// craft builds a compact JWS from arbitrary header and claims, signed with
// key under alg (key nil: the signature is sig). It lets tests express
// proofs Signer would never make.
func craft(t testing.TB, alg string, key any, hdr, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	switch k := key.(type) {
	case nil:
		sig = []byte("not a signature")
	case []byte: // HMAC secret
		m := hmac.New(sha256.New, k)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case *ecdsa.PrivateKey:
		a := lookupAlgorithm(alg)
		var sum [64]byte
		r, s, err := ecdsa.Sign(rand.Reader, k, hashInto(a.hash, signed, &sum))
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 2*a.size)
		r.FillBytes(sig[:a.size])
		s.FillBytes(sig[a.size:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signed))
	case *rsa.PrivateKey:
		var sum [64]byte
		d := hashInto(crypto.SHA256, signed, &sum)
		if alg == "RS256" {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d)
		} else {
			sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("craft: unsupported key %T", key)
	}
	return signed + "." + b64.EncodeToString(sig)
}

// jwkOf returns the public JWK of key as a map for crafted headers.
func jwkOf(t testing.TB, key crypto.Signer) map[string]any {
	t.Helper()
	return newSigner(t, key).PublicJWK()
}

func claimsAt(iat time.Time) map[string]any {
	return map[string]any{"jti": "jti-1", "htm": "GET", "htu": "https://api.example.com/v1/things", "iat": iat.Unix()}
}
