package adminapi

import (
	"context"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/workload"
)

// CertAuthority is the workload CA the admin API drives: issue from a CSR,
// list and show issued certificates (the credential inventory), revoke, and
// create one-time join tokens.
type CertAuthority interface {
	Issue(ctx context.Context, req workload.Request) (*workload.Issued, error)
	Get(ctx context.Context, serial string) (*store.WorkloadCertificate, error)
	List(ctx context.Context, f store.CertificateFilter) ([]*store.WorkloadCertificate, error)
	RevokeWithReason(ctx context.Context, actor, serial string, code workload.Reason, comment string) (*store.WorkloadCertificate, error)
	CreateJoinToken(ctx context.Context, actor, clientID string, ttl time.Duration) (*workload.JoinToken, error)
}

// CertView is an issued workload certificate as the admin API shows it.
// Status is active, expired or revoked at the time of the answer.
type CertView struct {
	Serial      string    `json:"serial"`
	ClientID    string    `json:"client_id"`
	SPIFFEID    string    `json:"spiffe_id"`
	Thumbprint  string    `json:"x5t#S256"`
	Status      string    `json:"status"`
	IssuedAt    time.Time `json:"issued_at"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Via         string    `json:"via"`
	RenewedFrom string    `json:"renewed_from,omitempty"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// RevocationReasonCode is the RFC 5280 reason the CRL entry carries
	// (key-compromise, superseded, ...); RevocationReason is the free-text
	// comment given with it.
	RevocationReasonCode string `json:"revocation_reason_code,omitempty"`
	RevocationReason     string `json:"revocation_reason,omitempty"`
	// Certificate is the leaf in PEM; CertificateChain, set only in the
	// answer to an issuance, adds the intermediates.
	Certificate      string `json:"certificate"`
	CertificateChain string `json:"certificate_chain,omitempty"`
}

func certViewOf(c *store.WorkloadCertificate, now time.Time) CertView {
	status := "active"
	switch {
	case !c.RevokedAt.IsZero():
		status = "revoked"
	case !now.Before(c.NotAfter):
		status = "expired"
	}
	var code, comment string
	if !c.RevokedAt.IsZero() {
		rc, text := workload.DecodeRevocation(c.RevocationReason)
		code, comment = rc.String(), text
	}
	return CertView{
		Serial: c.Serial, ClientID: c.ClientID, SPIFFEID: c.SPIFFEID, Thumbprint: c.Thumbprint, Status: status,
		IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Via: c.Via, RenewedFrom: c.RenewedFrom,
		RevokedAt: c.RevokedAt, RevocationReasonCode: code, RevocationReason: comment,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})),
	}
}

// IssueRequest is the body of POST /certificates.
type IssueRequest struct {
	ClientID string `json:"client_id"`
	// CSR is a PKCS#10 request in PEM, made where the key lives.
	CSR string `json:"csr"`
	// Lifetime in seconds; zero means the server default.
	Lifetime int64 `json:"lifetime,omitempty"`
}

// JoinTokenRequest is the body of POST /join-tokens.
type JoinTokenRequest struct {
	ClientID string `json:"client_id"`
	// Lifetime in seconds; zero means the server default.
	Lifetime int64 `json:"lifetime,omitempty"`
}

