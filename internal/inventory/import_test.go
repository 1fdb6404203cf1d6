package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
)

// legacyKey returns a distinct, valid static API key; keys are built at run
// time so the repository holds none.
func legacyKey(n int) string { return fmt.Sprintf("legacy-%04d-%s", n, strings.Repeat("k7", 10)) }

func importRow(n int) inventory.ImportRow {
	return inventory.ImportRow{
		Name: fmt.Sprintf("svc-%d", n), Owner: "team-a@example.com", Purpose: "partner feed", Environment: "prod",
		ExpiresAt: now.Add(60 * 24 * time.Hour).Format(time.DateOnly), Secret: legacyKey(n), Scope: "feed:read",
	}
}

func TestImport(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	rows := []inventory.ImportRow{importRow(1), importRow(2)}
	rows[1].Vendor, rows[1].ExpiresAt = "acme", now.Add(time.Hour).Format(time.RFC3339)

	cs, err := svc.Import(ctx, "admin-1", rows, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("%d clients", len(cs))
	}
	for i, c := range cs {
		got, err := st.GetClientBySecretLookup(ctx, identity.SecretLookup(rows[i].Secret))
		if err != nil || got.ID != c.ID {
			t.Fatalf("row %d not found by its secret: %v", i, err)
		}
		if got.AuthMethod != identity.AuthClientSecretBasic || got.Binding != identity.BindingDPoP || got.Status != identity.StatusActive ||
			got.Owner != "team-a@example.com" || strings.Join(got.Scopes, " ") != "feed:read" || got.Secret.Verify(rows[i].Secret) != nil {
			t.Errorf("row %d stored as %+v", i, got)
		}
		evs, _ := st.ListAdminEvents(ctx, c.ID, 0)
		if len(evs) != 1 || evs[0].Action != inventory.ActionImport || evs[0].Actor != "admin-1" ||
			evs[0].Changes["secret_fingerprint"] != identity.SecretFingerprint(identity.SecretLookup(rows[i].Secret)) {
			t.Errorf("row %d events %+v", i, evs)
		}
		for _, v := range evs[0].Changes {
			if strings.Contains(v, rows[i].Secret) {
				t.Error("the admin event holds the secret")
			}
		}
	}
	if cs[0].ExpiresAt != now.Add(60*24*time.Hour).Truncate(24*time.Hour) || cs[1].Vendor != "acme" {
		t.Errorf("expiry %v vendor %q", cs[0].ExpiresAt, cs[1].Vendor)
	}

	t.Run("dry run stores nothing", func(t *testing.T) {
		before, _ := st.ListClients(ctx, store.ClientFilter{})
		if _, err := svc.Import(ctx, "admin-1", []inventory.ImportRow{importRow(3)}, true); err != nil {
			t.Fatal(err)
		}
		after, _ := st.ListClients(ctx, store.ClientFilter{})
		if len(after) != len(before) {
			t.Error("a dry run stored a client")
		}
	})
}

func TestImportRefusesEveryBadRow(t *testing.T) {
	ctx := context.Background()
	type problem struct {
		row          int
		field, about string
	}
	tests := []struct {
		name string
		rows func() []inventory.ImportRow
		want []problem
	}{
		{"missing owner", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1), importRow(2)}
			r[1].Owner = " "
			return r
		}, []problem{{1, "owner", "required"}}},
		{"bad expiry", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].ExpiresAt = "31/01/2027"
			return r
		}, []problem{{0, "expires_at", "not a date"}}},
		{"missing expiry", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].ExpiresAt = ""
			return r
		}, []problem{{0, "expires_at", "required"}}},
		{"expiry past the maximum", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].ExpiresAt = now.Add(400 * 24 * time.Hour).Format(time.DateOnly)
			return r
		}, []problem{{0, "expires_at", "maximum"}}},
		{"duplicate secret in the import", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1), importRow(2), importRow(3)}
			r[2].Secret = r[0].Secret
			return r
		}, []problem{{2, "secret", "same secret as rows[0]"}}},
		{"secret already in the inventory", func() []inventory.ImportRow {
			return []inventory.ImportRow{importRow(5), importRow(100)}
		}, []problem{{1, "secret", "already the secret of registered identity"}}},
		{"empty secret", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].Secret = ""
			return r
		}, []problem{{0, "secret", "required"}}},
		{"short secret", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].Secret = "short-key-1"
			return r
		}, []problem{{0, "secret", "at least 16"}}},
		{"long secret", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].Secret = strings.Repeat("k", 513)
			return r
		}, []problem{{0, "secret", "longer than 512"}}},
		{"secret with a space", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1)}
			r[0].Secret += " "
			return r
		}, []problem{{0, "secret", "printable ASCII"}}},
		{"bad scope and environment, all listed", func() []inventory.ImportRow {
			r := []inventory.ImportRow{importRow(1), importRow(2)}
			r[0].Scope, r[1].Environment, r[1].Name = `a"b`, "prod eu", ""
			return r
		}, []problem{{0, "scope", "forbids"}, {1, "name", "required"}, {1, "environment", "one word"}}},
		{"no rows", func() []inventory.ImportRow { return nil }, []problem{{-1, "rows", "no rows"}}},
		{"too many rows", func() []inventory.ImportRow { return make([]inventory.ImportRow, inventory.MaxImportRows+1) }, []problem{{-1, "rows", "at most"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, st := newService(t)
			if _, err := svc.Import(ctx, "admin-1", []inventory.ImportRow{importRow(100)}, false); err != nil {
				t.Fatal(err)
			}
			rows := tt.rows()
			_, err := svc.Import(ctx, "admin-1", rows, false)
			var ie *inventory.ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an ImportError", err)
			}
			if len(ie.Problems) != len(tt.want) {
				t.Errorf("problems %+v, want %d", ie.Problems, len(tt.want))
			}
			for i, w := range tt.want {
				if i >= len(ie.Problems) {
					break
				}
				p := ie.Problems[i]
				if p.Row != w.row || p.Field != w.field || !strings.Contains(p.Detail, w.about) {
					t.Errorf("problem %d = %+v, want row %d field %s about %q", i, p, w.row, w.field, w.about)
				}
			}
			for _, r := range rows {
				if r.Secret != "" && strings.Contains(err.Error(), r.Secret) {
					t.Error("the error holds a secret")
				}
			}
			cs, _ := st.ListClients(ctx, store.ClientFilter{})
			evs, _ := st.ListAdminEvents(ctx, "", 0)
			if len(cs) != 1 || len(evs) != 1 {
				t.Errorf("a refused import stored %d clients and %d events, want the 1 and 1 from before", len(cs)-1, len(evs)-1)
			}
		})
	}
}

