package review_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/review"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

const day = 24 * time.Hour

var t0 = time.Date(2031, time.January, 10, 9, 0, 0, 0, time.UTC)

var policy = review.Policy{
	Intervals: map[string]time.Duration{"prod": 90 * day, "default": 180 * day},
	Grace:     14 * day,
}

func TestScheduleOf(t *testing.T) {
	client := func(env string) *identity.Client {
		return &identity.Client{ID: "c", Environment: env, Status: identity.StatusActive, CreatedAt: t0, ExpiresAt: t0.Add(3 * 365 * day)}
	}
	attested := &store.Review{ID: 5, Kind: store.ReviewAttest, Time: t0.Add(80 * day)}
	transferredAfter := &store.Review{ID: 6, Kind: store.ReviewTransfer, Time: t0.Add(100 * day)}
	transferredBefore := &store.Review{ID: 4, Kind: store.ReviewTransfer, Time: t0.Add(50 * day)}
	for _, tc := range []struct {
		name                  string
		env                   string
		attested, transferred *store.Review
		at                    time.Duration
		policy                review.Policy
		want                  review.State
		wantDue               time.Duration
		wantBasis             string
	}{
		{"prod new", "prod", nil, nil, 10 * day, policy, review.StateCurrent, 90 * day, review.BasisCreated},
		{"prod due 14 days ahead", "prod", nil, nil, 76 * day, policy, review.StateDue, 90 * day, review.BasisCreated},
		{"prod just before due window", "prod", nil, nil, 76*day - time.Second, policy, review.StateCurrent, 90 * day, review.BasisCreated},
		{"prod overdue at due time", "prod", nil, nil, 90 * day, policy, review.StateOverdue, 90 * day, review.BasisCreated},
		{"prod overdue within grace", "prod", nil, nil, 104*day - time.Second, policy, review.StateOverdue, 90 * day, review.BasisCreated},
		{"prod lapsed at grace end", "prod", nil, nil, 104 * day, policy, review.StateLapsed, 90 * day, review.BasisCreated},
		{"staging uses the default", "staging", nil, nil, 100 * day, policy, review.StateCurrent, 180 * day, review.BasisCreated},
		{"default overdue", "dev", nil, nil, 181 * day, policy, review.StateOverdue, 180 * day, review.BasisCreated},
		{"attestation restarts", "prod", attested, nil, 104 * day, policy, review.StateCurrent, 170 * day, review.BasisAttested},
		{"older transfer ignored", "prod", attested, transferredBefore, 104 * day, policy, review.StateCurrent, 170 * day, review.BasisAttested},
		{"newer transfer falls due at once", "prod", attested, transferredAfter, 100 * day, policy, review.StateOverdue, 100 * day, review.BasisTransferred},
		{"transfer lapses after grace", "prod", nil, transferredAfter, 114 * day, policy, review.StateLapsed, 100 * day, review.BasisTransferred},
		{"no grace lapses at due", "prod", nil, nil, 90 * day, review.Policy{Intervals: policy.Intervals}, review.StateLapsed, 90 * day, review.BasisCreated},
		{"short interval due window is half", "prod", nil, nil, 12 * time.Hour, review.Policy{Intervals: map[string]time.Duration{"default": day}}, review.StateDue, day, review.BasisCreated},
		{"short interval current before half", "prod", nil, nil, 11 * time.Hour, review.Policy{Intervals: map[string]time.Duration{"default": day}}, review.StateCurrent, day, review.BasisCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := tc.policy.ScheduleOf(client(tc.env), tc.attested, tc.transferred, t0.Add(tc.at))
			if !ok {
				t.Fatal("not reviewed")
			}
			if s.State != tc.want || !s.DueAt.Equal(t0.Add(tc.wantDue)) || s.Basis != tc.wantBasis || !s.LapsesAt.Equal(s.DueAt.Add(tc.policy.Grace)) {
				t.Errorf("schedule %+v, want state %s due %s basis %s", s, tc.want, t0.Add(tc.wantDue), tc.wantBasis)
			}
		})
	}
	for name, c := range map[string]*identity.Client{
		"revoked":         {Environment: "prod", Status: identity.StatusRevoked, CreatedAt: t0, ExpiresAt: t0.Add(365 * day)},
		"expired":         {Environment: "prod", Status: identity.StatusActive, CreatedAt: t0, ExpiresAt: t0.Add(day)},
		"no interval":     {Environment: "prod", Status: identity.StatusActive, CreatedAt: t0, ExpiresAt: t0.Add(365 * day)},
		"suspended is ok": {Environment: "prod", Status: identity.StatusSuspended, CreatedAt: t0, ExpiresAt: t0.Add(365 * day)},
	} {
		p := policy
		if name == "no interval" {
			p = review.Policy{Intervals: map[string]time.Duration{"staging": day}}
		}
		_, ok := p.ScheduleOf(c, nil, nil, t0.Add(2*day))
		if ok != (name == "suspended is ok") {
			t.Errorf("%s: reviewed = %v", name, ok)
		}
	}
}

