package store

import (
	"context"

	"github.com/keybound/keybound/internal/identity"
)

// ClientImporter creates many clients at once: how existing static API keys
// are brought into the inventory (keybound import), all or nothing.
type ClientImporter interface {
	// CreateClients creates every client in cs and appends every event in
	// evs in one transaction: all of them or none. A client whose ID, or
	// whose secret lookup digest, is already stored or appears twice in cs
	// is ErrConflict, and then nothing is written. A nil client is an
	// error. An empty cs with no events is a no-op.
	CreateClients(ctx context.Context, cs []*identity.Client, evs []AdminEvent) error
}