func TestImportRowRedactsSecret(t *testing.T) {
	r := importRow(1)
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("row", "row", r)
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%v %+v %s", r, r, r), b.String()} {
		if strings.Contains(s, r.Secret) {
			t.Errorf("printed row holds the secret: %s", s)
		}
	}
}

func TestMatchSecrets(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	cs, err := svc.Import(ctx, "admin-1", []inventory.ImportRow{importRow(1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	known, unknown := identity.SecretLookup(legacyKey(1)), identity.SecretLookup("not registered anywhere")
	sightings := []inventory.Sighting{
		{Lookup: known, Rule: "generic-api-key", Location: "config/app.env:3", Commit: "abc123"},
		{Lookup: unknown, Rule: "aws-access-key-id", Location: "deploy.yaml:2"},
		{Lookup: known, Rule: "generic-api-key", Location: "other.env:\x1b[31m1"},
	}
	ms, err := svc.MatchSecrets(ctx, "admin-2", "/src/repo", sightings)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Client == nil || ms[0].Client.ID != cs[0].ID || !ms[0].Recorded || ms[0].FlaggedAt != now ||
		ms[1].Client != nil || ms[2].Client == nil || ms[2].Recorded {
		t.Fatalf("matches %+v", ms)
	}
	evs, _ := st.ListAdminEvents(ctx, cs[0].ID, 0)
	if len(evs) != 2 || evs[0].Action != inventory.ActionLeaked || evs[0].Actor != "admin-2" {
		t.Fatalf("events %+v", evs)
	}
	ch := evs[0].Changes
	if ch["fingerprint"] != identity.SecretFingerprint(known) || ch["location"] != "config/app.env:3" || ch["commit"] != "abc123" ||
		ch["source"] != "/src/repo" || ch["rule"] != "generic-api-key" {
		t.Errorf("leak event changes %v", ch)
	}
	if at, err := svc.LeakedAt(ctx, ms[0].Client); err != nil || at != now {
		t.Errorf("LeakedAt = %v, %v", at, err)
	}

	// A second scan finds it again: already flagged, not recorded twice.
	svc.Now = func() time.Time { return now.Add(time.Hour) }
	ms, err = svc.MatchSecrets(ctx, "admin-2", "", sightings[:1])
	if err != nil || ms[0].Recorded || ms[0].FlaggedAt != now {
		t.Errorf("second match %+v, %v", ms, err)
	}
	if evs, _ := st.ListAdminEvents(ctx, cs[0].ID, 0); len(evs) != 2 {
		t.Errorf("%d events after a second scan, want 2", len(evs))
	}

	// Control characters from the request never reach the log.
	_, _ = svc.MatchSecrets(ctx, "admin-2", "", nil)
	other, _ := svc.Import(ctx, "admin-1", []inventory.ImportRow{importRow(2)}, false)
	if _, err := svc.MatchSecrets(ctx, "admin-2", "", []inventory.Sighting{{Lookup: identity.SecretLookup(legacyKey(2)), Location: "x\x1b[31m"}}); err != nil {
		t.Fatal(err)
	}
	evs, _ = st.ListAdminEvents(ctx, other[0].ID, 1)
	if strings.ContainsRune(evs[0].Changes["location"], 0x1b) {
		t.Errorf("location %q holds an escape character", evs[0].Changes["location"])
	}

	// A rotated secret is no longer flagged.
	rotated := *ms[0].Client
	rotated.Secret, _ = identity.HashSecret(legacyKey(99))
	if at, _ := svc.LeakedAt(ctx, &rotated); !at.IsZero() {
		t.Errorf("a new secret is flagged as leaked at %v", at)
	}
	if _, err := svc.MatchSecrets(ctx, "a", "", make([]inventory.Sighting, inventory.MaxSightings+1)); err == nil {
		t.Error("too many sightings accepted")
	}
}