type fixture struct {
	st  *sqlite.Store
	inv *inventory.Service
	rv  *review.Service
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, now: t0}
	clock := func() time.Time { return f.now }
	f.inv = &inventory.Service{Store: st, Owners: st, Now: clock, Policy: inventory.Policy{MaxLifetime: 3 * 365 * day, MaxTokenLifetime: time.Hour}}
	p := policy
	p.AutoSuspend = true
	f.rv = &review.Service{Store: st, Inventory: f.inv, Policy: p, Now: clock,
		Exempt: func(c *identity.Client) bool { return slices.Contains(c.Scopes, "keybound:admin") }}
	return f
}

// seed stores an active client created at created.
func (f *fixture) seed(t *testing.T, id, owner, env string, created time.Time, scopes ...string) *identity.Client {
	t.Helper()
	c := &identity.Client{ID: id, Name: id, Owner: owner, Purpose: "test", Environment: env, Status: identity.StatusActive,
		CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(3 * 365 * day), Scopes: scopes,
		AuthMethod: identity.AuthClientSecretBasic, Secret: &identity.SecretHash{Salt: []byte("s"), Hash: []byte("h")}, Binding: identity.BindingDPoP}
	if err := f.st.CreateClient(context.Background(), c, store.AdminEvent{Time: created, Actor: "test", Action: "client.create", Target: id}); err != nil {
		t.Fatal(err)
	}
	return c
}

var yes = review.Attestation{By: "team-a", StillNeeded: true, PurposeOK: true, ScopesOK: true}

