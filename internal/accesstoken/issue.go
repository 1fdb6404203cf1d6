package accesstoken

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Signer is the signing key Issue uses; *keys.SigningKey implements it.
// Sign must return an ASN.1 DER ECDSA signature, as crypto.Signer prescribes
// for ECDSA keys.
type Signer interface {
	KID() string
	Algorithm() string
	crypto.Signer
}

// header is the JOSE header Issue writes and Verify reads. Crit is read only
// to refuse it: keybound defines no critical extensions (RFC 7515 section
// 4.1.11).
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

// ErrTooLarge is returned (wrapped) by Issue when the claims would make a
// token longer than MaxTokenBytes. It is the only Issue error a client can
// cure, by asking for fewer scopes or audiences, so the token endpoint
// branches on it to answer invalid_scope instead of server_error.
var ErrTooLarge = errors.New("accesstoken: token too large")

// Issue signs c with key and returns the JWS compact serialisation (RFC 7515
// section 7.1) with header typ "at+jwt", kid and alg.
//
// It refuses claims that Verify would refuse, so a token it returns is one
// every keybound verifier accepts until it expires: iss, sub, client_id, aud,
// jti and iat are required (RFC 9068 section 2.2), exp must follow iat, scope
// values must be non-empty and free of spaces, and a non-nil Confirmation
// must carry jkt or x5t#S256. A token over MaxTokenBytes is ErrTooLarge.
func Issue(key Signer, c Claims) (string, error) {
	if key == nil {
		return "", errors.New("accesstoken: Issue needs a signing key")
	}
	if alg := key.Algorithm(); alg != AlgES256 {
		return "", fmt.Errorf("accesstoken: key %s has algorithm %q; only %s is supported", key.KID(), alg, AlgES256)
	}
	if key.KID() == "" {
		return "", errors.New("accesstoken: signing key has no kid")
	}
	p, err := toPayload(c)
	if err != nil {
		return "", err
	}
	hb, err := json.Marshal(header{Alg: AlgES256, Kid: key.KID(), Typ: Typ})
	if err != nil {
		return "", fmt.Errorf("accesstoken: encoding header: %w", err)
	}
	pb, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("accesstoken: encoding claims: %w", err)
	}

	enc := base64.RawURLEncoding
	n := enc.EncodedLen(len(hb)) + 1 + enc.EncodedLen(len(pb)) + 1 + enc.EncodedLen(es256SigLen)
	if n > MaxTokenBytes {
		return "", fmt.Errorf("%w: it would be %d bytes, over the %d verifiers accept; grant fewer scopes or audiences", ErrTooLarge, n, MaxTokenBytes)
	}
	buf := make([]byte, 0, n)
	buf = enc.AppendEncode(buf, hb)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, pb)
	digest := sha256.Sum256(buf)
	der, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("accesstoken: signing with key %s: %w", key.KID(), err)
	}
	var sig [es256SigLen]byte
	if err := derToRaw(der, sig[:]); err != nil {
		return "", fmt.Errorf("accesstoken: key %s: %w", key.KID(), err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// toPayload checks c and converts it to its wire form.
func toPayload(c Claims) (*payload, error) {
	if m := missingClaims(c.Issuer, c.Subject, c.ClientID, c.JTI, len(c.Audience) > 0, !c.Expiry.IsZero(), !c.IssuedAt.IsZero()); m != "" {
		return nil, fmt.Errorf("accesstoken: claims lack %s", m)
	}
	if c.Expiry.Unix() <= c.IssuedAt.Unix() {
		return nil, fmt.Errorf("accesstoken: exp %v is not after iat %v", c.Expiry, c.IssuedAt)
	}
	for _, a := range c.Audience {
		if a == "" {
			return nil, errors.New("accesstoken: an aud value is empty")
		}
	}
	for _, s := range c.Scope {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("accesstoken: scope %q is empty or contains whitespace", s)
		}
	}
	if c.Confirmation != nil && c.Confirmation.empty() {
		return nil, errors.New("accesstoken: cnf has neither jkt nor x5t#S256; leave Confirmation nil for a bearer token")
	}
	p := &payload{
		Iss: c.Issuer, Sub: c.Subject, Aud: audience(c.Audience), JTI: c.JTI, ClientID: c.ClientID,
		Exp: c.Expiry.Unix(), Iat: c.IssuedAt.Unix(),
		Scope: strings.Join(c.Scope, " "), Cnf: c.Confirmation, AM: c.AuthMethod, Static: c.StaticSecret,
	}
	if !c.NotBefore.IsZero() {
		p.Nbf = c.NotBefore.Unix()
	}
	return p, nil
}

// missingClaims names, comma-separated, the claims RFC 9068 section 2.2
// requires that are absent, or returns "". Issue and Verify share it, so a
// token Issue signs never lacks a claim Verify insists on.
func missingClaims(iss, sub, clientID, jti string, hasAud, hasExp, hasIat bool) string {
	var missing []string
	for _, f := range []struct {
		name    string
		present bool
	}{{"iss", iss != ""}, {"sub", sub != ""}, {"client_id", clientID != ""}, {"jti", jti != ""}, {"aud", hasAud}, {"exp", hasExp}, {"iat", hasIat}} {
		if !f.present {
			missing = append(missing, f.name)
		}
	}
	return strings.Join(missing, ", ")
}

// errBadDER is returned when a Signer's output is not a DER ECDSA signature.
var errBadDER = errors.New("signer returned a malformed ECDSA signature")

// derToRaw converts an ASN.1 DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs,
// RFC 3279 section 2.2.3) into the fixed-size R||S form JWS uses, writing
// len(out)/2 bytes per integer. It accepts only minimal positive integers
// that fit, which is what every conforming signer produces.
func derToRaw(der, out []byte) error {
	bad := errBadDER
	if len(der) < 2 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return bad
	}
	rest := der[2:]
	size := len(out) / 2
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || int(rest[1]) > len(rest)-2 || rest[1] == 0 {
			return bad
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		if v[0]&0x80 != 0 {
			return bad // negative
		}
		if len(v) > 1 && v[0] == 0 && v[1]&0x80 == 0 {
			return bad // not minimal
		}
		v = trimZeros(v)
		if len(v) > size {
			return bad
		}
		dst := out[i*size : (i+1)*size]
		clear(dst)
		copy(dst[size-len(v):], v)
	}
	if len(rest) != 0 {
		return bad
	}
	return nil
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// rawToDER converts an R||S signature into ASN.1 DER for ecdsa.VerifyASN1,
// appending to dst. With 32-byte halves every length fits in one byte.
func rawToDER(dst, raw []byte) []byte {
	half := len(raw) / 2
	r, s := trimZeros(raw[:half]), trimZeros(raw[half:])
	dst = append(dst, 0x30, byte(derIntLen(r)+derIntLen(s)))
	dst = appendDERInt(dst, r)
	return appendDERInt(dst, s)
}

// derIntLen is the encoded length, tag and length bytes included, of the
// non-negative big-endian integer v with its leading zeros trimmed.
func derIntLen(v []byte) int {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return 2 + len(v) + 1 // a zero byte keeps it positive (or encodes 0)
	}
	return 2 + len(v)
}

func appendDERInt(dst, v []byte) []byte {
	l := derIntLen(v) - 2
	dst = append(dst, 0x02, byte(l))
	if l > len(v) {
		dst = append(dst, 0)
	}
	return append(dst, v...)
}
