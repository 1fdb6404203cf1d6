package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keybound/keybound/internal/identity"
)

// DefaultAlgorithms is the JWS alg allow-list used when
// Authenticator.Algorithms is nil.
var DefaultAlgorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// asymmetric lists every alg this package can verify. The allow-list is
// intersected with it, so none and HS* can never be configured in.
var asymmetric = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512,
}

// Accepted typ header values. A JWT minted for another purpose (an access
// token, at+jwt; a DPoP proof, dpop+jwt) must not pass as a client
// assertion, so any other explicit typ is refused.
var assertionTypes = []string{"", "JWT", "client-authentication+jwt"}

// privateKeyJWT authenticates a client_assertion (RFC 7523 sections 2.2 and
// 3, RFC 7521 section 4.2). The assertion is checked in this order, cheapest
// refusals first; it changes no state: its jti is returned as the Result's
// pending claim, recorded by Result.Commit once the caller's own checks
// passed too (step 7):
//
//  1. client_assertion_type, size, JWS compact serialisation, alg allow-list;
//  2. iss == sub, and a form client_id if any equals sub;
//  3. the client sub names is registered for private_key_jwt;
//  4. the signature verifies with a key from the client's registered JWKS;
//  5. aud, exp, nbf, iat, jti;
//  6. the client is usable now;
//  7. (Commit) the jti was not used before.
func (a *Authenticator) privateKeyJWT(ctx context.Context, formID, assertionType, assertion string) (*Result, error) {
	switch {
	case assertionType == "":
		return nil, invalidRequest("client_assertion_type is missing; send "+JWTBearerAssertionType, nil)
	case assertion == "":
		return nil, invalidRequest("client_assertion is missing", nil)
	case assertionType != JWTBearerAssertionType:
		return nil, invalidClient("client_assertion_type is not supported; send "+JWTBearerAssertionType, nil)
	case len(assertion) > MaxAssertionBytes:
		return nil, invalidClient(fmt.Sprintf("client_assertion is larger than %d bytes", MaxAssertionBytes), nil)
	}
	if a.Replay == nil || len(a.Audiences) == 0 {
		return nil, serverError(errors.New("clientauth: private_key_jwt needs Replay and Audiences"))
	}
	algs := a.algorithms()
	if len(algs) == 0 {
		return nil, serverError(errors.New("clientauth: Algorithms names no supported asymmetric algorithm"))
	}

	jws, err := jose.ParseSignedCompact(assertion, algs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) {
			return nil, invalidClient("client_assertion is signed with an algorithm the server does not accept; use one of "+algList(algs), err)
		}
		return nil, invalidClient("client_assertion is not a JWS in compact serialisation", err)
	}
	sig := jws.Signatures[0]
	alg := jose.SignatureAlgorithm(sig.Protected.Algorithm)
	if typ, _ := sig.Protected.ExtraHeaders[jose.HeaderType].(string); !slices.Contains(assertionTypes, typ) {
		return nil, invalidClient("client_assertion has a typ header of another kind of token; omit typ or send JWT", nil)
	}

	var claims jwt.Claims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return nil, invalidClient("client_assertion claims are not a JSON object with RFC 7519 claim types", err)
	}
	switch {
	case claims.Subject == "":
		return nil, invalidClient("client_assertion has no sub; set sub and iss to the client_id", nil)
	case claims.Issuer != claims.Subject:
		return nil, invalidClient("client_assertion iss must equal sub, and both the client_id (RFC 7523 section 3)", nil)
	}
	if err := checkFormID(formID, claims.Subject); err != nil {
		return nil, err
	}

	c, err := a.lookup(ctx, claims.Subject, identity.AuthPrivateKeyJWT)
	if err != nil {
		return nil, err
	}
	if err := a.verifyWithJWKS(jws, alg, sig.Protected.KeyID, c.JWKS); err != nil {
		// During a rotation overlap the keys rotated out still verify.
		prev := c.WithPrevious(a.now())
		if prev == nil || len(prev.JWKS) == 0 || a.verifyWithJWKS(jws, alg, sig.Protected.KeyID, prev.JWKS) != nil {
			return nil, err
		}
	}
	until, err := a.checkClaims(&claims)
	if err != nil {
		return nil, err
	}
	if rc, ok := a.Replay.(ReplayChecker); ok && rc.Seen(ctx, c.ID, claims.ID) {
		return nil, invalidClient("assertion jti was already used; sign a new assertion with a fresh jti for every request", ErrReplayed)
	}
	if err := a.usable(c); err != nil {
		return nil, err
	}
	return &Result{
		Client: c, Method: identity.AuthPrivateKeyJWT, AssertionJTI: claims.ID,
		pending: &pendingClaim{replay: a.Replay, clientID: c.ID, jti: claims.ID, until: until, now: a.now},
	}, nil
}

