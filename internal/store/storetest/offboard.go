package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// The offboarding part of the contract: SetClientsStatus changes the status
// of every listed client and appends every event in one transaction, or
// writes nothing. A client changed since it was read is ErrStale, a missing
// one ErrNotFound.
func testSetClientsStatus(t *testing.T, newStore func(*testing.T) store.Store) {
	seed := func(t *testing.T, s store.Store, ids ...string) map[string]*identity.Client {
		m := map[string]*identity.Client{}
		for i, id := range ids {
			c := fullClient(id)
			c.CreatedAt = at(time.Duration(i) * time.Second)
			mustCreate(t, s, c)
			m[id] = c
		}
		return m
	}
	change := func(c *identity.Client, to identity.Status) store.StatusChange {
		return store.StatusChange{ID: c.ID, PrevUpdatedAt: c.UpdatedAt, Status: to, UpdatedAt: c.UpdatedAt.Add(time.Minute)}
	}

	t.Run("all", func(t *testing.T) {
		s := newStore(t)
		cs := seed(t, s, "o1", "o2", "o3")
		before := len(events(t, s, ""))
		chs := []store.StatusChange{change(cs["o1"], identity.StatusSuspended), change(cs["o3"], identity.StatusRevoked)}
		evs := []store.AdminEvent{event("client.offboard.suspend", "o1", time.Hour), event("client.offboard.revoke", "o3", time.Hour+1)}
		if err := s.SetClientsStatus(t.Context(), chs, evs); err != nil {
			t.Fatalf("SetClientsStatus: %v", err)
		}
		for _, ch := range chs {
			want := *cs[ch.ID]
			want.Status, want.UpdatedAt = ch.Status, ch.UpdatedAt
			if d := diffClient(&want, mustGet(t, s, ch.ID)); d != "" {
				t.Errorf("%s differs: %s", ch.ID, d)
			}
		}
		if d := diffClient(cs["o2"], mustGet(t, s, "o2")); d != "" {
			t.Errorf("a client not in the batch changed: %s", d)
		}
		all := events(t, s, "")
		if len(all) != before+2 {
			t.Fatalf("%d admin events, want %d", len(all), before+2)
		}
		checkEvent(t, all[0], evs[1])
		checkEvent(t, all[1], evs[0])
	})

	t.Run("empty", func(t *testing.T) {
		s := newStore(t)
		if err := s.SetClientsStatus(t.Context(), nil, nil); err != nil {
			t.Errorf("empty batch: %v", err)
		}
		if evs := events(t, s, ""); len(evs) != 0 {
			t.Errorf("empty batch wrote %d events", len(evs))
		}
	})

	refusals := []struct {
		name  string
		batch func(cs map[string]*identity.Client) []store.StatusChange
		want  error // nil means any error
	}{
		{"stale", func(cs map[string]*identity.Client) []store.StatusChange {
			stale := change(cs["o2"], identity.StatusSuspended)
			stale.PrevUpdatedAt = stale.PrevUpdatedAt.Add(-time.Second)
			return []store.StatusChange{change(cs["o1"], identity.StatusSuspended), stale}
		}, store.ErrStale},
		{"missing", func(cs map[string]*identity.Client) []store.StatusChange {
			return []store.StatusChange{change(cs["o1"], identity.StatusRevoked), {ID: "nope", Status: identity.StatusRevoked, UpdatedAt: at(time.Hour)}}
		}, store.ErrNotFound},
		{"named twice", func(cs map[string]*identity.Client) []store.StatusChange {
			return []store.StatusChange{change(cs["o1"], identity.StatusSuspended), change(cs["o1"], identity.StatusRevoked)}
		}, nil},
		{"unknown status", func(cs map[string]*identity.Client) []store.StatusChange {
			return []store.StatusChange{change(cs["o1"], identity.StatusSuspended), change(cs["o2"], "gone")}
		}, nil},
		{"zero UpdatedAt", func(cs map[string]*identity.Client) []store.StatusChange {
			ch := change(cs["o2"], identity.StatusSuspended)
			ch.UpdatedAt = time.Time{}
			return []store.StatusChange{change(cs["o1"], identity.StatusSuspended), ch}
		}, nil},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			cs := seed(t, s, "o1", "o2")
			before := len(events(t, s, ""))
			evs := []store.AdminEvent{event("client.offboard.suspend", "o1", time.Hour)}
			err := s.SetClientsStatus(t.Context(), tt.batch(cs), evs)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("SetClientsStatus: got %v, want %v", err, orAnyError(tt.want))
			}
			for id, c := range cs {
				if d := diffClient(c, mustGet(t, s, id)); d != "" {
					t.Errorf("after a refused batch %s changed: %s", id, d)
				}
			}
			if n := len(events(t, s, "")); n != before {
				t.Errorf("%d admin events, want %d (a refused batch writes none)", n, before)
			}
		})
	}
}
