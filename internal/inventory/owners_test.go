package inventory_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// fieldDetail returns the detail of field in a *ValidationError, or "".
func fieldDetail(err error, field string) string {
	var ve *inventory.ValidationError
	if !errors.As(err, &ve) {
		return ""
	}
	for _, f := range ve.Fields {
		if f.Field == field {
			return f.Detail
		}
	}
	return ""
}

func TestOwnerChecksOnCreate(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners = st
	if _, err := svc.AddOwner(ctx, "admin-1", "team-gone", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", "team-gone", "left"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddOwner(ctx, "admin-1", "team-here", "here@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		owner   string
		require bool
		want    string // "" means accepted
	}{
		{"team-gone", false, "has departed"},
		{"team-gone", true, "has departed"},
		{"team-unknown", false, ""},
		{"team-unknown", true, "is not in the owner directory"},
		{"team-here", true, ""},
		{" team-here ", true, ""},
	} {
		svc.RequireKnownOwners = tc.require
		reg := valid(t)
		reg.Owner = tc.owner
		_, err := svc.Create(ctx, "admin-1", reg)
		switch d := fieldDetail(err, "owner"); {
		case tc.want == "" && err != nil:
			t.Errorf("owner %q require=%v refused: %v", tc.owner, tc.require, err)
		case tc.want != "" && !strings.Contains(d, tc.want):
			t.Errorf("owner %q require=%v: %v, want owner error %q", tc.owner, tc.require, err, tc.want)
		}
	}
}

func TestOwnerChecksOnImport(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners, svc.RequireKnownOwners = st, true
	for _, name := range []string{"team-a", "team-gone"} {
		if _, err := svc.AddOwner(ctx, "admin-1", name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", "team-gone", ""); err != nil {
		t.Fatal(err)
	}
	row := func(owner, secret string) inventory.ImportRow {
		return inventory.ImportRow{Name: "legacy", Owner: owner, Purpose: "p", Environment: "prod", ExpiresAt: now.Add(24 * time.Hour).Format(time.RFC3339), Secret: secret}
	}
	rows := []inventory.ImportRow{row("team-a", "sk_live_aaaaaaaaaaaaaaaa1"), row("team-gone", "sk_live_aaaaaaaaaaaaaaaa2"), row("team-x", "sk_live_aaaaaaaaaaaaaaaa3"), row("team-a", "sk_live_aaaaaaaaaaaaaaaa4")}
	_, err := svc.Import(ctx, "admin-1", rows, false)
	var ie *inventory.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("import with bad owners: %v", err)
	}
	got := map[int]string{}
	for _, p := range ie.Problems {
		got[p.Row] = p.Field + ": " + p.Detail
	}
	if len(got) != 2 || !strings.Contains(got[1], "owner: \"team-gone\" has departed") || !strings.Contains(got[2], "owner: \"team-x\" is not in the owner directory") {
		t.Errorf("problems %v, want rows 1 (departed) and 2 (unknown)", got)
	}
	if cs, _ := st.ListClients(ctx, store.ClientFilter{Owner: "team-a"}); len(cs) != 0 {
		t.Errorf("a refused import stored %d identities", len(cs))
	}
	if _, err := svc.Import(ctx, "admin-1", []inventory.ImportRow{rows[0], rows[3]}, false); err != nil {
		t.Errorf("import with known owners: %v", err)
	}
}

