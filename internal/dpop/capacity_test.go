package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/replay"
)

// A proof made with someone else's key for a stolen token is refused before
// its signature is checked and before its jti is claimed: otherwise anyone
// holding one token could fill the replay cache every client shares with
// proofs signed by keys of their own.
func TestVerifyWrongKeyClaimsNothing(t *testing.T) {
	keys(t)
	owner, err := Thumbprint(p256Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	thief := newSigner(t, p256Alt)
	rp := newRecordingReplay()
	v := &Verifier{Replay: rp, Now: fixedClock(t0)}
	req := Request{Method: "GET", URL: testURL, AccessToken: testToken, JKT: owner}

	for i := range 50 {
		p, err := thief.Proof("GET", testURL, ProofOptions{Now: t0, AccessToken: testToken, JTI: "thief-" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(p, req)
		if !errors.Is(err, ErrKeyMismatch) || !errors.Is(err, ErrInvalidProof) || errors.Is(err, ErrReplay) {
			t.Fatalf("proof %d by another key: err = %v, want ErrKeyMismatch matching ErrInvalidProof", i, err)
		}
		if !strings.Contains(err.Error(), "signed by a key other than the one the access token is bound to") {
			t.Errorf("error = %q, want it to say the key is not the token's", err)
		}
	}
	// Junk signatures fare the same: the key is refused first.
	junk := craft(t, "ES256", nil, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkOf(t, p256Alt)}, claimsAt(t0))
	if _, err := v.Verify(junk, Request{Method: "GET", URL: testURL, JKT: owner}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("junk proof by another key: err = %v, want ErrKeyMismatch", err)
	}
	if n := rp.len(); n != 0 {
		t.Errorf("proofs by another key left %d replay entries, want 0", n)
	}
	if n := len(v.headers); n != 0 {
		t.Errorf("proofs by another key left %d cached headers, want 0", n)
	}

	// The token's own key still passes, and claims its jti.
	p, err := newSigner(t, p256Key).Proof("GET", testURL, ProofOptions{Now: t0, AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(p, req)
	if err != nil {
		t.Fatalf("proof by the token's key: %v", err)
	}
	if got.JKT != owner || rp.len() != 1 {
		t.Errorf("JKT %q (want %q), %d replay entries (want 1)", got.JKT, owner, rp.len())
	}
}

// fullReplay is a BoundedReplayCache with no room left.
type fullReplay struct{ recordingReplay }

var errNoRoom = errors.New("no room")

func (*fullReplay) TryClaim(string, time.Time) (bool, error) { return false, errNoRoom }

// A replay cache that has no room for a jti is the server's problem: the
// proof is not called a replay (the client would make fresh proofs forever)
// nor invalid, and the cache's own error is kept for the log.
func TestVerifyFullReplayCacheIsNotAReplay(t *testing.T) {
	keys(t)
	s := newSigner(t, p256Key)
	check := func(t *testing.T, v *Verifier) {
		t.Helper()
		p, err := s.Proof("GET", testURL, ProofOptions{Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(p, Request{Method: "GET", URL: testURL})
		if got != nil || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Verify = %v, %v; want ErrUnavailable", got, err)
		}
		if errors.Is(err, ErrReplay) || errors.Is(err, ErrInvalidProof) {
			t.Errorf("error %q matches ErrReplay or ErrInvalidProof; a full cache is not the client's fault", err)
		}
		if msg := err.Error(); strings.Contains(msg, "already used") || !strings.Contains(msg, "replay cache is full") || !strings.Contains(msg, "capacity") {
			t.Errorf("error = %q, want it to name the full cache as a capacity problem", msg)
		}
	}
	t.Run("BoundedReplayCache", func(t *testing.T) {
		v := &Verifier{Replay: &fullReplay{recordingReplay{keys: map[string]time.Time{}}}, Now: fixedClock(t0)}
		check(t, v)
		p, _ := s.Proof("GET", testURL, ProofOptions{Now: t0})
		if _, err := v.Verify(p, Request{Method: "GET", URL: testURL}); !errors.Is(err, errNoRoom) {
			t.Errorf("err = %v, want it to wrap the cache's error", err)
		}
	})
	t.Run("replay.Cache", func(t *testing.T) {
		c := replay.New(64, fixedClock(t0)) // one key per shard
		for i := 0; c.Len() < 64; i++ {
			c.Claim("filler-"+strconv.Itoa(i), t0.Add(time.Hour))
		}
		check(t, &Verifier{Replay: c, Now: fixedClock(t0)})
	})
}

// The header cache takes only headers whose key has verified a signature:
// valid-looking headers on junk signatures cost nothing to make, and would
// otherwise fill the cache and, each time it starts over, evict every
// legitimate client's entry.
func TestVerifyHeaderCacheOnlyAfterSignature(t *testing.T) {
	keys(t)
	v := &Verifier{Replay: newRecordingReplay(), Now: fixedClock(t0)}
	req := Request{Method: "GET", URL: testURL}
	const n = 100
	for i := range n {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		junk := craft(t, "ES256", nil, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkOf(t, k)}, claimsAt(t0))
		if _, err := v.Verify(junk, req); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
			t.Fatalf("junk proof %d: err = %v", i, err)
		}
	}
	if got := len(v.headers); got != 0 {
		t.Fatalf("%d proofs with bad signatures left %d cached headers, want 0", n, got)
	}

	// A good proof is cached; a good proof with an oversized header is
	// accepted but not cached.
	p, err := newSigner(t, p256Key).Proof("GET", testURL, ProofOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(p, req); err != nil {
		t.Fatal(err)
	}
	if got := len(v.headers); got != 1 {
		t.Fatalf("after a good proof: %d cached headers, want 1", got)
	}
	big := jwkOf(t, p256Key)
	big["kid"] = strings.Repeat("k", maxCachedHeaderBytes)
	c := claimsAt(t0)
	c["jti"] = "big-header"
	if _, err := v.Verify(craft(t, "ES256", p256Key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": big}, c), req); err != nil {
		t.Fatalf("good proof with a large header: %v", err)
	}
	if got := len(v.headers); got != 1 {
		t.Errorf("after a good proof with a %d+ byte header: %d cached headers, want 1", maxCachedHeaderBytes, got)
	}
}

// DPoP proofs and client assertions are held the same margin past their
// last valid moment; dpop keeps its own copy only to stay free of server
// imports.
func TestReplayMarginMatchesReplayPackage(t *testing.T) {
	if replayMargin != replay.Margin {
		t.Errorf("replayMargin = %s, replay.Margin = %s; keep them equal", replayMargin, replay.Margin)
	}
}