// JoinTokenView is a created join token; JoinToken is shown only here.
type JoinTokenView struct {
	JoinToken string    `json:"join_token"`
	ID        string    `json:"id"`
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

var certParams = []string{"client_id", "live", "limit"}

func (a *API) registerCerts(mux *http.ServeMux) {
	mux.Handle("POST "+Prefix+"/certificates", a.wrap(a.issueCert))
	mux.Handle("GET "+Prefix+"/certificates", a.wrap(a.listCerts))
	mux.Handle("GET "+Prefix+"/certificates/{serial}", a.wrap(a.getCert))
	mux.Handle("POST "+Prefix+"/certificates/{serial}/revoke", a.wrap(a.revokeCert))
	mux.Handle("POST "+Prefix+"/join-tokens", a.wrap(a.createJoinToken))
}

// certError turns the CA's refusals into problems; other errors pass.
func certError(err error) error {
	if status, slug, title, detail, code, ok := workload.Problem(err); ok {
		pd := problem.New(status, slug, title, detail)
		pd.Code = code
		return pd
	}
	return err
}

func secondsParam(field string, v int64, max time.Duration) (time.Duration, error) {
	if v < 0 || v > int64(max/time.Second) {
		return 0, invalid("invalid-parameter", "Invalid parameter",
			problem.FieldError{Field: field, Detail: "must be a number of seconds from 0 (the default) to " + strconv.FormatInt(int64(max/time.Second), 10)})
	}
	return time.Duration(v) * time.Second, nil
}

func (a *API) issueCert(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var req IssueRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	lifetime, err := secondsParam("lifetime", req.Lifetime, workload.MaxLifetimeCap)
	if err != nil {
		return err
	}
	var missing []problem.FieldError
	for _, f := range []struct{ name, v string }{{"client_id", req.ClientID}, {"csr", req.CSR}} {
		if f.v == "" {
			missing = append(missing, problem.FieldError{Field: f.name, Detail: "is required"})
		}
	}
	if missing != nil {
		return invalid("invalid-request", "Invalid request", missing...)
	}
	is, err := a.Certs.Issue(r.Context(), workload.Request{ClientID: req.ClientID, CSR: []byte(req.CSR), Lifetime: lifetime, Via: workload.ViaAdmin, Actor: actor(caller)})
	if err != nil {
		return certError(err)
	}
	v := certViewOf(is.Record, a.now())
	v.CertificateChain = string(is.ChainPEM)
	w.Header().Set("Location", Prefix+"/certificates/"+is.Record.Serial)
	return writeJSON(w, http.StatusCreated, v)
}

// listCerts serves GET /certificates: client_id matches exactly, live=true
// keeps certificates neither revoked nor expired, limit is 1 to
// MaxListLimit (default 100).
func (a *API) listCerts(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	p, err := newQueryParser(r.URL.RawQuery, certParams)
	if err != nil {
		return err
	}
	f := store.CertificateFilter{ClientID: p.get("client_id")}
	switch v := p.get("live"); v {
	case "", "false":
	case "true":
		f.LiveAt = a.now()
	default:
		p.bad("live", "must be true or false, not %q", v)
	}
	f.Limit = p.intIn("limit", 1, MaxListLimit, defaultListLimit)
	if err := p.done(); err != nil {
		return err
	}
	cs, err := a.Certs.List(r.Context(), f)
	if err != nil {
		return certError(err)
	}
	now := a.now()
	out := make([]CertView, 0, len(cs))
	for _, c := range cs {
		out = append(out, certViewOf(c, now))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"certificates": out})
}

func (a *API) getCert(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	c, err := a.Certs.Get(r.Context(), r.PathValue("serial"))
	if err != nil {
		return certError(err)
	}
	return writeJSON(w, http.StatusOK, certViewOf(c, a.now()))
}

// RevokeRequest is the optional body of POST /certificates/{serial}/revoke.
// ReasonCode is one of workload.ReasonNames (default unspecified) and goes
// into the CRL entry; Reason is a free-text comment for the inventory and
// the admin log.
type RevokeRequest struct {
	ReasonCode string `json:"reason_code,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

func (a *API) revokeCert(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var body RevokeRequest
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	code, err := workload.ParseReason(body.ReasonCode)
	if err != nil {
		return invalid("invalid-parameter", "Invalid parameter",
			problem.FieldError{Field: "reason_code", Detail: "must be one of " + strings.Join(workload.ReasonNames, ", ")})
	}
	c, err := a.Certs.RevokeWithReason(r.Context(), actor(caller), r.PathValue("serial"), code, body.Reason)
	if err != nil {
		return certError(err)
	}
	return writeJSON(w, http.StatusOK, certViewOf(c, a.now()))
}

func (a *API) createJoinToken(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var req JoinTokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ttl, err := secondsParam("lifetime", req.Lifetime, workload.MaxJoinTokenLifetime)
	if err != nil {
		return err
	}
	if req.ClientID == "" {
		return badField("client_id", "is required")
	}
	jt, err := a.Certs.CreateJoinToken(r.Context(), actor(caller), req.ClientID, ttl)
	if err != nil {
		return certError(err)
	}
	return writeJSON(w, http.StatusCreated, JoinTokenView{JoinToken: jt.Token, ID: jt.Record.ID, ClientID: jt.Record.ClientID, ExpiresAt: jt.Record.ExpiresAt})
}
