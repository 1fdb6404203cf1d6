package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// The workload certificate and join token part of the contract:
//
//   - CreateCertificate consumes its join token in the same transaction: a
//     reused, expired or foreign token (ErrJoinTokenSpent) or an unknown one
//     (ErrNotFound) stores no certificate and no event; of many concurrent
//     consumers of one token exactly one wins.
//   - CreateCertificate checks, in that transaction and at c.IssuedAt, that
//     the client is active and unexpired (ErrClientNotUsable) and that a
//     renewed certificate is the client's and not revoked
//     (ErrRenewedFromRevoked); a refusal consumes no join token.
//   - CreateCertificate and CreateJoinToken count live rows against
//     maxLive in the same transaction (ErrLimit): concurrent callers
//     together never exceed it.
//   - A second revocation of a certificate is ErrConflict and writes nothing.
//   - CertificatesRevokedSince includes RevokedAt == since and excludes
//     NotAfter <= now; PurgeCertificates removes NotAfter < before.
func testCertificates(t *testing.T, newStore func(*testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"RoundTrip", testCertRoundTrip},
		{"CreateRefusals", testCertCreateRefusals},
		{"JoinTokens", testJoinTokens},
		{"JoinTokenRace", testJoinTokenRace},
		{"IssueChecksClient", testCertIssueChecksClient},
		{"IssueChecksRenewedFrom", testCertIssueChecksRenewedFrom},
		{"LiveLimit", testCertLiveLimit},
		{"LiveLimitRace", testCertLiveLimitRace},
		{"JoinTokenLimit", testJoinTokenLimit},
		{"Revoke", testCertRevoke},
		{"RevokedSince", testCertRevokedSince},
		{"List", testCertList},
		{"Purge", testCertPurge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			mustCreate(t, s, fullClient("w1"))
			mustCreate(t, s, fullClient("w2"))
			tt.fn(t, s)
		})
	}
}

func workloadCert(serial, client string, issued time.Duration) *store.WorkloadCertificate {
	return &store.WorkloadCertificate{
		Serial:     serial,
		ClientID:   client,
		SPIFFEID:   "spiffe://example.org/client/" + client,
		Thumbprint: "tp-" + serial,
		IssuedAt:   at(issued),
		NotBefore:  at(issued - time.Minute),
		NotAfter:   at(issued + 24*time.Hour),
		Via:        "private_key_jwt",
		DER:        []byte("der of " + serial),
	}
}

func certEvent(action, client string) store.AdminEvent {
	return event(action, client, time.Second)
}

func normCert(c *store.WorkloadCertificate) store.WorkloadCertificate {
	n := *c
	n.IssuedAt, n.NotBefore, n.NotAfter, n.RevokedAt = normTime(c.IssuedAt), normTime(c.NotBefore), normTime(c.NotAfter), normTime(c.RevokedAt)
	return n
}

func diffCert(t *testing.T, want, got *store.WorkloadCertificate) {
	t.Helper()
	checkUTC(t, "certificate "+got.Serial, got.IssuedAt, got.NotBefore, got.NotAfter, got.RevokedAt)
	if w, g := normCert(want), normCert(got); !reflect.DeepEqual(w, g) {
		t.Errorf("certificate %s:\n got %+v\nwant %+v", want.Serial, g, w)
	}
}

func mustGetCert(t *testing.T, s store.Store, serial string) *store.WorkloadCertificate {
	t.Helper()
	c, err := s.GetCertificate(t.Context(), serial)
	if err != nil {
		t.Fatalf("GetCertificate(%s): %v", serial, err)
	}
	return c
}

func serials(cs []*store.WorkloadCertificate) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}

func testCertRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateCertificate(ctx, workloadCert("ff", "w1", -time.Hour), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	c := workloadCert("0a1b", "w1", 0)
	c.RenewedFrom = "ff"
	if err := s.CreateCertificate(ctx, c, "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	diffCert(t, c, mustGetCert(t, s, "0a1b"))
	// The returned value is a copy.
	got := mustGetCert(t, s, "0a1b")
	got.DER[0] = 'X'
	if again := mustGetCert(t, s, "0a1b"); !bytes.Equal(again.DER, c.DER) {
		t.Error("modifying a returned certificate changed the stored one")
	}
	if evs := events(t, s, "w1"); len(evs) != 3 || evs[0].Action != "cert.issue" {
		t.Errorf("admin events for w1 = %+v; want the two issuances on top of the creation", evs)
	}
	if _, err := s.GetCertificate(ctx, "0a1c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCertificate(unknown) = %v; want ErrNotFound", err)
	}
}

