package adminapi

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
)

// POST /admin/v1/secrets/match matches secrets found in code (keybound
// scan) against the inventory. The caller sends only each secret's SHA-256,
// never the secret: a digest that is a registered identity's secret is
// answered "leaked" and recorded once in the admin log (client.leaked, the
// flag that the identity must rotate); any other is "unmanaged".

// Secret match statuses.
const (
	MatchLeaked    = "leaked"
	MatchUnmanaged = "unmanaged"
)

// SecretSighting is one secret found in code, by its digest.
type SecretSighting struct {
	// SHA256 is the hex SHA-256 of the secret (64 lower-case digits).
	SHA256 string `json:"sha256"`
	// Rule, Location and Commit say what found it and where; they go into
	// the admin event, bounded to 256 characters each.
	Rule     string `json:"rule,omitempty"`
	Location string `json:"location,omitempty"`
	Commit   string `json:"commit,omitempty"`
}

// SecretMatchRequest is the body of POST /secrets/match.
type SecretMatchRequest struct {
	// Source says what was scanned, such as a repository path.
	Source  string           `json:"source,omitempty"`
	Secrets []SecretSighting `json:"secrets"`
}

// SecretMatchResult answers one sighting, in request order.
type SecretMatchResult struct {
	Fingerprint string `json:"fingerprint"`
	Status      string `json:"status"`
	// The identity whose secret it is, for a leaked one.
	ClientID     string          `json:"client_id,omitempty"`
	ClientName   string          `json:"client_name,omitempty"`
	Owner        string          `json:"owner,omitempty"`
	ClientStatus identity.Status `json:"client_status,omitempty"`
	// FlaggedAt is when the leak was first recorded; Recorded is set when
	// this request recorded it.
	FlaggedAt time.Time `json:"flagged_at,omitzero"`
	Recorded  bool      `json:"recorded"`
}

// SecretMatchResponse is the answer of POST /secrets/match.
type SecretMatchResponse struct {
	Results []SecretMatchResult `json:"results"`
}

func (a *API) matchSecrets(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var req SecretMatchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Secrets) > inventory.MaxSightings {
		return problem.New(http.StatusBadRequest, "invalid-parameter", "Too many secrets",
			fmt.Sprintf("send at most %d secrets in one request", inventory.MaxSightings))
	}
	sightings := make([]inventory.Sighting, len(req.Secrets))
	var bad []problem.FieldError
	for i, s := range req.Secrets {
		d, err := hex.DecodeString(s.SHA256)
		if err != nil || len(d) != 32 {
			// Never echo the value: a client may have sent the secret itself.
			bad = append(bad, problem.FieldError{Field: fmt.Sprintf("secrets[%d].sha256", i),
				Detail: "must be the SHA-256 of the secret as 64 hex digits; never send the secret itself"})
			continue
		}
		sightings[i] = inventory.Sighting{Lookup: d, Rule: s.Rule, Location: s.Location, Commit: s.Commit}
	}
	if len(bad) > 0 {
		pd := problem.New(http.StatusBadRequest, "invalid-parameter", "Invalid secret digests", "fix the fields listed in errors and send the request again")
		pd.Errors = bad
		return pd
	}
	ms, err := a.Inventory.MatchSecrets(r.Context(), actor(caller), req.Source, sightings)
	if err != nil {
		return err
	}
	out := SecretMatchResponse{Results: make([]SecretMatchResult, len(ms))}
	for i, m := range ms {
		res := SecretMatchResult{Fingerprint: identity.SecretFingerprint(sightings[i].Lookup), Status: MatchUnmanaged}
		if m.Client != nil {
			res.Status, res.ClientID, res.ClientName, res.Owner, res.ClientStatus = MatchLeaked, m.Client.ID, m.Client.Name, m.Client.Owner, m.Client.Status
			res.FlaggedAt, res.Recorded = m.FlaggedAt, m.Recorded
		}
		out.Results[i] = res
	}
	return writeJSON(w, http.StatusOK, out)
}
