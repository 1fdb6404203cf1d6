package store

import (
	"context"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// StatusChange is one client's status change in a batch (offboarding):
// the client ID, the UpdatedAt it was read with, and its new Status and
// UpdatedAt.
type StatusChange struct {
	ID            string
	PrevUpdatedAt time.Time
	Status        identity.Status
	UpdatedAt     time.Time
}

// ClientOffboarder changes the status of many clients at once: how
// keybound offboard suspends or revokes every identity of an owner,
// vendor, purpose or environment, all or nothing.
type ClientOffboarder interface {
	// SetClientsStatus applies every change in cs and appends every event
	// in evs in one transaction: all of them or none. A change whose
	// stored client's UpdatedAt no longer equals PrevUpdatedAt is
	// ErrStale; one naming no stored client is ErrNotFound; a client
	// named twice, an unknown status or a zero UpdatedAt is an error. In
	// every such case nothing is written. An empty cs with no events is a
	// no-op.
	SetClientsStatus(ctx context.Context, cs []StatusChange, evs []AdminEvent) error
}