func TestAttest(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seed(t, "old", "team-a", "prod", t0)
	f.seed(t, "other", "team-b", "prod", t0)
	f.now = t0.Add(95 * day)

	items, err := f.rv.List(ctx, review.Filter{State: "overdue"})
	if err != nil || len(items) != 2 {
		t.Fatalf("overdue before attesting: %+v, %v", items, err)
	}

	refusals := []struct {
		name  string
		id    string
		a     review.Attestation
		code  string
		field string
		want  string
	}{
		{"not the owner", "old", review.Attestation{By: "team-b", StillNeeded: true, PurposeOK: true, ScopesOK: true}, review.CodeNotOwner, "by", `"team-b" is not the owner of old (its owner is "team-a")`},
		{"owner differs in case", "old", review.Attestation{By: "Team-A", StillNeeded: true, PurposeOK: true, ScopesOK: true}, review.CodeNotOwner, "by", "only the owner may attest"},
		{"nobody", "old", review.Attestation{StillNeeded: true, PurposeOK: true, ScopesOK: true}, review.CodeInvalid, "by", "the identity's owner"},
		{"not needed", "old", review.Attestation{By: "team-a", PurposeOK: true, ScopesOK: true}, review.CodeNotConfirmed, "", "keybound client revoke old"},
		{"scopes not needed", "old", review.Attestation{By: "team-a", StillNeeded: true, PurposeOK: true}, review.CodeNotConfirmed, "", "keybound client downscope old"},
		{"purpose wrong", "old", review.Attestation{By: "team-a", StillNeeded: true, ScopesOK: true}, review.CodeNotConfirmed, "", "register an identity for the right purpose"},
		{"note too long", "old", review.Attestation{By: "team-a", StillNeeded: true, PurposeOK: true, ScopesOK: true, Note: strings.Repeat("x", review.MaxNoteLen+1)}, review.CodeInvalid, "note", "longer"},
		{"note with a line break", "old", review.Attestation{By: "team-a", StillNeeded: true, PurposeOK: true, ScopesOK: true, Note: "a\nb"}, review.CodeInvalid, "note", "one line"},
	}
	for _, tc := range refusals {
		_, err := f.rv.Attest(ctx, "admin-1", tc.id, tc.a)
		var re *review.Error
		if !errors.As(err, &re) || re.Code != tc.code || re.Field != tc.field || !strings.Contains(re.Detail, tc.want) {
			t.Errorf("%s: %v (%+v), want code %s field %q detail with %q", tc.name, err, re, tc.code, tc.field, tc.want)
		}
	}
	if _, err := f.rv.Attest(ctx, "admin-1", "missing", yes); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown client: %v", err)
	}
	if rs, _ := f.st.ListReviews(ctx, "old", 0); len(rs) != 0 {
		t.Fatalf("refused attestations were recorded: %+v", rs)
	}

	it, err := f.rv.Attest(ctx, "admin-1", "old", review.Attestation{By: "  team-a ", StillNeeded: true, PurposeOK: true, ScopesOK: true, Note: "still exports invoices"})
	if err != nil {
		t.Fatal(err)
	}
	if it.State != review.StateCurrent || !it.DueAt.Equal(f.now.Add(90*day)) || it.Basis != review.BasisAttested {
		t.Errorf("after attesting: %+v", it.Schedule)
	}
	rs, _ := f.st.ListReviews(ctx, "old", 0)
	if len(rs) != 1 || rs[0].Owner != "team-a" || rs[0].Actor != "admin-1" || !rs[0].Time.Equal(f.now) || rs[0].Note != "still exports invoices" {
		t.Errorf("recorded %+v", rs)
	}
	evs, _ := f.st.ListAdminEvents(ctx, "old", 1)
	if len(evs) != 1 || evs[0].Action != review.ActionAttest || evs[0].Changes["owner"] != "team-a" || evs[0].Changes["scopes_ok"] != "yes" {
		t.Errorf("admin event %+v", evs)
	}
	items, _ = f.rv.List(ctx, review.Filter{State: "overdue"})
	if len(items) != 1 || items[0].Client.ID != "other" {
		t.Errorf("overdue after attesting old: %+v", items)
	}
	if items, _ := f.rv.List(ctx, review.Filter{}); len(items) != 1 {
		t.Errorf("needing attention: %d, want 1 (other)", len(items))
	}
	if items, _ := f.rv.List(ctx, review.Filter{State: "all"}); len(items) != 2 {
		t.Errorf("all: %d, want 2", len(items))
	}
	if _, err := f.rv.List(ctx, review.Filter{State: "soon"}); !errors.Is(err, review.ErrBadFilter) {
		t.Errorf("bad state filter: %v", err)
	}

	t.Run("departed owner cannot attest", func(t *testing.T) {
		if _, err := f.inv.DepartOwner(ctx, "admin-1", "team-b", "left"); err != nil {
			t.Fatal(err)
		}
		_, err := f.rv.Attest(ctx, "admin-1", "other", review.Attestation{By: "team-b", StillNeeded: true, PurposeOK: true, ScopesOK: true})
		var re *review.Error
		if !errors.As(err, &re) || re.Code != review.CodeOwnerDeparted || !strings.Contains(re.Detail, "keybound client transfer other") {
			t.Errorf("departed owner: %v", err)
		}
		items, _ := f.rv.List(ctx, review.Filter{State: "all"})
		for _, it := range items {
			if it.Orphaned != (it.Client.ID == "other") {
				t.Errorf("%s orphaned = %v", it.Client.ID, it.Orphaned)
			}
		}
		// The posture report's one read: the same schedules and orphans.
		cs, err := f.inv.List(ctx, store.ClientFilter{})
		if err != nil {
			t.Fatal(err)
		}
		as, err := f.rv.Assess(ctx, cs, f.now)
		if err != nil {
			t.Fatal(err)
		}
		if len(as.Items) != len(items) || len(as.Orphaned) != 1 || !as.Orphaned["other"] {
			t.Errorf("assessment: %d items (want %d), orphaned %v (want only other)", len(as.Items), len(items), as.Orphaned)
		}
		// A revoked identity of a departed owner governs nothing: not orphaned.
		gone := *cs[slices.IndexFunc(cs, func(c *identity.Client) bool { return c.ID == "other" })]
		gone.Status = identity.StatusRevoked
		if as, err := f.rv.Assess(ctx, []*identity.Client{&gone}, f.now); err != nil || len(as.Orphaned) != 0 {
			t.Errorf("revoked identity of a departed owner: orphaned %v, %v", as.Orphaned, err)
		}
	})

	t.Run("transfer makes the review due at once", func(t *testing.T) {
		if _, err := f.inv.AddOwner(ctx, "admin-1", "team-c", ""); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(day)
		if _, err := f.inv.Transfer(ctx, "admin-1", inventory.TransferRequest{ClientID: "old", To: "team-c"}); err != nil {
			t.Fatal(err)
		}
		items, _ := f.rv.List(ctx, review.Filter{State: "overdue"})
		var got *review.Item
		for i := range items {
			if items[i].Client.ID == "old" {
				got = &items[i]
			}
		}
		if got == nil || got.Basis != review.BasisTransferred || !got.DueAt.Equal(f.now) || got.LastAttestation == nil {
			t.Fatalf("after transfer: %+v", got)
		}
		if _, err := f.rv.Attest(ctx, "admin-1", "old", yes); err == nil {
			t.Error("the previous owner attested after the transfer")
		}
		if _, err := f.rv.Attest(ctx, "admin-1", "old", review.Attestation{By: "team-c", StillNeeded: true, PurposeOK: true, ScopesOK: true}); err != nil {
			t.Errorf("the new owner cannot attest: %v", err)
		}
	})
}

