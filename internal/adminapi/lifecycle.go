package adminapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// Lifecycle is the credential rotation and downscoping the API drives.
type Lifecycle interface {
	Rotate(ctx context.Context, actor, id string, req inventory.RotateRequest) (*inventory.Rotated, error)
	RetireNow(ctx context.Context, actor, id string) (*identity.Client, error)
	Downscope(ctx context.Context, actor, id string, remove []string, apply bool) (*inventory.Downscoped, error)
}

// MaxOverlapSeconds bounds overlap_seconds before the policy's own cap
// applies (it keeps the duration arithmetic far from overflow).
const MaxOverlapSeconds = 365 * 24 * 3600

// RotateRequest is the body of POST /clients/{id}/rotate: the new
// credential (inventory.RotateRequest's fields), the overlap in seconds
// (0: the server's default), or retire_previous alone to end an open
// overlap at once.
type RotateRequest struct {
	inventory.RotateRequest
	OverlapSeconds int64 `json:"overlap_seconds,omitempty"`
	RetirePrevious bool  `json:"retire_previous,omitempty"`
}

func (a *API) rotateClient(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var body RotateRequest
	if err := decode(r, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	if body.RetirePrevious {
		if len(body.JWKS) > 0 || body.TLSSubjectDN != "" || body.TLSSANDNS != "" || body.TLSSANURI != "" || body.OverlapSeconds != 0 {
			return badField("retire_previous", "ends the open overlap and takes no other field; rotate in a separate request")
		}
		c, err := a.Inventory.RetireNow(r.Context(), actor(caller), id)
		if errors.Is(err, inventory.ErrNoRotation) {
			return problem.New(http.StatusConflict, "no-rotation", "No rotation overlap", "client "+id+" has no rotation overlap open; nothing to retire")
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, viewOf(c))
	}
	if body.OverlapSeconds < 0 || body.OverlapSeconds > MaxOverlapSeconds {
		return badField("overlap_seconds", "must be from 1 to the server's maximum, or 0 for the default")
	}
	body.Overlap = time.Duration(body.OverlapSeconds) * time.Second
	out, err := a.Inventory.Rotate(r.Context(), actor(caller), id, body.RotateRequest)
	var ve *inventory.ValidationError
	switch {
	case errors.As(err, &ve):
		fields := fieldErrors(ve)
		for i := range fields {
			if fields[i].Field == "overlap" { // inventory's Overlap is overlap_seconds on the wire
				fields[i].Field = "overlap_seconds"
			}
		}
		return invalid("invalid-request", "Rotation refused", fields...)
	case errors.Is(err, inventory.ErrRotationOpen):
		return problem.New(http.StatusConflict, "rotation-open", "Rotation already open", strings.TrimPrefix(err.Error(), "inventory: "))
	case errors.Is(err, inventory.ErrNotRotatable):
		return problem.New(http.StatusConflict, "not-rotatable", "Credential not rotatable here", strings.TrimPrefix(err.Error(), "inventory: the credential cannot be rotated here: "))
	case err != nil:
		return err
	}
	v := viewOf(out.Client)
	v.ClientSecret = out.Secret
	return writeJSON(w, http.StatusOK, v)
}

// DownscopeRequest is the body of POST /clients/{id}/downscope: scopes to
// remove, and/or unused to remove every granted scope the audit trail
// shows unexercised for 90 days. Without apply it is a dry run that only
// answers the diff.
type DownscopeRequest struct {
	Remove []string `json:"remove,omitempty"`
	Unused bool     `json:"unused,omitempty"`
	Apply  bool     `json:"apply,omitempty"`
}

func (a *API) downscopeClient(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var body DownscopeRequest
	if err := decode(r, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	if len(body.Remove) == 0 && !body.Unused {
		return badField("remove", "names no scope: name scopes to remove, or set unused to remove the scopes not used in 90 days")
	}
	remove := body.Remove
	if body.Unused {
		in, _, err := a.usageInput(r.Context(), id, posture.Options{IdleDays: posture.DefaultIdleDays, MaxSources: posture.DefaultMaxSources})
		if err != nil {
			return err
		}
		rep := posture.ComputeUsage(in)
		if len(rep.Identities) != 1 || rep.Identities[0].UnusedScopes == nil {
			return problem.New(http.StatusConflict, "usage-unknown", "Unused scopes unknown",
				"which scopes this client uses is not known here: the gateway's route table must run in this keybound and the client must be one the audit trail can observe; name the scopes to remove instead")
		}
		for _, s := range rep.Identities[0].UnusedScopes {
			if !slices.Contains(remove, s) {
				remove = append(remove, s)
			}
		}
	}
	if body.Apply && id == caller.Claims.ClientID && slices.Contains(remove, Scope) {
		return problem.New(http.StatusConflict, "self-lockout", "Refused", "an admin identity cannot remove "+Scope+" from itself; use another admin identity")
	}
	out, err := a.Inventory.Downscope(r.Context(), actor(caller), id, remove, body.Apply)
	var ve *inventory.ValidationError
	switch {
	case errors.As(err, &ve):
		return invalid("invalid-request", "Downscope refused", fieldErrors(ve)...)
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// maxExpiredUsedRows bounds the audit summary rows the posture report reads
// for expired-but-still-used identities: one row per client, route, method,
// scopes and decision, so far more than the identities it can list.
const maxExpiredUsedRows = 10000

// expiredUsedInput feeds the posture report the gateway's refusals of
// expired identities in the report's period, counted per client.
func (a *API) expiredUsedInput(ctx context.Context, in *posture.Input) error {
	if a.Audit == nil {
		return nil
	}
	rows, err := a.Audit.SummarizeAudit(ctx, store.AuditFilter{
		Reason: protect.ReasonClientExpired, Since: in.Now.Add(-posture.PeriodDays * 24 * time.Hour), Limit: maxExpiredUsedRows,
	})
	if err != nil {
		return err
	}
	in.ExpiredUsedTracked, in.ExpiredUsed = true, map[string]int64{}
	for _, r := range rows {
		in.ExpiredUsed[r.ClientID] += r.Count
	}
	return nil
}
