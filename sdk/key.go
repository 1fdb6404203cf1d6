package sdk

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// ErrUnsupportedKey is returned for a key type, curve or size the SDK does not
// sign with: keys must be ECDSA P-256, P-384 or P-521, Ed25519, or RSA of at
// least 2048 bits.
var ErrUnsupportedKey = errors.New("keybound: unsupported key: use ECDSA P-256/P-384/P-521, Ed25519 or RSA >= 2048 bits")

// LoadPrivateKey reads a private key from path. The file may hold a PEM block
// ("PRIVATE KEY" in PKCS#8, "EC PRIVATE KEY" or "RSA PRIVATE KEY"; "EC
// PARAMETERS" blocks are skipped) or a private JWK as JSON. Encrypted PEM,
// public keys and unsupported key types are refused with an error that says
// which. The error never contains key material.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keybound: load key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("keybound: load key: %w", err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("keybound: load key %s: file is larger than %d bytes; it is not a single private key", path, maxKeyFileBytes)
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("keybound: load key %s: %w", path, err)
	}
	return key, nil
}

// parsePrivateKey decodes a PEM or JWK private key and checks that the SDK can
// sign with it.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	trimmed := bytes.TrimSpace(data)
	var key crypto.Signer
	var err error
	if len(trimmed) > 0 && trimmed[0] == '{' {
		key, err = parseJWK(trimmed)
	} else {
		key, err = parsePEM(trimmed)
	}
	if err != nil {
		return nil, err
	}
	if _, err := algorithmFor(key.Public()); err != nil {
		return nil, err
	}
	return key, nil
}

func parsePEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key block and not a JWK")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the key is encrypted; decrypt it first (openssl pkcs8 -nocrypt)")
		}
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("PKCS#8 block does not parse")
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, ErrUnsupportedKey
			}
			return s, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("EC PRIVATE KEY block does not parse")
			}
			return k, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("RSA PRIVATE KEY block does not parse")
			}
			return k, nil
		case "PUBLIC KEY", "CERTIFICATE":
			return nil, fmt.Errorf("found a %s block; the file must hold the private key", block.Type)
		default:
			return nil, fmt.Errorf("PEM block type %q is not a private key", block.Type)
		}
	}
}

func parseJWK(data []byte) (crypto.Signer, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.Keys != nil {
		return nil, errors.New("the file is a JWK set; give a single private JWK")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		// go-jose's message names the field, never its value.
		return nil, fmt.Errorf("JWK does not parse: %w", err)
	}
	if jwk.IsPublic() {
		return nil, errors.New("the JWK is a public key; the file must hold the private key (with d)")
	}
	switch k := jwk.Key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, ErrUnsupportedKey
	}
}

// GenerateKey returns a fresh ECDSA P-256 key, the SDK's default for both
// private_key_jwt (ES256) and DPoP. Register its public half with PublicJWKS.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keybound: generate key: %w", err)
	}
	return k, nil
}

// PublicJWKS returns the JSON Web Key Set (RFC 7517 section 5) to register for
// key: its public half only, with kid, the alg the SDK signs assertions with
// and use "sig". An empty kid is replaced by the key's RFC 7638 thumbprint,
// which is also what Config uses when KeyID is empty.
func PublicJWKS(key crypto.Signer, kid string) ([]byte, error) {
	if key == nil {
		return nil, errors.New("keybound: public JWKS: key is nil")
	}
	pub := key.Public()
	alg, err := algorithmFor(pub)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = thumbprint(pub); err != nil {
			return nil, err
		}
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       pub,
		KeyID:     kid,
		Algorithm: string(alg),
		Use:       "sig",
	}}}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("keybound: public JWKS: %w", err)
	}
	return out, nil
}

// algorithmFor is the JWS alg the SDK signs client assertions with for pub.
func algorithmFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= minRSABits {
			return jose.PS256, nil
		}
	}
	return "", ErrUnsupportedKey
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("keybound: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}
