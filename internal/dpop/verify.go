package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// ReplayCache remembers proof identifiers for as long as a proof could be
// accepted. *replay.Cache implements it, and BoundedReplayCache too.
type ReplayCache interface {
	// Claim records key until exp and reports whether this was its first
	// use. It must return false when it cannot remember the key.
	Claim(key string, exp time.Time) bool
}

// BoundedReplayCache is a ReplayCache with a bound on the keys it holds
// that tells a key it has no room for apart from a replay. Verify calls
// TryClaim instead of Claim on such a cache, so that a full cache is
// answered as the server's problem (ErrUnavailable, retry later) rather
// than as a replay, which would send an honest client into a loop of fresh
// proofs that fare no better, and show operators replays that never were.
type BoundedReplayCache interface {
	ReplayCache
	// TryClaim is Claim with the reason for a refusal: (true, nil) on first
	// use, (false, nil) for a key already held, (false, err) for a key it
	// could not record.
	TryClaim(key string, exp time.Time) (bool, error)
}

// NonceSource issues and checks server nonces (RFC 9449 section 8). *Nonces
// implements it.
type NonceSource interface {
	// Valid reports whether nonce is one the server issued and still accepts.
	Valid(nonce string) bool
	// Current is the nonce to send in a DPoP-Nonce header.
	Current() string
}

// Verifier checks DPoP proofs as RFC 9449 section 4.3 prescribes. It is safe
// for concurrent use if its ReplayCache and NonceSource are; do not change
// its fields while it is in use.
//
// The zero value accepts the default algorithms, a 60 second window and no
// nonce, and refuses every proof until Replay is set: a verifier without
// replay protection fails closed rather than accept a proof twice.
type Verifier struct {
	// Algorithms lists the JWS algorithms accepted. Nil means ES256, ES384,
	// EdDSA, PS256 and RS256; ES512 may be added; an empty non-nil list
	// accepts nothing. Names this package does not implement ("none",
	// HS256, ...) never match.
	Algorithms []string
	// Replay remembers jti values; required.
	Replay ReplayCache
	// Window is how old a proof's iat may be; zero means DefaultWindow.
	Window time.Duration
	// Skew is how far in the future iat may be; zero means DefaultSkew.
	Skew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Nonce, when set, requires every proof to carry a nonce it accepts.
	Nonce NonceSource

	// headers caches what a proof header, byte for byte, yields once it
	// checked out: the algorithm, the parsed public key and its thumbprint.
	// A client sends the same header with every proof, so the JSON parse,
	// the point validation and the thumbprint are done once per key, not
	// per request. The check is a pure function of the header bytes and
	// Algorithms (set before first use), so a cached answer is the answer.
	headersMu sync.RWMutex
	headers   map[string]*headerInfo
}

// headerInfo is a checked proof header.
type headerInfo struct {
	alg *algorithm
	pub crypto.PublicKey
	jkt string
}

// maxCachedHeaders bounds the header cache; past it, the cache starts over.
const maxCachedHeaders = 8192

// maxCachedHeaderBytes bounds the base64url header a cache entry is keyed
// by. Honest headers are small: an EC or Ed25519 key makes about 250 bytes,
// RSA-4096 about 1 KiB and RSA-8192 about 1.9 KiB. A header past this
// carries padding (unknown members) nobody needs cached; it is still
// accepted, only checked in full every time. The bound keeps the cache
// at most 16 MiB of keys rather than the 64 MiB that 8192 headers of a
// full-size proof would cost.
const maxCachedHeaderBytes = 2 << 10

// Request is what the server knows about the request a proof came with.
type Request struct {
	// Method is the HTTP method, compared with htm exactly.
	Method string
	// URL is the absolute target URI as the server sees it (scheme, host,
	// port, path); any query or fragment is ignored.
	URL string
	// AccessToken, when set, is the token sent with the proof; the proof
	// must then carry a matching ath. Empty at the token endpoint.
	AccessToken string
	// JKT, when set, is the thumbprint the proof key must have: the
	// access token's cnf.jkt. Empty at the token endpoint, where any key
	// may be bound. It is compared before the signature is checked and
	// the jti claimed, so that someone holding a token (but not its key)
	// cannot make proofs with a key of their own that each take a slot in
	// the replay cache shared by every client.
	JKT string
}

