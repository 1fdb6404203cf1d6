package clientauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/oauth"
)

// TestPrepareDefersReplayClaim checks that Prepare accepts an assertion
// without spending it, however often it is asked, and that the first Commit
// spends it: after that, Prepare still accepts the signature but Commit, and
// Authenticate, refuse it as a replay.
func TestPrepareDefersReplayClaim(t *testing.T) {
	f := loadFixture(t)
	a, replay := f.authenticator()
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "deferred", nil), nil))}
	ctx := context.Background()

	first, err := a.Prepare(ctx, req)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if replay.len() != 0 {
		t.Fatalf("Prepare recorded %d jti, want none before Commit", replay.len())
	}
	second, err := a.Prepare(ctx, req)
	if err != nil {
		t.Fatalf("Prepare of the same, uncommitted assertion: %v", err)
	}
	if err := second.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := second.Commit(ctx); err != nil {
		t.Fatalf("second Commit of one Result: %v, want nil", err)
	}
	if replay.len() != 1 {
		t.Fatalf("replay cache holds %d jti, want 1", replay.len())
	}
	err = first.Commit(ctx)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidClient || !errors.Is(err, ErrReplayed) {
		t.Fatalf("Commit of a spent assertion = %v, want invalid_client with ErrReplayed", err)
	}
	if _, err := a.Authenticate(ctx, req); !errors.Is(err, ErrReplayed) {
		t.Fatalf("Authenticate of a spent assertion = %v, want ErrReplayed", err)
	}
}

// TestCommitReplayCacheFailure checks that a replay cache that cannot
// answer refuses with server_error at Commit, never accepts.
func TestCommitReplayCacheFailure(t *testing.T) {
	f := loadFixture(t)
	a, replay := f.authenticator()
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "cache-down", nil), nil))}
	res, err := a.Prepare(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	replay.err = errors.New("replay: cache unavailable")
	err = res.Commit(context.Background())
	if oauth.As(err).Code != oauth.CodeServerError {
		t.Fatalf("Commit with a failing cache = %v, want server_error", err)
	}

	// A full cache is a capacity problem: 503, saying so, never a replay.
	res, err = a.Prepare(context.Background(), Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "cache-full", nil), nil))})
	if err != nil {
		t.Fatal(err)
	}
	replay.err = fmt.Errorf("%w: no room", ErrReplayCapacity)
	err = res.Commit(context.Background())
	if e := oauth.As(err); e.Code != oauth.CodeServerError || e.Status != http.StatusServiceUnavailable || !strings.Contains(e.Description, "capacity") || errors.Is(err, ErrReplayed) {
		t.Fatalf("Commit with a full cache = %v (status %d), want 503 server_error naming capacity", err, e.Status)
	}
}

// TestCommitAfterExpiry: an assertion accepted at its last moment whose
// Commit comes after it expired is refused as expired, not as a replay.
func TestCommitAfterExpiry(t *testing.T) {
	f := loadFixture(t)
	a, replay := f.authenticator()
	now := t0
	a.Now = func() time.Time { return now }
	res, err := a.Prepare(context.Background(), Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "late", nil), nil))})
	if err != nil {
		t.Fatal(err)
	}
	now = res.pending.until.Add(time.Second)
	replay.refuse = true // the cache, past the claim's end, reports it unclaimable
	err = res.Commit(context.Background())
	if oauth.As(err).Code != oauth.CodeInvalidClient || errors.Is(err, ErrReplayed) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Commit after expiry = %v, want invalid_client saying the assertion expired", err)
	}
}

// TestCommitWithoutAssertion checks that methods with nothing to record
// commit as a no-op.
func TestCommitWithoutAssertion(t *testing.T) {
	var r Result
	if err := r.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// seeingReplay is a fakeReplay that can also tell a spent jti.
type seeingReplay struct{ *fakeReplay }

func (s seeingReplay) Seen(_ context.Context, clientID, jti string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[[2]string{clientID, jti}]
	return ok
}

// TestPrepareRefusesSpentAssertion: with a cache that can tell a spent
// jti, Prepare refuses a replayed assertion at once, before the request's
// other checks could answer anything about the client.
func TestPrepareRefusesSpentAssertion(t *testing.T) {
	f := loadFixture(t)
	a, replay := f.authenticator()
	a.Replay = seeingReplay{replay}
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "spent", nil), nil))}
	res, err := a.Prepare(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(context.Background(), req); err != nil {
		t.Fatalf("Prepare before Commit: %v, want the assertion still usable", err)
	}
	if err := res.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(context.Background(), req); !errors.Is(err, ErrReplayed) || oauth.As(err).Code != oauth.CodeInvalidClient {
		t.Fatalf("Prepare of a spent assertion = %v, want invalid_client with ErrReplayed", err)
	}
}
