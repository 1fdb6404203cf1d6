package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/authserver"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/review"
	"github.com/keybound/keybound/internal/store"
)

// adminOwner is the owner ensureAdmin registers keybound's own admin
// identity under.
const adminOwner = "keybound operator"

// buildReviews wires access reviews and the owner directory: the
// inventory checks owners on create, import and transfer; the admin API
// serves reviews and owners; and, with governance.reviews.auto_suspend,
// the sweep suspends identities whose review lapsed. Identities holding
// the admin scope are never auto-suspended: that would lock operators out
// of the API that attests and resumes.
//
// With governance.require_known_owners, the admin identity's owner is
// added to the directory first (once), so the admin identity can still be
// registered and renewed.
func (a *App) buildReviews(ctx context.Context, inv *inventory.Service, admin *adminapi.API) error {
	gov := a.cfg.Governance
	inv.Owners, inv.RequireKnownOwners = a.store, gov.RequireKnownOwners
	if gov.RequireKnownOwners {
		_, err := a.store.GetOwner(ctx, adminOwner)
		if errors.Is(err, store.ErrNotFound) {
			_, err = inv.AddOwner(ctx, governanceActor, adminOwner, "")
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("app: owner directory: %w", err)
		}
	}
	rv := &review.Service{
		Store:     a.store,
		Inventory: inv,
		Policy:    review.Policy{Intervals: gov.Reviews.Intervals, Grace: gov.Reviews.Grace, AutoSuspend: gov.Reviews.AutoSuspend},
		Exempt:    func(c *identity.Client) bool { return slices.Contains(c.Scopes, authserver.ScopeAdmin) },
	}
	admin.Reviews, admin.Owners = rv, inv
	if gov.Reviews.AutoSuspend {
		a.addSweep("suspend identities whose access review lapsed", func(ctx context.Context, now time.Time) error {
			done, err := rv.Sweep(ctx, now)
			if len(done) > 0 {
				a.log.Info("suspended identities whose access review lapsed", "count", len(done), "client_ids", done)
			}
			return err
		})
	}
	return nil
}
