package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// Nonces issues server nonces (RFC 9449 section 8) that change every period
// and accepts the current and the previous one, so a client that fetched a
// nonce just before a rotation is not refused.
//
// A nonce is HMAC-SHA256(secret, period number), truncated to 128 bits:
// nothing is stored, and servers that share the secret and a clock agree on
// the nonce. Safe for concurrent use. The zero value fails closed: Current
// returns "" and Valid reports false.
type Nonces struct {
	key    []byte
	period time.Duration
	now    func() time.Time
	epoch  atomic.Pointer[nonceEpoch]
}

type nonceEpoch struct {
	n         int64
	cur, prev string
}

// nonceSecretLen is the smallest secret NewNonces accepts: the HMAC key
// must be as strong as the hash.
const nonceSecretLen = 32

// NewNonces returns a nonce source. secret nil means a random secret (one
// server); otherwise it must be at least 32 bytes and shared by every server
// that checks the nonces. period <= 0 means DefaultNoncePeriod; now nil
// means time.Now.
func NewNonces(secret []byte, period time.Duration, now func() time.Time) (*Nonces, error) {
	if secret == nil {
		secret = make([]byte, nonceSecretLen)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	} else if len(secret) < nonceSecretLen {
		return nil, errors.New("dpop: NewNonces: secret must be at least 32 bytes")
	} else {
		secret = append([]byte(nil), secret...)
	}
	if period <= 0 {
		period = DefaultNoncePeriod
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{key: secret, period: period, now: now}, nil
}

// Current returns the nonce to send in a DPoP-Nonce header.
func (n *Nonces) Current() string {
	if n.key == nil {
		return ""
	}
	return n.current().cur
}

// Valid reports whether nonce is the current or the previous nonce.
func (n *Nonces) Valid(nonce string) bool {
	if n.key == nil || len(nonce) != 22 {
		return false
	}
	e := n.current()
	ok := subtle.ConstantTimeCompare([]byte(nonce), []byte(e.cur)) |
		subtle.ConstantTimeCompare([]byte(nonce), []byte(e.prev))
	return ok == 1
}

func (n *Nonces) current() *nonceEpoch {
	num := n.now().UnixNano() / int64(n.period)
	if e := n.epoch.Load(); e != nil && e.n == num {
		return e
	}
	e := &nonceEpoch{n: num, cur: n.mint(num), prev: n.mint(num - 1)}
	n.epoch.Store(e)
	return e
}

func (n *Nonces) mint(num int64) string {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("keybound dpop nonce v1"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(num))
	m.Write(b[:])
	return b64.EncodeToString(m.Sum(nil)[:16])
}
