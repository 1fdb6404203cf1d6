package protect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/replay"
)

const (
	resource = "https://api.example.com/things/1"
	token    = "token-bound-to-the-owner-key"
)

// tokens accepts one token, bound to jkt.
type tokens struct{ jkt string }

func (t tokens) Verify(tok string) (*accesstoken.Claims, error) {
	if tok != token {
		return nil, errors.New("accesstoken: unknown token")
	}
	return &accesstoken.Claims{ClientID: "svc", JTI: "tok-1", Scope: []string{"read"},
		Confirmation: &accesstoken.Confirmation{JKT: t.jkt}}, nil
}

type clients struct{}

func (clients) GetClient(_ context.Context, id string) (*identity.Client, error) {
	return &identity.Client{ID: id, Status: identity.StatusActive, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

type keyPair struct {
	key    *ecdsa.PrivateKey
	signer *dpop.Signer
	jkt    string
}

func newKey(t *testing.T) keyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dpop.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := dpop.Thumbprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{key: k, signer: s, jkt: jkt}
}

func checker(owner keyPair, cache *replay.Cache) *protect.Checker {
	return &protect.Checker{
		Tokens:         tokens{jkt: owner.jkt},
		Proofs:         &dpop.Verifier{Replay: cache},
		Revoked:        func(string) bool { return false },
		Clients:        clients{},
		Realm:          "test",
		DPoPAlgorithms: []string{"ES256"},
	}
}

// request is a GET of resource with token and a fresh proof by k.
func request(t *testing.T, k keyPair) *http.Request {
	t.Helper()
	p, err := k.signer.Proof("GET", resource, dpop.ProofOptions{AccessToken: token})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", resource, nil)
	r.Header.Set("Authorization", "DPoP "+token)
	r.Header.Set("DPoP", p)
	return r
}

// Someone holding the token but not its key is refused as before, and none
// of their proofs takes a place in the replay cache that every client
// shares: otherwise one stolen token would let them fill it and lock
// everyone out.
func TestCheckProofsByAnotherKeyClaimNothing(t *testing.T) {
	owner, thief := newKey(t), newKey(t)
	cache := replay.New(0, nil)
	c := checker(owner, cache)
	for i := range 20 {
		_, err := c.Check(request(t, thief), resource, nil)
		var oe *oauth.Error
		if !errors.As(err, &oe) {
			t.Fatalf("proof %d by another key: err = %v, want an *oauth.Error", i, err)
		}
		if oe.Status != http.StatusUnauthorized || oe.Code != oauth.CodeInvalidDPoPProof ||
			oe.Description != "the proof is signed by a key other than the one the token is bound to" {
			t.Fatalf("proof %d by another key: %d %s %q", i, oe.Status, oe.Code, oe.Description)
		}
		if !strings.HasPrefix(oe.WWWAuthenticate, "DPoP ") || !strings.Contains(oe.WWWAuthenticate, `error="invalid_dpop_proof"`) {
			t.Errorf("WWW-Authenticate = %q", oe.WWWAuthenticate)
		}
	}
	if n := cache.Len(); n != 0 {
		t.Fatalf("20 proofs by another key left %d replay entries, want 0", n)
	}
	caller, err := c.Check(request(t, owner), resource, nil)
	if err != nil {
		t.Fatalf("proof by the token's key: %v", err)
	}
	if caller.Binding != protect.BindingDPoP || cache.Len() != 1 {
		t.Errorf("binding %q, %d replay entries; want dpop and 1", caller.Binding, cache.Len())
	}
}

// A full replay cache is the server's problem: 503, saying so, with no
// challenge (the credentials may be fine) and nothing about a replay.
func TestCheckFullReplayCacheIs503(t *testing.T) {
	owner := newKey(t)
	cache := replay.New(64, nil) // one key per shard
	for i := 0; cache.Len() < 64; i++ {
		cache.Claim("filler-"+strconv.Itoa(i), time.Now().Add(time.Hour))
	}
	_, err := checker(owner, cache).Check(request(t, owner), resource, nil)
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want an *oauth.Error", err)
	}
	if oe.Status != http.StatusServiceUnavailable || oe.Code != oauth.CodeServerError {
		t.Errorf("got %d %s, want 503 server_error", oe.Status, oe.Code)
	}
	if !strings.Contains(oe.Description, "replay cache is full") || !strings.Contains(oe.Description, "capacity") || strings.Contains(oe.Description, "already used") {
		t.Errorf("description %q, want it to name a full replay cache as a capacity problem", oe.Description)
	}
	if oe.WWWAuthenticate != "" {
		t.Errorf("WWW-Authenticate = %q, want none: the credentials were not refused", oe.WWWAuthenticate)
	}
	if !errors.Is(err, dpop.ErrUnavailable) || !errors.Is(err, replay.ErrFull) {
		t.Errorf("cause %v, want dpop.ErrUnavailable wrapping replay.ErrFull for the log", oe.Cause)
	}
}