// checkClaims checks aud and the time and jti claims (RFC 7523 section 3,
// items 3 to 7) and returns how long the jti must be remembered: until the
// assertion could no longer be accepted, exp plus leeway.
func (a *Authenticator) checkClaims(cl *jwt.Claims) (time.Time, error) {
	now := a.now()
	leeway := a.leeway()
	maxLife := a.MaxAssertionLifetime
	if maxLife <= 0 {
		maxLife = DefaultMaxAssertionLifetime
	}

	if !slices.ContainsFunc(cl.Audience, func(aud string) bool { return slices.Contains(a.Audiences, aud) }) {
		return time.Time{}, invalidClient("client_assertion aud must contain the issuer identifier or the token endpoint URL", nil)
	}
	if cl.Expiry == nil {
		return time.Time{}, invalidClient("client_assertion has no exp", nil)
	}
	exp := cl.Expiry.Time()
	if now.After(exp.Add(leeway)) {
		return time.Time{}, invalidClient("client_assertion has expired; sign a new one", nil)
	}
	if exp.Sub(now) > maxLife+leeway {
		return time.Time{}, invalidClient(fmt.Sprintf("client_assertion exp is too far ahead; it must be within %s of now", maxLife), nil)
	}
	if cl.NotBefore != nil && now.Add(leeway).Before(cl.NotBefore.Time()) {
		return time.Time{}, invalidClient("client_assertion is not valid yet (nbf); check the client clock", nil)
	}
	if cl.IssuedAt != nil {
		iat := cl.IssuedAt.Time()
		if iat.After(now.Add(leeway)) {
			return time.Time{}, invalidClient("client_assertion iat is in the future; check the client clock", nil)
		}
		if exp.Sub(iat) > maxLife {
			return time.Time{}, invalidClient(fmt.Sprintf("client_assertion lifetime (exp - iat) exceeds %s", maxLife), nil)
		}
	}
	switch {
	case cl.ID == "":
		return time.Time{}, invalidClient("client_assertion has no jti; give every assertion a unique jti", nil)
	case len(cl.ID) > MaxJTILen:
		return time.Time{}, invalidClient(fmt.Sprintf("client_assertion jti is longer than %d characters", MaxJTILen), nil)
	}
	return exp.Add(leeway), nil
}

// verifyWithJWKS verifies jws with a key from the client's registered JWKS:
// the keys whose kid equals the header's kid when it has one, otherwise every
// key whose type and alg fit. Keys that cannot be parsed, are not public, are
// not for signing, or do not fit alg are skipped (RFC 7517 section 5 lets a
// set hold key types a reader does not understand).
func (a *Authenticator) verifyWithJWKS(jws *jose.JSONWebSignature, alg jose.SignatureAlgorithm, kid string, raw json.RawMessage) error {
	keys, err := a.keySets.get(raw, kid)
	switch {
	case errors.Is(err, errNoKey) && kid != "":
		return invalidClient("client_assertion kid names no key in the client's registered JWKS", fmt.Errorf("%w: %w", ErrBadCredential, err))
	case err != nil:
		return invalidClient("the client has no usable registered JWKS; ask its owner to register its public keys", err)
	}
	tried := 0
	named := false
	for i := range keys {
		k := &keys[i]
		if kid != "" {
			if k.KeyID != kid {
				continue
			}
			named = true
		}
		if !keyFits(alg, k) {
			continue
		}
		tried++
		if _, err := jws.Verify(k.Key); err == nil {
			return nil
		}
	}
	switch {
	case kid != "" && !named:
		return invalidClient("client_assertion kid names no key in the client's registered JWKS", ErrBadCredential)
	case tried == 0:
		return invalidClient("no key in the client's registered JWKS fits the assertion's alg", ErrBadCredential)
	default:
		return invalidClient("client_assertion signature does not verify with the client's registered keys", ErrBadCredential)
	}
}

var errNoKey = errors.New("clientauth: client JWKS holds no usable public key")

// parseJWKS parses a registered JWK set of at most identity.MaxJWKSKeys
// keys, key by key, and returns the valid public ones. When kid is not empty
// only keys with that kid are parsed: decoding one key's kid is far cheaper
// than decoding an RSA key that will not be used.
func parseJWKS(raw json.RawMessage, kid string) ([]jose.JSONWebKey, error) {
	if len(raw) == 0 {
		return nil, errors.New("clientauth: client has no JWKS")
	}
	if len(raw) > identity.MaxJWKSBytes {
		return nil, fmt.Errorf("clientauth: client JWKS is %d bytes, more than %d", len(raw), identity.MaxJWKSBytes)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("clientauth: client JWKS: %w", err)
	}
	if len(set.Keys) > identity.MaxJWKSKeys {
		return nil, fmt.Errorf("clientauth: client JWKS holds %d keys, more than %d", len(set.Keys), identity.MaxJWKSKeys)
	}
	var out []jose.JSONWebKey
	for _, kr := range set.Keys {
		if kid != "" {
			var id struct {
				Kid string `json:"kid"`
			}
			if json.Unmarshal(kr, &id) != nil || id.Kid != kid {
				continue
			}
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(kr); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errNoKey
	}
	return out, nil
}

// keyFits reports whether k may verify a signature made with alg: its
// registered alg and use, if any, agree, and its type and size match.
func keyFits(alg jose.SignatureAlgorithm, k *jose.JSONWebKey) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return pub.N.BitLen() >= MinRSABits
		}
	}
	return false
}

func (a *Authenticator) algorithms() []jose.SignatureAlgorithm {
	want := a.Algorithms
	if want == nil {
		want = DefaultAlgorithms
	}
	out := make([]jose.SignatureAlgorithm, 0, len(want))
	for _, s := range want {
		if alg := jose.SignatureAlgorithm(s); slices.Contains(asymmetric, alg) {
			out = append(out, alg)
		}
	}
	return out
}

func (a *Authenticator) leeway() time.Duration {
	switch {
	case a.Leeway < 0:
		return 0
	case a.Leeway == 0:
		return DefaultLeeway
	}
	return a.Leeway
}

func algList(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}
