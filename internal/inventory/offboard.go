package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Offboarding suspends or revokes every identity that matches a filter
// (owner, vendor, purpose, environment; combined with AND) in one store
// transaction, each with its own admin event: when a team, a vendor or an
// application goes away, none of its machine identities outlives it. A dry
// run computes the same plan and writes nothing.

// Offboard actions.
const (
	OffboardSuspend = "suspend"
	OffboardRevoke  = "revoke"
)

// Admin event actions of offboarding, one event per changed identity.
const (
	ActionOffboardSuspend = "client.offboard.suspend"
	ActionOffboardRevoke  = "client.offboard.revoke"
)

// MaxOffboard bounds the identities one offboarding changes: one
// transaction, one answer.
const MaxOffboard = 10000

// Offboard request field names, as the admin API names them.
const (
	FieldFilter = "filter"
	FieldAction = "action"
	FieldReason = "reason"
	FieldTag    = "tag"
)

// OffboardRequest selects identities and says what to do with them.
type OffboardRequest struct {
	Owner       string
	Vendor      string
	Environment string
	Purpose     string
	// Tag selects identities carrying this application tag.
	Tag string
	// Action is OffboardSuspend (the default when empty) or OffboardRevoke.
	Action string
	Reason string
	DryRun bool
	// Caller is the identity making the request. An offboarding that would
	// change it (not a dry run) is refused with ErrSelfLockout: an admin
	// identity must not suspend or revoke itself.
	Caller string `json:"-"`
}

// ErrSelfLockout refuses an offboarding that would change the calling
// identity.
var ErrSelfLockout = errors.New("inventory: the offboarding would change the calling identity")

// OffboardItem is one matching identity: its status before and after.
// Changed is false when the identity already had the new status, or was
// revoked (revoking is final).
type OffboardItem struct {
	Client  *identity.Client
	From    identity.Status
	To      identity.Status
	Changed bool
}

// OffboardResult is the plan (dry run) or what was done, in the order the
// store lists clients.
type OffboardResult struct {
	Action string
	DryRun bool
	Items  []OffboardItem
}

// Changed counts the identities whose status changed (or would change).
func (r *OffboardResult) Changed() int {
	n := 0
	for _, it := range r.Items {
		if it.Changed {
			n++
		}
	}
	return n
}

// validate trims req and returns every problem with it.
func (req *OffboardRequest) validate() error {
	var fe []FieldError
	filters := 0
	for _, f := range []struct {
		name string
		v    *string
	}{{FieldOwner, &req.Owner}, {FieldVendor, &req.Vendor}, {FieldEnvironment, &req.Environment}, {FieldPurpose, &req.Purpose}, {FieldTag, &req.Tag}} {
		*f.v = strings.TrimSpace(*f.v)
		if *f.v != "" {
			filters++
		}
		if len(*f.v) > identity.MaxTextLen {
			fe = append(fe, FieldError{Field: f.name, Detail: fmt.Sprintf("is longer than %d bytes", identity.MaxTextLen)})
		}
	}
	if filters == 0 {
		fe = append(fe, FieldError{Field: FieldFilter, Detail: "name at least one of owner, vendor, environment, purpose or tag: offboarding everything is refused"})
	}
	req.Action = strings.TrimSpace(req.Action)
	if req.Action == "" {
		req.Action = OffboardSuspend
	}
	if req.Action != OffboardSuspend && req.Action != OffboardRevoke {
		fe = append(fe, FieldError{Field: FieldAction, Detail: "must be suspend or revoke"})
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if p := reasonProblem(req.Reason); p != "" {
		fe = append(fe, FieldError{Field: FieldReason, Detail: p})
	}
	if len(fe) > 0 {
		return &ValidationError{Fields: fe}
	}
	return nil
}

// filterText names the filter for the admin log, e.g.
// "owner=team-a environment=prod".
func (req *OffboardRequest) filterText() string {
	var parts []string
	for _, f := range []struct{ k, v string }{{FieldOwner, req.Owner}, {FieldVendor, req.Vendor}, {FieldEnvironment, req.Environment}, {FieldPurpose, req.Purpose}, {FieldTag, req.Tag}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, " ")
}

// Offboard suspends or revokes every identity matching req in one store
// transaction, with one admin event per changed identity, and then calls
// OnChange for each (caches drop it; a revocation also revokes its
// workload certificates). Identities already revoked, or already suspended
// when suspending, are reported unchanged. A refused request is a
// *ValidationError; a client changed while this ran is store.ErrStale and
// nothing is written.
func (s *Service) Offboard(ctx context.Context, actor string, req OffboardRequest) (*OffboardResult, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{Owner: req.Owner, Environment: req.Environment})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	to := identity.StatusSuspended
	action := ActionOffboardSuspend
	if req.Action == OffboardRevoke {
		to, action = identity.StatusRevoked, ActionOffboardRevoke
	}
	res := &OffboardResult{Action: req.Action, DryRun: req.DryRun}
	now := s.now()
	var (
		changes []store.StatusChange
		evs     []store.AdminEvent
	)
	for _, c := range cs {
		if req.Vendor != "" && c.Vendor != req.Vendor || req.Purpose != "" && c.Purpose != req.Purpose || req.Tag != "" && !slices.Contains(c.Tags, req.Tag) {
			continue
		}
		it := OffboardItem{Client: c, From: c.Status, To: c.Status}
		if c.Status != identity.StatusRevoked && c.Status != to {
			it.To, it.Changed = to, true
			updated := after(now, c.UpdatedAt)
			changes = append(changes, store.StatusChange{ID: c.ID, PrevUpdatedAt: c.UpdatedAt, Status: to, UpdatedAt: updated})
			ch := map[string]string{"status": string(c.Status) + " -> " + string(to), "filter": req.filterText()}
			if req.Reason != "" {
				ch["reason"] = req.Reason
			}
			evs = append(evs, store.AdminEvent{Time: updated, Actor: actor, Action: action, Target: c.ID, Changes: ch})
		}
		res.Items = append(res.Items, it)
	}
	if len(changes) > MaxOffboard {
		return nil, fieldErr(FieldFilter, fmt.Sprintf("the filter matches %d identities to change, more than %d; narrow it (add environment or purpose)", len(changes), MaxOffboard))
	}
	if req.DryRun || len(changes) == 0 {
		return res, nil
	}
	if req.Caller != "" && slices.ContainsFunc(changes, func(c store.StatusChange) bool { return c.ID == req.Caller }) {
		return nil, fmt.Errorf("%w %s", ErrSelfLockout, req.Caller)
	}
	if err := s.Store.SetClientsStatus(ctx, changes, evs); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	for i := range res.Items {
		it := &res.Items[i]
		if !it.Changed {
			continue
		}
		next := *it.Client
		next.Status, next.UpdatedAt = it.To, after(now, it.Client.UpdatedAt) // as stored
		it.Client = &next
		s.changed(next.ID)
	}
	return res, nil
}
