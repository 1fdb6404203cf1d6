package accesstoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sentinel errors returned by Verify, wrapped with the detail. Callers branch
// on them with errors.Is; at the edge every one is invalid_token (RFC 6750
// section 3.1).
var (
	// ErrMalformed: not a compact JWS of the access token shape, too large,
	// or missing a required claim.
	ErrMalformed = errors.New("accesstoken: malformed access token")
	// ErrTokenType: the typ header is not at+jwt, e.g. an ID token or a
	// client assertion presented as an access token (RFC 9068 section 4).
	ErrTokenType = errors.New("accesstoken: not an access token (typ must be at+jwt)")
	// ErrAlgorithm: alg is not ES256 or does not match the key's algorithm.
	ErrAlgorithm = errors.New("accesstoken: signature algorithm not accepted")
	// ErrUnknownKey: kid is absent or names no published key.
	ErrUnknownKey = errors.New("accesstoken: signed by an unknown key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("accesstoken: signature is invalid")
	// ErrIssuer: iss is not the configured issuer.
	ErrIssuer = errors.New("accesstoken: issued by another issuer")
	// ErrAudience: aud does not include the required audience.
	ErrAudience = errors.New("accesstoken: not issued for this audience")
	// ErrExpired: exp has passed (beyond the leeway).
	ErrExpired = errors.New("accesstoken: token has expired; request a new one")
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("accesstoken: token is not valid yet")
	// ErrVerifierConfig: the Verifier lacks Keys or Issuer. It fails closed.
	ErrVerifierConfig = errors.New("accesstoken: verifier is not configured (Keys and Issuer are required)")
)

// KeyLookup finds a published verification key by kid; *keys.Ring
// implements it.
type KeyLookup interface {
	PublicKey(kid string) (crypto.PublicKey, string, bool)
}

// Verifier verifies access tokens (RFC 9068 section 4). Keys and Issuer are
// required: the zero value refuses every token. A Verifier is safe for
// concurrent use if Keys is; do not change its fields while in use.
type Verifier struct {
	// Keys resolves kid to a public key.
	Keys KeyLookup
	// Issuer is the exact iss every token must carry.
	Issuer string
	// Audience, when set, must be one of the token's aud values: the
	// resource server's own identifier. Empty skips the check; only the
	// token service's own endpoints (introspection, revocation) should.
	Audience string
	// Leeway tolerates clock difference on exp, nbf and iat.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks token and returns its claims. Checks run cheapest and
// least trusting first: size, compact form, header (typ, alg, kid), the
// ES256 signature, and only then the payload: iss, exp, nbf, iat, aud and
// the required claims. The payload is never parsed unless it is signed.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v == nil || v.Keys == nil || v.Issuer == "" {
		return nil, ErrVerifierConfig
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the %d accepted", ErrMalformed, len(token), MaxTokenBytes)
	}
	dot1 := strings.IndexByte(token, '.')
	dot2 := dot1 + 1 + strings.IndexByte(token[dot1+1:], '.')
	if dot1 <= 0 || dot2 <= dot1+1 || dot2 == len(token)-1 || strings.IndexByte(token[dot2+1:], '.') >= 0 {
		return nil, fmt.Errorf("%w: not a JWS compact serialisation (three non-empty base64url parts)", ErrMalformed)
	}
	p64, s64 := token[dot1+1:dot2], token[dot2+1:]
	if dot1 > maxHeaderBytes {
		return nil, fmt.Errorf("%w: header over %d bytes", ErrMalformed, maxHeaderBytes)
	}

	// One allocation holds the token's bytes and, after them, the decoded
	// payload; the header and signature decode into stack buffers.
	enc := base64.RawURLEncoding.Strict()
	buf := make([]byte, len(token), len(token)+enc.DecodedLen(len(p64)))
	copy(buf, token)
	var hbuf [maxHeaderBytes]byte
	hn, err := enc.Decode(hbuf[:], buf[:dot1])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h header
	if err := json.Unmarshal(hbuf[:hn], &h); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	// Media type names are case-insensitive (RFC 7515 section 4.1.9).
	if !strings.EqualFold(h.Typ, Typ) && !strings.EqualFold(h.Typ, typFull) {
		return nil, fmt.Errorf("%w: typ is %q", ErrTokenType, h.Typ)
	}
	if h.Crit != nil {
		return nil, fmt.Errorf("%w: crit header is not supported", ErrMalformed)
	}
	if h.Alg != AlgES256 {
		return nil, fmt.Errorf("%w: alg is %q, want %s", ErrAlgorithm, h.Alg, AlgES256)
	}
	if h.Kid == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrUnknownKey)
	}
	pk, keyAlg, ok := v.Keys.PublicKey(h.Kid)
	if !ok {
		return nil, fmt.Errorf("%w: kid %q is not published", ErrUnknownKey, h.Kid)
	}
	pub, isEC := pk.(*ecdsa.PublicKey)
	if keyAlg != h.Alg || !isEC || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key %q is for %s, token says %s", ErrAlgorithm, h.Kid, keyAlg, h.Alg)
	}

	var sig [es256SigLen + 1]byte // one spare byte catches over-long input
	if enc.DecodedLen(len(s64)) > len(sig) {
		return nil, fmt.Errorf("%w: not a %d-byte ES256 signature", ErrSignature, es256SigLen)
	}
	sn, err := enc.Decode(sig[:], buf[dot2+1:])
	if err != nil || sn != es256SigLen {
		return nil, fmt.Errorf("%w: not a %d-byte ES256 signature", ErrSignature, es256SigLen)
	}
	digest := sha256.Sum256(buf[:dot2])
	var der [2 + 2*(2+1+es256SigLen/2)]byte
	if !ecdsa.VerifyASN1(pub, digest[:], rawToDER(der[:0], sig[:es256SigLen])) {
		return nil, ErrSignature
	}

	// Signed by us from here on; still check it as if it were not.
	pbuf := buf[len(token):cap(buf)]
	pn, err := enc.Decode(pbuf, buf[dot1+1:dot2])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	var p payload
	if err := json.Unmarshal(pbuf[:pn], &p); err != nil {
		return nil, fmt.Errorf("%w: claims are not valid: %v", ErrMalformed, err)
	}
	return v.checkClaims(&p)
}

