// Package review runs access reviews of machine identities: each identity
// must be re-attested by its owner on a schedule set per environment, or
// it falls due, then overdue, then (past a grace period) lapsed, and a
// lapsed identity can be suspended automatically.
//
// Why a package apart from inventory? Reviews read the owner directory and
// the review history and decide a schedule; they change an identity only by
// asking the inventory to suspend it, the same way an operator would, so
// caches are invalidated and the admin log says why.
//
// The schedule. An identity's review is due at base + Interval(environment),
// where base is its latest attestation, or its latest ownership transfer
// when that is newer (the new owner has not attested: the review falls due
// at the transfer), or its creation. It is:
//   - current until DueLead before that (DueLead is 14 days, at most half
//     the interval),
//   - due from then until the due time,
//   - overdue from the due time until due + Grace,
//   - lapsed after that; with AutoSuspend the sweep suspends it.
//
// Revoked and expired identities are not reviewed: they cannot be used.
//
// An attestation is refused unless it is made by the identity's current
// owner (exact match after trimming), the owner has not departed, and the
// owner confirms all three questions. An owner who answers no is told what
// to do instead (revoke the identity, or downscope it) rather than having
// that done by a review: a review records a judgement, it never changes
// what an identity may do.
package review

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// State is where an identity stands in its review schedule.
type State string

const (
	StateCurrent State = "current"
	StateDue     State = "due"
	StateOverdue State = "overdue"
	StateLapsed  State = "lapsed"
)

// DueLead is how long before its due time a review is listed as due. It is
// capped at half the interval, so short intervals are not always due.
const DueLead = 14 * 24 * time.Hour

// MaxNoteLen bounds an attestation's note.
const MaxNoteLen = identity.MaxTextLen

// Actor is the admin-log actor of reviews' own actions (auto-suspension).
const Actor = "keybound-governance"

// ActionAttest is the admin event action of an attestation.
const ActionAttest = "client.attest"

// Policy is the review schedule an operator configures.
type Policy struct {
	// Intervals maps an environment to its review interval; "default"
	// applies to environments not named.
	Intervals map[string]time.Duration
	// Grace is how long a review may be overdue before it lapses.
	Grace time.Duration
	// AutoSuspend suspends identities whose review lapsed.
	AutoSuspend bool
}

// Interval returns the review interval of an environment. Zero means the
// environment is not reviewed (no interval and no default).
func (p Policy) Interval(environment string) time.Duration {
	if d, ok := p.Intervals[environment]; ok {
		return d
	}
	return p.Intervals["default"]
}

// Schedule is one identity's review schedule at an instant.
type Schedule struct {
	// Basis says what the schedule counts from: created, attested or
	// transferred; BasisAt is when that happened.
	Basis    string    `json:"basis"`
	BasisAt  time.Time `json:"basis_at"`
	DueAt    time.Time `json:"due_at"`
	LapsesAt time.Time `json:"lapses_at"`
	State    State     `json:"state"`
}

// Bases of a schedule.
const (
	BasisCreated     = "created"
	BasisAttested    = "attested"
	BasisTransferred = "transferred"
)

// ScheduleOf computes c's schedule at now from its latest attestation and
// latest transfer (either may be nil). ok is false when c is not reviewed
// (revoked, expired, or its environment has no interval).
func (p Policy) ScheduleOf(c *identity.Client, attested, transferred *store.Review, now time.Time) (Schedule, bool) {
	interval := p.Interval(c.Environment)
	if c.Status == identity.StatusRevoked || interval <= 0 || (!c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)) {
		return Schedule{}, false
	}
	s := Schedule{Basis: BasisCreated, BasisAt: c.CreatedAt}
	if attested != nil {
		s.Basis, s.BasisAt = BasisAttested, attested.Time
	}
	// The newer record wins (by append order: a clock step back does not
	// reorder them).
	if transferred != nil && (attested == nil || transferred.ID > attested.ID) {
		s.Basis, s.BasisAt = BasisTransferred, transferred.Time
		s.DueAt = transferred.Time
	} else {
		s.DueAt = s.BasisAt.Add(interval)
	}
	s.LapsesAt = s.DueAt.Add(p.Grace)
	lead := min(DueLead, interval/2)
	switch {
	case !now.Before(s.LapsesAt):
		s.State = StateLapsed
	case !now.Before(s.DueAt):
		s.State = StateOverdue
	case !now.Before(s.DueAt.Add(-lead)):
		s.State = StateDue
	default:
		s.State = StateCurrent
	}
	return s, true
}

