package adminapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// POST /admin/v1/offboard suspends or revokes every identity matching a
// filter (inventory.Service.Offboard): one transaction, one admin event
// per changed identity, all or nothing. With dry_run it answers the same
// plan and changes nothing. Bad input is a 400 problem whose errors name
// each bad field.

// Offboarder is the inventory's offboarding.
type Offboarder interface {
	Offboard(ctx context.Context, actor string, req inventory.OffboardRequest) (*inventory.OffboardResult, error)
}

// OffboardRequest is the body of POST /offboard. At least one of owner,
// vendor, environment, purpose and tag is required; they combine with AND.
type OffboardRequest struct {
	Owner       string `json:"owner,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	Environment string `json:"environment,omitempty"`
	Purpose     string `json:"purpose,omitempty"`
	Tag         string `json:"tag,omitempty"`
	// Action is suspend (the default) or revoke.
	Action string `json:"action,omitempty"`
	Reason string `json:"reason,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// OffboardItem is one matching identity: its status before (Status) and
// after (NewStatus). Changed is false for one left as it was.
type OffboardItem struct {
	ClientID    string          `json:"client_id"`
	Name        string          `json:"name"`
	Owner       string          `json:"owner"`
	Environment string          `json:"environment"`
	Status      identity.Status `json:"status"`
	NewStatus   identity.Status `json:"new_status"`
	Changed     bool            `json:"changed"`
}

// OffboardResponse answers an offboarding: every matching identity, and
// how many changed (or, in a dry run, would change).
type OffboardResponse struct {
	DryRun     bool           `json:"dry_run"`
	Action     string         `json:"action"`
	Matched    int            `json:"matched"`
	Changed    int            `json:"changed"`
	Unchanged  int            `json:"unchanged"`
	Identities []OffboardItem `json:"identities"`
}

func (a *API) offboard(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var req OffboardRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ireq := inventory.OffboardRequest{Owner: req.Owner, Vendor: req.Vendor, Environment: req.Environment, Purpose: req.Purpose, Tag: req.Tag,
		Action: req.Action, Reason: req.Reason, DryRun: req.DryRun, Caller: caller.Claims.ClientID}
	res, err := a.Inventory.Offboard(r.Context(), actor(caller), ireq)
	var ve *inventory.ValidationError
	switch {
	case errors.Is(err, inventory.ErrSelfLockout):
		return problem.New(http.StatusConflict, "self-lockout", "Refused",
			"the filter matches the calling admin identity "+ireq.Caller+", which would lock itself out; narrow the filter or use another admin identity")
	case errors.As(err, &ve):
		return invalid("invalid-offboard", "Offboarding refused", fieldErrors(ve)...)
	case errors.Is(err, store.ErrStale), errors.Is(err, store.ErrNotFound):
		return problem.New(http.StatusConflict, "conflict", "Concurrent change",
			"a matching identity changed while the offboarding ran; nothing was changed; send the request again")
	case err != nil:
		return err
	}
	out := OffboardResponse{DryRun: res.DryRun, Action: res.Action, Matched: len(res.Items), Changed: res.Changed(), Identities: []OffboardItem{}}
	out.Unchanged = out.Matched - out.Changed
	for _, it := range res.Items {
		out.Identities = append(out.Identities, OffboardItem{
			ClientID: it.Client.ID, Name: it.Client.Name, Owner: it.Client.Owner, Environment: it.Client.Environment,
			Status: it.From, NewStatus: it.To, Changed: it.Changed,
		})
	}
	return writeJSON(w, http.StatusOK, out)
}
