package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// The owner directory: the people and teams accountable for identities.
// An owner is active or departed; an identity whose owner departed is
// orphaned until its ownership is transferred. Create and Import refuse a
// departed owner, and, with RequireKnownOwners, one not in the directory;
// a transfer refuses the same. Owner names are compared exactly after
// trimming, as registration stores them.
//
// A transfer moves identities to a new owner in one store transaction with
// a client.transfer admin event and a transfer review for each: the new
// owner has not attested the identity, so its access review falls due at
// the transfer (package review) and the grace period before auto-suspension
// starts then. Revoked identities keep their owner: revoking is final and
// the record says who owned it.

// OwnerStore is the part of the store the owner directory uses.
type OwnerStore interface {
	CreateOwner(ctx context.Context, o store.Owner, ev store.AdminEvent) error
	GetOwner(ctx context.Context, name string) (store.Owner, error)
	ListOwners(ctx context.Context) ([]store.Owner, error)
	UpdateOwner(ctx context.Context, o store.Owner, prevUpdatedAt time.Time, ev store.AdminEvent) error
	SetClientsOwner(ctx context.Context, cs []store.OwnerChange, rs []store.Review, evs []store.AdminEvent) error
}

// Admin event actions of the owner directory.
const (
	ActionOwnerAdd    = "owner.add"
	ActionOwnerDepart = "owner.depart"
	ActionTransfer    = "client.transfer"
)

// Owner request field names, as the admin API names them.
const (
	FieldContact = "contact"
	FieldFrom    = "from"
	FieldTo      = "to"
	FieldClient  = "client_id"
)

// MaxTransfer bounds the identities one transfer moves: one transaction.
const MaxTransfer = MaxOffboard

// ErrNoDirectory is returned by owner operations when the service has no
// owner store.
var ErrNoDirectory = errors.New("inventory: no owner directory is configured")

// ownerName trims name and reports what is wrong with it, "" if nothing.
func ownerName(name *string) string {
	*name = strings.TrimSpace(*name)
	return textProblem(*name, true)
}

// ownerProblem says why owner may not own an identity, "" when it may:
// a departed owner never may; one not in the directory may not when
// RequireKnownOwners is set. Without an owner store every owner may.
func (s *Service) ownerProblem(ctx context.Context, owner string) (string, error) {
	if s.Owners == nil {
		return "", nil
	}
	o, err := s.Owners.GetOwner(ctx, owner)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if s.RequireKnownOwners {
			return fmt.Sprintf("%q is not in the owner directory (names are compared exactly); add it with `keybound owner add` or use a listed owner", owner), nil
		}
		return "", nil
	case err != nil:
		return "", fmt.Errorf("inventory: %w", err)
	case o.Status == store.OwnerDeparted:
		return fmt.Sprintf("%q has departed (%s); choose a current owner", owner, o.DepartedAt.Format(time.DateOnly)), nil
	}
	return "", nil
}

// cachedOwnerProblem is ownerProblem remembering each owner's answer: an
// import names the same few owners on thousands of rows.
func (s *Service) cachedOwnerProblem(ctx context.Context) func(owner string) (string, error) {
	seen := map[string]string{}
	return func(owner string) (string, error) {
		if p, ok := seen[owner]; ok {
			return p, nil
		}
		p, err := s.ownerProblem(ctx, owner)
		if err == nil {
			seen[owner] = p
		}
		return p, err
	}
}

// checkOwner is ownerProblem as a *ValidationError on field.
func (s *Service) checkOwner(ctx context.Context, field, owner string) error {
	p, err := s.ownerProblem(ctx, owner)
	if err != nil {
		return err
	}
	if p != "" {
		return fieldErr(field, p)
	}
	return nil
}

// OwnerEntry is one owner with the identities it holds. Unregistered
// entries are owners named by identities but absent from the directory.
type OwnerEntry struct {
	store.Owner
	Registered bool `json:"registered"`
	// Identities counts the owner's identities that are not revoked.
	Identities int `json:"identities"`
}