// Proof is an accepted proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof key, to compare with a
	// token's cnf.jkt.
	JKT       string
	JTI       string
	IssuedAt  time.Time
	Algorithm string
	PublicKey crypto.PublicKey
}

var defaultAlgorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// algorithm describes one JWS algorithm this package implements; only
// asymmetric ones exist here, so "none" and HMAC can never be accepted.
type algorithm struct {
	name  string
	kty   string
	crv   string
	curve elliptic.Curve
	size  int // EC coordinate size in bytes
	hash  crypto.Hash
	pss   bool
}

var algorithms = []algorithm{
	{name: "ES256", kty: "EC", crv: "P-256", curve: elliptic.P256(), size: 32, hash: crypto.SHA256},
	{name: "ES384", kty: "EC", crv: "P-384", curve: elliptic.P384(), size: 48, hash: crypto.SHA384},
	{name: "ES512", kty: "EC", crv: "P-521", curve: elliptic.P521(), size: 66, hash: crypto.SHA512},
	{name: "EdDSA", kty: "OKP", crv: "Ed25519"},
	{name: "PS256", kty: "RSA", hash: crypto.SHA256, pss: true},
	{name: "RS256", kty: "RSA", hash: crypto.SHA256},
}

func lookupAlgorithm(name string) *algorithm {
	for i := range algorithms {
		if algorithms[i].name == name {
			return &algorithms[i]
		}
	}
	return nil
}

// header is the JOSE header of a proof. Fixed structs, not maps: decoding
// stays cheap and unknown members are skipped without being kept.
type header struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  *jwk            `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

// jwk is the header's jwk member. The private members are decoded only to
// detect them (RFC 9449 section 4.2: the jwk MUST NOT contain a private key).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`

	D    json.RawMessage `json:"d"`
	P    json.RawMessage `json:"p"`
	Q    json.RawMessage `json:"q"`
	DP   json.RawMessage `json:"dp"`
	DQ   json.RawMessage `json:"dq"`
	QI   json.RawMessage `json:"qi"`
	Oth  json.RawMessage `json:"oth"`
	K    json.RawMessage `json:"k"`
	Priv json.RawMessage `json:"priv"`
}

func (k *jwk) privateMember() string {
	for _, m := range []struct {
		name string
		v    json.RawMessage
	}{{"d", k.D}, {"p", k.P}, {"q", k.Q}, {"dp", k.DP}, {"dq", k.DQ}, {"qi", k.QI}, {"oth", k.Oth}, {"k", k.K}, {"priv", k.Priv}} {
		if m.v != nil {
			return m.name
		}
	}
	return ""
}

type claims struct {
	JTI   string  `json:"jti"`
	HTM   string  `json:"htm"`
	HTU   string  `json:"htu"`
	IAT   float64 `json:"iat"`
	ATH   string  `json:"ath"`
	Nonce string  `json:"nonce"`
}

// replayMargin keeps a jti a little past the moment its proof stops passing
// the iat check, so that a replay cache reading its own clock a moment after
// ours never sees a just-accepted proof as already expired. It is
// replay.Margin, which this package does not import: the SDK imports dpop
// and must pull in no server code.
const replayMargin = time.Second

var errNoReplay = errors.New("dpop: Verifier.Replay is nil; refusing proofs without replay protection")