// racingReviews changes the client between Attest's read and its write.
type racingReviews struct {
	*sqlite.Store
	before func()
}

func (r racingReviews) AppendReview(ctx context.Context, rv store.Review, at time.Time, ev store.AdminEvent) error {
	r.before()
	return r.Store.AppendReview(ctx, rv, at, ev)
}

func TestAttestRace(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seed(t, "c1", "team-a", "prod", t0)
	if _, err := f.inv.AddOwner(ctx, "admin-1", "team-z", ""); err != nil {
		t.Fatal(err)
	}
	racing := *f.rv
	racing.Store = racingReviews{f.st, func() {
		if _, err := f.inv.Transfer(ctx, "admin-1", inventory.TransferRequest{ClientID: "c1", To: "team-z"}); err != nil {
			t.Fatal(err)
		}
	}}
	if _, err := racing.Attest(ctx, "admin-1", "c1", yes); !errors.Is(err, store.ErrStale) {
		t.Fatalf("attestation racing a transfer: %v, want ErrStale", err)
	}
	if rs, _ := f.st.ListReviews(ctx, "c1", 0); len(rs) != 1 || rs[0].Kind != store.ReviewTransfer {
		t.Errorf("reviews after the race: %+v, want the transfer only", rs)
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seed(t, "lapsed", "team-a", "prod", t0.Add(-200*day))
	f.seed(t, "overdue", "team-a", "prod", t0.Add(-95*day))
	f.seed(t, "staging", "team-a", "staging", t0.Add(-150*day))
	f.seed(t, "admin", "keybound operator", "prod", t0.Add(-200*day), "keybound:admin")
	f.seed(t, "attested", "team-a", "prod", t0.Add(-200*day))
	var changed []string
	f.inv.OnChange = func(id string) { changed = append(changed, id) }
	if _, err := f.rv.Attest(ctx, "admin-1", "attested", yes); err != nil {
		t.Fatal(err)
	}

	off := *f.rv
	off.Policy.AutoSuspend = false
	if done, err := off.Sweep(ctx, f.now); err != nil || len(done) != 0 {
		t.Fatalf("sweep without auto_suspend: %v, %v", done, err)
	}

	done, err := f.rv.Sweep(ctx, f.now)
	if err != nil || !slices.Equal(done, []string{"lapsed"}) {
		t.Fatalf("sweep suspended %v, %v; want only lapsed", done, err)
	}
	c, _ := f.st.GetClient(ctx, "lapsed")
	if c.Status != identity.StatusSuspended || !slices.Equal(changed, []string{"lapsed"}) {
		t.Errorf("lapsed is %s; OnChange %v", c.Status, changed)
	}
	evs, _ := f.st.ListAdminEvents(ctx, "lapsed", 1)
	if len(evs) != 1 || evs[0].Actor != review.Actor || evs[0].Action != "client.suspend" || !strings.Contains(evs[0].Changes["reason"], "access review overdue since") {
		t.Errorf("suspension event %+v", evs)
	}
	for _, id := range []string{"overdue", "staging", "admin", "attested"} {
		if c, _ := f.st.GetClient(ctx, id); c.Status != identity.StatusActive {
			t.Errorf("%s was suspended", id)
		}
	}

	// Idempotent: nothing changes the second time.
	before, _ := f.st.ListAdminEvents(ctx, "", 0)
	if done, err := f.rv.Sweep(ctx, f.now); err != nil || len(done) != 0 {
		t.Errorf("second sweep: %v, %v", done, err)
	}
	after, _ := f.st.ListAdminEvents(ctx, "", 0)
	if len(after) != len(before) {
		t.Errorf("second sweep wrote %d events", len(after)-len(before))
	}

	// A suspended identity can be attested, then resumed, and stays so.
	if _, err := f.rv.Attest(ctx, "admin-1", "lapsed", yes); err != nil {
		t.Fatalf("attesting a suspended identity: %v", err)
	}
	if _, err := f.inv.Resume(ctx, "admin-1", "lapsed", "attested"); err != nil {
		t.Fatal(err)
	}
	if done, _ := f.rv.Sweep(ctx, f.now); len(done) != 0 {
		t.Errorf("sweep after attest and resume suspended %v", done)
	}
}
