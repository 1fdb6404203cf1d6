package workload_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/workload"
)

// hookStore runs beforeCreate once, just before the next CreateCertificate:
// an admin change that lands between the service's checks and the store's
// transaction. With a barrier, every CreateCertificate and CreateJoinToken
// waits for the others first, so concurrent callers all pass the service's
// own checks before any of them writes: the worst interleaving, every run.
type hookStore struct {
	*sqlite.Store
	mu           sync.Mutex
	beforeCreate func()
	barrier      *barrier
}

func (h *hookStore) CreateCertificate(ctx context.Context, c *store.WorkloadCertificate, joinTokenID string, maxLive int, ev store.AdminEvent) error {
	h.mu.Lock()
	hook := h.beforeCreate
	h.beforeCreate = nil
	h.mu.Unlock()
	if hook != nil {
		hook()
	}
	h.barrier.wait()
	return h.Store.CreateCertificate(ctx, c, joinTokenID, maxLive, ev)
}

func (h *hookStore) CreateJoinToken(ctx context.Context, t *store.JoinToken, maxLive int, ev store.AdminEvent) error {
	h.barrier.wait()
	return h.Store.CreateJoinToken(ctx, t, maxLive, ev)
}

// barrier releases its waiters once n have arrived (or after a timeout, so
// a caller that never arrives fails the test instead of hanging it). A nil
// barrier does not wait.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(10 * time.Second):
	}
}

// hooked returns f's service over a hookStore.
func hooked(t *testing.T, f *fixture) (*workload.Service, *hookStore) {
	t.Helper()
	hs := &hookStore{Store: f.st}
	svc, err := workload.New(hs, sharedIssuer(t), f.svc.Config, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return svc, hs
}

// setStatus changes kb-svc's status the way the inventory does, then tells
// the service, as the app's OnChange hook does.
func setStatus(t *testing.T, f *fixture, svc *workload.Service, id string, to identity.Status) {
	t.Helper()
	ctx := context.Background()
	c, err := f.st.GetClient(ctx, id)
	if err != nil {
		t.Error(err)
		return
	}
	next := *c
	next.Status, next.UpdatedAt = to, c.UpdatedAt.Add(time.Second)
	if err := f.st.UpdateClient(ctx, &next, c.UpdatedAt, store.AdminEvent{Time: f.clock.Now(), Actor: "admin", Action: "client." + string(to), Target: id}); err != nil {
		t.Error(err)
		return
	}
	if err := svc.ClientChanged(ctx, id); err != nil {
		t.Error(err)
	}
}

func liveCerts(t *testing.T, f *fixture, id string) []*store.WorkloadCertificate {
	t.Helper()
	cs, err := f.st.ListCertificates(context.Background(), store.CertificateFilter{ClientID: id, LiveAt: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestIssueRacesClientRevocation: the identity is revoked (or suspended)
// after Issue checked it and before the certificate is stored. The revoke
// revoked every live certificate it saw; the new one must not be stored,
// or it would be live and missing from the CRL.
func TestIssueRacesClientRevocation(t *testing.T) {
	for _, tc := range []struct {
		to     identity.Status
		holder bool // the identity already holds a live certificate
	}{
		{identity.StatusRevoked, false},
		{identity.StatusSuspended, false},
		{identity.StatusRevoked, true}, // the revoke revokes that one; none is left
	} {
		t.Run(fmt.Sprintf("%s, holder=%v", tc.to, tc.holder), func(t *testing.T) {
			f := newFixture(t)
			f.client("kb-svc", nil)
			svc, hs := hooked(t, f)
			ctx := context.Background()
			csr := csrPEM(t, newKey(t), nil)
			if tc.holder {
				if _, err := svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"}); err != nil {
					t.Fatal(err)
				}
			}
			hs.beforeCreate = func() { setStatus(t, f, svc, "kb-svc", tc.to) }
			is, err := svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
			if !errors.Is(err, workload.ErrClientNotUsable) || is != nil {
				t.Fatalf("Issue = %v; want ErrClientNotUsable", err)
			}
			if status, _, _, _, _, ok := workload.Problem(err); !ok || status != 403 {
				t.Errorf("the refusal renders as %d, %v; want 403", status, ok)
			}
			if got := liveCerts(t, f, "kb-svc"); len(got) != 0 {
				t.Errorf("live certificates after the refused issuance: %d; want 0", len(got))
			}
		})
	}
}

// TestRenewRacesCertificateRevocation: the presented certificate is revoked
// after Renew checked it and before the new one is stored.
func TestRenewRacesCertificateRevocation(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	svc, hs := hooked(t, f)
	ctx := context.Background()
	key := newKey(t)
	cur, err := svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, key, nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
	if err != nil {
		t.Fatal(err)
	}
	hs.beforeCreate = func() {
		if _, err := svc.RevokeWithReason(ctx, "admin", cur.Record.Serial, workload.ReasonKeyCompromise, "laptop lost"); err != nil {
			t.Error(err)
		}
	}
	is, err := svc.Renew(ctx, []*x509.Certificate{cur.Cert}, csrPEM(t, key, nil), 0)
	if !errors.Is(err, workload.ErrCertRevoked) || is != nil {
		t.Fatalf("Renew = %v; want ErrCertRevoked", err)
	}
	if got := liveCerts(t, f, "kb-svc"); len(got) != 0 {
		t.Errorf("live certificates after renewing a revoked one: %d; want 0", len(got))
	}
}

// concurrentUnderLimit runs op n times at once and returns how many
// succeeded; every other call must be refused with ErrLimit.
func concurrentUnderLimit(t *testing.T, n int, op func() error) int {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = op() })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, workload.ErrLimit):
			t.Errorf("concurrent call: %v; want success or ErrLimit", err)
		}
	}
	return wins
}