// Verify checks one proof against the request it came with (RFC 9449
// section 4.3) and, last of all, claims its jti in the replay cache, so a
// rejected proof leaves no state behind: no replay entry, and no header
// cache entry unless its signature verified. The caller must already have
// refused requests carrying more than one DPoP header.
//
// Errors wrap ErrInvalidProof, ErrUseNonce, ErrReplay or ErrKeyMismatch
// (both of which also match ErrInvalidProof), or ErrUnavailable (the
// server's replay cache is full); any other error is a server
// misconfiguration.
func (v *Verifier) Verify(proof string, r Request) (*Proof, error) {
	if v.Replay == nil {
		return nil, errNoReplay
	}
	if proof == "" {
		return nil, invalidf("proof is empty; send one DPoP header holding a signed JWT")
	}
	if len(proof) > MaxProofBytes {
		return nil, invalidf("proof is %d bytes, over the %d-byte limit", len(proof), MaxProofBytes)
	}
	hdrB64, rest, ok1 := strings.Cut(proof, ".")
	payB64, sigB64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sigB64, '.') >= 0 || hdrB64 == "" || payB64 == "" || sigB64 == "" {
		return nil, invalidf("proof is not a compact JWS (three base64url parts joined by dots)")
	}
	if !isBase64URL(hdrB64) || !isBase64URL(payB64) || !isBase64URL(sigB64) {
		return nil, invalidf("proof is not a compact JWS: a part is not unpadded base64url")
	}
	hi, cached, err := v.header(hdrB64)
	if err != nil {
		return nil, err
	}
	// RFC 9449 section 4.3 step 12 (the proof key is the token's key),
	// moved ahead of the signature: a proof by the wrong key costs no
	// signature check and never reaches the header or replay cache.
	if r.JKT != "" && subtle.ConstantTimeCompare([]byte(hi.jkt), []byte(r.JKT)) != 1 {
		return nil, &proofError{msg: "proof is signed by a key other than the one the access token is bound to (cnf.jkt)", kind: ErrKeyMismatch}
	}
	alg, pub := hi.alg, hi.pub
	buf := make([]byte, b64.DecodedLen(len(payB64))+b64.DecodedLen(len(sigB64)))
	payJSON, buf, err := decodeInto(buf, payB64)
	if err != nil {
		return nil, invalidf("payload is not valid base64url")
	}
	sig, _, err := decodeInto(buf, sigB64)
	if err != nil {
		return nil, invalidf("signature is not valid base64url")
	}

	signed := proof[:len(hdrB64)+1+len(payB64)]
	if !alg.verify(pub, signed, sig) {
		return nil, invalidf("signature does not verify with the header jwk")
	}
	if !cached {
		v.remember(hdrB64, hi)
	}

	// Claims: steps 8 to 12, parsed only once the signature holds.
	c := claims{IAT: math.NaN()}
	if err := json.Unmarshal(payJSON, &c); err != nil {
		return nil, invalidf("payload is not a JSON object with string jti, htm, htu and numeric iat")
	}
	if c.JTI == "" {
		return nil, invalidf("payload has no jti")
	}
	if len(c.JTI) > MaxJTILen {
		return nil, invalidf("jti is %d bytes, over the %d-byte limit", len(c.JTI), MaxJTILen)
	}
	if c.HTM != r.Method {
		return nil, invalidf("htm %q does not match request method %q", clip(c.HTM), clip(r.Method))
	}
	if c.HTU == "" {
		return nil, invalidf("payload has no htu")
	}
	if !matchHTU(c.HTU, r.URL) {
		return nil, invalidf("htu %q does not match request URL %q (compared without query and fragment)", clip(c.HTU), clip(stripQuery(r.URL)))
	}
	if math.IsNaN(c.IAT) {
		return nil, invalidf("payload has no iat")
	}
	// 1e11 seconds is the year 5138: far beyond any honest clock, and small
	// enough that the conversion below cannot overflow.
	if c.IAT < 0 || c.IAT > 1e11 {
		return nil, invalidf("iat %v is not a plausible time", c.IAT)
	}
	sec, frac := math.Modf(c.IAT)
	iat := time.Unix(int64(sec), int64(frac*1e9))
	now := v.now()
	window := v.window()
	if age := now.Sub(iat); age > window {
		return nil, invalidf("iat is %s old, more than the %s allowed; make a fresh proof and check the client clock", age.Truncate(time.Second), window)
	} else if skew := v.skew(); -age > skew {
		return nil, invalidf("iat is %s in the future, more than the %s allowed; check the client clock", (-age).Truncate(time.Second), skew)
	}
	if r.AccessToken != "" {
		if c.ATH == "" {
			return nil, invalidf("payload has no ath; a proof sent with an access token must carry ath, the base64url SHA-256 of the token")
		}
		if !athMatches(c.ATH, r.AccessToken) {
			return nil, invalidf("ath does not match the access token sent with the proof")
		}
	}
	if v.Nonce != nil {
		if c.Nonce == "" {
			return nil, &proofError{msg: "proof has no nonce; retry with the nonce from the DPoP-Nonce header", kind: ErrUseNonce}
		}
		if !v.Nonce.Valid(c.Nonce) {
			return nil, &proofError{msg: "nonce is stale or unknown; retry with the nonce from the DPoP-Nonce header", kind: ErrUseNonce}
		}
	}

	jkt := hi.jkt
	// The replay key is scoped to the key thumbprint, so one client cannot
	// burn another's jti; it is held until the proof could no longer pass
	// the iat check above.
	if err := v.claim(jkt+":"+c.JTI, iat.Add(window+replayMargin)); err != nil {
		if err == errClaimed {
			return nil, &proofError{msg: "jti " + quote(clip(c.JTI)) + " was already used; make a fresh proof for every request", kind: ErrReplay}
		}
		return nil, &proofError{msg: "the server cannot record this proof's jti because its replay cache is full; this is a server capacity problem, not a fault in the proof: retry later", kind: ErrUnavailable, cause: err}
	}
	return &Proof{JKT: jkt, JTI: c.JTI, IssuedAt: iat, Algorithm: alg.name, PublicKey: pub}, nil
}

