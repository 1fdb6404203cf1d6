// Package workloadapi is the workload CA's HTTP surface on the token
// service's listener: enrollment with private_key_jwt or a one-time join
// token, renewal with the current certificate over mTLS, and the public
// trust bundle and CRL. Requests and answers are JSON; every refusal is an
// RFC 9457 problem that repeats the RFC 6749 error code in "error".
//
// It decides nothing about certificates (package workload does) and never
// logs a CSR, an assertion or a join token.
package workloadapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/clientauth"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/web"
	"github.com/keybound/keybound/internal/workload"
)

// Paths, relative to the issuer.
const (
	PathEnroll = "/workload/v1/enroll"
	PathRenew  = "/workload/v1/renew"
	PathBundle = "/workload/v1/bundle"
	PathCRL    = "/workload/v1/crl"
)

// MaxRequestBytes bounds a request body: a CSR, an assertion and JSON.
const MaxRequestBytes = workload.MaxCSRBytes + clientauth.MaxAssertionBytes + 4<<10

// Authenticator authenticates private_key_jwt callers.
type Authenticator interface {
	Authenticate(ctx context.Context, r clientauth.Request) (*clientauth.Result, error)
}

// Service is the workload CA.
type Service interface {
	Issue(ctx context.Context, req workload.Request) (*workload.Issued, error)
	EnrollWithJoinToken(ctx context.Context, token string, csr []byte, lifetime time.Duration) (*workload.Issued, error)
	Renew(ctx context.Context, chain []*x509.Certificate, csr []byte, lifetime time.Duration) (*workload.Issued, error)
	Bundle() []byte
	CRL(ctx context.Context) ([]byte, error)
}

// EnrollRequest is the body of POST PathEnroll. Exactly one of JoinToken or
// ClientAssertion (private_key_jwt, RFC 7523 section 2.2, with aud the
// issuer or the enrollment URL) proves the identity.
type EnrollRequest struct {
	// CSR is a PKCS#10 request in PEM.
	CSR string `json:"csr"`
	// Lifetime in seconds; zero means the server default.
	Lifetime            int64  `json:"lifetime,omitempty"`
	JoinToken           string `json:"join_token,omitempty"`
	ClientID            string `json:"client_id,omitempty"`
	ClientAssertionType string `json:"client_assertion_type,omitempty"`
	ClientAssertion     string `json:"client_assertion,omitempty"`
}

// RenewRequest is the body of POST PathRenew, sent over a TLS connection
// that presents the current certificate (and its intermediates).
type RenewRequest struct {
	CSR      string `json:"csr"`
	Lifetime int64  `json:"lifetime,omitempty"`
}

