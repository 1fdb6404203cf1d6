package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/store/storetest"
)

var epoch = time.Date(2031, time.March, 14, 15, 9, 26, 535897932, time.UTC)

func clock() time.Time { return epoch }

func openAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.WithClock(clock))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	})
}

// TestWritersQueueWithoutBusyTimeout runs the suite with SQLite's busy
// handler off: writers must then queue on the single write connection, not
// on the file lock, or the concurrency cases fail with SQLITE_BUSY.
func TestWritersQueueWithoutBusyTimeout(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keybound.db"), sqlite.WithBusyTimeout(0))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func client(id string) *identity.Client {
	return &identity.Client{
		ID: id, Name: "n", Owner: "team", Environment: "prod", Status: identity.StatusActive,
		CreatedAt: epoch, UpdatedAt: epoch, ExpiresAt: epoch.Add(time.Hour),
		Scopes: []string{"a", "b"}, AuthMethod: identity.AuthPrivateKeyJWT, Binding: identity.BindingDPoP,
		JWKS: []byte(`{"keys":[]}`),
	}
}

func ev(target string) store.AdminEvent {
	return store.AdminEvent{Time: epoch, Actor: "test", Action: "client.create", Target: target}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	// Write something so SQLite creates the -wal and -shm files as well.
	if err := s.CreateClient(t.Context(), client("c1"), ev("c1")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), got)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.db")
	if err := os.WriteFile(loose, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error // nil: any error
	}{
		{"missing parent directory", filepath.Join(dir, "no-such-dir", "k.db"), os.ErrNotExist},
		{"parent is a file", filepath.Join(loose, "k.db"), nil},
		{"world-readable file", loose, sqlite.ErrInsecureFile},
		{"directory", dir, nil},
		{"empty path", "", nil},
		{"memory", ":memory:", nil},
		{"URI", "file:" + filepath.Join(dir, "k.db"), nil},
		{"query string", filepath.Join(dir, "k.db") + "?_pragma=query_only(0)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tt.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open: got %v, want %v", err, tt.wantErr)
			}
		})
	}
	if fi, err := os.Stat(loose); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("refused file was changed: %v %v", fi.Mode(), err)
	}
}

func TestReopenPreservesData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	want := client("c1")
	if err := s.CreateClient(t.Context(), want, ev("c1")); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(t.Context(), store.RevokedToken{JTI: "j1", ClientID: "c1", RevokedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = openAt(t, path)
	defer s.Close()
	got, err := s.GetClient(t.Context(), "c1")
	if err != nil {
		t.Fatalf("GetClient after reopen: %v", err)
	}
	if got.Name != want.Name || !got.UpdatedAt.Equal(want.UpdatedAt) || string(got.JWKS) != string(want.JWKS) {
		t.Errorf("client after reopen = %+v, want %+v", got, want)
	}
	if evs, err := s.ListAdminEvents(t.Context(), "", 0); err != nil || len(evs) != 1 {
		t.Errorf("admin events after reopen: %d, %v", len(evs), err)
	}
	if toks, err := s.RevokedSince(t.Context(), time.Time{}, epoch); err != nil || len(toks) != 1 {
		t.Errorf("revocations after reopen: %d, %v", len(toks), err)
	}
	// Reopening must not re-run migrations.
	files, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(files) {
		t.Errorf("schema_migrations rows: %d, %v; want %d (one per migration file)", n, err, len(files))
	}
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Open: got %v, want ErrSchemaTooNew", err)
	}
	t.Logf("error as the operator sees it: %v", err)
}

func TestAdminEventsAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keybound.db")
	s := openAt(t, path)
	defer s.Close()
	if err := s.AppendAdminEvent(t.Context(), ev("x")); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, q := range []string{`UPDATE admin_events SET actor = 'mallory'`, `DELETE FROM admin_events`} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: succeeded on the append-only log", q)
		}
	}
}

func TestUnstorableTimesRefused(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	defer s.Close()
	c := client("far")
	c.ExpiresAt = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) // past int64 nanoseconds
	if err := s.CreateClient(t.Context(), c, ev("far")); err == nil {
		t.Fatal("CreateClient stored an expiry it cannot represent")
	}
	if evs, _ := s.ListAdminEvents(t.Context(), "", 0); len(evs) != 0 {
		t.Errorf("refused create wrote %d events", len(evs))
	}
}

func TestCanceledContext(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.CreateClient(ctx, client("c1"), ev("c1")); err == nil {
		t.Error("CreateClient with a canceled context succeeded")
	}
	if _, err := s.GetClient(t.Context(), "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient: %v, want ErrNotFound", err)
	}
}

func BenchmarkCreateClient(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "keybound.db"))
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("c%d", i)
		i++
		if err := s.CreateClient(ctx, client(id), ev(id)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetClient(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "keybound.db"))
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateClient(ctx, client("c1"), ev("c1")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetClient(ctx, "c1"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOptimisticErrorsNameTheRow: an optimistic write that matched no row
// says which row was missing or stale, so the log line names it.
func TestOptimisticErrorsNameTheRow(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "keybound.db"))
	defer s.Close()
	ctx := t.Context()
	ev := store.AdminEvent{Time: epoch, Actor: "admin", Action: "test", Target: "x"}
	owner := store.Owner{Name: "team-a", Status: store.OwnerActive, CreatedAt: epoch, UpdatedAt: epoch}
	if err := s.CreateOwner(ctx, owner, ev); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
		text string
	}{
		{"missing owner", s.UpdateOwner(ctx, store.Owner{Name: "nobody", Status: store.OwnerActive}, epoch, ev), store.ErrNotFound, "sqlite: update owner: owner nobody: "},
		{"stale owner", s.UpdateOwner(ctx, owner, epoch.Add(time.Second), ev), store.ErrStale, "sqlite: update owner: owner team-a: "},
		{"missing notification", s.UpdateNotification(ctx, "ntf-x", epoch, store.NotificationUpdate{Status: store.NotificationFailed}), store.ErrNotFound, "sqlite: update notification: notification ntf-x: "},
		{"missing client", s.SetClientsStatus(ctx, []store.StatusChange{{ID: "c-x", Status: identity.StatusRevoked, UpdatedAt: epoch}}, nil), store.ErrNotFound, "sqlite: set clients status: client c-x: "},
	} {
		if !errors.Is(tc.err, tc.want) || tc.err.Error() != tc.text+tc.want.Error() {
			t.Errorf("%s: %v, want %q%v", tc.name, tc.err, tc.text, tc.want)
		}
	}
}
