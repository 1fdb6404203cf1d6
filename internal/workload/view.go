package workload

import (
	"context"
	"math/big"
	"time"

	"github.com/keybound/keybound/internal/expiring"
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
	set *expiring.Set // serial -> NotAfter
}

// NewView returns an empty view over st; call Sync to load it.
func NewView(st RevocationStore, now func() time.Time) *View {
	load := func(ctx context.Context, since, now time.Time) ([]expiring.Entry, error) {
		list, err := st.CertificatesRevokedSince(ctx, since, now)
		if err != nil {
			return nil, err
		}
		out := make([]expiring.Entry, len(list))
		for i, c := range list {
			out[i] = expiring.Entry{Key: c.Serial, Expires: c.NotAfter}
		}
		return out, nil
	}
	return &View{set: expiring.New("workload: revocation view", load, MaxRevocations, now)}
}

// SerialHex is the store's form of a serial number.
func SerialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// Revoked reports whether the certificate with serial (SerialHex form) was
// revoked. While more revocations are live than the view can hold, it
// reports every serial as revoked (fail closed).
func (v *View) Revoked(serial string) bool { return v.set.Has(serial) }

// add records a revocation made in this process.
func (v *View) add(serial string, notAfter time.Time) error { return v.set.Add(serial, notAfter) }

// Sync loads revocations made since the last sync (by any node) and drops
// entries of expired certificates. The first call loads every live one.
func (v *View) Sync(ctx context.Context) error { return v.set.Sync(ctx) }

// Len returns the number of live revocations held.
func (v *View) Len() int { return v.set.Len() }

// gen changes whenever a revocation enters the view, so the CRL knows to
// re-sign.
func (v *View) gen() uint64 { return v.set.Gen() }
