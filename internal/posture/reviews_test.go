package posture

import (
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/identity"
)

// Overdue reviews and orphaned identities are counted from what the caller
// says it tracks: untracked is never a zero, and only active identities
// count.
func TestReviewFindings(t *testing.T) {
	a, b, c := client("a", identity.AuthPrivateKeyJWT), client("b", identity.AuthPrivateKeyJWT), client("c", identity.AuthPrivateKeyJWT)
	c.Status = identity.StatusSuspended
	find := func(r *Report, key string) Finding {
		for _, f := range r.Identities {
			if f.Key == key {
				return f
			}
		}
		t.Fatalf("no finding %s", key)
		return Finding{}
	}
	risk := func(r *Report, id string) Risk {
		for _, k := range r.Risks {
			if k.ID == id {
				return k
			}
		}
		t.Fatalf("no risk %s", id)
		return Risk{}
	}

	untracked := Build(Input{Now: now, Clients: []*identity.Client{a, b, c}})
	for _, key := range []string{KeyOverdueReview, KeyOrphaned} {
		if f := find(untracked, key); f.Tracked || f.Count != nil || !strings.HasPrefix(f.Note, "not tracked") {
			t.Errorf("untracked %s: %+v", key, f)
		}
	}

	in := Input{Now: now, Clients: []*identity.Client{a, b, c},
		ReviewsTracked: true, OverdueReviews: map[string]bool{"b": true, "c": true},
		OwnersTracked: true, Orphaned: map[string]bool{"a": true, "c": true}}
	r := Build(in)
	for key, want := range map[string][]string{KeyOverdueReview: {"b"}, KeyOrphaned: {"a"}} {
		f := find(r, key)
		if !f.Tracked || f.Count == nil || *f.Count != len(want) || !slices.Equal(f.ClientIDs, want) {
			t.Errorf("%s: %+v, want %v (suspended c left out)", key, f, want)
		}
	}
	if k := risk(r, "NHI1:2025"); !strings.Contains(k.Evidence, "1 orphaned identity (owner departed)") || k.Status == "" {
		t.Errorf("NHI1 evidence %+v", k)
	}
	if k := risk(untracked, "NHI1:2025"); !strings.Contains(k.NotTracked, "orphaned") {
		t.Errorf("NHI1 without an owner directory %+v", k)
	}
	// Owners tracked, the gateway audit trail not: only the latter is
	// named as missing.
	if k := risk(r, "NHI1:2025"); strings.Contains(k.NotTracked, "orphaned") || !strings.Contains(k.NotTracked, "expired identities still used") {
		t.Errorf("NHI1 with owners but no audit trail: not tracked %q", k.NotTracked)
	}
	in.ExpiredUsedTracked, in.ExpiredUsed = true, map[string]int64{"c": 2}
	r = Build(in)
	if k := risk(r, "NHI1:2025"); k.NotTracked != "" || !strings.Contains(k.Evidence, "1 expired identity still used") {
		t.Errorf("NHI1 with everything tracked %+v", k)
	}
	// Expired but still used counts every status: c is suspended.
	if f := find(r, KeyExpiredUsed); f.Count == nil || *f.Count != 1 || !slices.Equal(f.ClientIDs, []string{"c"}) {
		t.Errorf("%s: %+v", KeyExpiredUsed, f)
	}
}