// AddOwner adds an active owner to the directory with an owner.add event.
// A name already there is store.ErrConflict.
func (s *Service) AddOwner(ctx context.Context, actor, name, contact string) (store.Owner, error) {
	if s.Owners == nil {
		return store.Owner{}, ErrNoDirectory
	}
	var fe []FieldError
	if p := ownerName(&name); p != "" {
		fe = append(fe, FieldError{Field: "name", Detail: p})
	}
	contact = strings.TrimSpace(contact)
	if contact != "" {
		if a, err := mail.ParseAddress(contact); err != nil || a.Address != contact || len(contact) > identity.MaxTextLen {
			fe = append(fe, FieldError{Field: FieldContact, Detail: "must be one e-mail address such as team@example.com"})
		}
	}
	if len(fe) > 0 {
		return store.Owner{}, &ValidationError{Fields: fe}
	}
	now := s.now()
	o := store.Owner{Name: name, Contact: contact, Status: store.OwnerActive, CreatedAt: now, UpdatedAt: now}
	changes := map[string]string{"status": string(store.OwnerActive)}
	if contact != "" {
		changes[FieldContact] = contact
	}
	if err := s.Owners.CreateOwner(ctx, o, store.AdminEvent{Time: now, Actor: actor, Action: ActionOwnerAdd, Target: "owner:" + name, Changes: changes}); err != nil {
		return store.Owner{}, fmt.Errorf("inventory: %w", err)
	}
	return o, nil
}

