package store

import (
	"context"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// NotificationStatus is where the delivery of one warning stands.
type NotificationStatus string

const (
	// NotificationPending is waiting for its next attempt (NextAttemptAt).
	NotificationPending NotificationStatus = "pending"
	// NotificationDelivered reached every configured notifier.
	NotificationDelivered NotificationStatus = "delivered"
	// NotificationFailed will not be tried again: the receiver refused it
	// for good, or the attempts ran out. LastError says why.
	NotificationFailed NotificationStatus = "failed"
	// NotificationSkipped no longer applied when its turn came (the
	// identity was revoked, or its expiry changed).
	NotificationSkipped NotificationStatus = "skipped"
)

// Valid reports whether s is one of the statuses above.
func (s NotificationStatus) Valid() bool {
	switch s {
	case NotificationPending, NotificationDelivered, NotificationFailed, NotificationSkipped:
		return true
	}
	return false
}

// MaxNotificationError bounds LastError. Backends refuse a longer one, so
// a caller that forgot to bound a receiver's answer finds out in tests.
const MaxNotificationError = 512

// Notification is one expiry warning and the state of its delivery. The
// store treats Kind as opaque (package notify owns the event types); what
// it guarantees is that (Kind, ClientID, ExpiresAt, Lead) is stored once.
type Notification struct {
	// ID is the delivery id, unique, chosen by the caller; receivers
	// deduplicate retried deliveries by it.
	ID        string
	Kind      string
	ClientID  string
	ExpiresAt time.Time
	// Lead is how long before ExpiresAt the warning is due; zero for a
	// warning about an expiry that has passed.
	Lead      time.Duration
	CreatedAt time.Time

	Status   NotificationStatus
	Attempts int
	// LastError is the reason of the last failed attempt: bounded by
	// MaxNotificationError, never a secret or a whole response body.
	LastError     string
	LastAttemptAt time.Time
	// NextAttemptAt is set while Status is pending; zero otherwise.
	NextAttemptAt time.Time
	DeliveredAt   time.Time
}

// NotificationFilter narrows ListNotifications. Zero fields match
// everything; a Limit of zero or less means no limit.
type NotificationFilter struct {
	Status   NotificationStatus
	ClientID string
	Limit    int
}

// NotificationUpdate is the outcome of one delivery attempt (or of deciding
// a warning no longer applies), written over the claimed row.
type NotificationUpdate struct {
	// Status is the new status; pending means "try again at NextAttemptAt",
	// which must then be set.
	Status        NotificationStatus
	Attempts      int
	LastError     string
	LastAttemptAt time.Time
	NextAttemptAt time.Time
	DeliveredAt   time.Time
}

// NotificationStore persists expiry warnings and their delivery state, so a
// warning is sent once per identity, expiry and lead time across restarts
// and nodes, and failed deliveries stay visible.
//
// Delivery is claimed, not locked: a node that wants to attempt a pending
// notification moves its NextAttemptAt from the value it read to a lease
// end (ClaimNotification, a compare-and-set), and only the node that moved
// it may write the outcome (UpdateNotification). A node that dies mid-attempt
// leaves the row pending; another node retries it once the lease ends.
type NotificationStore interface {
	// CreateNotification stores n unless a notification with the same
	// Kind, ClientID, ExpiresAt and Lead exists; it reports whether n was
	// stored. A second n.ID already stored for another key is ErrConflict;
	// an unknown client is ErrNotFound. A pending n needs NextAttemptAt.
	CreateNotification(ctx context.Context, n *Notification) (bool, error)
	// GetNotification returns the notification with id, or ErrNotFound.
	GetNotification(ctx context.Context, id string) (*Notification, error)
	// ListNotifications returns the matches newest CreatedAt first, then by
	// ID.
	ListNotifications(ctx context.Context, f NotificationFilter) ([]*Notification, error)
	// DueNotifications returns at most limit pending notifications whose
	// NextAttemptAt is at or before now, earliest NextAttemptAt first.
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]*Notification, error)
	// ClaimNotification sets the NextAttemptAt of the pending notification
	// id from due to until, and reports whether it did: false when another
	// caller claimed or finished it first (or it does not exist).
	ClaimNotification(ctx context.Context, id string, due, until time.Time) (bool, error)
	// UpdateNotification writes u over the notification id if it is still
	// pending with NextAttemptAt equal to claimed (the until of the
	// caller's claim); otherwise ErrStale (ErrNotFound for an unknown id)
	// and nothing is written.
	UpdateNotification(ctx context.Context, id string, claimed time.Time, u NotificationUpdate) error
	// CountNotifications counts the notifications with status.
	CountNotifications(ctx context.Context, status NotificationStatus) (int, error)
	// PurgeNotifications deletes the notifications about expiries before
	// expiredBefore, whatever their status, and returns how many.
	PurgeNotifications(ctx context.Context, expiredBefore time.Time) (int, error)
	// ExpiringClients returns active clients whose ExpiresAt is at or
	// after from and before to, earliest expiry first, then by ID, at most
	// limit (zero or less: no limit): what the expiry sweep warns about,
	// without reading every identity.
	ExpiringClients(ctx context.Context, from, to time.Time, limit int) ([]*identity.Client, error)
}