// Store is the part of the storage contract reviews use.
type Store interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
	ListClients(ctx context.Context, f store.ClientFilter) ([]*identity.Client, error)
	ListOwners(ctx context.Context) ([]store.Owner, error)
	GetOwner(ctx context.Context, name string) (store.Owner, error)
	LatestReviews(ctx context.Context) ([]store.Review, error)
	// ListReviews is one identity's history, newest first: the sweep reads
	// it again just before suspending the identity.
	ListReviews(ctx context.Context, clientID string, limit int) ([]store.Review, error)
	AppendReview(ctx context.Context, r store.Review, clientUpdatedAt time.Time, ev store.AdminEvent) error
}

// Suspender suspends an identity through the inventory (caches dropped,
// admin event written).
type Suspender interface {
	Suspend(ctx context.Context, actor, id, reason string) (*identity.Client, error)
}

// Service runs reviews. Now is injectable; nil means time.Now.
type Service struct {
	Store     Store
	Inventory Suspender
	Policy    Policy
	// Exempt, when set, names identities auto-suspension must leave alone
	// (the app exempts every identity holding keybound:admin: suspending
	// one could lock operators out). They are still listed, and can still
	// lapse.
	Exempt func(*identity.Client) bool
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Item is one reviewed identity: its schedule, its last attestation (nil
// if never attested) and whether its owner has departed.
type Item struct {
	Client *identity.Client
	Schedule
	LastAttestation *store.Review
	Orphaned        bool
}

// Filter narrows List. State "" lists what needs attention (due, overdue
// and lapsed); "overdue" includes lapsed (a lapsed review is overdue past
// its grace); "all" includes current ones.
type Filter struct {
	State       string
	Environment string
	Owner       string
}

// Filter states accepted besides the State values.
const (
	FilterAll = "all"
)

// ErrBadFilter is returned for a state filter List does not know.
var ErrBadFilter = errors.New("review: state must be due, overdue, lapsed, current or all")

func (f Filter) match(it Item) bool {
	switch State(f.State) {
	case "":
		return it.State != StateCurrent
	case StateOverdue:
		return it.State == StateOverdue || it.State == StateLapsed
	case FilterAll:
		return true
	}
	return it.State == State(f.State)
}

// List returns the reviewed identities matching f, in inventory order.
func (s *Service) List(ctx context.Context, f Filter) ([]Item, error) {
	switch State(f.State) {
	case "", StateCurrent, StateDue, StateOverdue, StateLapsed, FilterAll:
	default:
		return nil, ErrBadFilter
	}
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{Environment: f.Environment, Owner: f.Owner})
	if err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	all, err := s.Evaluate(ctx, cs, s.now())
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, it := range all {
		if f.match(it) {
			out = append(out, it)
		}
	}
	return out, nil
}

// Evaluate computes the schedule of each reviewed identity of cs at now.
func (s *Service) Evaluate(ctx context.Context, cs []*identity.Client, now time.Time) ([]Item, error) {
	a, err := s.Assess(ctx, cs, now)
	return a.Items, err
}

// Assessment is what the posture report reads from the review service.
type Assessment struct {
	// Items is the schedule of each reviewed identity, as Evaluate gives.
	Items []Item
	// Orphaned holds the ids of the identities of cs that are orphaned, as
	// Orphans gives.
	Orphaned map[string]bool
}

// Assess evaluates cs at now and finds the orphaned identities among them,
// reading the review history and the owner directory once: the posture
// report calls it with the inventory it already holds.
func (s *Service) Assess(ctx context.Context, cs []*identity.Client, now time.Time) (Assessment, error) {
	latest, err := s.Store.LatestReviews(ctx)
	if err != nil {
		return Assessment{}, fmt.Errorf("review: %w", err)
	}
	type last struct{ attest, transfer *store.Review }
	by := make(map[string]*last, len(latest))
	for i := range latest {
		r := &latest[i]
		l := by[r.ClientID]
		if l == nil {
			l = &last{}
			by[r.ClientID] = l
		}
		switch r.Kind {
		case store.ReviewAttest:
			l.attest = r
		case store.ReviewTransfer:
			l.transfer = r
		}
	}
	departed, err := s.departed(ctx)
	if err != nil {
		return Assessment{}, err
	}
	out := Assessment{Items: make([]Item, 0, len(cs)), Orphaned: orphans(cs, departed)}
	for _, c := range cs {
		l := by[c.ID]
		if l == nil {
			l = &last{}
		}
		sch, ok := s.Policy.ScheduleOf(c, l.attest, l.transfer, now)
		if !ok {
			continue
		}
		out.Items = append(out.Items, Item{Client: c, Schedule: sch, LastAttestation: l.attest, Orphaned: departed[c.Owner]})
	}
	return out, nil
}

// Orphans reports which of cs are orphaned: not revoked, with an owner who
// departed.
func (s *Service) Orphans(ctx context.Context, cs []*identity.Client) (map[string]bool, error) {
	departed, err := s.departed(ctx)
	if err != nil {
		return nil, err
	}
	return orphans(cs, departed), nil
}

// orphans picks from cs the identities not revoked whose owner is in
// departed.
func orphans(cs []*identity.Client, departed map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, c := range cs {
		if c.Status != identity.StatusRevoked && departed[c.Owner] {
			out[c.ID] = true
		}
	}
	return out
}

func (s *Service) departed(ctx context.Context) (map[string]bool, error) {
	os, err := s.Store.ListOwners(ctx)
	if err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	out := map[string]bool{}
	for _, o := range os {
		if o.Status == store.OwnerDeparted {
			out[o.Name] = true
		}
	}
	return out, nil
}

// Attestation is an owner's answer to a review.
type Attestation struct {
	// By is who attests; it must be the identity's owner.
	By          string
	StillNeeded bool
	PurposeOK   bool
	ScopesOK    bool
	Note        string
}

// Error codes of a refused attestation.
const (
	CodeInvalid       = "invalid"
	CodeNotOwner      = "not_owner"
	CodeOwnerDeparted = "owner_departed"
	CodeNotConfirmed  = "not_confirmed"
	CodeNotReviewed   = "not_reviewed"
)

// Error is a refused attestation: Code says why (one of the Code
// constants), Field names the input at fault when there is one, Detail
// says what to do instead.
type Error struct {
	Code   string
	Field  string
	Detail string
}

func (e *Error) Error() string { return "review: attestation refused: " + e.Detail }

// Attest records a's attestation of identity id with an admin event, in
// one store transaction that fails with store.ErrStale if the identity
// changed (its owner, say) since it was read. It returns the identity's
// new schedule. A suspended identity can be attested (and then resumed by
// an operator); a revoked or expired one cannot.
func (s *Service) Attest(ctx context.Context, actor, id string, a Attestation) (*Item, error) {
	a.By, a.Note = strings.TrimSpace(a.By), strings.TrimSpace(a.Note)
	switch {
	case a.By == "":
		return nil, &Error{Code: CodeInvalid, Field: "by", Detail: "say who attests: the identity's owner"}
	case len(a.By) > identity.MaxTextLen:
		return nil, &Error{Code: CodeInvalid, Field: "by", Detail: fmt.Sprintf("by is longer than %d bytes", identity.MaxTextLen)}
	case len(a.Note) > MaxNoteLen:
		return nil, &Error{Code: CodeInvalid, Field: "note", Detail: fmt.Sprintf("note is longer than %d bytes", MaxNoteLen)}
	case !utf8.ValidString(a.Note) || strings.ContainsFunc(a.Note, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return nil, &Error{Code: CodeInvalid, Field: "note", Detail: "note must be printable UTF-8 text on one line"}
	}
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	now := s.now()
	owner := strings.TrimSpace(c.Owner)
	switch {
	case c.Status == identity.StatusRevoked:
		return nil, &Error{Code: CodeNotReviewed, Detail: fmt.Sprintf("%s is revoked; it needs no review", c.ID)}
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt):
		return nil, &Error{Code: CodeNotReviewed, Detail: fmt.Sprintf("%s expired on %s; register a new identity instead of attesting this one", c.ID, c.ExpiresAt.Format(time.DateOnly))}
	case a.By != owner:
		return nil, &Error{Code: CodeNotOwner, Field: "by", Detail: fmt.Sprintf("%q is not the owner of %s (its owner is %q); only the owner may attest: ask them, or transfer the identity first with `keybound client transfer %s --to NEW-OWNER`", a.By, c.ID, owner, c.ID)}
	}
	o, err := s.Store.GetOwner(ctx, owner)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("review: %w", err)
	case o.Status == store.OwnerDeparted:
		return nil, &Error{Code: CodeOwnerDeparted, Field: "by", Detail: fmt.Sprintf("owner %q has departed, so %s is orphaned; transfer it to a current owner with `keybound client transfer %s --to NEW-OWNER`, who then attests", owner, c.ID, c.ID)}
	}
	var no []string
	if !a.StillNeeded {
		no = append(no, "the identity is still needed")
	}
	if !a.PurposeOK {
		no = append(no, "its purpose is still right")
	}
	if !a.ScopesOK {
		no = append(no, "its scopes are still needed")
	}
	if len(no) > 0 {
		todo := "revoke it with `keybound client revoke " + c.ID + "`"
		if a.StillNeeded && a.PurposeOK {
			todo = "remove the scopes it no longer needs with `keybound client downscope " + c.ID + "`, then attest again"
		} else if a.StillNeeded {
			todo = "register an identity for the right purpose and revoke this one, or revoke it with `keybound client revoke " + c.ID + "`"
		}
		return nil, &Error{Code: CodeNotConfirmed, Detail: "the owner did not confirm that " + strings.Join(no, ", ") + "; nothing was recorded: " + todo}
	}
	r := store.Review{ClientID: c.ID, Kind: store.ReviewAttest, Time: now, Actor: actor, Owner: owner,
		StillNeeded: true, PurposeOK: true, ScopesOK: true, Note: a.Note}
	sch, _ := s.Policy.ScheduleOf(c, &r, nil, now)
	changes := map[string]string{"owner": owner, "still_needed": "yes", "purpose_ok": "yes", "scopes_ok": "yes", "next_due": sch.DueAt.Format(time.RFC3339)}
	if a.Note != "" {
		changes["note"] = a.Note
	}
	ev := store.AdminEvent{Time: now, Actor: actor, Action: ActionAttest, Target: c.ID, Changes: changes}
	if err := s.Store.AppendReview(ctx, r, c.UpdatedAt, ev); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	return &Item{Client: c, Schedule: sch, LastAttestation: &r}, nil
}