func testCertCreateRefusals(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateCertificate(ctx, workloadCert("01", "w1", 0), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	before := len(events(t, s, ""))
	tests := []struct {
		name string
		c    *store.WorkloadCertificate
		want error
	}{
		{"duplicate serial", workloadCert("01", "w2", time.Hour), store.ErrConflict},
		{"unknown client", workloadCert("02", "nobody", 0), store.ErrNotFound},
		{"no serial", workloadCert("", "w1", 0), nil},
		{"no DER", func() *store.WorkloadCertificate { c := workloadCert("03", "w1", 0); c.DER = nil; return c }(), nil},
		{"no expiry", func() *store.WorkloadCertificate {
			c := workloadCert("04", "w1", 0)
			c.NotAfter = time.Time{}
			return c
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateCertificate(ctx, tt.c, "", 0, certEvent("cert.issue", tt.c.ClientID))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("CreateCertificate = %v; want %v", err, tt.want)
			}
		})
	}
	if after := len(events(t, s, "")); after != before {
		t.Errorf("refused creations wrote %d admin events", after-before)
	}
	if c := mustGetCert(t, s, "01"); c.ClientID != "w1" {
		t.Errorf("the duplicate replaced the stored certificate: %+v", c)
	}
	if cs, _ := s.ListCertificates(ctx, store.CertificateFilter{}); len(cs) != 1 {
		t.Errorf("stored certificates = %v; want only 01", serials(cs))
	}
}

func testJoinTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := &store.JoinToken{ID: "jt1", ClientID: "w1", Hash: bytes.Repeat([]byte{7}, 32), CreatedAt: at(0), ExpiresAt: at(time.Hour), CreatedBy: "admin"}
	if err := s.CreateJoinToken(ctx, tok, 0, event("join_token.create", "w1", 0)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJoinToken(ctx, "jt1")
	if err != nil {
		t.Fatal(err)
	}
	checkUTC(t, "join token", got.CreatedAt, got.ExpiresAt, got.UsedAt)
	if !got.UsedAt.IsZero() || !bytes.Equal(got.Hash, tok.Hash) || got.ClientID != "w1" || !got.ExpiresAt.Equal(tok.ExpiresAt) || got.CreatedBy != "admin" {
		t.Errorf("join token round trip: %+v", got)
	}
	if err := s.CreateJoinToken(ctx, tok, 0, event("join_token.create", "w1", 0)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate join token: %v; want ErrConflict", err)
	}
	if err := s.CreateJoinToken(ctx, &store.JoinToken{ID: "jt9", ClientID: "nobody", Hash: tok.Hash, CreatedAt: at(0), ExpiresAt: at(time.Hour)}, 0, event("join_token.create", "nobody", 0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("join token for an unknown client: %v; want ErrNotFound", err)
	}
	for _, jt := range []*store.JoinToken{
		{ID: "jt2", ClientID: "w1", Hash: tok.Hash, CreatedAt: at(0), ExpiresAt: at(time.Minute)},
		{ID: "jt3", ClientID: "w1", Hash: tok.Hash, CreatedAt: at(0), ExpiresAt: at(2 * time.Hour)},
	} {
		if err := s.CreateJoinToken(ctx, jt, 0, event("join_token.create", "w1", 0)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountLiveJoinTokens(ctx, "w1", at(30*time.Second)); err != nil || n != 3 {
		t.Errorf("CountLiveJoinTokens = %d, %v; want 3", n, err)
	}
	if n, _ := s.CountLiveJoinTokens(ctx, "w1", at(time.Minute)); n != 2 {
		t.Errorf("CountLiveJoinTokens at the expiry of jt2 = %d; want 2 (expiry is exclusive)", n)
	}

	// Consuming: refusals first, each storing nothing.
	before := len(events(t, s, ""))
	refusals := []struct {
		name, token string
		c           *store.WorkloadCertificate
		want        error
	}{
		{"unknown token", "nope", workloadCert("10", "w1", 0), store.ErrNotFound},
		{"token of another client", "jt1", workloadCert("11", "w2", 0), store.ErrJoinTokenSpent},
		{"expired token", "jt2", workloadCert("12", "w1", time.Minute), store.ErrJoinTokenSpent},
	}
	for _, r := range refusals {
		if err := s.CreateCertificate(ctx, r.c, r.token, 0, certEvent("cert.issue", r.c.ClientID)); !errors.Is(err, r.want) {
			t.Errorf("%s: CreateCertificate = %v; want %v", r.name, err, r.want)
		}
		if _, err := s.GetCertificate(ctx, r.c.Serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the certificate was stored", r.name)
		}
	}
	if after := len(events(t, s, "")); after != before {
		t.Errorf("refused consumptions wrote %d admin events", after-before)
	}

	// The one good use.
	c := workloadCert("13", "w1", 10*time.Second)
	if err := s.CreateCertificate(ctx, c, "jt1", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatalf("CreateCertificate with a live join token: %v", err)
	}
	if got, _ := s.GetJoinToken(ctx, "jt1"); got == nil || !got.UsedAt.Equal(c.IssuedAt) {
		t.Errorf("consumed token UsedAt = %v; want the issuance time %v", got, c.IssuedAt)
	}
	if err := s.CreateCertificate(ctx, workloadCert("14", "w1", 20*time.Second), "jt1", 0, certEvent("cert.issue", "w1")); !errors.Is(err, store.ErrJoinTokenSpent) {
		t.Errorf("reused join token: %v; want ErrJoinTokenSpent", err)
	}
	if _, err := s.GetCertificate(ctx, "14"); !errors.Is(err, store.ErrNotFound) {
		t.Error("a reused join token stored a certificate")
	}
	if n, _ := s.CountLiveJoinTokens(ctx, "w1", at(30*time.Second)); n != 2 {
		t.Errorf("CountLiveJoinTokens after a use = %d; want 2", n)
	}
}

func testJoinTokenRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateJoinToken(ctx, &store.JoinToken{ID: "race", ClientID: "w1", Hash: []byte{1}, CreatedAt: at(0), ExpiresAt: at(time.Hour)}, 0, event("join_token.create", "w1", 0)); err != nil {
		t.Fatal(err)
	}
	const n = 16
	wins := race(t, n, store.ErrJoinTokenSpent, func(i int) error {
		return s.CreateCertificate(ctx, workloadCert(fmt.Sprintf("%x", 0x100+i), "w1", time.Second), "race", 0, certEvent("cert.issue", "w1"))
	})
	if wins != 1 {
		t.Errorf("%d consumers of one join token succeeded; want exactly 1", wins)
	}
	if cs, _ := s.ListCertificates(ctx, store.CertificateFilter{ClientID: "w1"}); len(cs) != 1 {
		t.Errorf("stored certificates = %v; want exactly one", serials(cs))
	}
}

func testCertRevoke(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateCertificate(ctx, workloadCert("aa", "w1", 0), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeCertificate(ctx, "aa", at(time.Hour), "key compromise", certEvent("cert.revoke", "w1")); err != nil {
		t.Fatal(err)
	}
	c := mustGetCert(t, s, "aa")
	if !c.RevokedAt.Equal(at(time.Hour)) || c.RevocationReason != "key compromise" {
		t.Errorf("revoked certificate = %+v", c)
	}
	before := len(events(t, s, ""))
	if err := s.RevokeCertificate(ctx, "aa", at(2*time.Hour), "again", certEvent("cert.revoke", "w1")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second revocation: %v; want ErrConflict", err)
	}
	if err := s.RevokeCertificate(ctx, "bb", at(2*time.Hour), "", certEvent("cert.revoke", "w1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking an unknown serial: %v; want ErrNotFound", err)
	}
	if err := s.RevokeCertificate(ctx, "aa", time.Time{}, "", certEvent("cert.revoke", "w1")); err == nil {
		t.Error("revocation without a time was accepted")
	}
	if after := len(events(t, s, "")); after != before {
		t.Errorf("refused revocations wrote %d admin events", after-before)
	}
	if c := mustGetCert(t, s, "aa"); !c.RevokedAt.Equal(at(time.Hour)) || c.RevocationReason != "key compromise" {
		t.Errorf("the first revocation did not stand: %+v", c)
	}
}

func testCertRevokedSince(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i, issued := range []time.Duration{0, time.Hour, 2 * time.Hour} {
		serial := fmt.Sprintf("%02x", i+1)
		if err := s.CreateCertificate(ctx, workloadCert(serial, "w1", issued), "", 0, certEvent("cert.issue", "w1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateCertificate(ctx, workloadCert("04", "w1", 0), "", 0, certEvent("cert.issue", "w1")); err != nil {
		t.Fatal(err)
	}
	// 01 expires at 24h, 02 at 25h, 03 at 26h; 04 is never revoked.
	for serial, d := range map[string]time.Duration{"01": 3 * time.Hour, "02": 4 * time.Hour, "03": 5 * time.Hour} {
		if err := s.RevokeCertificate(ctx, serial, at(d), "", certEvent("cert.revoke", "w1")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		since, now time.Duration
		want       []string
	}{
		{-time.Hour, 0, []string{"01", "02", "03"}},
		{4 * time.Hour, 0, []string{"02", "03"}},
		{4*time.Hour + 1, 0, []string{"03"}},
		{0, 24 * time.Hour, []string{"02", "03"}},
		{0, 26 * time.Hour, []string{}},
	}
	for _, tt := range tests {
		got, err := s.CertificatesRevokedSince(ctx, at(tt.since), at(tt.now))
		if err != nil {
			t.Fatal(err)
		}
		if g := serials(got); !reflect.DeepEqual(g, tt.want) {
			t.Errorf("CertificatesRevokedSince(%v, %v) = %v; want %v", tt.since, tt.now, g, tt.want)
		}
	}
	all, err := s.CertificatesRevokedSince(ctx, time.Time{}, time.Time{})
	if err != nil || len(all) != 3 {
		t.Errorf("CertificatesRevokedSince(zero, zero) = %v, %v; want every revocation", serials(all), err)
	}
}

func testCertList(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, c := range []*store.WorkloadCertificate{
		workloadCert("01", "w1", 0),
		workloadCert("02", "w1", time.Hour),
		workloadCert("03", "w2", 2*time.Hour),
		workloadCert("04", "w1", 3*time.Hour),
		workloadCert("05", "w1", 3*time.Hour),
	} {
		if err := s.CreateCertificate(ctx, c, "", 0, certEvent("cert.issue", c.ClientID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeCertificate(ctx, "02", at(time.Hour), "", certEvent("cert.revoke", "w1")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    store.CertificateFilter
		want []string
	}{
		{"all, newest first, ties by serial", store.CertificateFilter{}, []string{"04", "05", "03", "02", "01"}},
		{"one client", store.CertificateFilter{ClientID: "w1"}, []string{"04", "05", "02", "01"}},
		{"limit", store.CertificateFilter{ClientID: "w1", Limit: 2}, []string{"04", "05"}},
		{"live: not revoked, not expired", store.CertificateFilter{ClientID: "w1", LiveAt: at(24 * time.Hour)}, []string{"04", "05"}},
		{"live early", store.CertificateFilter{LiveAt: at(time.Hour)}, []string{"04", "05", "03", "01"}},
		{"unknown client", store.CertificateFilter{ClientID: "nobody"}, []string{}},
	}
	for _, c := range []struct {
		client string
		now    time.Duration
		want   int
	}{{"w1", time.Hour, 3}, {"w1", 24 * time.Hour, 2}, {"w1", 27 * time.Hour, 0}, {"w2", 0, 1}, {"nobody", 0, 0}} {
		if n, err := s.CountLiveCertificates(ctx, c.client, at(c.now)); err != nil || n != c.want {
			t.Errorf("CountLiveCertificates(%s, %v) = %d, %v; want %d", c.client, c.now, n, err, c.want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListCertificates(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if g := serials(got); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("ListCertificates = %v; want %v", g, tt.want)
			}
		})
	}
}

func testCertPurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, c := range []*store.WorkloadCertificate{workloadCert("01", "w1", 0), workloadCert("02", "w1", time.Hour)} {
		if err := s.CreateCertificate(ctx, c, "", 0, certEvent("cert.issue", "w1")); err != nil {
			t.Fatal(err)
		}
	}
	for id, exp := range map[string]time.Duration{"old": time.Hour, "new": 48 * time.Hour} {
		if err := s.CreateJoinToken(ctx, &store.JoinToken{ID: id, ClientID: "w1", Hash: []byte{1}, CreatedAt: at(0), ExpiresAt: at(exp)}, 0, event("join_token.create", "w1", 0)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PurgeCertificates(ctx, time.Time{}); err != nil || n != 0 {
		t.Errorf("PurgeCertificates(zero) = %d, %v; want 0", n, err)
	}
	// 01 expires at exactly 24h: not before it, so it stays.
	if n, err := s.PurgeCertificates(ctx, at(24*time.Hour)); err != nil || n != 1 {
		t.Errorf("PurgeCertificates(24h) = %d, %v; want 1 (the old join token)", n, err)
	}
	if n, err := s.PurgeCertificates(ctx, at(24*time.Hour+1)); err != nil || n != 1 {
		t.Errorf("PurgeCertificates(24h+1ns) = %d, %v; want 1", n, err)
	}
	if _, err := s.GetCertificate(ctx, "01"); !errors.Is(err, store.ErrNotFound) {
		t.Error("expired certificate not purged")
	}
	mustGetCert(t, s, "02")
	if _, err := s.GetJoinToken(ctx, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Error("expired join token not purged")
	}
	if _, err := s.GetJoinToken(ctx, "new"); err != nil {
		t.Errorf("live join token purged: %v", err)
	}
	// The admin log keeps the issuance.
	if evs := events(t, s, "w1"); len(evs) < 3 {
		t.Errorf("purge removed admin events: %d left", len(evs))
	}
}