// TestLiveCertificateLimitConcurrent: one below the limit, concurrent
// issuances store exactly one more.
func TestLiveCertificateLimitConcurrent(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	csr := csrPEM(t, newKey(t), nil)
	for range workload.MaxLiveCertsPerClient - 1 {
		if _, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 8
	svc, hs := hooked(t, f)
	hs.barrier = newBarrier(n)
	wins := concurrentUnderLimit(t, n, func() error {
		_, err := svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csr, Via: workload.ViaAdmin, Actor: "admin"})
		return err
	})
	if wins != 1 {
		t.Errorf("%d concurrent issuances succeeded; want exactly 1", wins)
	}
	if live := len(liveCerts(t, f, "kb-svc")); live != workload.MaxLiveCertsPerClient {
		t.Errorf("the identity holds %d live certificates; want the limit %d", live, workload.MaxLiveCertsPerClient)
	}
}

// TestJoinTokenLimitConcurrent: one below the limit, concurrent join token
// creations store exactly one more.
func TestJoinTokenLimitConcurrent(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	for range workload.MaxLiveJoinTokensPerClient - 1 {
		if _, err := f.svc.CreateJoinToken(ctx, "admin", "kb-svc", 0); err != nil {
			t.Fatal(err)
		}
	}
	const n = 8
	svc, hs := hooked(t, f)
	hs.barrier = newBarrier(n)
	wins := concurrentUnderLimit(t, n, func() error {
		_, err := svc.CreateJoinToken(ctx, "admin", "kb-svc", 0)
		return err
	})
	if live, err := f.st.CountLiveJoinTokens(ctx, "kb-svc", f.clock.Now()); wins != 1 || err != nil || live != workload.MaxLiveJoinTokensPerClient {
		t.Errorf("%d concurrent join tokens succeeded, %d live (%v); want 1 and the limit %d", wins, live, err, workload.MaxLiveJoinTokensPerClient)
	}
}