// checkClaims validates the payload of a correctly signed token.
func (v *Verifier) checkClaims(p *payload) (*Claims, error) {
	if m := missingClaims(p.Iss, p.Sub, p.ClientID, p.JTI, len(p.Aud) > 0, p.Exp != 0, p.Iat != 0); m != "" {
		return nil, fmt.Errorf("%w: lacks required claims %s", ErrMalformed, m)
	}
	if p.Iss != v.Issuer {
		return nil, fmt.Errorf("%w: iss is %q, want %q", ErrIssuer, p.Iss, v.Issuer)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	exp, iat := time.Unix(p.Exp, 0).UTC(), time.Unix(p.Iat, 0).UTC()
	if !t.Before(exp.Add(v.Leeway)) {
		return nil, fmt.Errorf("%w: it expired at %s", ErrExpired, exp.Format(time.RFC3339))
	}
	var nbf time.Time
	if p.Nbf != 0 {
		nbf = time.Unix(p.Nbf, 0).UTC()
		if t.Add(v.Leeway).Before(nbf) {
			return nil, fmt.Errorf("%w: nbf is %s", ErrNotYetValid, nbf.Format(time.RFC3339))
		}
	}
	if t.Add(v.Leeway).Before(iat) {
		return nil, fmt.Errorf("%w: iat %s is in the future", ErrNotYetValid, iat.Format(time.RFC3339))
	}
	if p.Exp <= p.Iat {
		return nil, fmt.Errorf("%w: exp is not after iat", ErrMalformed)
	}
	if v.Audience != "" && !slices.Contains(p.Aud, v.Audience) {
		return nil, fmt.Errorf("%w: aud does not include %q", ErrAudience, v.Audience)
	}
	if p.Cnf != nil && p.Cnf.empty() {
		return nil, fmt.Errorf("%w: cnf has neither jkt nor x5t#S256", ErrMalformed)
	}
	var scope []string
	if p.Scope != "" {
		scope = strings.Fields(p.Scope)
	}
	return &Claims{
		Issuer: p.Iss, Subject: p.Sub, ClientID: p.ClientID, Audience: []string(p.Aud), Scope: scope,
		JTI: p.JTI, IssuedAt: iat, NotBefore: nbf, Expiry: exp,
		Confirmation: p.Cnf, AuthMethod: p.AM, StaticSecret: p.Static,
	}, nil
}
