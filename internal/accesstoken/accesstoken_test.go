package accesstoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/keys"
	"github.com/keybound/keybound/internal/store"
)

const testIssuer = "https://auth.example.com"

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// memStorage is a hand-written in-memory keys.Storage.
type memStorage struct {
	mu   sync.Mutex
	keys map[string]store.SigningKey
}

func (m *memStorage) PutSigningKey(_ context.Context, k store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]store.SigningKey{}
	}
	m.keys[k.KID] = k
	return nil
}

func (m *memStorage) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.SigningKey
	for _, k := range m.keys {
		out = append(out, k)
	}
	return out, nil
}

func newRing(t testing.TB) *keys.Ring {
	t.Helper()
	r, err := keys.Open(context.Background(), &memStorage{}, keys.Config{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func current(t testing.TB, r *keys.Ring) *keys.SigningKey {
	t.Helper()
	k, err := r.Current()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testClaims() Claims {
	return Claims{
		Issuer: testIssuer, Subject: "svc-billing", ClientID: "svc-billing",
		Audience: []string{"https://api.example.com"}, Scope: []string{"invoices:read", "invoices:write"},
		JTI: "jti-1", IssuedAt: testNow, Expiry: testNow.Add(10 * time.Minute),
		AuthMethod: "private_key_jwt",
	}
}

func testVerifier(r KeyLookup) *Verifier {
	return &Verifier{Keys: r, Issuer: testIssuer, Audience: "https://api.example.com", Leeway: 30 * time.Second, Now: func() time.Time { return testNow }}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	r := newRing(t)
	tests := []struct {
		name   string
		modify func(*Claims)
	}{
		{"bearer", func(*Claims) {}},
		{"dpop bound", func(c *Claims) { c.Confirmation = &Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"} }},
		{"mtls bound", func(c *Claims) {
			c.Confirmation = &Confirmation{X5TS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
			c.AuthMethod = "tls_client_auth"
		}},
		{"legacy secret, no scope, nbf, two audiences", func(c *Claims) {
			c.StaticSecret, c.AuthMethod, c.Scope = true, "client_secret_basic", nil
			c.NotBefore = testNow
			c.Audience = []string{"https://api.example.com", "https://other.example.com"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := testClaims()
			tt.modify(&want)
			tok, err := Issue(current(t, r), want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := testVerifier(r).Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !equalClaims(got, &want) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func equalClaims(a, b *Claims) bool {
	cnfEq := (a.Confirmation == nil) == (b.Confirmation == nil) && (a.Confirmation == nil || *a.Confirmation == *b.Confirmation)
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.ClientID == b.ClientID &&
		slices.Equal(a.Audience, b.Audience) && slices.Equal(a.Scope, b.Scope) && a.JTI == b.JTI &&
		a.IssuedAt.Equal(b.IssuedAt) && a.NotBefore.Equal(b.NotBefore) && a.Expiry.Equal(b.Expiry) &&
		cnfEq && a.AuthMethod == b.AuthMethod && a.StaticSecret == b.StaticSecret
}

// The wire form follows RFC 9068: header typ/alg/kid, scope as one string,
// a single aud as a string, cnf members named as the RFCs name them.
func TestWireForm(t *testing.T) {
	r := newRing(t)
	k := current(t, r)
	c := testClaims()
	c.Confirmation = &Confirmation{JKT: "jkt-value", X5TS256: "x5t-value"}
	c.StaticSecret = true
	tok, err := Issue(k, c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	var h, p map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(hb, &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != k.KID() || len(h) != 3 {
		t.Errorf("header = %v", h)
	}
	wantP := map[string]any{
		"iss": testIssuer, "sub": "svc-billing", "client_id": "svc-billing", "aud": "https://api.example.com",
		"scope": "invoices:read invoices:write", "jti": "jti-1", "iat": float64(testNow.Unix()),
		"exp": float64(testNow.Add(10 * time.Minute).Unix()), "kb_am": "private_key_jwt", "kb_static": true,
		"cnf": map[string]any{"jkt": "jkt-value", "x5t#S256": "x5t-value"},
	}
	pj, _ := json.Marshal(p)
	wj, _ := json.Marshal(wantP)
	if string(pj) != string(wj) {
		t.Errorf("payload\n got %s\nwant %s", pj, wj)
	}
}

// go-jose, an independent implementation, accepts our tokens against our
// JWKS, and its tokens pass our verifier: the R||S conversion and the JWK
// encoding agree with RFC 7515/7518.
func TestInteropWithGoJose(t *testing.T) {
	r := newRing(t)
	k := current(t, r)
	tok, err := Issue(k, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatalf("go-jose cannot read our JWKS: %v", err)
	}
	found := set.Key(k.KID())
	if len(found) != 1 || !found[0].Valid() || !found[0].IsPublic() {
		t.Fatalf("JWKS key for %s: %+v", k.KID(), found)
	}
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(found[0].Key); err != nil {
		t.Fatalf("go-jose rejects our signature: %v", err)
	}

	// go-jose signs with a plain *ecdsa.PrivateKey; our verifier trusts its
	// public key under a made-up kid.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l := lookup{"jose-key": {&priv.PublicKey, "ES256"}}
	for range 20 { // several signatures, so short R or S values get exercised
		opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "jose-key")
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := json.Marshal(mustPayload(t, testClaims()))
		obj, err := signer.Sign(pb)
		if err != nil {
			t.Fatal(err)
		}
		joseTok, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testVerifier(l).Verify(joseTok); err != nil {
			t.Fatalf("we reject go-jose's token: %v", err)
		}
	}
}

func mustPayload(t testing.TB, c Claims) *payload {
	p, err := toPayload(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// forge builds a compact token from raw header and payload JSON, signed
// ES256 by sign (nil: empty signature).
func forge(hdr, pay string, sign func(input []byte) []byte) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(pay))
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + enc.EncodeToString(sig)
}

func es256With(t testing.TB, k crypto.Signer) func([]byte) []byte {
	return func(input []byte) []byte {
		d := sha256.Sum256(input)
		der, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		var raw [64]byte
		if err := derToRaw(der, raw[:]); err != nil {
			t.Fatal(err)
		}
		return raw[:]
	}
}

// lookup is a hand-written KeyLookup over fixed keys.
type lookup map[string]struct {
	pub crypto.PublicKey
	alg string
}

func (l lookup) PublicKey(kid string) (crypto.PublicKey, string, bool) {
	e, ok := l[kid]
	return e.pub, e.alg, ok
}

func TestVerifyRejects(t *testing.T) {
	r := newRing(t)
	k := current(t, r)
	sign := es256With(t, k)
	kid := k.KID()
	hdr := `{"alg":"ES256","kid":"` + kid + `","typ":"at+jwt"}`
	claims := func(mod func(map[string]any)) string {
		m := map[string]any{"iss": testIssuer, "sub": "c", "client_id": "c", "aud": "https://api.example.com", "jti": "j", "iat": testNow.Unix(), "exp": testNow.Add(time.Minute).Unix()}
		if mod != nil {
			mod(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	good := forge(hdr, claims(nil), sign)
	other := forge(hdr, claims(func(m map[string]any) { m["sub"] = "admin" }), sign)
	goodParts, otherParts := strings.Split(good, "."), strings.Split(other, ".")

	pubDER, _ := k.Public().(*ecdsa.PublicKey).Bytes()
	hs256 := func(input []byte) []byte {
		m := hmac.New(sha256.New, pubDER)
		m.Write(input)
		return m.Sum(nil)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", forge(hdr, claims(func(m map[string]any) { m["exp"] = testNow.Add(-31 * time.Second).Unix() }), sign), ErrExpired},
		{"expired exactly at leeway", forge(hdr, claims(func(m map[string]any) { m["exp"] = testNow.Add(-30 * time.Second).Unix() }), sign), ErrExpired},
		{"nbf in future", forge(hdr, claims(func(m map[string]any) { m["nbf"] = testNow.Add(time.Minute).Unix() }), sign), ErrNotYetValid},
		{"iat in future", forge(hdr, claims(func(m map[string]any) {
			m["iat"] = testNow.Add(time.Minute).Unix()
			m["exp"] = testNow.Add(2 * time.Minute).Unix()
		}), sign), ErrNotYetValid},
		{"wrong iss", forge(hdr, claims(func(m map[string]any) { m["iss"] = "https://evil.example" }), sign), ErrIssuer},
		{"wrong aud", forge(hdr, claims(func(m map[string]any) { m["aud"] = []string{"https://other.example"} }), sign), ErrAudience},
		{"missing exp", forge(hdr, claims(func(m map[string]any) { delete(m, "exp") }), sign), ErrMalformed},
		{"missing jti", forge(hdr, claims(func(m map[string]any) { delete(m, "jti") }), sign), ErrMalformed},
		{"missing aud", forge(hdr, claims(func(m map[string]any) { delete(m, "aud") }), sign), ErrMalformed},
		{"missing client_id", forge(hdr, claims(func(m map[string]any) { delete(m, "client_id") }), sign), ErrMalformed},
		{"exp as float", forge(hdr, claims(func(m map[string]any) { m["exp"] = 1.5e9 + 0.5 }), sign), ErrMalformed},
		{"scope as array", forge(hdr, claims(func(m map[string]any) { m["scope"] = []string{"a"} }), sign), ErrMalformed},
		{"empty cnf", forge(hdr, claims(func(m map[string]any) { m["cnf"] = map[string]string{} }), sign), ErrMalformed},
		{"unknown kid", forge(`{"alg":"ES256","kid":"nope","typ":"at+jwt"}`, claims(nil), sign), ErrUnknownKey},
		{"no kid", forge(`{"alg":"ES256","typ":"at+jwt"}`, claims(nil), sign), ErrUnknownKey},
		{"tampered payload", goodParts[0] + "." + otherParts[1] + "." + goodParts[2], ErrSignature},
		{"signed by another key under our kid", forge(hdr, claims(nil), es256With(t, stranger)), ErrSignature},
		{"signature too short", goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:80], ErrSignature},
		{"signature too long", good + "AAAA", ErrSignature},
		{"alg none", forge(`{"alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, claims(nil), nil) + "x", ErrAlgorithm},
		{"alg none, empty signature", forge(`{"alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, claims(nil), nil), ErrMalformed},
		{"HS256 keyed with the public key", forge(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`, claims(nil), hs256), ErrAlgorithm},
		{"ES384 header", forge(`{"alg":"ES384","kid":"`+kid+`","typ":"at+jwt"}`, claims(nil), sign), ErrAlgorithm},
		{"typ JWT", forge(`{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`, claims(nil), sign), ErrTokenType},
		{"no typ", forge(`{"alg":"ES256","kid":"`+kid+`"}`, claims(nil), sign), ErrTokenType},
		{"crit header", forge(`{"alg":"ES256","kid":"`+kid+`","typ":"at+jwt","crit":["exp"]}`, claims(nil), sign), ErrMalformed},
		{"oversized", forge(hdr, claims(func(m map[string]any) { m["pad"] = strings.Repeat("a", MaxTokenBytes) }), sign), ErrMalformed},
		{"empty", "", ErrMalformed},
		{"garbage", "not a token", ErrMalformed},
		{"two parts", goodParts[0] + "." + goodParts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"JWE shape", "a.b.c.d.e", ErrMalformed},
		{"dots only", "..", ErrMalformed},
		{"header not base64url", "!!!." + goodParts[1] + "." + goodParts[2], ErrMalformed},
		{"header padded", goodParts[0] + "=." + goodParts[1] + "." + goodParts[2], ErrMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("[1]")) + "." + goodParts[1] + "." + goodParts[2], ErrMalformed},
		{"payload not JSON but signed", forge(hdr, "null-ish", sign), ErrMalformed},
	}
	v := testVerifier(r)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("claims returned with an error: %+v", got)
			}
			if !strings.HasPrefix(err.Error(), "accesstoken: ") {
				t.Errorf("error lacks package prefix: %v", err)
			}
		})
	}

	// Rows that must pass, next to the ones that must not.
	accepted := []struct{ name, token string }{
		{"good", good},
		{"expired within leeway", forge(hdr, claims(func(m map[string]any) {
			m["iat"] = testNow.Add(-time.Hour).Unix()
			m["exp"] = testNow.Add(-29 * time.Second).Unix()
		}), sign)},
		{"typ application/at+jwt", forge(`{"alg":"ES256","kid":"`+kid+`","typ":"application/at+jwt"}`, claims(nil), sign)},
		{"typ AT+JWT", forge(`{"alg":"ES256","kid":"`+kid+`","typ":"AT+JWT"}`, claims(nil), sign)},
		{"aud array containing ours", forge(hdr, claims(func(m map[string]any) { m["aud"] = []string{"x", "https://api.example.com"} }), sign)},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.Verify(tt.token); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// A key published under ES256 but not a P-256 key, or published for another
// algorithm, is refused rather than tried.
func TestVerifyKeyAlgorithmMismatch(t *testing.T) {
	r := newRing(t)
	k := current(t, r)
	tok, err := Issue(k, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name string
		l    lookup
	}{
		{"key published for RS256", lookup{k.KID(): {k.Public(), "RS256"}}},
		{"P-384 key labelled ES256", lookup{k.KID(): {&p384.PublicKey, "ES256"}}},
		{"HMAC secret as key", lookup{k.KID(): {[]byte("secret"), "ES256"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := testVerifier(tt.l).Verify(tok); !errors.Is(err, ErrAlgorithm) {
				t.Fatalf("err = %v, want ErrAlgorithm", err)
			}
		})
	}
}

func TestVerifierZeroValueFailsClosed(t *testing.T) {
	r := newRing(t)
	tok, err := Issue(current(t, r), testClaims())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*Verifier{
		"nil":       nil,
		"zero":      {},
		"no issuer": {Keys: r},
		"no keys":   {Issuer: testIssuer},
	} {
		if _, err := v.Verify(tok); !errors.Is(err, ErrVerifierConfig) {
			t.Errorf("%s verifier: err = %v, want ErrVerifierConfig", name, err)
		}
	}
	// Without Audience any aud is accepted; the real clock is used when Now is nil.
	c := testClaims()
	c.IssuedAt, c.Expiry = time.Now(), time.Now().Add(time.Minute)
	c.Audience = []string{"https://elsewhere.example"}
	tok, err = Issue(current(t, r), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Verifier{Keys: r, Issuer: testIssuer}).Verify(tok); err != nil {
		t.Errorf("minimal verifier: %v", err)
	}
}

func TestIssueRefuses(t *testing.T) {
	r := newRing(t)
	k := current(t, r)
	tests := []struct {
		name   string
		modify func(*Claims)
		want   string
	}{
		{"no issuer", func(c *Claims) { c.Issuer = "" }, "iss"},
		{"no subject", func(c *Claims) { c.Subject = "" }, "sub"},
		{"no client_id", func(c *Claims) { c.ClientID = "" }, "client_id"},
		{"no audience", func(c *Claims) { c.Audience = nil }, "aud"},
		{"empty audience value", func(c *Claims) { c.Audience = []string{""} }, "aud"},
		{"no jti", func(c *Claims) { c.JTI = "" }, "jti"},
		{"no iat", func(c *Claims) { c.IssuedAt = time.Time{} }, "iat"},
		{"no exp", func(c *Claims) { c.Expiry = time.Time{} }, "exp"},
		{"exp before iat", func(c *Claims) { c.Expiry = c.IssuedAt }, "not after"},
		{"scope with space", func(c *Claims) { c.Scope = []string{"a b"} }, "whitespace"},
		{"empty scope", func(c *Claims) { c.Scope = []string{""} }, "empty"},
		{"empty cnf", func(c *Claims) { c.Confirmation = &Confirmation{} }, "cnf"},
		{"too large", func(c *Claims) { c.Scope = []string{strings.Repeat("s", MaxTokenBytes)} }, "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClaims()
			tt.modify(&c)
			tok, err := Issue(k, c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue = %q, %v; want an error about %s", tok, err, tt.want)
			}
		})
	}
	if _, err := Issue(nil, testClaims()); err == nil {
		t.Error("Issue with a nil key succeeded")
	}
	if _, err := Issue(&keys.SigningKey{}, testClaims()); err == nil {
		t.Error("Issue with a zero key succeeded")
	}
}

// derToRaw and rawToDER are inverses on every well-formed signature,
// including R or S values with leading zero bytes.
func TestSignatureConversion(t *testing.T) {
	for _, raw := range [][]byte{
		append(make([]byte, 32), slices.Repeat([]byte{0xff}, 32)...),
		append(append([]byte{0, 0, 1}, make([]byte, 29)...), append([]byte{0x7f}, make([]byte, 31)...)...),
		slices.Repeat([]byte{0x80}, 64),
	} {
		der := rawToDER(nil, raw)
		back := make([]byte, 64)
		if err := derToRaw(der, back); err != nil {
			t.Fatalf("derToRaw(%x): %v", der, err)
		}
		if !slices.Equal(back, raw) {
			t.Errorf("round trip %x -> %x -> %x", raw, der, back)
		}
	}
	for _, der := range [][]byte{nil, {0x30}, {0x30, 0}, {0x30, 3, 2, 1, 0x80}, {0x30, 4, 2, 2, 0, 1}, {0x31, 0}} {
		if err := derToRaw(der, make([]byte, 64)); err == nil {
			t.Errorf("derToRaw accepted %x", der)
		}
	}
}

func FuzzVerify(f *testing.F) {
	r := newRing(f)
	k := current(f, r)
	good, err := Issue(k, testClaims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add(good[:len(good)-2])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(forge(`{"alg":"none","typ":"at+jwt","kid":"`+k.KID()+`"}`, `{}`, nil))
	f.Add(forge(`{"alg":"ES256","typ":"at+jwt","kid":"`+k.KID()+`","crit":null}`, `{}`, es256With(f, k)))
	v := testVerifier(r)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if (c == nil) == (err == nil) {
			t.Fatalf("Verify returned claims %v and error %v", c, err)
		}
		if err == nil && (c.Issuer != testIssuer || c.JTI == "" || !slices.Contains(c.Audience, v.Audience)) {
			t.Fatalf("accepted claims break the contract: %+v", c)
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	k := current(b, newRing(b))
	c := testClaims()
	c.Confirmation = &Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Issue(k, c); err != nil {
			b.Fatal(err)
		}
	}
}

// boundToken issues a DPoP-bound token, the gateway's usual input, for
// the benchmarks.
func boundToken(b *testing.B) (*keys.Ring, Claims, string) {
	r := newRing(b)
	c := testClaims()
	c.Confirmation = &Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	tok, err := Issue(current(b, r), c)
	if err != nil {
		b.Fatal(err)
	}
	return r, c, tok
}

func BenchmarkVerify(b *testing.B) {
	r, _, tok := boundToken(b)
	v := testVerifier(r)
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyGoJose is the same check (signature only, no claim
// validation) through go-jose, for comparison.
func BenchmarkVerifyGoJose(b *testing.B) {
	r := newRing(b)
	k := current(b, r)
	tok, err := Issue(k, testClaims())
	if err != nil {
		b.Fatal(err)
	}
	pub := k.Public()
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawECDSASign and BenchmarkRawECDSAVerify are the floor: SHA-256
// of a token-sized input and one P-256 operation, nothing else.
func BenchmarkRawECDSASign(b *testing.B) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	input := make([]byte, 600)
	b.ReportAllocs()
	for b.Loop() {
		d := sha256.Sum256(input)
		if _, err := ecdsa.SignASN1(rand.Reader, priv, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawECDSAVerify(b *testing.B) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	input := make([]byte, 600)
	d := sha256.Sum256(input)
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, d[:])
	b.ReportAllocs()
	for b.Loop() {
		d := sha256.Sum256(input)
		if !ecdsa.VerifyASN1(&priv.PublicKey, d[:], sig) {
			b.Fatal("verify failed")
		}
	}
}
