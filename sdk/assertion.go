package sdk

import (
	"crypto"
	"time"
)

// ClientAssertion returns one private_key_jwt client assertion (RFC 7523
// section 3) signed by key: iss = sub = clientID, aud = audience (the token
// endpoint URL or the issuer), a random jti, valid for 60 seconds from now.
// kid "" means the key's RFC 7638 thumbprint, as PublicJWKS registers it.
//
// TokenSource makes these itself; this is for callers that build the token
// request by hand (curl, other OAuth libraries).
func ClientAssertion(key crypto.Signer, kid, clientID, audience string, now time.Time) (string, error) {
	s, err := newAssertionSigner(key, kid, clientID, audience)
	if err != nil {
		return "", err
	}
	return s.sign(now)
}
