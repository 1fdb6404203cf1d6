package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// The import part of the contract: CreateClients writes every client and
// every event of a batch in one transaction, or nothing. A duplicate id or
// secret lookup, against the store or inside the batch, is ErrConflict and
// leaves both the clients and the admin log as they were.
func testCreateClients(t *testing.T, newStore func(*testing.T) store.Store) {
	batch := func(ids ...string) ([]*identity.Client, []store.AdminEvent) {
		var cs []*identity.Client
		var evs []store.AdminEvent
		for i, id := range ids {
			c := fullClient(id)
			c.CreatedAt = at(time.Duration(i) * time.Second)
			cs = append(cs, c)
			evs = append(evs, event("client.import", id, time.Duration(i)*time.Second))
		}
		return cs, evs
	}

	t.Run("all", func(t *testing.T) {
		s := newStore(t)
		cs, evs := batch("i1", "i2", "i3")
		cs[1].Secret = nil // a batch may mix clients with and without secrets
		if err := s.CreateClients(t.Context(), cs, evs); err != nil {
			t.Fatalf("CreateClients: %v", err)
		}
		for _, c := range cs {
			if d := diffClient(c, mustGet(t, s, c.ID)); d != "" {
				t.Errorf("%s differs: %s", c.ID, d)
			}
		}
		got, err := s.GetClientBySecretLookup(t.Context(), cs[2].Secret.Lookup)
		if err != nil || got.ID != "i3" {
			t.Errorf("GetClientBySecretLookup of an imported secret: %v, %v", got, err)
		}
		all := events(t, s, "")
		if len(all) != 3 {
			t.Fatalf("%d admin events, want 3", len(all))
		}
		for i, ev := range all {
			checkEvent(t, ev, evs[len(evs)-1-i]) // newest first
		}
	})

	t.Run("empty", func(t *testing.T) {
		s := newStore(t)
		if err := s.CreateClients(t.Context(), nil, nil); err != nil {
			t.Errorf("empty batch: %v", err)
		}
		if evs := events(t, s, ""); len(evs) != 0 {
			t.Errorf("empty batch wrote %d events", len(evs))
		}
	})

	refusals := []struct {
		name  string
		batch func() ([]*identity.Client, []store.AdminEvent)
		want  error // nil means any error
	}{
		{"id already stored", func() ([]*identity.Client, []store.AdminEvent) { return batch("new1", "old", "new2") }, store.ErrConflict},
		{"secret already stored", func() ([]*identity.Client, []store.AdminEvent) {
			cs, evs := batch("new1", "new2")
			cs[1].Secret = fullClient("old").Secret
			return cs, evs
		}, store.ErrConflict},
		{"id twice in the batch", func() ([]*identity.Client, []store.AdminEvent) { return batch("new1", "new2", "new1") }, store.ErrConflict},
		{"secret twice in the batch", func() ([]*identity.Client, []store.AdminEvent) {
			cs, evs := batch("new1", "new2")
			cs[1].Secret = cs[0].Secret
			return cs, evs
		}, store.ErrConflict},
		{"nil client", func() ([]*identity.Client, []store.AdminEvent) {
			cs, evs := batch("new1", "new2")
			return append(cs, nil), evs
		}, nil},
		{"half-empty secret hash", func() ([]*identity.Client, []store.AdminEvent) {
			cs, evs := batch("new1", "new2")
			cs[1].Secret = &identity.SecretHash{Lookup: identity.SecretLookup("x")}
			return cs, evs
		}, nil},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			old := fullClient("old")
			mustCreate(t, s, old)
			cs, evs := tt.batch()
			err := s.CreateClients(t.Context(), cs, evs)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("CreateClients: got %v, want %v", err, orAnyError(tt.want))
			}
			clients, lerr := s.ListClients(t.Context(), store.ClientFilter{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if len(clients) != 1 || clients[0].ID != "old" {
				t.Errorf("after a refused import the store holds %d clients, want only the one stored before", len(clients))
			}
			if d := diffClient(old, clients[0]); d != "" {
				t.Errorf("the client stored before changed: %s", d)
			}
			if evs := events(t, s, ""); len(evs) != 1 {
				t.Errorf("%d admin events, want 1 (a refused import writes none)", len(evs))
			}
		})
	}
}

func orAnyError(err error) any {
	if err == nil {
		return "an error"
	}
	return fmt.Sprint(err)
}