// Sweep suspends, when AutoSuspend is on, every active identity whose
// review lapsed at now, through the inventory. It is idempotent: a
// suspended identity is left alone, and one attested since is current
// again. It returns the identities it suspended; a failure to suspend one
// does not stop the others and is returned joined.
//
// The inventory read at the start only picks candidates: each is read
// again just before it is suspended (suspendLapsed), because its owner may
// attest while the sweep works through the others, and an attestation does
// not change the identity's registration, so the inventory's own
// concurrency check would not notice it. Sweeps running at once, on
// several nodes, suspend each identity once and report no failure.
func (s *Service) Sweep(ctx context.Context, now time.Time) ([]string, error) {
	if !s.Policy.AutoSuspend {
		return nil, nil
	}
	now = now.UTC()
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{Status: identity.StatusActive})
	if err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	items, err := s.Evaluate(ctx, cs, now)
	if err != nil {
		return nil, err
	}
	var (
		done []string
		errs []error
	)
	for _, it := range items {
		if it.State != StateLapsed || !s.suspendable(it.Client) {
			continue
		}
		suspended, err := s.suspendLapsed(ctx, it.Client.ID, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("review: suspend %s: %w", it.Client.ID, err))
			continue
		}
		if suspended {
			done = append(done, it.Client.ID)
		}
	}
	slices.Sort(done)
	return done, errors.Join(errs...)
}

