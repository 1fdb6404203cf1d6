package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the webhook signature:
//
//	Keybound-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// t is the Unix time of the attempt (each retry is signed afresh), and v1 is
// the lower-case hex HMAC-SHA256, keyed with the webhook secret, of
//
//	t + "." + the raw request body
//
// A receiver recomputes v1 over the bytes it received (before any JSON
// parsing), compares in constant time, and refuses a t further than its
// tolerance from its own clock, which bounds how long a captured request
// can be replayed; within the tolerance it drops a Warning.ID it has seen.
// Several v1 values may appear (one per key, while a secret is replaced):
// one matching is enough. Unknown keys (a future v2) are ignored.
const SignatureHeader = "Keybound-Signature"

// DefaultTolerance is how far a signature's t may be from the receiver's
// clock when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// maxSignatureHeader bounds the header Verify parses.
const maxSignatureHeader = 4096

// Verification errors. Each means: do not act on the request.
var (
	ErrNoSignature    = errors.New("notify: no valid " + SignatureHeader + " header")
	ErrBadSignature   = errors.New("notify: signature does not match the body")
	ErrStaleSignature = errors.New("notify: signature timestamp is outside the tolerance")
)

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook request as a receiver should: header is the
// SignatureHeader value, body the raw bytes received, now the receiver's
// clock. tolerance bounds |now - t| (zero or less: DefaultTolerance). It
// returns nil only if some v1 in header is the HMAC of t and body under
// secret and t is within the tolerance.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return errors.New("notify: no secret to verify with")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if header == "" || len(header) > maxSignatureHeader {
		return ErrNoSignature
	}
	var (
		ts   string
		sigs [][]byte
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrNoSignature
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: t appears twice", ErrNoSignature)
			}
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size {
				sigs = append(sigs, b)
			}
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	// Checked after the MAC, so only a genuine but old request is "stale".
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w (%s)", ErrStaleSignature, d.Round(time.Second))
	}
	return nil
}
