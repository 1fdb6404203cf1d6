// Package notify warns people about machine identities nearing or past
// their expiry: it decides which warnings are due (one per identity, expiry
// and lead time), records them in the store so a restart or a second node
// does not send them again, and delivers them through notifiers: the server
// log, and a webhook whose JSON body is signed with HMAC-SHA256 (Sign,
// Verify) and retried with exponential backoff until it is delivered, is
// refused for good, or runs out of attempts. Failed deliveries stay in the
// store, where the admin API and `keybound notify list` show them.
//
// Why warn only about identities, not workload certificates? A workload
// certificate never outlives its identity (the CA caps its NotAfter at the
// identity's expiry) and renews itself about daily; a warning per
// certificate would be noise every day, while the identity's warning
// already covers the one expiry that renewal cannot fix.
package notify

import (
	"crypto/rand"
	"time"
)

// Event types: the "type" of a Warning.
const (
	// EventExpiring: the identity expires within the warning's lead time.
	EventExpiring = "identity.expiring"
	// EventExpired: the identity has expired and stopped working.
	EventExpired = "identity.expired"
	// EventTest: sent by `keybound notify test`; about no identity.
	EventTest = "keybound.test"
)

// Warning is the JSON body of a notification, the same for every notifier.
// Its field names are a wire contract with webhook receivers: add fields,
// never rename one.
type Warning struct {
	// ID is the delivery id: the same on every retry of one warning, so a
	// receiver that saw it already can drop the retry.
	ID   string `json:"id"`
	Type string `json:"type"`
	// Issuer is the keybound that sent it (its token service URL).
	Issuer      string    `json:"issuer,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ClientID    string    `json:"client_id,omitempty"`
	Name        string    `json:"name,omitempty"`
	Owner       string    `json:"owner,omitempty"`
	Environment string    `json:"environment,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	// LeadSeconds is the lead time the warning was due at (seconds before
	// ExpiresAt); 0 for identity.expired. LeadTime is the same in Go
	// duration syntax ("72h0m0s"), for people.
	LeadSeconds int64  `json:"lead_seconds"`
	LeadTime    string `json:"lead_time,omitempty"`
}

// NewDeliveryID returns a fresh, unguessable delivery id.
func NewDeliveryID() string { return "ntf_" + rand.Text() }
