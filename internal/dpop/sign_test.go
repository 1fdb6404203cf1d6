package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewSigner(t *testing.T) {
	keys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     crypto.Signer
		wantAlg string
		wantJWK []string // member names
		wantErr string
	}{
		{"P-256", p256Key, "ES256", []string{"crv", "kty", "x", "y"}, ""},
		{"P-384", p384Key, "ES384", []string{"crv", "kty", "x", "y"}, ""},
		{"P-521", p521Key, "ES512", []string{"crv", "kty", "x", "y"}, ""},
		{"Ed25519", edKey, "EdDSA", []string{"crv", "kty", "x"}, ""},
		{"RSA", rsaKey, "PS256", []string{"e", "kty", "n"}, ""},
		{"RSA-1024 refused", small, "", nil, "RSA key is 1024 bits"},
		{"P-224 refused", p224, "", nil, "unsupported ECDSA curve"},
		{"nil refused", nil, "", nil, "nil key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewSigner error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Algorithm() != tt.wantAlg {
				t.Errorf("Algorithm = %q, want %q", s.Algorithm(), tt.wantAlg)
			}
			jwk := s.PublicJWK()
			if len(jwk) != len(tt.wantJWK) {
				t.Errorf("PublicJWK = %v, want members %v", jwk, tt.wantJWK)
			}
			for _, m := range tt.wantJWK {
				if _, ok := jwk[m]; !ok {
					t.Errorf("PublicJWK lacks %q", m)
				}
			}
			jwk["kty"] = "changed"
			if s.PublicJWK()["kty"] == "changed" {
				t.Error("PublicJWK returned shared state")
			}
		})
	}
}

func TestProofContents(t *testing.T) {
	keys(t)
	s := newSigner(t, p256Key)
	p1, err := s.Proof("POST", "https://as.example.com/token?x=1#f", ProofOptions{Now: t0, Nonce: "n1", AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.Proof("POST", "https://as.example.com/token", ProofOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(p1, ".")
	var c map[string]any
	if err := json.Unmarshal(mustB64(t, parts[1]), &c); err != nil {
		t.Fatal(err)
	}
	if c["htu"] != "https://as.example.com/token" || c["htm"] != "POST" || c["nonce"] != "n1" || c["iat"] != float64(t0.Unix()) {
		t.Errorf("claims = %v", c)
	}
	if jti, _ := c["jti"].(string); len(jti) != 22 {
		t.Errorf("random jti %q, want 22 characters (128 bits)", jti)
	}
	if !athMatches(c["ath"].(string), testToken) {
		t.Errorf("ath %v does not match the token", c["ath"])
	}
	if strings.Split(p2, ".")[1] == parts[1] {
		t.Error("two proofs share a payload; jti is not random")
	}
	if _, err := s.Proof("", "https://as.example.com/token", ProofOptions{}); err == nil {
		t.Error("Proof accepted an empty htm")
	}
}
