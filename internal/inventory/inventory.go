// Package inventory is the lifecycle of machine identities: it validates a
// registration into an identity.Client, creates it, and moves it through
// suspend, resume and revoke (one at a time, or every identity of an owner,
// vendor, purpose or environment at once: offboard.go), writing an admin
// audit event with every change in the same store transaction.
//
// It never returns or stores a legacy secret in the clear except once, in
// the result of Create, and it never renders wire errors: edges translate
// ValidationError and the sentinels below.
package inventory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Store is the part of the storage contract the inventory uses.
type Store interface {
	CreateClient(ctx context.Context, c *identity.Client, ev store.AdminEvent) error
	GetClient(ctx context.Context, id string) (*identity.Client, error)
	ListClients(ctx context.Context, f store.ClientFilter) ([]*identity.Client, error)
	UpdateClient(ctx context.Context, c *identity.Client, prevUpdatedAt time.Time, ev store.AdminEvent) error
	// Import (import.go) and leaked-secret matching (leaks.go):
	CreateClients(ctx context.Context, cs []*identity.Client, evs []store.AdminEvent) error
	GetClientBySecretLookup(ctx context.Context, lookup []byte) (*identity.Client, error)
	ListAdminEvents(ctx context.Context, target string, limit int) ([]store.AdminEvent, error)
	AppendAdminEvent(ctx context.Context, ev store.AdminEvent) error
	SetClientsStatus(ctx context.Context, cs []store.StatusChange, evs []store.AdminEvent) error // offboard.go
}

// Policy holds the registration rules an operator configures.
type Policy struct {
	// MaxLifetime caps ExpiresAt - now for new clients.
	MaxLifetime time.Duration
	// MaxTokenLifetime caps a client's own access token lifetime.
	MaxTokenLifetime time.Duration
	// RotationOverlap is how long a rotated-out credential keeps working
	// when the rotation names no overlap; MaxRotationOverlap caps it.
	RotationOverlap    time.Duration
	MaxRotationOverlap time.Duration
}

// Service is the inventory. Now is injectable for tests; nil means time.Now.
type Service struct {
	Store  Store
	Policy Policy
	Now    func() time.Time
	// OnChange, when set, is called with a client's id after its stored
	// registration changed, so in-process caches drop it at once.
	OnChange func(clientID string)
	// Owners is the owner directory (owners.go); nil checks no owner.
	// RequireKnownOwners refuses owners not in it.
	Owners             OwnerStore
	RequireKnownOwners bool
}

// Errors callers branch on.
var (
	ErrNotFound = store.ErrNotFound
	// ErrTransition is returned for a status change that the lifecycle
	// forbids (resuming a revoked client, suspending a suspended one).
	ErrTransition = errors.New("inventory: status change not allowed")
)

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Created is the result of Create. Secret is set only for legacy
// shared-secret clients, and this is the only time it is ever available.
type Created struct {
	Client *identity.Client
	Secret string
}

// Create validates reg and stores the new client with an admin event.
func (s *Service) Create(ctx context.Context, actor string, reg Registration) (*Created, error) {
	now := s.now()
	c, err := reg.toClient(now, s.Policy)
	if err != nil {
		return nil, err
	}
	if err := s.checkOwner(ctx, FieldOwner, c.Owner); err != nil {
		return nil, err
	}
	c.ID = newClientID()
	out := &Created{Client: c}
	if c.AuthMethod.IsStaticSecret() {
		secret, h, err := identity.NewSecret()
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		c.Secret, out.Secret = h, secret
	}
	ev := store.AdminEvent{Time: now, Actor: actor, Action: "client.create", Target: c.ID, Changes: describe(c)}
	if err := s.Store.CreateClient(ctx, c, ev); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return out, nil
}

// Get returns one client.
func (s *Service) Get(ctx context.Context, id string) (*identity.Client, error) {
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return c, nil
}

// List returns clients matching f.
func (s *Service) List(ctx context.Context, f store.ClientFilter) ([]*identity.Client, error) {
	cs, err := s.Store.ListClients(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return cs, nil
}

// Suspend stops a client from authenticating until Resume.
func (s *Service) Suspend(ctx context.Context, actor, id, reason string) (*identity.Client, error) {
	return s.transition(ctx, actor, id, reason, "client.suspend", identity.StatusSuspended, identity.StatusActive)
}

// Resume returns a suspended client to active.
func (s *Service) Resume(ctx context.Context, actor, id, reason string) (*identity.Client, error) {
	return s.transition(ctx, actor, id, reason, "client.resume", identity.StatusActive, identity.StatusSuspended)
}

// Revoke ends a client for good.
func (s *Service) Revoke(ctx context.Context, actor, id, reason string) (*identity.Client, error) {
	return s.transition(ctx, actor, id, reason, "client.revoke", identity.StatusRevoked, identity.StatusActive, identity.StatusSuspended)
}

// transition refuses a reason that reasonProblem refuses with a
// *ValidationError on FieldReason, before anything is read or written.
func (s *Service) transition(ctx context.Context, actor, id, reason, action string, to identity.Status, from ...identity.Status) (*identity.Client, error) {
	reason = strings.TrimSpace(reason)
	if p := reasonProblem(reason); p != "" {
		return nil, fieldErr(FieldReason, p)
	}
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	ok := false
	for _, f := range from {
		ok = ok || c.Status == f
	}
	if !ok {
		return nil, fmt.Errorf("%w: client %s is %s and cannot become %s", ErrTransition, id, c.Status, to)
	}
	prev := c.UpdatedAt
	next := *c
	next.Status = to
	next.UpdatedAt = after(s.now(), prev)
	changes := map[string]string{"status": string(c.Status) + " -> " + string(to)}
	if reason != "" {
		changes[FieldReason] = reason
	}
	ev := store.AdminEvent{Time: next.UpdatedAt, Actor: actor, Action: action, Target: id, Changes: changes}
	if err := s.Store.UpdateClient(ctx, &next, prev, ev); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s.changed(id)
	return &next, nil
}

// changed tells OnChange, when set, that client id's stored registration
// changed.
func (s *Service) changed(id string) {
	if s.OnChange != nil {
		s.OnChange(id)
	}
}

// after returns now, or just after prev when the clock has not moved past
// it: UpdatedAt stays strictly increasing, so the optimistic check of the
// next update holds even when the clock is coarse or stands still in tests.
func after(now, prev time.Time) time.Time {
	if !now.After(prev) {
		return prev.Add(time.Microsecond)
	}
	return now
}

// describe lists a new client's settings for the admin log; never secrets.
func describe(c *identity.Client) map[string]string {
	m := map[string]string{
		"name":        c.Name,
		"owner":       c.Owner,
		"purpose":     c.Purpose,
		"environment": c.Environment,
		"expires_at":  c.ExpiresAt.Format(time.RFC3339),
		"scopes":      strings.Join(c.Scopes, " "),
		"audiences":   strings.Join(c.Audiences, " "),
		"auth_method": string(c.AuthMethod),
		"binding":     string(c.Binding),
	}
	if c.Vendor != "" {
		m["vendor"] = c.Vendor
	}
	if len(c.Tags) > 0 {
		m["tags"] = strings.Join(c.Tags, " ")
	}
	return m
}

// idEncoding is lower-case base32 without padding: safe in URLs, paths and
// shell arguments without quoting.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newClientID() string {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("inventory: crypto/rand failed: " + err.Error())
	}
	return "kb-" + idEncoding.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
