package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	testURL   = "https://api.example.com/v1/things"
	testToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
)

func TestVerify(t *testing.T) {
	keys(t)
	es256 := newSigner(t, p256Key)
	get := Request{Method: "GET", URL: testURL}
	withToken := Request{Method: "GET", URL: testURL, AccessToken: testToken}
	nonces, err := NewNonces(make([]byte, 32), time.Minute, fixedClock(t0))
	if err != nil {
		t.Fatal(err)
	}
	prevNonce, _ := NewNonces(make([]byte, 32), time.Minute, fixedClock(t0.Add(-time.Minute)))
	oldNonce, _ := NewNonces(make([]byte, 32), time.Minute, fixedClock(t0.Add(-2*time.Minute)))

	proof := func(s *Signer, htm, htu string, o ProofOptions) func(t *testing.T) string {
		return func(t *testing.T) string {
			if o.Now.IsZero() {
				o.Now = t0
			}
			p, err := s.Proof(htm, htu, o)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	crafted := func(alg string, key any, hdr map[string]any, edit func(c map[string]any)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := claimsAt(t0)
			if edit != nil {
				edit(c)
			}
			return craft(t, alg, key, hdr, c)
		}
	}
	lit := func(s string) func(*testing.T) string { return func(*testing.T) string { return s } }
	hdr := func(typ, alg string, jwk map[string]any) map[string]any {
		h := map[string]any{"typ": typ, "alg": alg}
		if jwk != nil {
			h["jwk"] = jwk
		}
		return h
	}
	withMember := func(jwk map[string]any, k string, v any) map[string]any {
		m := maps.Clone(jwk)
		m[k] = v
		return m
	}
	p256JWK := jwkOf(t, p256Key)
	p256Priv := withMember(p256JWK, "d", b64.EncodeToString(p256Key.D.Bytes()))

	tests := []struct {
		name     string
		proof    func(t *testing.T) string
		req      Request
		verifier func(v *Verifier)
		wantErr  error  // nil: accepted
		wantMsg  string // substring of the error text
	}{
		// Accepted.
		{name: "ES256 ok", proof: proof(es256, "GET", testURL, ProofOptions{}), req: get},
		{name: "ES384 ok", proof: proof(newSigner(t, p384Key), "GET", testURL, ProofOptions{}), req: get},
		{name: "EdDSA ok", proof: proof(newSigner(t, edKey), "GET", testURL, ProofOptions{}), req: get},
		{name: "PS256 ok", proof: proof(newSigner(t, rsaKey), "GET", testURL, ProofOptions{}), req: get},
		{name: "RS256 ok", proof: crafted("RS256", rsaKey, hdr("dpop+jwt", "RS256", jwkOf(t, rsaKey)), nil), req: get},
		{name: "ES512 ok when configured", proof: proof(newSigner(t, p521Key), "GET", testURL, ProofOptions{}), req: get,
			verifier: func(v *Verifier) { v.Algorithms = []string{"ES512"} }},
		{name: "ath ok", proof: proof(es256, "GET", testURL, ProofOptions{AccessToken: testToken}), req: withToken},
		{name: "ath ignored without token", proof: proof(es256, "GET", testURL, ProofOptions{AccessToken: testToken}), req: get},
		{name: "query ignored", proof: proof(es256, "GET", testURL, ProofOptions{}), req: Request{Method: "GET", URL: testURL + "?page=2#top"}},
		{name: "query in htu ignored", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { c["htu"] = testURL + "?a=b" }), req: get},
		{name: "htu host case and default port normalised", proof: proof(es256, "GET", "HTTPS://API.Example.com:443/v1/things", ProofOptions{}), req: get},
		{name: "iat at the window edge ok", proof: proof(es256, "GET", testURL, ProofOptions{Now: t0.Add(-DefaultWindow)}), req: get},
		{name: "iat within future skew ok", proof: proof(es256, "GET", testURL, ProofOptions{Now: t0.Add(DefaultSkew)}), req: get},
		{name: "current nonce ok", proof: proof(es256, "GET", testURL, ProofOptions{Nonce: nonces.Current()}), req: get,
			verifier: func(v *Verifier) { v.Nonce = nonces }},
		{name: "previous nonce ok", proof: proof(es256, "GET", testURL, ProofOptions{Nonce: prevNonce.Current()}), req: get,
			verifier: func(v *Verifier) { v.Nonce = nonces }},
		{name: "unknown jwk members ignored", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", withMember(p256JWK, "kid", "k1")), nil), req: get},

		// Malformed.
		{name: "empty", proof: lit(""), req: get, wantErr: ErrInvalidProof, wantMsg: "proof is empty"},
		{name: "garbage", proof: lit("garbage"), req: get, wantErr: ErrInvalidProof, wantMsg: "not a compact JWS"},
		{name: "two parts", proof: lit("eyJh.eyJh"), req: get, wantErr: ErrInvalidProof, wantMsg: "not a compact JWS"},
		{name: "four parts", proof: lit("a.b.c.d"), req: get, wantErr: ErrInvalidProof, wantMsg: "not a compact JWS"},
		{name: "padding", proof: lit("eyJh==.eyJh.AAAA"), req: get, wantErr: ErrInvalidProof, wantMsg: "base64url"},
		{name: "newline inside", proof: lit("eyJh\n.eyJh.AAAA"), req: get, wantErr: ErrInvalidProof, wantMsg: "base64url"},
		{name: "oversized", proof: lit(strings.Repeat("A", MaxProofBytes-3) + ".A.A"), req: get, wantErr: ErrInvalidProof, wantMsg: "over the 8192-byte limit"},
		{name: "header not JSON", proof: lit(b64.EncodeToString([]byte("{nope")) + ".e30.AAAA"), req: get, wantErr: ErrInvalidProof, wantMsg: "header is not a JSON object"},
		{name: "header typ not a string", proof: lit(b64.EncodeToString([]byte(`{"typ":1}`)) + ".e30.AAAA"), req: get, wantErr: ErrInvalidProof, wantMsg: "header is not a JSON object"},

		// Header.
		{name: "typ wrong", proof: crafted("ES256", p256Key, hdr("JWT", "ES256", p256JWK), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `typ "JWT" is not "dpop+jwt"`},
		{name: "typ missing", proof: crafted("ES256", p256Key, map[string]any{"alg": "ES256", "jwk": p256JWK}, nil), req: get, wantErr: ErrInvalidProof, wantMsg: `typ "" is not "dpop+jwt"`},
		{name: "alg none", proof: crafted("none", nil, hdr("dpop+jwt", "none", p256JWK), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `alg "none" is not accepted`},
		{name: "alg HS256", proof: crafted("HS256", []byte("secret"), hdr("dpop+jwt", "HS256", p256JWK), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `alg "HS256" is not accepted`},
		{name: "HS256 configured still refused", proof: crafted("HS256", []byte("secret"), hdr("dpop+jwt", "HS256", p256JWK), nil), req: get,
			verifier: func(v *Verifier) { v.Algorithms = []string{"HS256", "ES256"} }, wantErr: ErrInvalidProof, wantMsg: `alg "HS256" is not accepted; use one of ES256`},
		{name: "ES512 not in default list", proof: proof(newSigner(t, p521Key), "GET", testURL, ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: `alg "ES512" is not accepted`},
		{name: "crit present", proof: crafted("ES256", p256Key, withMember(hdr("dpop+jwt", "ES256", p256JWK), "crit", []string{"exp"}), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "crit is not supported"},
		{name: "missing jwk", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", nil), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "header has no jwk"},
		{name: "jwk with private d", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256Priv), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `private member "d"`},
		{name: "jwk with symmetric k", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", withMember(p256JWK, "k", "c2VjcmV0")), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `private member "k"`},
		{name: "jwk with private D (case folded)", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", withMember(p256JWK, "D", "AA")), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `private member "d"`},
		{name: "jwk kty does not fit alg", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", jwkOf(t, rsaKey)), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `kty "RSA" does not fit alg ES256`},
		{name: "jwk crv does not fit alg", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", jwkOf(t, p384Key)), nil), req: get, wantErr: ErrInvalidProof, wantMsg: `crv "P-384" does not fit alg ES256`},
		{name: "jwk point not on curve", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", withMember(p256JWK, "y", p256JWK["x"])), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "not a point on P-256"},
		{name: "jwk x short", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", withMember(p256JWK, "x", "AAAA")), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "must be 32 bytes"},
		{name: "signature by a different key", proof: crafted("ES256", p256Alt, hdr("dpop+jwt", "ES256", p256JWK), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "signature does not verify"},
		{name: "signature garbage", proof: crafted("ES256", nil, hdr("dpop+jwt", "ES256", p256JWK), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "signature does not verify"},
		{name: "PS256 header on a PKCS1 signature", proof: crafted("RS256", rsaKey, hdr("dpop+jwt", "PS256", jwkOf(t, rsaKey)), nil), req: get, wantErr: ErrInvalidProof, wantMsg: "signature does not verify"},

		// Claims.
		{name: "jti missing", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { delete(c, "jti") }), req: get, wantErr: ErrInvalidProof, wantMsg: "no jti"},
		{name: "jti too long", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { c["jti"] = strings.Repeat("j", MaxJTILen+1) }), req: get, wantErr: ErrInvalidProof, wantMsg: "jti is 129 bytes"},
		{name: "htm mismatch", proof: proof(es256, "POST", testURL, ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: `dpop: htm "POST" does not match request method "GET"`},
		{name: "htm case differs", proof: proof(es256, "get", testURL, ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: `htm "get" does not match`},
		{name: "htu other host", proof: proof(es256, "GET", "https://evil.example.com/v1/things", ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: `htu "https://evil.example.com/v1/things" does not match request URL`},
		{name: "htu other path", proof: proof(es256, "GET", "https://api.example.com/v1/other", ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: "does not match request URL"},
		{name: "htu other scheme", proof: proof(es256, "GET", "http://api.example.com/v1/things", ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: "does not match request URL"},
		{name: "htu other port", proof: proof(es256, "GET", "https://api.example.com:8443/v1/things", ProofOptions{}), req: get, wantErr: ErrInvalidProof, wantMsg: "does not match request URL"},
		{name: "htu missing", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { delete(c, "htu") }), req: get, wantErr: ErrInvalidProof, wantMsg: "no htu"},
		{name: "iat missing", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { delete(c, "iat") }), req: get, wantErr: ErrInvalidProof, wantMsg: "no iat"},
		{name: "iat a string", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { c["iat"] = "1772366400" }), req: get, wantErr: ErrInvalidProof, wantMsg: "numeric iat"},
		{name: "iat absurd", proof: crafted("ES256", p256Key, hdr("dpop+jwt", "ES256", p256JWK), func(c map[string]any) { c["iat"] = 1e300 }), req: get, wantErr: ErrInvalidProof, wantMsg: "not a plausible time"},
		{name: "iat too old", proof: proof(es256, "GET", testURL, ProofOptions{Now: t0.Add(-DefaultWindow - time.Second)}), req: get, wantErr: ErrInvalidProof, wantMsg: "iat is 1m1s old, more than the 1m0s allowed"},
		{name: "iat in the future", proof: proof(es256, "GET", testURL, ProofOptions{Now: t0.Add(DefaultSkew + time.Second)}), req: get, wantErr: ErrInvalidProof, wantMsg: "iat is 6s in the future"},
		{name: "iat outside a custom window", proof: proof(es256, "GET", testURL, ProofOptions{Now: t0.Add(-11 * time.Second)}), req: get,
			verifier: func(v *Verifier) { v.Window = 10 * time.Second }, wantErr: ErrInvalidProof, wantMsg: "more than the 10s allowed"},
		{name: "ath mismatch", proof: proof(es256, "GET", testURL, ProofOptions{AccessToken: "another-token"}), req: withToken, wantErr: ErrInvalidProof, wantMsg: "ath does not match"},
		{name: "ath missing with token", proof: proof(es256, "GET", testURL, ProofOptions{}), req: withToken, wantErr: ErrInvalidProof, wantMsg: "payload has no ath"},
		{name: "nonce missing when required", proof: proof(es256, "GET", testURL, ProofOptions{}), req: get,
			verifier: func(v *Verifier) { v.Nonce = nonces }, wantErr: ErrUseNonce, wantMsg: "proof has no nonce"},
		{name: "nonce stale", proof: proof(es256, "GET", testURL, ProofOptions{Nonce: oldNonce.Current()}), req: get,
			verifier: func(v *Verifier) { v.Nonce = nonces }, wantErr: ErrUseNonce, wantMsg: "nonce is stale or unknown"},
		{name: "nonce made up", proof: proof(es256, "GET", testURL, ProofOptions{Nonce: "made-up"}), req: get,
			verifier: func(v *Verifier) { v.Nonce = nonces }, wantErr: ErrUseNonce, wantMsg: "nonce is stale or unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRecordingReplay()
			v := &Verifier{Replay: rp, Now: fixedClock(t0)}
			if tt.verifier != nil {
				tt.verifier(v)
			}
			p, err := v.Verify(tt.proof(t), tt.req)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.JKT == "" || p.JTI == "" || p.PublicKey == nil || p.Algorithm == "" {
					t.Fatalf("Verify returned an incomplete proof: %+v", p)
				}
				if want, _ := Thumbprint(p.PublicKey); p.JKT != want {
					t.Errorf("JKT = %q, Thumbprint(PublicKey) = %q", p.JKT, want)
				}
				if rp.len() != 1 {
					t.Errorf("replay entries = %d, want 1", rp.len())
				}
				if exp, ok := rp.keys[p.JKT+":"+p.JTI]; !ok || !exp.Equal(p.IssuedAt.Add(v.window()+replayMargin)) {
					t.Errorf("replay key %q held until %v (present %v), want until iat+window+margin", p.JKT+":"+p.JTI, exp, ok)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the proof, want %v", tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify error %q does not match %v", err, tt.wantErr)
			}
			if tt.wantErr == ErrUseNonce && errors.Is(err, ErrInvalidProof) {
				t.Errorf("nonce error %q also matches ErrInvalidProof; the edge must answer use_dpop_nonce", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Verify error = %q, want it to contain %q", err, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "dpop: ") {
				t.Errorf("Verify error = %q, want the dpop: prefix", err)
			}
			if p != nil {
				t.Errorf("Verify returned a proof with an error")
			}
			if n := rp.len(); n != 0 {
				t.Errorf("a rejected proof left %d replay entries, want 0", n)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	keys(t)
	s := newSigner(t, p256Key)
	p, err := s.Proof("GET", testURL, ProofOptions{Now: t0, JTI: "once"})
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(t0)}
	req := Request{Method: "GET", URL: testURL}
	if _, err := v.Verify(p, req); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err = v.Verify(p, req)
	if !errors.Is(err, ErrReplay) || !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("second use: err = %v, want ErrReplay that also matches ErrInvalidProof", err)
	}
	if want := `dpop: jti "once" was already used`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want prefix %q", err, want)
	}
	// The same jti under another key is another proof.
	other, err := newSigner(t, p256Alt).Proof("GET", testURL, ProofOptions{Now: t0, JTI: "once"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(other, req); err != nil {
		t.Errorf("same jti, other key: %v", err)
	}
}

func TestVerifierZeroValueFailsClosed(t *testing.T) {
	keys(t)
	p, err := newSigner(t, p256Key).Proof("GET", testURL, ProofOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var v Verifier
	if _, err := v.Verify(p, Request{Method: "GET", URL: testURL}); err == nil || errors.Is(err, ErrInvalidProof) {
		t.Fatalf("zero Verifier: err = %v, want a configuration error that is not ErrInvalidProof", err)
	}
}

type rfc9449Vector struct {
	Proof, Method, URL, JTI, X, Y, JKT string
	IAT                                int64
}

func loadRFC9449(t testing.TB) rfc9449Vector {
	t.Helper()
	b, err := os.ReadFile("testdata/rfc9449/section-4.1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v rfc9449Vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRFC9449Example verifies the proof of RFC 9449 section 4.1 with the
// clock set to its iat, and its key's thumbprint against section 6.1.
func TestRFC9449Example(t *testing.T) {
	vec := loadRFC9449(t)
	v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(time.Unix(vec.IAT, 0))}
	p, err := v.Verify(vec.Proof, Request{Method: vec.Method, URL: vec.URL})
	if err != nil {
		t.Fatalf("RFC 9449 section 4.1 proof: %v", err)
	}
	if p.JKT != vec.JKT {
		t.Errorf("JKT = %q, want %q (RFC 9449 section 6.1)", p.JKT, vec.JKT)
	}
	if p.JTI != vec.JTI || p.Algorithm != "ES256" || !p.IssuedAt.Equal(time.Unix(vec.IAT, 0)) {
		t.Errorf("proof = %+v", p)
	}
	// An hour later the same proof is too old.
	v.Now = fixedClock(time.Unix(vec.IAT, 0).Add(time.Hour))
	if _, err := v.Verify(vec.Proof, Request{Method: vec.Method, URL: vec.URL}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("an hour later: err = %v, want ErrInvalidProof", err)
	}
}

// TestInterop checks proofs against an independent JOSE implementation in
// both directions.
func TestInterop(t *testing.T) {
	keys(t)
	for _, tt := range []struct {
		name string
		key  any
		alg  jose.SignatureAlgorithm
	}{
		{"ES256", p256Key, jose.ES256},
		{"ES384", p384Key, jose.ES384},
		{"EdDSA", edKey, jose.EdDSA},
		{"PS256", rsaKey, jose.PS256},
		{"RS256", rsaKey, jose.RS256},
	} {
		t.Run(tt.name+" go-jose signs, we verify", func(t *testing.T) {
			js, err := jose.NewSigner(jose.SigningKey{Algorithm: tt.alg, Key: tt.key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
			if err != nil {
				t.Fatal(err)
			}
			c, _ := json.Marshal(claimsAt(t0))
			obj, err := js.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := obj.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(t0)}
			p, err := v.Verify(proof, Request{Method: "GET", URL: testURL})
			if err != nil {
				t.Fatalf("Verify(go-jose proof): %v", err)
			}
			tp, err := (&jose.JSONWebKey{Key: tt.key.(crypto.Signer).Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if want := b64.EncodeToString(tp); p.JKT != want {
				t.Errorf("JKT = %q, go-jose thumbprint = %q", p.JKT, want)
			}
		})
		if tt.alg == jose.RS256 {
			continue // Signer uses PS256 for RSA
		}
		t.Run(tt.name+" we sign, go-jose verifies", func(t *testing.T) {
			s := newSigner(t, tt.key.(crypto.Signer))
			proof, err := s.Proof("GET", testURL, ProofOptions{Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			obj, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{tt.alg})
			if err != nil {
				t.Fatal(err)
			}
			h := obj.Signatures[0].Protected
			if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
				t.Fatalf("header = %+v", h)
			}
			if _, err := obj.Verify(h.JSONWebKey); err != nil {
				t.Fatalf("go-jose Verify: %v", err)
			}
		})
	}
}

func TestVerifyES512Curve(t *testing.T) {
	// ES512 uses P-521, whose 66-byte coordinates need long-form DER lengths.
	k, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, k)
	v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(t0), Algorithms: []string{"ES512"}}
	for range 20 { // several signatures, so some r or s have short or high-bit encodings
		p, err := s.Proof("GET", testURL, ProofOptions{Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(p, Request{Method: "GET", URL: testURL}); err != nil {
			t.Fatal(err)
		}
	}
}

// A client sends the same header with every proof, so the header's checks
// run once; the signature is still checked against it every time, and a
// header that failed is checked in full again.
func TestVerifyHeaderCache(t *testing.T) {
	keys(t)
	v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(t0)}
	req := Request{Method: "GET", URL: testURL}
	s := newSigner(t, p256Key)
	var jkt string
	for i := 0; i < 3; i++ {
		p, err := s.Proof("GET", testURL, ProofOptions{Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(p, req)
		if err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		if i > 0 && got.JKT != jkt {
			t.Errorf("thumbprint changed between proofs: %s, %s", jkt, got.JKT)
		}
		jkt = got.JKT
	}
	if n := len(v.headers); n != 1 {
		t.Errorf("%d cached headers, want 1", n)
	}

	// The cached header, byte for byte, over claims signed by another key.
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkOf(t, p256Key)}
	c := claimsAt(t0)
	c["htu"] = testURL
	first := craft(t, "ES256", p256Key, hdr, c)
	if _, err := v.Verify(first, req); err != nil {
		t.Fatalf("crafted proof by the header's key: %v", err)
	}
	c["jti"] = "forged"
	forged := craft(t, "ES256", p256Alt, hdr, c)
	if _, err := v.Verify(forged, req); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("claims signed by another key under a cached header: err = %v", err)
	}

	// A refused header is refused every time and never cached.
	priv := jwkOf(t, p256Key)
	priv["d"] = "AAAA"
	bad := craft(t, "ES256", p256Key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": priv}, claimsAt(t0))
	before := len(v.headers)
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(bad, req); err == nil || !strings.Contains(err.Error(), "private member") {
			t.Fatalf("header with a private member, try %d: err = %v", i, err)
		}
	}
	if len(v.headers) != before {
		t.Error("a refused header was cached")
	}
}
