package adminapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/review"
)

// Access reviews (package review):
//
//	GET  /admin/v1/reviews?state=due|overdue|lapsed|current|all&environment=&owner=
//	POST /admin/v1/clients/{id}/attest
//
// Without state, the listing holds what needs attention: due, overdue and
// lapsed reviews. A refused attestation is a 400 (bad input) or 422
// problem whose code says why (not_owner, owner_departed, not_confirmed,
// not_reviewed) and whose detail says what to do instead.

// Reviews is the access-review service.
type Reviews interface {
	List(ctx context.Context, f review.Filter) ([]review.Item, error)
	Assess(ctx context.Context, cs []*identity.Client, now time.Time) (review.Assessment, error)
	Orphans(ctx context.Context, cs []*identity.Client) (map[string]bool, error)
	Attest(ctx context.Context, actor, id string, a review.Attestation) (*review.Item, error)
}

// ReviewItem is one identity's review schedule.
type ReviewItem struct {
	ClientID    string          `json:"client_id"`
	Name        string          `json:"name"`
	Owner       string          `json:"owner"`
	Environment string          `json:"environment"`
	Status      identity.Status `json:"status"`
	State       review.State    `json:"state"`
	// Basis is what the schedule counts from: created, attested or
	// transferred (a transfer makes the review due at once).
	Basis    string    `json:"basis"`
	BasisAt  time.Time `json:"basis_at"`
	DueAt    time.Time `json:"due_at"`
	LapsesAt time.Time `json:"lapses_at"`
	Orphaned bool      `json:"orphaned"`
	// LastAttestedAt and LastAttestedBy are absent for an identity never
	// attested.
	LastAttestedAt *time.Time `json:"last_attested_at,omitempty"`
	LastAttestedBy string     `json:"last_attested_by,omitempty"`
}

// ReviewList answers GET /reviews: the matching identities and how many
// are in each state.
type ReviewList struct {
	Reviews []ReviewItem   `json:"reviews"`
	Counts  map[string]int `json:"counts"`
}

// AttestRequest is the body of POST /clients/{id}/attest. Every answer
// must be true for the attestation to be recorded.
type AttestRequest struct {
	By          string `json:"by"`
	StillNeeded bool   `json:"still_needed"`
	PurposeOK   bool   `json:"purpose_ok"`
	ScopesOK    bool   `json:"scopes_ok"`
	Note        string `json:"note,omitempty"`
}

var reviewParams = []string{"state", "environment", "owner"}

// ParseReviewQuery reads the query of GET /admin/v1/reviews: state (due,
// overdue, lapsed, current or all; none: what needs attention), environment
// and owner. The CLI calls it to refuse bad flags before any request, in
// the same words.
func ParseReviewQuery(rawQuery string) (review.Filter, error) {
	p, err := newQueryParser(rawQuery, reviewParams)
	if err != nil {
		return review.Filter{}, err
	}
	f := review.Filter{State: p.get("state"), Environment: p.get("environment"), Owner: p.get("owner")}
	switch review.State(f.State) {
	case "", review.StateDue, review.StateOverdue, review.StateLapsed, review.StateCurrent, review.FilterAll:
	default:
		p.bad("state", "must be due, overdue, lapsed, current or all, not %q", f.State)
	}
	if len(f.Environment) > identity.MaxTextLen {
		p.bad("environment", "is longer than %d bytes", identity.MaxTextLen)
	}
	if len(f.Owner) > identity.MaxTextLen {
		p.bad("owner", "is longer than %d bytes", identity.MaxTextLen)
	}
	return f, p.done()
}

func reviewItemOf(it review.Item) ReviewItem {
	v := ReviewItem{
		ClientID: it.Client.ID, Name: it.Client.Name, Owner: it.Client.Owner, Environment: it.Client.Environment,
		Status: it.Client.Status, State: it.State, Basis: it.Basis, BasisAt: it.BasisAt, DueAt: it.DueAt, LapsesAt: it.LapsesAt,
		Orphaned: it.Orphaned,
	}
	if la := it.LastAttestation; la != nil {
		at := la.Time
		v.LastAttestedAt, v.LastAttestedBy = &at, la.Owner
	}
	return v
}

func (a *API) reviewsOrFail() (Reviews, error) {
	if a.Reviews == nil {
		return nil, problem.New(http.StatusNotImplemented, "not-implemented", "Not implemented", "this keybound does not run access reviews")
	}
	return a.Reviews, nil
}

func (a *API) listReviews(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	rv, err := a.reviewsOrFail()
	if err != nil {
		return err
	}
	f, err := ParseReviewQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	items, err := rv.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := ReviewList{Reviews: make([]ReviewItem, 0, len(items)), Counts: map[string]int{}}
	for _, it := range items {
		out.Reviews = append(out.Reviews, reviewItemOf(it))
		out.Counts[string(it.State)]++
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) attestClient(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	rv, err := a.reviewsOrFail()
	if err != nil {
		return err
	}
	var req AttestRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	it, err := rv.Attest(r.Context(), actor(caller), r.PathValue("id"), review.Attestation(req))
	var re *review.Error
	if errors.As(err, &re) {
		status, typ := http.StatusUnprocessableEntity, strings.ReplaceAll(re.Code, "_", "-")
		if re.Code == review.CodeInvalid {
			status, typ = http.StatusBadRequest, "invalid-attestation"
		}
		pd := problem.New(status, typ, "Attestation refused", re.Detail)
		pd.Code = re.Code
		if re.Field != "" {
			pd.Errors = []problem.FieldError{{Field: re.Field, Detail: re.Detail}}
		}
		return pd
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, reviewItemOf(*it))
}

// reviewInput adds the overdue reviews and orphaned identities to a
// posture report's input; without a review service both stay not tracked.
func (a *API) reviewInput(ctx context.Context, in *posture.Input) error {
	if a.Reviews == nil {
		return nil
	}
	as, err := a.Reviews.Assess(ctx, in.Clients, in.Now)
	if err != nil {
		return err
	}
	in.ReviewsTracked, in.OverdueReviews = true, map[string]bool{}
	for _, it := range as.Items {
		if it.State == review.StateOverdue || it.State == review.StateLapsed {
			in.OverdueReviews[it.Client.ID] = true
		}
	}
	in.Orphaned, in.OwnersTracked = as.Orphaned, true
	return nil
}

// markOrphaned sets Orphaned on the views of identities whose owner has
// departed.
func (a *API) markOrphaned(ctx context.Context, cs []*identity.Client, views []ClientView) error {
	if a.Reviews == nil {
		return nil
	}
	orphans, err := a.Reviews.Orphans(ctx, cs)
	if err != nil {
		return err
	}
	for i := range views {
		views[i].Orphaned = orphans[views[i].ClientID]
	}
	return nil
}
