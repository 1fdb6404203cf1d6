package adminapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// POST /admin/v1/clients:import brings existing static API keys into the
// inventory (inventory.Service.Import): every row is validated first and
// nothing is stored unless every row is good; then all identities are
// created in one transaction. A refusal is a 400 problem whose errors name
// each bad field as rows[i].field (i counts from 0 in the request). No
// answer ever holds a secret.

// MaxImportBytes bounds an import request. The server's
// server.max_body_bytes applies first: an import larger than it (the
// default admits a few hundred rows) needs it raised.
const MaxImportBytes = 16 << 20

// ImportRequest is the body of POST /clients:import.
type ImportRequest struct {
	// DryRun validates every row and stores nothing.
	DryRun bool                  `json:"dry_run,omitempty"`
	Rows   []inventory.ImportRow `json:"rows"`
}

// ImportResponse answers an import: the identities created (none in a dry
// run), without their secrets.
type ImportResponse struct {
	DryRun   bool         `json:"dry_run"`
	Imported int          `json:"imported"`
	Valid    int          `json:"valid"`
	Clients  []ClientView `json:"clients"`
}

func (a *API) importClients(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var req ImportRequest
	if err := decodeBounded(r, &req, MaxImportBytes,
		"the body is larger than the server accepts (server.max_body_bytes); raise it, or import the rows in several files"); err != nil {
		return err
	}
	cs, err := a.Inventory.Import(r.Context(), actor(caller), req.Rows, req.DryRun)
	var ie *inventory.ImportError
	switch {
	case errors.As(err, &ie):
		pd := problem.New(http.StatusBadRequest, "invalid-import", "Import refused",
			"nothing was imported: fix every row listed in errors and send the import again")
		for _, p := range ie.Problems {
			field := "rows"
			if p.Row >= 0 {
				field = "rows[" + strconv.Itoa(p.Row) + "]." + p.Field
			}
			pd.Errors = append(pd.Errors, problem.FieldError{Field: field, Detail: p.Detail})
		}
		return pd
	case errors.Is(err, store.ErrConflict):
		return problem.New(http.StatusConflict, "conflict", "Concurrent change",
			"a secret or client id of the import was registered while it ran; nothing was imported; send the import again")
	case err != nil:
		return err
	}
	out := ImportResponse{DryRun: req.DryRun, Valid: len(cs), Clients: []ClientView{}}
	if req.DryRun {
		return writeJSON(w, http.StatusOK, out)
	}
	out.Imported = len(cs)
	for _, c := range cs {
		out.Clients = append(out.Clients, viewOf(c))
	}
	return writeJSON(w, http.StatusCreated, out)
}
