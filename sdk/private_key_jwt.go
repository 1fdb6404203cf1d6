package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// jwtBearerAssertionType is the client_assertion_type of RFC 7523 section 2.2.
const jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionSigner signs private_key_jwt client assertions (RFC 7523 section
// 3) for one client. It is safe for concurrent use.
type assertionSigner struct {
	signer   jose.Signer
	clientID string
	audience string
}

func newAssertionSigner(key crypto.Signer, kid, clientID, audience string) (*assertionSigner, error) {
	alg, err := algorithmFor(key.Public())
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = thumbprint(key.Public()); err != nil {
			return nil, err
		}
	}
	// go-jose signs the standard library key types itself; any other
	// crypto.Signer (a KMS or HSM handle) goes through cryptosigner.
	var sk any
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		sk = k
	default:
		sk = cryptosigner.Opaque(key)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: sk}, opts)
	if err != nil {
		return nil, fmt.Errorf("keybound: assertion signer: %w", err)
	}
	return &assertionSigner{signer: s, clientID: clientID, audience: audience}, nil
}

// sign returns a fresh assertion: iss = sub = client_id, aud, a random jti,
// iat = now and exp = now + assertionLifetime. Each token request gets its own
// because the server refuses a jti it has seen.
func (a *assertionSigner) sign(now time.Time) (string, error) {
	claims := jwt.Claims{
		Issuer:   a.clientID,
		Subject:  a.clientID,
		Audience: jwt.Audience{a.audience},
		ID:       rand.Text(),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	out, err := jwt.Signed(a.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("keybound: sign client assertion: %w", err)
	}
	return out, nil
}
