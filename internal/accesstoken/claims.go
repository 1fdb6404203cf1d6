// Package accesstoken issues and verifies keybound's access tokens: JWTs in
// the RFC 9068 profile (typ "at+jwt"), signed ES256 by the key ring, with
// RFC 7800 confirmation (cnf) for DPoP (RFC 9449) and mTLS (RFC 8705)
// bound tokens.
//
// It must not choose keys (keys does), decide whether a client may have a
// token (authserver does), check that a request proves possession of the cnf
// key (dpop and the gateway do), or consult revocation. Verify checks only
// what the token itself says; everything it returns is authenticated.
//
// Verification is hand-written on the standard library because the gateway
// runs it on every request: it accepts exactly one shape of token, the one
// Issue writes, and refuses everything else before touching the payload.
package accesstoken

import (
	"encoding/json"
	"errors"
	"time"
)

// Typ is the JWS typ header of an access token (RFC 9068 section 2.1).
const Typ = "at+jwt"

// typFull is the media-type form RFC 9068 section 4 also requires verifiers
// to accept.
const typFull = "application/at+jwt"

// AlgES256 is the only JWS algorithm accepted (RFC 7518 section 3.4). It
// matches the algorithm of keys.Ring; "none" and every HMAC algorithm are
// refused by construction.
const AlgES256 = "ES256"

// Claims are the claims of one access token. Times have second precision on
// the wire (RFC 7519 NumericDate).
type Claims struct {
	// Issuer is iss: the token service's issuer identifier.
	Issuer string
	// Subject is sub; for the client credentials grant it is the client_id
	// (RFC 9068 section 2.2).
	Subject string
	// ClientID is client_id (RFC 9068 section 2.2, RFC 8693 section 4.3).
	ClientID string
	// Audience is aud: the resource indicators the token is for (RFC 8707).
	Audience []string
	// Scope is the granted scopes, a space-separated string on the wire
	// (RFC 9068 section 2.2.3).
	Scope []string
	// JTI is jti, the token id used for revocation and replay tracking.
	JTI string
	// IssuedAt is iat, NotBefore is nbf (optional) and Expiry is exp.
	IssuedAt, NotBefore, Expiry time.Time
	// Confirmation is cnf (RFC 7800): the key the token is bound to. Nil for
	// a bearer token.
	Confirmation *Confirmation
	// AuthMethod is kb_am: how the client authenticated at the token
	// endpoint, e.g. "private_key_jwt" (identity.AuthMethod values).
	AuthMethod string
	// StaticSecret is kb_static: the token was issued to a legacy
	// shared-secret client, so resource servers and reports can count and
	// restrict such tokens.
	StaticSecret bool
}

// Confirmation is the cnf claim (RFC 7800 section 3.1). Exactly the members
// keybound understands; a token whose cnf has neither is refused, because a
// binding the gateway cannot check must not turn into a bearer token.
type Confirmation struct {
	// JKT is the RFC 7638 thumbprint of the DPoP key (RFC 9449 section 6.1).
	JKT string `json:"jkt,omitempty"`
	// X5TS256 is the SHA-256 thumbprint of the client certificate (RFC 8705
	// section 3.1).
	X5TS256 string `json:"x5t#S256,omitempty"`
}

func (c *Confirmation) empty() bool { return c.JKT == "" && c.X5TS256 == "" }

// payload is the wire form of Claims. Times are NumericDate seconds; Issue
// writes integers and Verify accepts nothing else.
type payload struct {
	Iss      string        `json:"iss"`
	Sub      string        `json:"sub"`
	Aud      audience      `json:"aud"`
	Exp      int64         `json:"exp"`
	Nbf      int64         `json:"nbf,omitempty"`
	Iat      int64         `json:"iat"`
	JTI      string        `json:"jti"`
	ClientID string        `json:"client_id"`
	Scope    string        `json:"scope,omitempty"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
	AM       string        `json:"kb_am,omitempty"`
	Static   bool          `json:"kb_static,omitempty"`
}

// audience is aud: a single string or an array of strings (RFC 7519 section
// 4.1.3). One value is written as a string, as RFC 9068's examples do.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = list
	return nil
}
