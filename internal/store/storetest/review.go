package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// The access-review part of the contract: the owner directory (create,
// get, list by name, optimistic update), ownership transfer of many
// clients at once (all or nothing, with reviews and events), and the
// append-only review history, whose appends are refused when the client
// changed since it was read.
func testReviews(t *testing.T, newStore func(*testing.T) store.Store) {
	owner := func(name string, d time.Duration) store.Owner {
		return store.Owner{Name: name, Contact: name + "@example.org", Status: store.OwnerActive, CreatedAt: at(d), UpdatedAt: at(d)}
	}
	normOwner := func(o store.Owner) store.Owner {
		o.CreatedAt, o.UpdatedAt, o.DepartedAt = normTime(o.CreatedAt), normTime(o.UpdatedAt), normTime(o.DepartedAt)
		return o
	}
	attest := func(client, by string, d time.Duration) store.Review {
		return store.Review{ClientID: client, Kind: store.ReviewAttest, Time: at(d), Actor: "admin@example.org", Owner: by,
			StillNeeded: true, PurposeOK: true, ScopesOK: true, Note: "checked with " + by}
	}
	normReview := func(r store.Review) store.Review {
		r.ID, r.Time = 0, normTime(r.Time)
		return r
	}

	t.Run("owners", func(t *testing.T) {
		s := newStore(t)
		b, a := owner("team-b", time.Second), owner("team-a", 2*time.Second)
		a.Contact = ""
		for _, o := range []store.Owner{b, a} {
			if err := s.CreateOwner(t.Context(), o, event("owner.add", o.Name, time.Second)); err != nil {
				t.Fatalf("CreateOwner(%s): %v", o.Name, err)
			}
		}
		before := len(events(t, s, ""))
		if err := s.CreateOwner(t.Context(), owner("team-a", time.Hour), event("owner.add", "team-a", time.Hour)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateOwner of a stored name: %v, want ErrConflict", err)
		}
		if n := len(events(t, s, "")); n != before {
			t.Errorf("a refused CreateOwner wrote %d admin events", n-before)
		}
		got, err := s.GetOwner(t.Context(), "team-a")
		if err != nil || !reflect.DeepEqual(got, normOwner(a)) {
			t.Errorf("GetOwner = %+v, %v; want %+v", got, err, normOwner(a))
		}
		checkUTC(t, "owner", got.CreatedAt, got.UpdatedAt)
		if _, err := s.GetOwner(t.Context(), "team-A"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOwner compares names inexactly: %v", err)
		}
		list, err := s.ListOwners(t.Context())
		if err != nil || len(list) != 2 || list[0].Name != "team-a" || list[1].Name != "team-b" {
			t.Fatalf("ListOwners = %+v, %v; want team-a, team-b", list, err)
		}

		departed := got
		departed.Status, departed.UpdatedAt, departed.DepartedAt = store.OwnerDeparted, at(time.Hour), at(time.Hour)
		if err := s.UpdateOwner(t.Context(), departed, got.UpdatedAt, event("owner.depart", "team-a", time.Hour)); err != nil {
			t.Fatalf("UpdateOwner: %v", err)
		}
		if got, _ := s.GetOwner(t.Context(), "team-a"); !reflect.DeepEqual(got, normOwner(departed)) {
			t.Errorf("after UpdateOwner: %+v, want %+v", got, normOwner(departed))
		}
		if evs := events(t, s, "team-a"); len(evs) != 2 || evs[0].Action != "owner.depart" {
			t.Errorf("events of team-a: %+v", evs)
		}
		before = len(events(t, s, ""))
		for name, tc := range map[string]struct {
			o    store.Owner
			prev time.Time
			want error
		}{
			"stale":   {departed, got.UpdatedAt, store.ErrStale},
			"missing": {owner("nobody", 0), at(0), store.ErrNotFound},
		} {
			if err := s.UpdateOwner(t.Context(), tc.o, tc.prev, event("owner.depart", tc.o.Name, 2*time.Hour)); !errors.Is(err, tc.want) {
				t.Errorf("%s UpdateOwner: %v, want %v", name, err, tc.want)
			}
		}
		bad := map[string]store.Owner{
			"no name":                  {Status: store.OwnerActive},
			"unknown status":           {Name: "x", Status: "gone"},
			"departed without a time":  {Name: "x", Status: store.OwnerDeparted},
			"active with departed_at":  {Name: "x", Status: store.OwnerActive, DepartedAt: at(0)},
			"time outside the storage": {Name: "x", Status: store.OwnerActive, CreatedAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		}
		for name, o := range bad {
			if err := s.CreateOwner(t.Context(), o, event("owner.add", o.Name, 0)); err == nil {
				t.Errorf("CreateOwner accepted an owner with %s", name)
			}
		}
		if n := len(events(t, s, "")); n != before {
			t.Errorf("refused owner writes appended %d admin events", n-before)
		}
	})

	t.Run("no review once the owner departed", func(t *testing.T) {
		s := newStore(t)
		c := fullClient("r9") // owner team-billing
		mustCreate(t, s, c)
		o := owner("team-billing", time.Second)
		if err := s.CreateOwner(t.Context(), o, event("owner.add", o.Name, time.Second)); err != nil {
			t.Fatal(err)
		}
		read := mustGet(t, s, "r9").UpdatedAt // read before the departure
		gone := o
		gone.Status, gone.UpdatedAt, gone.DepartedAt = store.OwnerDeparted, at(time.Hour), at(time.Hour)
		if err := s.UpdateOwner(t.Context(), gone, o.UpdatedAt, event("owner.depart", o.Name, time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendReview(t.Context(), attest("r9", "team-billing", 2*time.Hour), read, event("client.attest", "r9", 2*time.Hour)); !errors.Is(err, store.ErrStale) {
			t.Errorf("AppendReview after the owner departed: %v, want ErrStale", err)
		}
		if hist, _ := s.ListReviews(t.Context(), "r9", 0); len(hist) != 0 {
			t.Errorf("a refused review was stored: %+v", hist)
		}
	})

	t.Run("append and latest", func(t *testing.T) {
		s := newStore(t)
		c1, c2 := fullClient("r1"), fullClient("r2")
		mustCreate(t, s, c1)
		mustCreate(t, s, c2)
		first, second := attest("r1", "team-billing", time.Hour), attest("r1", "team-billing", 2*time.Hour)
		second.ScopesOK, second.Note = false, ""
		for _, r := range []store.Review{first, second, attest("r2", "team-billing", 30*time.Minute)} {
			if err := s.AppendReview(t.Context(), r, mustGet(t, s, r.ClientID).UpdatedAt, event("client.attest", r.ClientID, r.Time.Sub(base))); err != nil {
				t.Fatalf("AppendReview(%s): %v", r.ClientID, err)
			}
		}
		hist, err := s.ListReviews(t.Context(), "r1", 0)
		if err != nil || len(hist) != 2 {
			t.Fatalf("ListReviews = %+v, %v", hist, err)
		}
		if hist[0].ID <= hist[1].ID || !reflect.DeepEqual(normReview(hist[0]), normReview(second)) || !reflect.DeepEqual(normReview(hist[1]), normReview(first)) {
			t.Errorf("history = %+v, want newest first: %+v then %+v", hist, second, first)
		}
		checkUTC(t, "review", hist[0].Time)
		if one, _ := s.ListReviews(t.Context(), "r1", 1); len(one) != 1 || one[0].ID != hist[0].ID {
			t.Errorf("ListReviews limit 1 = %+v", one)
		}
		latest, err := s.LatestReviews(t.Context())
		if err != nil || len(latest) != 2 || latest[0].ClientID != "r1" || latest[0].ID != hist[0].ID || latest[1].ClientID != "r2" {
			t.Errorf("LatestReviews = %+v, %v; want the newest of r1, then r2", latest, err)
		}
		if evs := events(t, s, "r1"); len(evs) != 3 || evs[0].Action != "client.attest" {
			t.Errorf("events of r1: %+v", evs)
		}
	})

	t.Run("append refusals write nothing", func(t *testing.T) {
		s := newStore(t)
		c := fullClient("r1")
		mustCreate(t, s, c)
		before := len(events(t, s, ""))
		noTime := attest("r1", "x", 0)
		noTime.Time = time.Time{}
		badKind := attest("r1", "x", 0)
		badKind.Kind = "approve"
		for name, tc := range map[string]struct {
			r    store.Review
			prev time.Time
			want error
		}{
			"stale client":   {attest("r1", "x", time.Hour), c.UpdatedAt.Add(time.Nanosecond), store.ErrStale},
			"missing client": {attest("nope", "x", time.Hour), c.UpdatedAt, store.ErrNotFound},
			"no time":        {noTime, c.UpdatedAt, nil},
			"unknown kind":   {badKind, c.UpdatedAt, nil},
			"no client":      {attest("", "x", time.Hour), c.UpdatedAt, nil},
		} {
			err := s.AppendReview(t.Context(), tc.r, tc.prev, event("client.attest", tc.r.ClientID, time.Hour))
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: AppendReview = %v, want %v", name, err, orAnyError(tc.want))
			}
		}
		if rs, _ := s.LatestReviews(t.Context()); len(rs) != 0 {
			t.Errorf("refused appends stored %+v", rs)
		}
		if n := len(events(t, s, "")); n != before {
			t.Errorf("refused appends wrote %d admin events", n-before)
		}
	})

	t.Run("set clients owner", func(t *testing.T) {
		s := newStore(t)
		c1, c2, c3 := fullClient("t1"), fullClient("t2"), fullClient("t3")
		mustCreate(t, s, c1)
		mustCreate(t, s, c2)
		mustCreate(t, s, c3)
		change := func(id string, prev time.Time) store.OwnerChange {
			return store.OwnerChange{ID: id, PrevUpdatedAt: prev, Owner: "team-new", UpdatedAt: prev.Add(time.Minute)}
		}
		transfer := func(id string) store.Review {
			return store.Review{ClientID: id, Kind: store.ReviewTransfer, Time: c1.UpdatedAt.Add(time.Minute), Actor: "admin@example.org", Owner: "team-new"}
		}
		before := len(events(t, s, ""))
		for name, tc := range map[string]struct {
			cs   []store.OwnerChange
			want error
		}{
			"stale":     {[]store.OwnerChange{change("t1", c1.UpdatedAt), change("t2", c2.UpdatedAt.Add(time.Second))}, store.ErrStale},
			"missing":   {[]store.OwnerChange{change("t1", c1.UpdatedAt), change("gone", c2.UpdatedAt)}, store.ErrNotFound},
			"twice":     {[]store.OwnerChange{change("t1", c1.UpdatedAt), change("t1", c1.UpdatedAt)}, nil},
			"no owner":  {[]store.OwnerChange{{ID: "t1", PrevUpdatedAt: c1.UpdatedAt, UpdatedAt: at(time.Hour)}}, nil},
			"no update": {[]store.OwnerChange{{ID: "t1", PrevUpdatedAt: c1.UpdatedAt, Owner: "team-new"}}, nil},
		} {
			err := s.SetClientsOwner(t.Context(), tc.cs, []store.Review{transfer("t1")}, []store.AdminEvent{event("client.transfer", "t1", time.Hour)})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: SetClientsOwner = %v, want %v", name, err, orAnyError(tc.want))
			}
		}
		if d := diffClient(c1, mustGet(t, s, "t1")); d != "" {
			t.Errorf("a refused batch changed t1: %s", d)
		}
		if rs, _ := s.LatestReviews(t.Context()); len(rs) != 0 {
			t.Errorf("refused batches stored reviews %+v", rs)
		}
		if n := len(events(t, s, "")); n != before {
			t.Errorf("refused batches wrote %d admin events", n-before)
		}

		cs := []store.OwnerChange{change("t1", c1.UpdatedAt), change("t3", c3.UpdatedAt)}
		rs := []store.Review{transfer("t1"), transfer("t3")}
		evs := []store.AdminEvent{event("client.transfer", "t1", time.Hour), event("client.transfer", "t3", time.Hour)}
		if err := s.SetClientsOwner(t.Context(), cs, rs, evs); err != nil {
			t.Fatalf("SetClientsOwner: %v", err)
		}
		for _, ch := range cs {
			want := *fullClient(ch.ID)
			want.Owner, want.UpdatedAt = "team-new", ch.UpdatedAt
			if d := diffClient(&want, mustGet(t, s, ch.ID)); d != "" {
				t.Errorf("%s after transfer: %s", ch.ID, d)
			}
		}
		if d := diffClient(c2, mustGet(t, s, "t2")); d != "" {
			t.Errorf("a client outside the batch changed: %s", d)
		}
		latest, err := s.LatestReviews(t.Context())
		if err != nil || len(latest) != 2 || latest[0].Kind != store.ReviewTransfer || latest[0].Owner != "team-new" || latest[1].ClientID != "t3" {
			t.Errorf("LatestReviews after transfer = %+v, %v", latest, err)
		}
		all := events(t, s, "")
		if len(all) != before+2 {
			t.Fatalf("%d admin events, want %d", len(all), before+2)
		}
		checkEvent(t, all[0], evs[1])
		checkEvent(t, all[1], evs[0])
		if err := s.SetClientsOwner(t.Context(), nil, nil, nil); err != nil {
			t.Errorf("empty SetClientsOwner: %v", err)
		}
	})
}
