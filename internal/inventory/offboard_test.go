package inventory_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

// racingStore changes a client between Offboard's read and its write.
type racingStore struct {
	*sqlite.Store
	before func()
}

func (r racingStore) SetClientsStatus(ctx context.Context, cs []store.StatusChange, evs []store.AdminEvent) error {
	r.before()
	return r.Store.SetClientsStatus(ctx, cs, evs)
}

func TestOffboard(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	var changed []string
	svc.OnChange = func(id string) { changed = append(changed, id) }
	create := func(owner, env string) string {
		reg := valid(t)
		reg.Owner, reg.Environment = owner, env
		out, err := svc.Create(ctx, "admin-1", reg)
		if err != nil {
			t.Fatal(err)
		}
		return out.Client.ID
	}
	a1, a2, b1 := create("team-a", "prod"), create("team-a", "dev"), create("team-b", "prod")
	if _, err := svc.Revoke(ctx, "admin-1", a2, ""); err != nil {
		t.Fatal(err)
	}
	changed = nil

	t.Run("stale read changes nothing", func(t *testing.T) {
		racing := *svc
		racing.Store = racingStore{st, func() {
			if _, err := svc.Suspend(ctx, "admin-1", a1, "elsewhere"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Resume(ctx, "admin-1", a1, "elsewhere"); err != nil {
				t.Fatal(err)
			}
		}}
		changed = nil
		events, _ := st.ListAdminEvents(ctx, "", 1000)
		_, err := racing.Offboard(ctx, "admin-1", inventory.OffboardRequest{Owner: "team-a", Action: inventory.OffboardRevoke})
		if !errors.Is(err, store.ErrStale) {
			t.Fatalf("got %v, want ErrStale", err)
		}
		if c, _ := st.GetClient(ctx, a1); c.Status != identity.StatusActive {
			t.Errorf("a1 is %s after a refused offboarding", c.Status)
		}
		after, _ := st.ListAdminEvents(ctx, "", 1000)
		if len(after) != len(events)+2 { // the racing suspend and resume only
			t.Errorf("%d new admin events, want 2", len(after)-len(events))
		}
		if slices.Contains(changed, b1) || len(changed) != 2 { // OnChange for the racing suspend and resume only
			t.Errorf("OnChange called for %v", changed)
		}
	})

	t.Run("OnChange for each changed identity", func(t *testing.T) {
		changed = nil
		res, err := svc.Offboard(ctx, "admin-1", inventory.OffboardRequest{Owner: "team-a", Action: inventory.OffboardRevoke})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed() != 1 || len(res.Items) != 2 || !slices.Equal(changed, []string{a1}) {
			t.Errorf("changed %d of %d, OnChange %v; want only %s", res.Changed(), len(res.Items), changed, a1)
		}
		for _, it := range res.Items {
			if it.Client.Status != identity.StatusRevoked {
				t.Errorf("%s reported as %s", it.Client.ID, it.Client.Status)
			}
		}
	})
}