// ListOwners lists the directory, then the owners identities name that are
// not in it, each with its count of identities that are not revoked.
func (s *Service) ListOwners(ctx context.Context) ([]OwnerEntry, error) {
	if s.Owners == nil {
		return nil, ErrNoDirectory
	}
	os, err := s.Owners.ListOwners(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	count := map[string]int{}
	var unregistered []string // in inventory order
	for _, c := range cs {
		if c.Status == identity.StatusRevoked || c.Owner == "" {
			continue
		}
		if _, seen := count[c.Owner]; !seen {
			unregistered = append(unregistered, c.Owner)
		}
		count[c.Owner]++
	}
	out := make([]OwnerEntry, 0, len(os))
	known := map[string]bool{}
	for _, o := range os {
		known[o.Name] = true
		out = append(out, OwnerEntry{Owner: o, Registered: true, Identities: count[o.Name]})
	}
	for _, name := range unregistered {
		if !known[name] {
			out = append(out, OwnerEntry{Owner: store.Owner{Name: name, Status: store.OwnerActive}, Identities: count[name]})
		}
	}
	return out, nil
}

// Departure is the result of DepartOwner: the owner as stored and the
// identities (not revoked) that are now orphaned.
type Departure struct {
	Owner    store.Owner
	Orphaned []*identity.Client
}

// DepartOwner marks an owner departed with an owner.depart event: its
// identities become orphaned. An owner named by identities but not yet in
// the directory is added as departed. A name neither in the directory nor
// on any identity is store.ErrNotFound; an owner already departed is
// ErrTransition.
func (s *Service) DepartOwner(ctx context.Context, actor, name, reason string) (*Departure, error) {
	if s.Owners == nil {
		return nil, ErrNoDirectory
	}
	var fe []FieldError
	if p := ownerName(&name); p != "" {
		fe = append(fe, FieldError{Field: "name", Detail: p})
	}
	reason = strings.TrimSpace(reason)
	if p := reasonProblem(reason); p != "" {
		fe = append(fe, FieldError{Field: FieldReason, Detail: p})
	}
	if len(fe) > 0 {
		return nil, &ValidationError{Fields: fe}
	}
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{Owner: name})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var orphaned []*identity.Client
	for _, c := range cs {
		if c.Status != identity.StatusRevoked {
			orphaned = append(orphaned, c)
		}
	}
	now := s.now()
	changes := map[string]string{"status": "active -> departed", "orphaned": fmt.Sprint(len(orphaned))}
	if reason != "" {
		changes[FieldReason] = reason
	}
	ev := store.AdminEvent{Time: now, Actor: actor, Action: ActionOwnerDepart, Target: "owner:" + name, Changes: changes}
	o, err := s.Owners.GetOwner(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if len(cs) == 0 {
			return nil, fmt.Errorf("inventory: owner %q is neither in the owner directory nor named by any identity: %w", name, store.ErrNotFound)
		}
		o = store.Owner{Name: name, Status: store.OwnerDeparted, CreatedAt: now, UpdatedAt: now, DepartedAt: now}
		err = s.Owners.CreateOwner(ctx, o, ev)
	case err != nil:
	case o.Status == store.OwnerDeparted:
		return nil, fmt.Errorf("%w: owner %s departed already on %s", ErrTransition, name, o.DepartedAt.Format(time.DateOnly))
	default:
		prev := o.UpdatedAt
		o.Status, o.DepartedAt, o.UpdatedAt = store.OwnerDeparted, now, after(now, prev)
		err = s.Owners.UpdateOwner(ctx, o, prev, ev)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return &Departure{Owner: o, Orphaned: orphaned}, nil
}

// TransferRequest moves identities to a new owner: every identity of From
// (not revoked), or the one identity ClientID. Exactly one of From and
// ClientID is set.
type TransferRequest struct {
	From     string
	ClientID string
	To       string
	Reason   string
	DryRun   bool
}

// TransferResult lists the identities moved (or, in a dry run, that would
// be), in the order the store lists them.
type TransferResult struct {
	From    string
	To      string
	DryRun  bool
	Clients []*identity.Client
}

// Transfer moves identities to req.To in one store transaction: each with
// a client.transfer admin event and a transfer review, then OnChange. A
// departed new owner is refused, and so is an unknown one when
// RequireKnownOwners is set. Bad input is a *ValidationError; a client
// changed while this ran is store.ErrStale and nothing is written.
func (s *Service) Transfer(ctx context.Context, actor string, req TransferRequest) (*TransferResult, error) {
	if s.Owners == nil {
		return nil, ErrNoDirectory
	}
	var fe []FieldError
	if p := ownerName(&req.To); p != "" {
		fe = append(fe, FieldError{Field: FieldTo, Detail: p})
	}
	req.ClientID = strings.TrimSpace(req.ClientID)
	req.From = strings.TrimSpace(req.From)
	switch {
	case req.ClientID == "" && req.From == "":
		fe = append(fe, FieldError{Field: FieldFrom, Detail: "name the owner whose identities move (or one client id)"})
	case req.ClientID != "" && req.From != "":
		fe = append(fe, FieldError{Field: FieldFrom, Detail: "give an owner or a client id, not both"})
	case req.From != "":
		if p := ownerName(&req.From); p != "" {
			fe = append(fe, FieldError{Field: FieldFrom, Detail: p})
		} else if req.From == req.To {
			fe = append(fe, FieldError{Field: FieldTo, Detail: "is the owner the identities have already"})
		}
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if p := reasonProblem(req.Reason); p != "" {
		fe = append(fe, FieldError{Field: FieldReason, Detail: p})
	}
	if len(fe) > 0 {
		return nil, &ValidationError{Fields: fe}
	}
	if err := s.checkOwner(ctx, FieldTo, req.To); err != nil {
		return nil, err
	}
	var cs []*identity.Client
	if req.ClientID != "" {
		c, err := s.Store.GetClient(ctx, req.ClientID)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		switch {
		case c.Status == identity.StatusRevoked:
			return nil, fmt.Errorf("%w: client %s is revoked; a revoked identity keeps the owner it had", ErrTransition, c.ID)
		case c.Owner == req.To:
			return nil, fieldErr(FieldTo, "is the owner the identity has already")
		}
		req.From, cs = c.Owner, []*identity.Client{c}
	} else {
		all, err := s.Store.ListClients(ctx, store.ClientFilter{Owner: req.From})
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		for _, c := range all {
			if c.Status != identity.StatusRevoked {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			return nil, fieldErr(FieldFrom, fmt.Sprintf("%q owns no identity that is not revoked (names are compared exactly)", req.From))
		}
		if len(cs) > MaxTransfer {
			return nil, fieldErr(FieldFrom, fmt.Sprintf("owns %d identities, more than %d move in one transfer", len(cs), MaxTransfer))
		}
	}
	res := &TransferResult{From: req.From, To: req.To, DryRun: req.DryRun, Clients: cs}
	if req.DryRun {
		return res, nil
	}
	now := s.now()
	changes := make([]store.OwnerChange, 0, len(cs))
	reviews := make([]store.Review, 0, len(cs))
	evs := make([]store.AdminEvent, 0, len(cs))
	moved := make([]*identity.Client, 0, len(cs))
	for _, c := range cs {
		updated := after(now, c.UpdatedAt)
		changes = append(changes, store.OwnerChange{ID: c.ID, PrevUpdatedAt: c.UpdatedAt, Owner: req.To, UpdatedAt: updated})
		reviews = append(reviews, store.Review{ClientID: c.ID, Kind: store.ReviewTransfer, Time: updated, Actor: actor, Owner: req.To, Note: req.Reason})
		ch := map[string]string{"owner": c.Owner + " -> " + req.To}
		if req.Reason != "" {
			ch[FieldReason] = req.Reason
		}
		evs = append(evs, store.AdminEvent{Time: updated, Actor: actor, Action: ActionTransfer, Target: c.ID, Changes: ch})
		next := *c
		next.Owner, next.UpdatedAt = req.To, updated
		moved = append(moved, &next)
	}
	if err := s.Owners.SetClientsOwner(ctx, changes, reviews, evs); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	res.Clients = moved
	for _, c := range moved {
		s.changed(c.ID)
	}
	return res, nil
}