func TestAddAndListOwners(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners = st
	for _, tc := range []struct{ name, contact, field, want string }{
		{"", "", "name", "is required"},
		{"   ", "", "name", "is required"},
		{strings.Repeat("x", identity.MaxTextLen+1), "", "name", "longer than"},
		{"team\x00a", "", "name", "printable"},
		{"team-a", "not an address", "contact", "e-mail address"},
		{"team-a", "Team A <a@example.com>", "contact", "e-mail address"},
	} {
		if _, err := svc.AddOwner(ctx, "admin-1", tc.name, tc.contact); !strings.Contains(fieldDetail(err, tc.field), tc.want) {
			t.Errorf("AddOwner(%q, %q) = %v, want %s %q", tc.name, tc.contact, err, tc.field, tc.want)
		}
	}
	o, err := svc.AddOwner(ctx, "admin-1", " team-a ", "a@example.com")
	if err != nil || o.Name != "team-a" || o.Status != store.OwnerActive {
		t.Fatalf("AddOwner = %+v, %v", o, err)
	}
	if _, err := svc.AddOwner(ctx, "admin-1", "team-a", ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("adding team-a twice: %v", err)
	}
	if evs, _ := st.ListAdminEvents(ctx, "owner:team-a", 0); len(evs) != 1 || evs[0].Action != inventory.ActionOwnerAdd || evs[0].Changes["contact"] != "a@example.com" {
		t.Errorf("owner.add events %+v", evs)
	}
	reg := valid(t)
	reg.Owner = "team-legacy"
	if _, err := svc.Create(ctx, "admin-1", reg); err != nil {
		t.Fatal(err)
	}
	list, err := svc.ListOwners(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "team-a" || !list[0].Registered || list[0].Identities != 0 ||
		list[1].Name != "team-legacy" || list[1].Registered || list[1].Identities != 1 {
		t.Errorf("ListOwners = %+v, %v", list, err)
	}
}

// createOwnedBy registers a valid identity owned by owner and returns its id.
func createOwnedBy(t *testing.T, svc *inventory.Service, owner string) string {
	t.Helper()
	reg := valid(t)
	reg.Owner = owner
	out, err := svc.Create(context.Background(), "admin-1", reg)
	if err != nil {
		t.Fatal(err)
	}
	return out.Client.ID
}

func TestDepartOwner(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners = st
	create := func(owner string) string { return createOwnedBy(t, svc, owner) }
	a1, a2 := create("team-a"), create("team-a")
	if _, err := svc.Revoke(ctx, "admin-1", a2, ""); err != nil {
		t.Fatal(err)
	}
	// team-a is not in the directory yet: departing it adds it as departed.
	d, err := svc.DepartOwner(ctx, "admin-1", "team-a", "left the company")
	if err != nil || d.Owner.Status != store.OwnerDeparted || d.Owner.DepartedAt.IsZero() || len(d.Orphaned) != 1 || d.Orphaned[0].ID != a1 {
		t.Fatalf("DepartOwner = %+v, %v", d, err)
	}
	evs, _ := st.ListAdminEvents(ctx, "owner:team-a", 0)
	if len(evs) != 1 || evs[0].Action != inventory.ActionOwnerDepart || evs[0].Changes["orphaned"] != "1" || evs[0].Changes["reason"] != "left the company" {
		t.Errorf("owner.depart events %+v", evs)
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", "team-a", ""); !errors.Is(err, inventory.ErrTransition) {
		t.Errorf("departing twice: %v", err)
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", "nobody", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("departing an unknown name: %v", err)
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", " ", ""); fieldDetail(err, "name") == "" {
		t.Errorf("departing no name: %v", err)
	}
	if _, err := svc.AddOwner(ctx, "admin-1", "team-b", ""); err != nil {
		t.Fatal(err)
	}
	if d, err := svc.DepartOwner(ctx, "admin-1", "team-b", ""); err != nil || len(d.Orphaned) != 0 {
		t.Errorf("departing a registered owner with no identities: %+v, %v", d, err)
	}
}

// racingOwners changes a client between Transfer's read and its write.
type racingOwners struct {
	*sqlite.Store
	before func()
}

func (r racingOwners) SetClientsOwner(ctx context.Context, cs []store.OwnerChange, rs []store.Review, evs []store.AdminEvent) error {
	r.before()
	return r.Store.SetClientsOwner(ctx, cs, rs, evs)
}

func TestTransfer(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners = st
	var changed []string
	svc.OnChange = func(id string) { changed = append(changed, id) }
	create := func(owner string) string { return createOwnedBy(t, svc, owner) }
	a1, a2, a3, b1 := create("team-a"), create("team-a"), create("team-a"), create("team-b")
	if _, err := svc.Revoke(ctx, "admin-1", a3, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"team-new", "team-gone"} {
		if _, err := svc.AddOwner(ctx, "admin-1", name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.DepartOwner(ctx, "admin-1", "team-gone", ""); err != nil {
		t.Fatal(err)
	}
	eventCount := func() int { evs, _ := st.ListAdminEvents(ctx, "", 0); return len(evs) }

	for _, tc := range []struct {
		name    string
		req     inventory.TransferRequest
		require bool
		field   string
		want    string
	}{
		{"no target", inventory.TransferRequest{From: "team-a"}, false, "to", "is required"},
		{"no source", inventory.TransferRequest{To: "team-new"}, false, "from", "name the owner"},
		{"both sources", inventory.TransferRequest{From: "team-a", ClientID: a1, To: "team-new"}, false, "from", "not both"},
		{"same owner", inventory.TransferRequest{From: "team-a", To: "team-a"}, false, "to", "already"},
		{"departed target", inventory.TransferRequest{From: "team-a", To: "team-gone"}, false, "to", "has departed"},
		{"unknown target required", inventory.TransferRequest{From: "team-a", To: "team-x"}, true, "to", "not in the owner directory"},
		{"owner with nothing", inventory.TransferRequest{From: "team-nobody", To: "team-new"}, false, "from", "owns no identity"},
		{"client already owned", inventory.TransferRequest{ClientID: b1, To: "team-b"}, false, "to", "already"},
	} {
		svc.RequireKnownOwners = tc.require
		before := eventCount()
		_, err := svc.Transfer(ctx, "admin-1", tc.req)
		if d := fieldDetail(err, tc.field); !strings.Contains(d, tc.want) {
			t.Errorf("%s: %v, want %s %q", tc.name, err, tc.field, tc.want)
		}
		if eventCount() != before {
			t.Errorf("%s: a refused transfer wrote admin events", tc.name)
		}
	}
	svc.RequireKnownOwners = false
	if _, err := svc.Transfer(ctx, "admin-1", inventory.TransferRequest{ClientID: a3, To: "team-new"}); !errors.Is(err, inventory.ErrTransition) {
		t.Errorf("transferring a revoked identity: %v", err)
	}
	if _, err := svc.Transfer(ctx, "admin-1", inventory.TransferRequest{ClientID: "kb-missing", To: "team-new"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("transferring an unknown identity: %v", err)
	}

	t.Run("dry run writes nothing", func(t *testing.T) {
		before := eventCount()
		res, err := svc.Transfer(ctx, "admin-1", inventory.TransferRequest{From: "team-a", To: "team-new", DryRun: true})
		if err != nil || !res.DryRun || len(res.Clients) != 2 {
			t.Fatalf("dry run = %+v, %v", res, err)
		}
		if c, _ := st.GetClient(ctx, a1); c.Owner != "team-a" || eventCount() != before {
			t.Errorf("a dry run changed something")
		}
	})

	t.Run("all or nothing", func(t *testing.T) {
		racing := *svc
		racing.Owners = racingOwners{st, func() {
			if _, err := svc.Suspend(ctx, "admin-1", a2, "elsewhere"); err != nil {
				t.Fatal(err)
			}
		}}
		before := eventCount()
		changed = nil
		if _, err := racing.Transfer(ctx, "admin-1", inventory.TransferRequest{From: "team-a", To: "team-new"}); !errors.Is(err, store.ErrStale) {
			t.Fatalf("racing transfer: %v, want ErrStale", err)
		}
		for _, id := range []string{a1, a2} {
			if c, _ := st.GetClient(ctx, id); c.Owner != "team-a" {
				t.Errorf("%s moved to %s in a refused transfer", id, c.Owner)
			}
		}
		if n := eventCount() - before; n != 1 { // the racing suspension only
			t.Errorf("%d admin events, want 1", n)
		}
		if rs, _ := st.LatestReviews(ctx); len(rs) != 0 {
			t.Errorf("a refused transfer recorded reviews %+v", rs)
		}
	})

	t.Run("moves every identity that is not revoked", func(t *testing.T) {
		changed = nil
		res, err := svc.Transfer(ctx, "admin-1", inventory.TransferRequest{From: "team-a", To: "team-new", Reason: "team merged"})
		if err != nil || len(res.Clients) != 2 || res.From != "team-a" {
			t.Fatalf("Transfer = %+v, %v", res, err)
		}
		for id, want := range map[string]string{a1: "team-new", a2: "team-new", a3: "team-a", b1: "team-b"} {
			if c, _ := st.GetClient(ctx, id); c.Owner != want {
				t.Errorf("%s owner %s, want %s", id, c.Owner, want)
			}
		}
		for _, id := range []string{a1, a2} {
			evs, _ := st.ListAdminEvents(ctx, id, 1)
			if len(evs) != 1 || evs[0].Action != inventory.ActionTransfer || evs[0].Changes["owner"] != "team-a -> team-new" || evs[0].Changes["reason"] != "team merged" {
				t.Errorf("%s transfer event %+v", id, evs)
			}
			rs, _ := st.ListReviews(ctx, id, 1)
			if len(rs) != 1 || rs[0].Kind != store.ReviewTransfer || rs[0].Owner != "team-new" {
				t.Errorf("%s transfer review %+v", id, rs)
			}
		}
		slices.Sort(changed)
		want := []string{a1, a2}
		slices.Sort(want)
		if !slices.Equal(changed, want) {
			t.Errorf("OnChange for %v, want %v", changed, want)
		}
	})
}