// TestLeafProfile: an issued leaf is an X.509-SVID leaf (SPIFFE X509-SVID
// sections 4.1 and 4.4): basicConstraints present with cA false, key usage
// digitalSignature only, EKU serverAuth and clientAuth.
func TestLeafProfile(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	is, err := f.svc.Issue(context.Background(), workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, newKey(t), nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(is.Record.DER)
	if err != nil {
		t.Fatal(err)
	}
	oidBasicConstraints := asn1.ObjectIdentifier{2, 5, 29, 19}
	hasBC := slices.ContainsFunc(leaf.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidBasicConstraints) })
	if !hasBC || !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basicConstraints present %v, valid %v, cA %v; want present with cA false", hasBC, leaf.BasicConstraintsValid, leaf.IsCA)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v; want digitalSignature only", leaf.KeyUsage)
	}
	eku := slices.Clone(leaf.ExtKeyUsage)
	slices.Sort(eku)
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(eku, want) {
		t.Errorf("EKU %v; want exactly serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
	verify(t, f, is, t0)
}

// TestRevokeReasonRefused: a revocation comment with a control character
// or over the bound is refused before anything is revoked, with a detail
// that names the reason.
func TestRevokeReasonRefused(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	is, err := f.svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, newKey(t), nil), Via: workload.ViaAdmin, Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	before := f.state()
	for name, reason := range map[string]string{
		"escape and newline": "\x1b[2J\nadmin-log: forged line",
		"carriage return":    "ok\rforged",
		"C1 control":         "ok\u009b2J",
		"invalid UTF-8":      "ok\xff",
		"too long":           strings.Repeat("a", workload.MaxReasonLen+1),
	} {
		_, err := f.svc.RevokeWithReason(ctx, "admin", is.Record.Serial, workload.ReasonKeyCompromise, reason)
		status, _, _, detail, _, ok := workload.Problem(err)
		if !errors.Is(err, workload.ErrBadRequest) || !ok || status != 400 || !strings.Contains(detail, "reason") {
			t.Errorf("%s: %v (%d %q); want a 400 naming the reason", name, err, status, detail)
		}
	}
	if f.state() != before {
		t.Error("a refused revocation wrote something")
	}
	if err := f.svc.CheckCert(is.Cert, t0); err != nil {
		t.Errorf("the certificate was revoked: %v", err)
	}
	if _, err := f.svc.RevokeWithReason(ctx, "admin", is.Record.Serial, workload.ReasonKeyCompromise, "  laptop lost  "); err != nil {
		t.Errorf("a printable reason: %v", err)
	}
}

// renewOnRevoke runs beforeRevoke once, just before the store revokes the
// serial it names: a renewal that commits after the cascade listed the
// certificates but before it revoked the renewal's parent.
type renewOnRevoke struct {
	*sqlite.Store
	serial       string
	beforeRevoke func()
}

func (r *renewOnRevoke) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, ev store.AdminEvent) error {
	if serial == r.serial && r.beforeRevoke != nil {
		hook := r.beforeRevoke
		r.beforeRevoke = nil
		hook()
	}
	return r.Store.RevokeCertificate(ctx, serial, at, reason, ev)
}

// TestKeyCompromiseCascadeOutrunsRenewal: the thief renews B (renewed from
// the compromised A) while the cascade runs; that renewal is revoked too.
func TestKeyCompromiseCascadeOutrunsRenewal(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	ctx := context.Background()
	rs := &renewOnRevoke{Store: f.st}
	svc, err := workload.New(rs, sharedIssuer(t), f.svc.Config, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	a, err := svc.Issue(ctx, workload.Request{ClientID: "kb-svc", CSR: csrPEM(t, newKey(t), nil), Via: workload.ViaPrivateKeyJWT, Actor: "kb-svc"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Renew(ctx, []*x509.Certificate{a.Cert}, csrPEM(t, newKey(t), nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	var c *workload.Issued
	rs.serial = b.Record.Serial
	rs.beforeRevoke = func() {
		if c, err = svc.Renew(ctx, []*x509.Certificate{b.Cert}, csrPEM(t, newKey(t), nil), 0); err != nil {
			t.Errorf("the racing renewal: %v", err)
		}
	}
	if _, err := svc.RevokeWithReason(ctx, "admin", a.Record.Serial, workload.ReasonKeyCompromise, "laptop lost"); err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("the racing renewal did not happen")
	}
	for _, is := range []*workload.Issued{b, c} {
		if !svc.View.Revoked(is.Record.Serial) {
			t.Errorf("%s, renewed from the compromised line, is not revoked", is.Record.Serial)
		}
	}
	if got := liveCerts(t, f, "kb-svc"); len(got) != 0 {
		t.Errorf("%d live certificates after the cascade, want 0", len(got))
	}
}
