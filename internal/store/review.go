package store

import (
	"context"
	"time"
)

// OwnerStatus is whether an owner is still accountable for identities.
type OwnerStatus string

const (
	OwnerActive OwnerStatus = "active"
	// OwnerDeparted marks an owner who left: their identities are orphaned
	// until transferred.
	OwnerDeparted OwnerStatus = "departed"
)

// Owner is one entry of the owner directory. Name is compared exactly with
// identity.Client.Owner. DepartedAt is set exactly when Status is
// OwnerDeparted.
type Owner struct {
	Name       string      `json:"name"`
	Contact    string      `json:"contact,omitempty"`
	Status     OwnerStatus `json:"status"`
	CreatedAt  time.Time   `json:"created_at"`
	UpdatedAt  time.Time   `json:"updated_at"`
	DepartedAt time.Time   `json:"departed_at,omitzero"`
}

// ReviewKind says what a Review records.
type ReviewKind string

const (
	// ReviewAttest is an owner's attestation: the identity is still needed,
	// its purpose is right and its scopes are needed.
	ReviewAttest ReviewKind = "attest"
	// ReviewTransfer is an ownership transfer: the new owner has not
	// attested, so the schedule restarts from it.
	ReviewTransfer ReviewKind = "transfer"
)

// Review is one entry of an identity's append-only access-review history.
type Review struct {
	// ID is assigned by the store on append and grows with each append.
	ID       int64      `json:"id"`
	ClientID string     `json:"client_id"`
	Kind     ReviewKind `json:"kind"`
	Time     time.Time  `json:"time"`
	// Actor is the admin identity that recorded the review.
	Actor string `json:"actor"`
	// Owner is who attested (ReviewAttest) or the new owner (ReviewTransfer).
	Owner       string `json:"owner"`
	StillNeeded bool   `json:"still_needed"`
	PurposeOK   bool   `json:"purpose_ok"`
	ScopesOK    bool   `json:"scopes_ok"`
	Note        string `json:"note,omitempty"`
}

// OwnerChange is one client's ownership change in a batch (transfer): the
// client ID, the UpdatedAt it was read with, and its new Owner and
// UpdatedAt.
type OwnerChange struct {
	ID            string
	PrevUpdatedAt time.Time
	Owner         string
	UpdatedAt     time.Time
}

// ReviewStore keeps the owner directory and the access-review history.
// Every mutating call writes its change and its admin events in one
// transaction: all or nothing.
type ReviewStore interface {
	// CreateOwner adds o with ev; a stored owner of the same name is
	// ErrConflict.
	CreateOwner(ctx context.Context, o Owner, ev AdminEvent) error
	// GetOwner returns the owner named name, or ErrNotFound.
	GetOwner(ctx context.Context, name string) (Owner, error)
	// ListOwners returns every owner, ordered by name.
	ListOwners(ctx context.Context) ([]Owner, error)
	// UpdateOwner replaces the stored owner o.Name whose UpdatedAt equals
	// prevUpdatedAt and appends ev; otherwise ErrStale (or ErrNotFound).
	UpdateOwner(ctx context.Context, o Owner, prevUpdatedAt time.Time, ev AdminEvent) error
	// SetClientsOwner applies every change in cs (owner and UpdatedAt),
	// appends every review in rs and every event in evs in one
	// transaction. A change whose client's UpdatedAt no longer equals
	// PrevUpdatedAt is ErrStale, one naming no client ErrNotFound; a client
	// named twice, an empty owner or a zero UpdatedAt is an error. In every
	// such case nothing is written.
	SetClientsOwner(ctx context.Context, cs []OwnerChange, rs []Review, evs []AdminEvent) error
	// AppendReview appends r and ev if the client r.ClientID still has
	// UpdatedAt clientUpdatedAt (so a review never lands on an identity
	// whose owner or status changed since it was read, nor on one whose
	// owner is now marked departed): otherwise ErrStale, or ErrNotFound.
	// A review with no client, an unknown kind or a zero Time is an error.
	AppendReview(ctx context.Context, r Review, clientUpdatedAt time.Time, ev AdminEvent) error
	// LatestReviews returns the newest review of each kind of each client
	// (newest by append order), ordered by client ID then kind.
	LatestReviews(ctx context.Context) ([]Review, error)
	// ListReviews returns one client's reviews, newest append first. A
	// limit of zero or less means no limit.
	ListReviews(ctx context.Context, clientID string, limit int) ([]Review, error)
}
