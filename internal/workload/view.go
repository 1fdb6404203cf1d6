package workload

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// RevocationStore is what a View reads.
type RevocationStore interface {
	CertificatesRevokedSince(ctx context.Context, since, now time.Time) ([]*store.WorkloadCertificate, error)
}

// View is the in-memory set of revoked workload certificate serials, so the
// token service and the gateway check a certificate without touching the
// database. Revocations made in this process enter it before Service.Revoke
// returns; those made by other nodes arrive with the next Sync (every
// second in app). Entries leave when the certificate expires.
//
// It is safe for concurrent use. The zero value is not usable; use NewView.
type View struct {
	st  RevocationStore
	now func() time.Time

	mu       sync.RWMutex
	revoked  map[string]time.Time // serial -> NotAfter
	syncedTo time.Time
	// gen changes whenever an entry is added, so the CRL knows to re-sign.
	gen atomic.Uint64
}

// NewView returns an empty view over st; call Sync to load it.
func NewView(st RevocationStore, now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	return &View{st: st, now: now, revoked: map[string]time.Time{}}
}

// SerialHex is the store's form of a serial number.
func SerialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// Revoked reports whether the certificate with serial (SerialHex form) was
// revoked.
func (v *View) Revoked(serial string) bool {
	v.mu.RLock()
	_, ok := v.revoked[serial]
	v.mu.RUnlock()
	return ok
}

// add records a revocation made in this process.
func (v *View) add(serial string, notAfter time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.revoked[serial]; !ok && len(v.revoked) >= MaxRevocations {
		return fmt.Errorf("workload: revocation view holds %d entries; refusing to grow further", MaxRevocations)
	}
	v.revoked[serial] = notAfter
	v.gen.Add(1)
	return nil
}

// Sync loads revocations made since the last sync (by any node) and drops
// entries of expired certificates. The first call loads every live one.
func (v *View) Sync(ctx context.Context) error {
	now := v.now().UTC()
	v.mu.RLock()
	since := v.syncedTo
	v.mu.RUnlock()
	// Overlap by a second, so a revocation stamped slightly earlier by
	// another node's clock is not missed.
	if !since.IsZero() {
		since = since.Add(-time.Second)
	}
	list, err := v.st.CertificatesRevokedSince(ctx, since, now)
	if err != nil {
		return fmt.Errorf("workload: sync revocations: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	added := false
	for _, c := range list {
		if _, ok := v.revoked[c.Serial]; !ok {
			if len(v.revoked) >= MaxRevocations {
				return fmt.Errorf("workload: revocation view holds %d entries; refusing to grow further", MaxRevocations)
			}
			added = true
		}
		v.revoked[c.Serial] = c.NotAfter
	}
	for s, exp := range v.revoked {
		if !exp.After(now) {
			delete(v.revoked, s)
		}
	}
	if added {
		v.gen.Add(1)
	}
	v.syncedTo = now
	return nil
}

// Len returns the number of live revocations held.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.revoked)
}
