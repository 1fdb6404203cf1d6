package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Signer makes proofs (client side, used by our SDK and tests). It is safe
// for concurrent use if its key is. The zero value is not usable; call
// NewSigner.
type Signer struct {
	key    crypto.Signer
	alg    *algorithm
	jwk    *members
	jkt    string
	header string // base64url JOSE header; the same for every proof
}

// NewSigner returns a Signer for key, choosing the algorithm from the key:
// P-256 ES256, P-384 ES384, P-521 ES512, Ed25519 EdDSA, RSA (2048 to 8192
// bits) PS256.
func NewSigner(key crypto.Signer) (*Signer, error) {
	if key == nil {
		return nil, errors.New("dpop: NewSigner: nil key")
	}
	var name string
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch crv, _ := curveName(pub.Curve); crv {
		case "P-256":
			name = "ES256"
		case "P-384":
			name = "ES384"
		case "P-521":
			name = "ES512"
		default:
			return nil, errors.New("dpop: NewSigner: unsupported ECDSA curve; use P-256, P-384 or P-521")
		}
	case ed25519.PublicKey:
		name = "EdDSA"
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("dpop: NewSigner: RSA key is %d bits; use %d to %d", bits, MinRSABits, MaxRSABits)
		}
		name = "PS256"
	default:
		return nil, fmt.Errorf("dpop: NewSigner: unsupported key type %T; use ECDSA, Ed25519 or RSA", pub)
	}
	m, err := publicMembers(key.Public())
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key, alg: lookupAlgorithm(name), jwk: m, jkt: m.thumbprint()}
	hdr, err := json.Marshal(struct {
		Typ string         `json:"typ"`
		Alg string         `json:"alg"`
		JWK map[string]any `json:"jwk"`
	}{"dpop+jwt", name, s.PublicJWK()})
	if err != nil {
		return nil, fmt.Errorf("dpop: NewSigner: %w", err)
	}
	s.header = b64.EncodeToString(hdr)
	return s, nil
}

// Algorithm returns the JWS alg of the proofs s makes.
func (s *Signer) Algorithm() string { return s.alg.name }

// Thumbprint returns the RFC 7638 thumbprint of the signer's public key, the
// jkt an authorization server binds tokens to.
func (s *Signer) Thumbprint() string { return s.jkt }

// PublicJWK returns the public key as a JWK with its required members only.
// The map is a fresh copy.
func (s *Signer) PublicJWK() map[string]any {
	switch s.jwk.kty {
	case "EC":
		return map[string]any{"kty": "EC", "crv": s.jwk.crv, "x": s.jwk.x, "y": s.jwk.y}
	case "OKP":
		return map[string]any{"kty": "OKP", "crv": s.jwk.crv, "x": s.jwk.x}
	default:
		return map[string]any{"kty": "RSA", "n": s.jwk.n, "e": s.jwk.e}
	}
}

// ProofOptions are the optional parts of a proof.
type ProofOptions struct {
	// AccessToken, when set, is hashed into ath (resource requests).
	AccessToken string
	// Nonce is the server's latest DPoP-Nonce, if it sent one.
	Nonce string
	// Now is the proof's iat; zero means time.Now().
	Now time.Time
	// JTI identifies the proof; empty means 128 random bits.
	JTI string
}

// Proof returns a signed proof for a request with method htm to URL htu
// (RFC 9449 section 4.2). Any query or fragment in htu is dropped, as the
// RFC requires.
func (s *Signer) Proof(htm, htu string, o ProofOptions) (string, error) {
	if htm == "" || htu == "" {
		return "", errors.New("dpop: Proof: htm and htu are required")
	}
	if o.JTI == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("dpop: Proof: jti: %w", err)
		}
		o.JTI = b64.EncodeToString(b[:])
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	c := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{JTI: o.JTI, HTM: htm, HTU: stripQuery(htu), IAT: o.Now.Unix(), Nonce: o.Nonce}
	if o.AccessToken != "" {
		sum := sha256.Sum256([]byte(o.AccessToken))
		c.ATH = b64.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("dpop: Proof: %w", err)
	}
	signed := s.header + "." + b64.EncodeToString(payload)
	sig, err := s.sign(signed)
	if err != nil {
		return "", fmt.Errorf("dpop: Proof: sign: %w", err)
	}
	return signed + "." + b64.EncodeToString(sig), nil
}

func (s *Signer) sign(signed string) ([]byte, error) {
	a := s.alg
	switch a.kty {
	case "OKP":
		return s.key.Sign(rand.Reader, []byte(signed), crypto.Hash(0))
	case "RSA":
		var sum [64]byte
		return s.key.Sign(rand.Reader, hashInto(a.hash, signed, &sum), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash})
	default:
		var sum [64]byte
		der, err := s.key.Sign(rand.Reader, hashInto(a.hash, signed, &sum), a.hash)
		if err != nil {
			return nil, err
		}
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
			return nil, errors.New("ECDSA signer returned a malformed signature")
		}
		out := make([]byte, 2*a.size)
		rs.R.FillBytes(out[:a.size])
		rs.S.FillBytes(out[a.size:])
		return out, nil
	}
}
