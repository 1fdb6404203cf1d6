package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// The checks CreateCertificate and CreateJoinToken make inside their
// transaction. A caller checks the same things before it signs, but only
// the store orders them against a concurrent revocation or issuance: an
// identity revoked, or a certificate revoked, between the caller's check
// and the insert must not end up with a live certificate missing from the
// CRL, and concurrent renewals must not exceed the per-identity limit.

// certCount is what a refused creation must leave as it was.
type certCount struct{ certs, events int }

func countCerts(t *testing.T, s store.Store) certCount {
	t.Helper()
	cs, err := s.ListCertificates(t.Context(), store.CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return certCount{len(cs), len(events(t, s, ""))}
}

// setStatus changes a stored client's status as an admin would.
func setStatus(t *testing.T, s store.Store, id string, to identity.Status) {
	t.Helper()
	c := mustGet(t, s, id)
	prev := c.UpdatedAt
	c.Status, c.UpdatedAt = to, prev.Add(time.Second)
	if err := s.UpdateClient(t.Context(), c, prev, event("client."+string(to), id, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func testCertIssueChecksClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	for id, mutate := range map[string]func(*identity.Client){
		"suspended": func(c *identity.Client) { c.Status = identity.StatusSuspended },
		"revoked":   func(c *identity.Client) { c.Status = identity.StatusRevoked },
		"expiring":  func(c *identity.Client) { c.ExpiresAt = at(time.Hour) },
		"no-expiry": func(c *identity.Client) { c.ExpiresAt = time.Time{} },
	} {
		c := fullClient(id)
		mutate(c)
		mustCreate(t, s, c)
	}
	if err := s.CreateJoinToken(ctx, &store.JoinToken{ID: "jt-susp", ClientID: "suspended", Hash: []byte{1}, CreatedAt: at(0), ExpiresAt: at(2 * time.Hour)}, 0, event("join_token.create", "suspended", 0)); err != nil {
		t.Fatal(err)
	}
	before := countCerts(t, s)
	refusals := []struct {
		name, token string
		c           *store.WorkloadCertificate
		want        error
	}{
		{"suspended client", "", workloadCert("21", "suspended", 0), store.ErrClientNotUsable},
		{"revoked client", "", workloadCert("22", "revoked", 0), store.ErrClientNotUsable},
		{"client expired at the issuance (expiry is exclusive)", "", workloadCert("23", "expiring", time.Hour), store.ErrClientNotUsable},
		{"client without an expiry", "", workloadCert("24", "no-expiry", 0), store.ErrClientNotUsable},
		{"join token of a suspended client", "jt-susp", workloadCert("25", "suspended", 0), store.ErrClientNotUsable},
	}
	for _, r := range refusals {
		if err := s.CreateCertificate(ctx, r.c, r.token, 0, certEvent("cert.issue", r.c.ClientID)); !errors.Is(err, r.want) {
			t.Errorf("%s: CreateCertificate = %v; want %v", r.name, err, r.want)
		}
	}
	if after := countCerts(t, s); after != before {
		t.Errorf("refused creations changed the store: %+v -> %+v", before, after)
	}
	if jt, err := s.GetJoinToken(ctx, "jt-susp"); err != nil || !jt.UsedAt.IsZero() {
		t.Errorf("a refused creation consumed its join token: %+v, %v", jt, err)
	}
	if err := s.CreateCertificate(ctx, workloadCert("26", "expiring", time.Hour-1), "", 0, certEvent("cert.issue", "expiring")); err != nil {
		t.Errorf("client one nanosecond before its expiry: %v", err)
	}

	// An admin revokes the client after the caller checked it: the
	// issuance that comes next is refused.
	setStatus(t, s, "w1", identity.StatusRevoked)
	before = countCerts(t, s)
	if err := s.CreateCertificate(ctx, workloadCert("27", "w1", 3*time.Second), "", 0, certEvent("cert.issue", "w1")); !errors.Is(err, store.ErrClientNotUsable) {
		t.Errorf("issuance after the client was revoked: %v; want ErrClientNotUsable", err)
	}
	if after := countCerts(t, s); after != before {
		t.Errorf("the refused issuance changed the store: %+v -> %+v", before, after)
	}
}

func testCertIssueChecksRenewedFrom(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, c := range []*store.WorkloadCertificate{workloadCert("31", "w1", 0), workloadCert("32", "w1", 0), workloadCert("33", "w2", 0)} {
		if err := s.CreateCertificate(ctx, c, "", 0, certEvent("cert.issue", c.ClientID)); err != nil {
			t.Fatal(err)
		}
	}
	// The parent is revoked after the caller checked it.
	if err := s.RevokeCertificate(ctx, "32", at(time.Minute), "key compromise", certEvent("cert.revoke", "w1")); err != nil {
		t.Fatal(err)
	}
	renewal := func(serial, parent, client string) *store.WorkloadCertificate {
		c := workloadCert(serial, client, 2*time.Minute)
		c.Via, c.RenewedFrom = "renewal", parent
		return c
	}
	before := countCerts(t, s)
	for _, r := range []struct {
		name string
		c    *store.WorkloadCertificate
	}{
		{"revoked parent", renewal("41", "32", "w1")},
		{"unknown parent", renewal("42", "99", "w1")},
		{"another client's parent", renewal("43", "33", "w1")},
	} {
		if err := s.CreateCertificate(ctx, r.c, "", 0, certEvent("cert.issue", r.c.ClientID)); !errors.Is(err, store.ErrRenewedFromRevoked) {
			t.Errorf("%s: CreateCertificate = %v; want ErrRenewedFromRevoked", r.name, err)
		}
	}
	if after := countCerts(t, s); after != before {
		t.Errorf("refused renewals changed the store: %+v -> %+v", before, after)
	}
	if err := s.CreateCertificate(ctx, renewal("44", "31", "w1"), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Errorf("renewal of a live certificate: %v", err)
	}
}

func testCertLiveLimit(t *testing.T, s store.Store) {
	ctx := t.Context()
	expired := workloadCert("03", "w1", -25*time.Hour) // NotAfter is an hour before at(0)
	for _, c := range []*store.WorkloadCertificate{workloadCert("01", "w1", 0), workloadCert("02", "w1", 0), workloadCert("04", "w1", 0), expired, workloadCert("05", "w2", 0)} {
		if err := s.CreateCertificate(ctx, c, "", 0, certEvent("cert.issue", c.ClientID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeCertificate(ctx, "04", at(time.Second), "", certEvent("cert.revoke", "w1")); err != nil {
		t.Fatal(err)
	}
	// w1 holds 01 and 02 live; 03 expired, 04 revoked and w2's 05 do not count.
	if err := s.CreateCertificate(ctx, workloadCert("06", "w1", time.Minute), "", 3, certEvent("cert.issue", "w1")); err != nil {
		t.Fatalf("third live certificate under a limit of 3: %v", err)
	}
	before := countCerts(t, s)
	if err := s.CreateCertificate(ctx, workloadCert("07", "w1", time.Minute), "", 3, certEvent("cert.issue", "w1")); !errors.Is(err, store.ErrLimit) {
		t.Errorf("fourth live certificate under a limit of 3: %v; want ErrLimit", err)
	}
	if after := countCerts(t, s); after != before {
		t.Errorf("the refusal changed the store: %+v -> %+v", before, after)
	}
	// The limit is counted at the new certificate's IssuedAt: once 01, 02
	// and 06 expire the slots are free again.
	if err := s.CreateCertificate(ctx, workloadCert("08", "w1", 25*time.Hour), "", 3, certEvent("cert.issue", "w1")); err != nil {
		t.Errorf("after the others expired: %v", err)
	}
	if err := s.CreateCertificate(ctx, workloadCert("09", "w1", 25*time.Hour), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Errorf("a limit of 0 is no limit: %v", err)
	}
}

// testCertLiveLimitRace: with the client one below its limit, of many
// concurrent issuances exactly one is stored.
func testCertLiveLimitRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const limit = 4
	for i := range limit - 1 {
		if err := s.CreateCertificate(ctx, workloadCert(fmt.Sprintf("%02x", i+1), "w1", 0), "", limit, certEvent("cert.issue", "w1")); err != nil {
			t.Fatal(err)
		}
	}
	const n = 8
	wins := race(t, n, store.ErrLimit, func(i int) error {
		return s.CreateCertificate(ctx, workloadCert(fmt.Sprintf("%x", 0x100+i), "w1", time.Second), "", limit, certEvent("cert.issue", "w1"))
	})
	if wins != 1 {
		t.Errorf("%d concurrent issuances succeeded; want exactly 1", wins)
	}
	if live, err := s.CountLiveCertificates(ctx, "w1", at(time.Second)); err != nil || live != limit {
		t.Errorf("CountLiveCertificates = %d, %v; want the limit %d", live, err, limit)
	}
}

func testJoinTokenLimit(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := func(id string, expires time.Duration) *store.JoinToken {
		return &store.JoinToken{ID: id, ClientID: "w1", Hash: []byte{1}, CreatedAt: at(0), ExpiresAt: at(expires), CreatedBy: "admin"}
	}
	for _, jt := range []*store.JoinToken{tok("live", time.Hour), tok("used", time.Hour), tok("stale", time.Minute)} {
		if err := s.CreateJoinToken(ctx, jt, 0, event("join_token.create", "w1", 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateCertificate(ctx, workloadCert("01", "w1", time.Second), "used", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	// At 2 minutes, only "live" is unused and unexpired.
	later := func(id string) *store.JoinToken {
		jt := tok(id, 3*time.Hour)
		jt.CreatedAt = at(2 * time.Minute)
		return jt
	}
	if err := s.CreateJoinToken(ctx, later("second"), 2, event("join_token.create", "w1", 0)); err != nil {
		t.Fatalf("second live join token under a limit of 2: %v", err)
	}
	before := countCerts(t, s)
	if err := s.CreateJoinToken(ctx, later("third"), 2, event("join_token.create", "w1", 0)); !errors.Is(err, store.ErrLimit) {
		t.Errorf("third live join token under a limit of 2: %v; want ErrLimit", err)
	}
	if _, err := s.GetJoinToken(ctx, "third"); !errors.Is(err, store.ErrNotFound) {
		t.Error("the refused join token was stored")
	}
	if after := countCerts(t, s); after != before {
		t.Errorf("the refusal wrote an admin event: %+v -> %+v", before, after)
	}

	// Concurrent creations for w2 under a limit of 1: exactly one is stored.
	const n = 8
	wins := race(t, n, store.ErrLimit, func(i int) error {
		jt := &store.JoinToken{ID: fmt.Sprintf("race%d", i), ClientID: "w2", Hash: []byte{1}, CreatedAt: at(0), ExpiresAt: at(time.Hour)}
		return s.CreateJoinToken(ctx, jt, 1, event("join_token.create", "w2", 0))
	})
	if n, err := s.CountLiveJoinTokens(ctx, "w2", at(0)); wins != 1 || err != nil || n != 1 {
		t.Errorf("%d concurrent join tokens succeeded and %d are live (%v); want exactly 1", wins, n, err)
	}
}

// race runs op(0) to op(n-1) at once and returns how many succeeded. Each
// other one must fail with refused: a store that serialises its writes
// lets exactly the ones a check allows through.
func race(t *testing.T, n int, refused error, op func(i int) error) int {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		wg.Go(func() {
			err := op(i)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, refused):
				t.Errorf("concurrent call %d: %v, want success or %v", i, err, refused)
			}
		})
	}
	wg.Wait()
	return wins
}
