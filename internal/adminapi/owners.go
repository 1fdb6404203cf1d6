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

// The owner directory (inventory owners.go):
//
//	GET  /admin/v1/owners
//	POST /admin/v1/owners                  add an owner
//	POST /admin/v1/owners/{name}/depart    mark it departed: its identities are orphaned
//	POST /admin/v1/owners/transfer         move every identity of one owner to another
//	POST /admin/v1/clients/{id}/transfer   move one identity
//
// Transfers are one transaction with an admin event per identity, all or
// nothing; dry_run answers the same plan and changes nothing.

// OwnerDirectory is the inventory's owner directory.
type OwnerDirectory interface {
	AddOwner(ctx context.Context, actor, name, contact string) (store.Owner, error)
	ListOwners(ctx context.Context) ([]inventory.OwnerEntry, error)
	DepartOwner(ctx context.Context, actor, name, reason string) (*inventory.Departure, error)
	Transfer(ctx context.Context, actor string, req inventory.TransferRequest) (*inventory.TransferResult, error)
}

// OwnerRequest is the body of POST /owners.
type OwnerRequest struct {
	Name    string `json:"name"`
	Contact string `json:"contact,omitempty"`
}

// DepartRequest is the optional body of POST /owners/{name}/depart.
type DepartRequest struct {
	Reason string `json:"reason,omitempty"`
}

// DepartResponse answers a departure: the owner and the identities now
// orphaned.
type DepartResponse struct {
	Owner     store.Owner `json:"owner"`
	Orphaned  int         `json:"orphaned"`
	ClientIDs []string    `json:"client_ids"`
}

// TransferRequest is the body of POST /owners/transfer (From) and POST
// /clients/{id}/transfer (From absent).
type TransferRequest struct {
	From   string `json:"from,omitempty"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// TransferItem is one identity a transfer moves.
type TransferItem struct {
	ClientID    string          `json:"client_id"`
	Name        string          `json:"name"`
	Environment string          `json:"environment"`
	Status      identity.Status `json:"status"`
}

// TransferResponse answers a transfer.
type TransferResponse struct {
	DryRun     bool           `json:"dry_run"`
	From       string         `json:"from"`
	To         string         `json:"to"`
	Moved      int            `json:"moved"`
	Identities []TransferItem `json:"identities"`
}

func (a *API) ownersOrFail() (OwnerDirectory, error) {
	if a.Owners == nil {
		return nil, problem.New(http.StatusNotImplemented, "not-implemented", "Not implemented", "this keybound keeps no owner directory")
	}
	return a.Owners, nil
}

// ownerProblem renders the owner directory's refusals.
func ownerProblem(err error, title string) error {
	var ve *inventory.ValidationError
	switch {
	case errors.As(err, &ve):
		return invalid("invalid-owner-request", title, fieldErrors(ve)...)
	case errors.Is(err, store.ErrConflict):
		return problem.New(http.StatusConflict, "owner-exists", title, "an owner of that name is in the directory already")
	case errors.Is(err, inventory.ErrNoDirectory):
		return problem.New(http.StatusNotImplemented, "not-implemented", "Not implemented", "this keybound keeps no owner directory")
	}
	return err
}

func (a *API) listOwners(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	dir, err := a.ownersOrFail()
	if err != nil {
		return err
	}
	os, err := dir.ListOwners(r.Context())
	if err != nil {
		return err
	}
	if os == nil {
		os = []inventory.OwnerEntry{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"owners": os})
}

func (a *API) addOwner(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	dir, err := a.ownersOrFail()
	if err != nil {
		return err
	}
	var req OwnerRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	o, err := dir.AddOwner(r.Context(), actor(caller), req.Name, req.Contact)
	if err != nil {
		return ownerProblem(err, "Owner not added")
	}
	return writeJSON(w, http.StatusCreated, o)
}

func (a *API) departOwner(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	dir, err := a.ownersOrFail()
	if err != nil {
		return err
	}
	var req DepartRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	d, err := dir.DepartOwner(r.Context(), actor(caller), r.PathValue("name"), req.Reason)
	if errors.Is(err, store.ErrNotFound) {
		return problem.New(http.StatusNotFound, "not-found", "Not found", "no owner of that name is in the directory or named by any identity (names are compared exactly)")
	}
	if err != nil {
		return ownerProblem(err, "Owner not marked departed")
	}
	out := DepartResponse{Owner: d.Owner, Orphaned: len(d.Orphaned), ClientIDs: make([]string, 0, len(d.Orphaned))}
	for _, c := range d.Orphaned {
		out.ClientIDs = append(out.ClientIDs, c.ID)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) transferOwner(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	return a.transfer(w, r, caller, "")
}

func (a *API) transferClient(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	return a.transfer(w, r, caller, r.PathValue("id"))
}

func (a *API) transfer(w http.ResponseWriter, r *http.Request, caller *protect.Caller, clientID string) error {
	dir, err := a.ownersOrFail()
	if err != nil {
		return err
	}
	var req TransferRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if clientID != "" && req.From != "" {
		return invalid("invalid-owner-request", "Transfer refused",
			problem.FieldError{Field: "from", Detail: "is not accepted when transferring one client: the client's owner is the source"})
	}
	res, err := dir.Transfer(r.Context(), actor(caller), inventory.TransferRequest{From: req.From, ClientID: clientID, To: req.To, Reason: req.Reason, DryRun: req.DryRun})
	switch {
	case errors.Is(err, store.ErrStale):
		return problem.New(http.StatusConflict, "conflict", "Concurrent change", "an identity changed while the transfer ran; nothing was changed; send the request again")
	case err != nil:
		return ownerProblem(err, "Transfer refused")
	}
	out := TransferResponse{DryRun: res.DryRun, From: res.From, To: res.To, Moved: len(res.Clients), Identities: make([]TransferItem, 0, len(res.Clients))}
	for _, c := range res.Clients {
		out.Identities = append(out.Identities, TransferItem{ClientID: c.ID, Name: c.Name, Environment: c.Environment, Status: c.Status})
	}
	return writeJSON(w, http.StatusOK, out)
}

// registerReviews adds the review and owner directory endpoints.
func (a *API) registerReviews(mux *http.ServeMux) {
	mux.Handle("GET "+Prefix+"/reviews", a.wrap(a.listReviews))
	mux.Handle("POST "+Prefix+"/clients/{id}/attest", a.wrap(a.attestClient))
	mux.Handle("POST "+Prefix+"/clients/{id}/transfer", a.wrap(a.transferClient))
	mux.Handle("GET "+Prefix+"/owners", a.wrap(a.listOwners))
	mux.Handle("POST "+Prefix+"/owners", a.wrap(a.addOwner))
	mux.Handle("POST "+Prefix+"/owners/transfer", a.wrap(a.transferOwner))
	mux.Handle("POST "+Prefix+"/owners/{name}/depart", a.wrap(a.departOwner))
}