// errClaimed is claim's answer for a key already held.
var errClaimed = errors.New("dpop: key already claimed")

// claim records key in the replay cache: nil on first use, errClaimed for
// a replay, the cache's own error when it could not record the key (only a
// BoundedReplayCache can say so; a plain ReplayCache's refusals all read
// as replays).
func (v *Verifier) claim(key string, exp time.Time) error {
	if b, ok := v.Replay.(BoundedReplayCache); ok {
		fresh, err := b.TryClaim(key, exp)
		switch {
		case err != nil:
			return err
		case !fresh:
			return errClaimed
		}
		return nil
	}
	if !v.Replay.Claim(key, exp) {
		return errClaimed
	}
	return nil
}

// header checks a proof's protected header (RFC 9449 section 4.3 steps 4 to
// 7) or returns the cached result of an identical header; cached says
// which. It caches nothing itself: Verify calls remember once a signature
// by the header's key has verified.
func (v *Verifier) header(hdrB64 string) (hi *headerInfo, cached bool, err error) {
	v.headersMu.RLock()
	hi = v.headers[hdrB64]
	v.headersMu.RUnlock()
	if hi != nil {
		return hi, true, nil
	}
	hi, err = v.checkHeader(hdrB64)
	return hi, false, err
}

// checkHeader parses and checks a header in full.
func (v *Verifier) checkHeader(hdrB64 string) (*headerInfo, error) {
	hdrJSON, err := b64.DecodeString(hdrB64)
	if err != nil {
		return nil, invalidf("header is not valid base64url")
	}
	var h header
	if err := json.Unmarshal(hdrJSON, &h); err != nil {
		return nil, invalidf("header is not a JSON object with string typ and alg and an object jwk")
	}
	if h.Typ != "dpop+jwt" {
		return nil, invalidf("header typ %q is not \"dpop+jwt\"", clip(h.Typ))
	}
	alg := v.allowed(h.Alg)
	if alg == nil {
		return nil, invalidf("header alg %q is not accepted; use one of %s", clip(h.Alg), strings.Join(v.implemented(), ", "))
	}
	if h.Crit != nil {
		return nil, invalidf("header crit is not supported")
	}
	if h.JWK == nil {
		return nil, invalidf("header has no jwk; include the public key")
	}
	if m := h.JWK.privateMember(); m != "" {
		return nil, invalidf("header jwk contains the private member %q; send only the public key", m)
	}
	pub, mem, err := alg.publicKey(h.JWK)
	if err != nil {
		return nil, err
	}
	return &headerInfo{alg: alg, pub: pub, jkt: mem.thumbprint()}, nil
}