// maxSuspendAttempts bounds how often suspendLapsed tries again when the
// identity changes between the inventory's read and its write.
const maxSuspendAttempts = 3

// suspendable reports whether auto-suspension may act on c at all.
func (s *Service) suspendable(c *identity.Client) bool {
	return c.Status == identity.StatusActive && (s.Exempt == nil || !s.Exempt(c))
}

// suspendLapsed suspends identity id if, read again now, it is still
// active, not exempt and lapsed at now, and reports whether it did.
//
// Finding it no longer so is not a failure: its owner attested it, or
// another node's sweep (or an operator) suspended or revoked it first. A
// suspension that loses a race to another write (store.ErrStale) is
// decided again from a fresh read; one refused for another reason is a
// failure only while the identity still reads as active and lapsed.
func (s *Service) suspendLapsed(ctx context.Context, id string, now time.Time) (bool, error) {
	for attempt := 1; ; attempt++ {
		sch, lapsed, err := s.lapsed(ctx, id, now)
		if err != nil || !lapsed {
			return false, err
		}
		reason := fmt.Sprintf("access review overdue since %s and not attested within the grace period (ended %s): the owner attests with `keybound review attest`, then an operator resumes it",
			sch.DueAt.Format(time.RFC3339), sch.LapsesAt.Format(time.RFC3339))
		_, err = s.Inventory.Suspend(ctx, Actor, id, reason)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, store.ErrStale) && attempt < maxSuspendAttempts:
			continue
		}
		// Refused, say with inventory.ErrTransition because another
		// sweep suspended it between the read above and the inventory's.
		if _, lapsed, rerr := s.lapsed(ctx, id, now); rerr == nil && !lapsed {
			return false, nil
		}
		return false, err
	}
}

// lapsed reads identity id and its latest reviews from the store, not
// from anything read earlier, and reports whether auto-suspension should
// act on it at now, with its schedule. An identity gone from the store
// has nothing to suspend.
func (s *Service) lapsed(ctx context.Context, id string, now time.Time) (Schedule, bool, error) {
	c, err := s.Store.GetClient(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Schedule{}, false, nil
	case err != nil:
		return Schedule{}, false, err
	case !s.suspendable(c):
		return Schedule{}, false, nil
	}
	rs, err := s.Store.ListReviews(ctx, id, 0)
	if err != nil {
		return Schedule{}, false, err
	}
	var attested, transferred *store.Review
	for i := range rs { // newest first: the first of each kind is its latest
		switch r := &rs[i]; {
		case r.Kind == store.ReviewAttest && attested == nil:
			attested = r
		case r.Kind == store.ReviewTransfer && transferred == nil:
			transferred = r
		}
	}
	sch, ok := s.Policy.ScheduleOf(c, attested, transferred, now)
	return sch, ok && sch.State == StateLapsed, nil
}
