package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// PostureQuery is a parsed posture report request.
type PostureQuery struct {
	Options posture.Options
	// Snapshot stores the report's snapshot for the next report's trend.
	Snapshot bool
}

// ParsePostureQuery reads the query of GET /admin/v1/reports/posture:
// idle_days and max_sources as for usage, and snapshot (true, the
// default, stores this report's figures for the next report's trend;
// false previews without storing).
func ParsePostureQuery(raw string) (PostureQuery, error) {
	p, err := newQueryParser(raw, postureParams)
	if err != nil {
		return PostureQuery{}, err
	}
	q := PostureQuery{Options: p.options(), Snapshot: true}
	switch v := p.get(paramSnapshot); v {
	case "", "true":
	case "false":
		q.Snapshot = false
	default:
		p.bad(paramSnapshot, "must be true or false, not %q", v)
	}
	return q, p.done()
}

// postureReport serves GET /admin/v1/reports/posture: the posture report,
// with the change since the previous report's snapshot. Unless
// snapshot=false, the report's own snapshot is then stored: each report
// run is a point of the trend.
func (a *API) postureReport(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	q, err := ParsePostureQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	in, us, err := a.usageInput(r.Context(), "", q.Options)
	if err != nil {
		return err
	}
	if in.Leaks, err = a.leaks(r.Context(), in.Clients); err != nil {
		return err
	}
	in.LeaksTracked = true
	if err := a.reviewInput(r.Context(), &in); err != nil { // reviews.go
		return err
	}
	if err := a.expiredUsedInput(r.Context(), &in); err != nil { // lifecycle.go
		return err
	}
	rep := posture.Build(in)
	prev, err := us.LatestPostureSnapshot(r.Context())
	switch {
	case errors.Is(err, store.ErrNotFound):
		rep.ApplyTrend(nil)
	case err != nil:
		return err
	default:
		rep.ApplyTrend(&prev)
	}
	if q.Snapshot {
		snap, err := rep.Snapshot()
		if err != nil {
			return err
		}
		if _, err := us.AppendPostureSnapshot(r.Context(), snap); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, rep)
}

// leaks returns when each active identity's current secret was recorded as
// leaked (keybound scan matches, see Inventory.LeakedAt). Only identities
// with a secret can have one.
func (a *API) leaks(ctx context.Context, clients []*identity.Client) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, c := range clients {
		if c.Status != identity.StatusActive || c.Secret == nil {
			continue
		}
		at, err := a.Inventory.LeakedAt(ctx, c)
		if err != nil {
			return nil, err
		}
		if !at.IsZero() {
			out[c.ID] = at
		}
	}
	return out, nil
}