// Certificate is the answer to an issuance.
type Certificate struct {
	ClientID  string    `json:"client_id"`
	SPIFFEID  string    `json:"spiffe_id"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// CertificateChain is the leaf and its intermediates in PEM: what the
	// workload presents in TLS handshakes.
	CertificateChain string `json:"certificate_chain"`
	// TrustBundle is the workload CA's roots in PEM.
	TrustBundle string `json:"trust_bundle"`
}

// View renders an issuance.
func View(is *workload.Issued, bundle []byte) Certificate {
	return Certificate{
		ClientID:         is.Record.ClientID,
		SPIFFEID:         is.Record.SPIFFEID,
		Serial:           is.Record.Serial,
		NotBefore:        is.Record.NotBefore,
		NotAfter:         is.Record.NotAfter,
		CertificateChain: string(is.ChainPEM),
		TrustBundle:      string(bundle),
	}
}

// API serves the endpoints. All fields but Log are required.
type API struct {
	Service Service
	Auth    Authenticator
	Log     *slog.Logger
}

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+PathEnroll, a.handle(a.enroll))
	mux.HandleFunc("POST "+PathRenew, a.handle(a.renew))
	mux.HandleFunc("GET "+PathBundle, a.bundle)
	mux.HandleFunc("GET "+PathCRL, a.crl)
}

func (a *API) handle(h func(r *http.Request) (*workload.Issued, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		is, err := h(r)
		if err != nil {
			a.render(w, r, err)
			return
		}
		a.Log.LogAttrs(r.Context(), slog.LevelInfo, "workload certificate issued",
			slog.String(web.AttrRequestID, web.RequestID(r.Context())),
			slog.String("client_id", is.Record.ClientID), slog.String("serial", is.Record.Serial),
			slog.String("via", is.Record.Via), slog.Time("not_after", is.Record.NotAfter))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(View(is, a.Service.Bundle()))
	}
}

func (a *API) enroll(r *http.Request) (*workload.Issued, error) {
	var req EnrollRequest
	if err := Decode(r, &req); err != nil {
		return nil, err
	}
	lifetime, err := Lifetime(req.Lifetime)
	if err != nil {
		return nil, err
	}
	hasAssertion := req.ClientAssertion != "" || req.ClientAssertionType != ""
	switch {
	case req.CSR == "":
		return nil, badRequest("csr is required: a PKCS#10 certificate request in PEM, signed with the workload's key")
	case hasAssertion == (req.JoinToken != ""):
		return nil, badRequest("prove the identity with exactly one of join_token or client_assertion (private_key_jwt)")
	case req.JoinToken != "":
		if req.ClientID != "" {
			return nil, badRequest("a join token names its identity; leave client_id out")
		}
		return a.Service.EnrollWithJoinToken(r.Context(), req.JoinToken, []byte(req.CSR), lifetime)
	}
	res, err := a.Auth.Authenticate(r.Context(), clientauth.Request{Form: url.Values{
		"client_id":             {req.ClientID},
		"client_assertion_type": {req.ClientAssertionType},
		"client_assertion":      {req.ClientAssertion},
	}})
	if err != nil {
		return nil, err
	}
	return a.Service.Issue(r.Context(), workload.Request{ClientID: res.Client.ID, CSR: []byte(req.CSR), Lifetime: lifetime, Via: workload.ViaPrivateKeyJWT, Actor: res.Client.ID})
}

func (a *API) renew(r *http.Request) (*workload.Issued, error) {
	var req RenewRequest
	if err := Decode(r, &req); err != nil {
		return nil, err
	}
	lifetime, err := Lifetime(req.Lifetime)
	if err != nil {
		return nil, err
	}
	if req.CSR == "" {
		return nil, badRequest("csr is required: a PKCS#10 certificate request in PEM, signed with the workload's key")
	}
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	return a.Service.Renew(r.Context(), chain, []byte(req.CSR), lifetime)
}

func (a *API) bundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(a.Service.Bundle())
}

func (a *API) crl(w http.ResponseWriter, r *http.Request) {
	der, err := a.Service.CRL(r.Context())
	if err != nil {
		a.render(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(der)
}

// Lifetime converts a requested lifetime in seconds; zero means default.
func Lifetime(secs int64) (time.Duration, error) {
	if secs < 0 || secs > int64(workload.MaxLifetimeCap/time.Second) {
		return 0, badRequest("lifetime must be a number of seconds, at most " + (workload.MaxLifetimeCap).String())
	}
	return time.Duration(secs) * time.Second, nil
}

func badRequest(detail string) *problem.Details {
	pd := problem.New(http.StatusBadRequest, "invalid-request", "Invalid request", detail)
	pd.Code = oauth.CodeInvalidRequest
	return pd
}

// Decode reads a JSON body strictly: application/json, at most
// MaxRequestBytes, no unknown fields, nothing after the object.
func Decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		pd := problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
		pd.Code = oauth.CodeInvalidRequest
		return pd
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || web.IsBodyTooLarge(err) {
			pd := problem.New(http.StatusRequestEntityTooLarge, "too-large", "Request too large", "the body is larger than the server accepts")
			pd.Code = oauth.CodeInvalidRequest
			return pd
		}
		return badRequest("the body is not valid JSON for this endpoint: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body has data after the JSON object")
	}
	return nil
}

// render writes err once as a problem; internal causes are logged, never
// sent.
func (a *API) render(w http.ResponseWriter, r *http.Request, err error) {
	var (
		oe *oauth.Error
		pd *problem.Details
	)
	if status, slug, title, detail, code, ok := workload.Problem(err); ok {
		pd = problem.New(status, slug, title, detail)
		pd.Code = code
	} else if errors.As(err, &oe) && oe.Code != oauth.CodeServerError {
		pd = problem.New(oe.Status, strings.ReplaceAll(oe.Code, "_", "-"), "Client authentication failed", oe.Description)
		pd.Code = oe.Code
	} else if !errors.As(err, &pd) {
		pd = problem.New(http.StatusInternalServerError, "internal", "Internal error", "the request failed; the request id is in X-Request-Id")
		pd.Code = oauth.CodeServerError
	}
	level := slog.LevelInfo
	if pd.Status >= 500 {
		level = slog.LevelError
	}
	a.Log.LogAttrs(r.Context(), level, "workload request refused",
		slog.String(web.AttrRequestID, web.RequestID(r.Context())),
		slog.String("path", r.URL.Path), slog.Int("status", pd.Status), slog.String("cause", err.Error()))
	pd.Instance = r.URL.Path
	problem.Write(w, pd)
}