// remember caches a checked header whose key has just verified a signature.
// Only then: a header alone costs nothing to make, and junk proofs (valid
// headers, bad signatures) would otherwise fill the cache and, each time it
// starts over, evict the headers of every legitimate client. Headers over
// maxCachedHeaderBytes are not cached at all.
func (v *Verifier) remember(hdrB64 string, hi *headerInfo) {
	if len(hdrB64) > maxCachedHeaderBytes {
		return
	}
	v.headersMu.Lock()
	if v.headers == nil || len(v.headers) >= maxCachedHeaders {
		v.headers = make(map[string]*headerInfo)
	}
	// A clone: hdrB64 is a slice of the whole proof, which the key
	// would otherwise keep alive as long as the entry.
	v.headers[strings.Clone(hdrB64)] = hi
	v.headersMu.Unlock()
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (v *Verifier) allowed(name string) *algorithm {
	for _, a := range v.algorithmNames() {
		if a == name {
			return lookupAlgorithm(name)
		}
	}
	return nil
}

// implemented lists the accepted names this package implements, for
// error messages.
func (v *Verifier) implemented() []string {
	var names []string
	for _, n := range v.algorithmNames() {
		if lookupAlgorithm(n) != nil {
			names = append(names, n)
		}
	}
	return names
}

func (v *Verifier) algorithmNames() []string {
	if v.Algorithms == nil {
		return defaultAlgorithms
	}
	return v.Algorithms
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) window() time.Duration {
	if v.Window > 0 {
		return v.Window
	}
	return DefaultWindow
}

func (v *Verifier) skew() time.Duration {
	if v.Skew > 0 {
		return v.Skew
	}
	return DefaultSkew
}

// athMatches reports whether ath is base64url(SHA-256(token)) (RFC 9449
// section 4.2).
func athMatches(ath, token string) bool {
	sum := sha256.Sum256(readOnlyBytes(token))
	var want [43]byte
	b64.Encode(want[:], sum[:])
	return subtle.ConstantTimeCompare([]byte(ath), want[:]) == 1
}

// isBase64URL reports whether s holds only the unpadded base64url alphabet.
// The decoder alone would skip CR and LF, letting two spellings of one
// value through.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// decodeInto decodes s into the front of buf and returns the decoded bytes
// and the rest of buf.
func decodeInto(buf []byte, s string) (out, rest []byte, err error) {
	n, err := b64.Decode(buf, []byte(s))
	if err != nil {
		return nil, nil, err
	}
	return buf[:n:n], buf[n:], nil
}

// decodeMember decodes one base64url JWK member strictly, so that the string
// is the only spelling of its value and may be hashed as is for the
// thumbprint.
func decodeMember(name, s string, dst []byte) ([]byte, error) {
	if s == "" {
		return nil, invalidf("header jwk has no %s", name)
	}
	if !isBase64URL(s) {
		return nil, invalidf("header jwk %s is not unpadded base64url", name)
	}
	if b64.DecodedLen(len(s)) > cap(dst) {
		return nil, invalidf("header jwk %s is too long", name)
	}
	n, err := b64.Decode(dst[:cap(dst)], []byte(s))
	if err != nil {
		return nil, invalidf("header jwk %s is not canonical base64url", name)
	}
	return dst[:n], nil
}

// publicKey builds the key the header jwk describes and checks that it fits
// the algorithm (RFC 9449 section 4.3 step 7).
func (a *algorithm) publicKey(k *jwk) (crypto.PublicKey, *members, error) {
	if k.Kty != a.kty {
		return nil, nil, invalidf("header jwk kty %q does not fit alg %s, which needs kty %q", clip(k.Kty), a.name, a.kty)
	}
	switch a.kty {
	case "EC":
		if k.Crv != a.crv {
			return nil, nil, invalidf("header jwk crv %q does not fit alg %s, which needs crv %q", clip(k.Crv), a.name, a.crv)
		}
		var point [1 + 2*66]byte
		point[0] = 4 // SEC 1 uncompressed point
		x, err := decodeMember("x", k.X, point[1:1:1+a.size])
		if err != nil {
			return nil, nil, err
		}
		y, err := decodeMember("y", k.Y, point[1+a.size:1+a.size:1+2*a.size])
		if err != nil {
			return nil, nil, err
		}
		if len(x) != a.size || len(y) != a.size {
			return nil, nil, invalidf("header jwk x and y must be %d bytes each for %s", a.size, a.crv)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(a.curve, point[:1+2*a.size])
		if err != nil {
			return nil, nil, invalidf("header jwk is not a point on %s", a.crv)
		}
		return pub, &members{kty: "EC", crv: a.crv, x: k.X, y: k.Y}, nil
	case "OKP":
		if k.Crv != a.crv {
			return nil, nil, invalidf("header jwk crv %q does not fit alg %s, which needs crv %q", clip(k.Crv), a.name, a.crv)
		}
		x, err := decodeMember("x", k.X, make([]byte, 0, ed25519.PublicKeySize))
		if err != nil {
			return nil, nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, nil, invalidf("header jwk x must be %d bytes for Ed25519", ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), &members{kty: "OKP", crv: a.crv, x: k.X}, nil
	case "RSA":
		n, err := decodeMember("n", k.N, make([]byte, 0, MaxRSABits/8))
		if err != nil {
			return nil, nil, err
		}
		if n[0] == 0 {
			return nil, nil, invalidf("header jwk n has a leading zero byte")
		}
		var eb [4]byte
		e, err := decodeMember("e", k.E, eb[:0:3])
		if err != nil {
			return nil, nil, err
		}
		if e[0] == 0 {
			return nil, nil, invalidf("header jwk e has a leading zero byte")
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if exp < 3 || exp%2 == 0 {
			return nil, nil, invalidf("header jwk e must be an odd number of at least 3")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return nil, nil, invalidf("header jwk RSA modulus is %d bits; use %d to %d", bits, MinRSABits, MaxRSABits)
		}
		return pub, &members{kty: "RSA", n: k.N, e: k.E}, nil
	}
	return nil, nil, invalidf("header jwk kty %q is not supported", clip(k.Kty))
}

// verify checks a JWS signature over signed (RFC 7518 section 3).
func (a *algorithm) verify(pub crypto.PublicKey, signed string, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if len(sig) != 2*a.size {
			return false
		}
		var sum [64]byte
		digest := hashInto(a.hash, signed, &sum)
		var der [2*(2+1+66) + 3]byte
		return ecdsa.VerifyASN1(k, digest, rawToDER(der[:0], sig[:a.size], sig[a.size:]))
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k, []byte(signed), sig)
	case *rsa.PublicKey:
		if len(sig) != k.Size() {
			return false
		}
		var sum [64]byte
		digest := hashInto(a.hash, signed, &sum)
		if a.pss {
			return rsa.VerifyPSS(k, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, a.hash, digest, sig) == nil
	}
	return false
}

func hashInto(h crypto.Hash, s string, out *[64]byte) []byte {
	b := readOnlyBytes(s)
	switch h {
	case crypto.SHA256:
		sum := sha256.Sum256(b)
		return append(out[:0], sum[:]...)
	case crypto.SHA384:
		sum := sha512.Sum384(b)
		return append(out[:0], sum[:]...)
	default:
		sum := sha512.Sum512(b)
		return append(out[:0], sum[:]...)
	}
}

// readOnlyBytes views s as bytes without copying it, for the hash
// functions, which only read their input. []byte(s) copies: for an access
// token and a proof's signing input that was about 1 KiB of garbage per
// gateway request. The result must never be written to.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// rawToDER turns a JWS ECDSA signature (r || s, fixed width, RFC 7518
// section 3.4) into the ASN.1 form crypto/ecdsa verifies.
func rawToDER(dst, r, s []byte) []byte {
	ri, si := derInt(r), derInt(s)
	body := len(ri) + len(si) + 4
	if ri[0]&0x80 != 0 {
		body++
	}
	if si[0]&0x80 != 0 {
		body++
	}
	dst = append(dst, 0x30)
	if body >= 0x80 {
		dst = append(dst, 0x81)
	}
	dst = append(dst, byte(body))
	for _, v := range [][]byte{ri, si} {
		dst = append(dst, 0x02)
		if v[0]&0x80 != 0 {
			dst = append(dst, byte(len(v)+1), 0)
		} else {
			dst = append(dst, byte(len(v)))
		}
		dst = append(dst, v...)
	}
	return dst
}

// derInt strips leading zeros, keeping one byte for zero.
func derInt(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}
