// Package adminapi is the admin HTTP API over the inventory and the key
// ring: register, list, show, suspend, resume and revoke machine identities,
// read the admin audit log, query the gateway audit trail and its usage
// analytics, produce the posture report, rotate signing keys and reload
// the gateway's routes. Registration uses the
// metadata names of OAuth Dynamic Client Registration (RFC 7591/7592).
//
// It accepts no static password: every call carries a DPoP- or
// certificate-bound access token with the keybound:admin scope, checked by
// package protect. Every error is an RFC 9457 problem.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/web"
)

// Prefix is the path prefix of every admin endpoint.
const Prefix = "/admin/v1"

// Scope is the scope every admin call needs.
const Scope = "keybound:admin"

// MaxListLimit bounds one page of a listing; defaultListLimit is a page
// without a limit parameter.
const (
	MaxListLimit     = 1000
	defaultListLimit = 100
)

// Query parameters of GET /clients and GET /events.
var (
	clientParams = []string{"owner", "environment", "status", "limit"}
	eventParams  = []string{"target", "limit"}
)

// Inventory is the lifecycle service the API drives.
type Inventory interface {
	Create(ctx context.Context, actor string, reg inventory.Registration) (*inventory.Created, error)
	Get(ctx context.Context, id string) (*identity.Client, error)
	List(ctx context.Context, f store.ClientFilter) ([]*identity.Client, error)
	Suspend(ctx context.Context, actor, id, reason string) (*identity.Client, error)
	Resume(ctx context.Context, actor, id, reason string) (*identity.Client, error)
	Revoke(ctx context.Context, actor, id, reason string) (*identity.Client, error)
	Import(ctx context.Context, actor string, rows []inventory.ImportRow, dryRun bool) ([]*identity.Client, error)
	MatchSecrets(ctx context.Context, actor, source string, sightings []inventory.Sighting) ([]inventory.SecretMatch, error)
	LeakedAt(ctx context.Context, c *identity.Client) (time.Time, error)
	Offboarder // offboard.go
	Lifecycle  // lifecycle.go
}

// EventLog reads and appends the admin audit log.
type EventLog interface {
	ListAdminEvents(ctx context.Context, target string, limit int) ([]store.AdminEvent, error)
	AppendAdminEvent(ctx context.Context, ev store.AdminEvent) error
}

// KeyRotator rotates the signing key ring.
type KeyRotator interface {
	Rotate(ctx context.Context) (string, error)
}

// RouteReloader re-reads and swaps the gateway's routes, all or nothing.
type RouteReloader interface {
	ReloadRoutes(ctx context.Context) (int, error)
}

// API serves the admin endpoints.
type API struct {
	Inventory Inventory
	Events    EventLog
	Keys      KeyRotator
	// Routes reloads the gateway's routes; nil when no gateway runs.
	Routes RouteReloader
	// Certs is the workload CA; nil serves no certificate endpoints.
	Certs CertAuthority
	// Audit is the gateway audit trail to query; nil answers 501.
	Audit AuditTrail
	// Usage is the audit trail's usage rollups and the posture snapshots;
	// nil answers 501.
	Usage UsageStore
	// Notifications is the expiry warning service; nil answers 501.
	Notifications Notifications
	// Reviews runs access reviews and Owners is the owner directory
	// (reviews.go, owners.go); nil answers 501.
	Reviews Reviews
	Owners  OwnerDirectory
	// RouteTable lists the gateway's running routes; nil when no gateway
	// runs (what needs the routes is then reported as not tracked).
	RouteTable RouteLister
	Auth       *protect.Checker
	// BaseURL is the public base of this listener (the issuer), used to
	// rebuild the URL a client signed in its DPoP proof.
	BaseURL string
	Log     *slog.Logger
	Now     func() time.Time
}

// handlerFunc returns an error that one place renders.
type handlerFunc func(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("POST "+Prefix+"/clients", a.wrap(a.createClient))
	mux.Handle("GET "+Prefix+"/clients", a.wrap(a.listClients))
	mux.Handle("GET "+Prefix+"/clients/{id}", a.wrap(a.getClient))
	mux.Handle("POST "+Prefix+"/clients/{id}/suspend", a.wrap(a.changeStatus("suspend")))
	mux.Handle("POST "+Prefix+"/clients/{id}/resume", a.wrap(a.changeStatus("resume")))
	mux.Handle("POST "+Prefix+"/clients/{id}/revoke", a.wrap(a.changeStatus("revoke")))
	mux.Handle("POST "+Prefix+"/clients/{id}/rotate", a.wrap(a.rotateClient))
	mux.Handle("POST "+Prefix+"/clients/{id}/downscope", a.wrap(a.downscopeClient))
	mux.Handle("GET "+Prefix+"/events", a.wrap(a.listEvents))
	mux.Handle("GET "+Prefix+"/audit/events", a.wrap(a.listAuditEvents))
	mux.Handle("GET "+Prefix+"/audit/summary", a.wrap(a.summarizeAudit))
	mux.Handle("GET "+Prefix+"/usage", a.wrap(a.getUsage))
	mux.Handle("GET "+Prefix+"/reports/posture", a.wrap(a.postureReport))
	mux.Handle("POST "+Prefix+"/keys/rotate", a.wrap(a.rotateKeys))
	mux.Handle("POST "+Prefix+"/gateway/reload", a.wrap(a.reloadRoutes))
	mux.Handle("POST "+Prefix+"/clients:import", a.wrap(a.importClients))
	mux.Handle("POST "+Prefix+"/secrets/match", a.wrap(a.matchSecrets))
	mux.Handle("POST "+Prefix+"/offboard", a.wrap(a.offboard))
	a.registerNotifications(mux)
	a.registerReviews(mux) // owners.go
	if a.Certs != nil {
		a.registerCerts(mux)
	}
}

func (a *API) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := a.Auth.Check(r, a.BaseURL+r.URL.Path, protect.PeerCertificate(r))
		if err == nil && !caller.SenderConstrained() {
			// An identity registered with allow_bearer can hold the admin
			// scope, but a copied bearer token must never administer.
			err = a.Auth.Refuse(caller, http.StatusForbidden, oauth.CodeInsufficientScope,
				"the admin API accepts only sender-constrained tokens: use a DPoP-bound or certificate-bound token, not a bearer token")
		}
		if err == nil {
			err = a.Auth.RequireScope(caller, Scope)
		}
		if err == nil {
			err = h(w, r, caller)
		}
		if err != nil {
			a.render(w, r, err)
		}
	})
}

// render writes err as a problem, with OAuth challenge headers for
// authentication failures. Internal causes are logged, never sent.
func (a *API) render(w http.ResponseWriter, r *http.Request, err error) {
	var (
		oe *oauth.Error
		ve *inventory.ValidationError
		pd *problem.Details
	)
	switch {
	case errors.As(err, &oe):
		oauth.SetHeaders(w.Header(), oe)
		title := http.StatusText(oe.Status) // Unauthorized, Forbidden, Service Unavailable (a full replay cache)
		if title == "" {
			title = "Unauthorized"
		}
		desc := oe.Description
		if oe.Code == "" {
			desc = "this endpoint needs an access token with the " + Scope + " scope"
		}
		pd = problem.New(oe.Status, strings.ReplaceAll(orDefault(oe.Code, "unauthorized"), "_", "-"), title, desc)
		pd.Code = oe.Code
	case errors.As(err, &ve):
		pd = problem.New(http.StatusBadRequest, "invalid-client-metadata", "Invalid client registration", "fix the fields listed in errors and send the registration again")
		pd.Code = "invalid_client_metadata"
		pd.Errors = fieldErrors(ve)
	case errors.As(err, &pd):
	case errors.Is(err, store.ErrNotFound):
		pd = problem.New(http.StatusNotFound, "not-found", "Not found", "no client with that id is registered")
	case errors.Is(err, inventory.ErrTransition):
		pd = problem.New(http.StatusConflict, "invalid-transition", "Status change not allowed", strings.TrimPrefix(err.Error(), "inventory: status change not allowed: "))
	case errors.Is(err, store.ErrStale):
		pd = problem.New(http.StatusConflict, "conflict", "Concurrent change", "the client changed while this request ran; read it and try again")
	default:
		a.Log.LogAttrs(r.Context(), slog.LevelError, "admin request failed", slog.String(web.AttrRequestID, web.RequestID(r.Context())), slog.String("cause", err.Error()))
		pd = problem.New(http.StatusInternalServerError, "internal", "Internal error", "the request failed; the request id is in X-Request-Id")
	}
	pd.Instance = r.URL.Path
	problem.Write(w, pd)
}

// fieldErrors lists a validation error's fields as problem errors.
func fieldErrors(ve *inventory.ValidationError) []problem.FieldError {
	out := make([]problem.FieldError, 0, len(ve.Fields))
	for _, f := range ve.Fields {
		out = append(out, problem.FieldError{Field: f.Field, Detail: f.Detail})
	}
	return out
}

// invalid is the 400 problem of a request refused field by field: errors
// names each field and what to fix (the CLI prints them on its one line),
// and nothing was changed.
func invalid(slug, title string, fields ...problem.FieldError) *problem.Details {
	pd := problem.New(http.StatusBadRequest, slug, title, "nothing was changed: fix the fields listed in errors and send the request again")
	pd.Errors = fields
	return pd
}

// badField is invalid for one field of a request body.
func badField(field, detail string) *problem.Details {
	return invalid("invalid-request", "Invalid request", problem.FieldError{Field: field, Detail: detail})
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// MaxRequestBytes bounds an admin request body (a registration with a JWKS).
const MaxRequestBytes = identity.MaxJWKSBytes + 16<<10

// decode reads a JSON body of at most MaxRequestBytes strictly: unknown
// fields and trailing data are errors that say what to fix.
func decode(r *http.Request, v any) error {
	return decodeBounded(r, v, MaxRequestBytes, "the body is larger than the server accepts")
}

// decodeBounded is decode with its own size bound, for bodies larger than
// one registration; tooLarge is the detail of a body over the server's
// limit, saying what to do instead, to which the limit is added.
//
// The body is read through http.MaxBytesReader, not io.LimitReader: a
// LimitReader ends an oversized body early as if it were complete, so it
// was refused as malformed JSON (400) or, cut after a complete value,
// accepted. Exactly one JSON value is accepted: dec.More() reports false on
// a trailing '}' or ']', so `{"reason":"x"}}` passed; only io.EOF from
// dec.Token() proves nothing follows.
func decodeBounded(r *http.Request, v any, limit int64, tooLarge string) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			if !web.IsBodyTooLarge(terr) {
				return problem.New(http.StatusBadRequest, "malformed-json", "Malformed request", "the body has data after the JSON object")
			}
			err = terr
		}
	}
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		// The limit hit may be the server's (server.max_body_bytes, applied
		// first by the middleware) or this endpoint's: name the one hit.
		return problem.New(http.StatusRequestEntityTooLarge, "too-large", "Request too large",
			fmt.Sprintf("%s (the limit is %d bytes)", tooLarge, mbe.Limit))
	}
	return problem.New(http.StatusBadRequest, "malformed-json", "Malformed request", "the body is not valid JSON for this endpoint: "+err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	var reg inventory.Registration
	if err := decode(r, &reg); err != nil {
		return err
	}
	out, err := a.Inventory.Create(r.Context(), actor(caller), reg)
	if err != nil {
		return err
	}
	v := viewOf(out.Client)
	v.ClientSecret = out.Secret
	w.Header().Set("Location", Prefix+"/clients/"+out.Client.ID)
	return writeJSON(w, http.StatusCreated, v)
}

// listClients serves GET /clients: owner, environment and status match
// exactly; limit is 1 to MaxListLimit (default 100).
func (a *API) listClients(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	p, err := newQueryParser(r.URL.RawQuery, clientParams)
	if err != nil {
		return err
	}
	f := store.ClientFilter{Owner: p.get("owner"), Environment: p.get("environment"), Status: identity.Status(p.get("status"))}
	switch f.Status {
	case "", identity.StatusActive, identity.StatusSuspended, identity.StatusRevoked:
	default:
		p.bad("status", "must be active, suspended or revoked, not %q", f.Status)
	}
	f.Limit = p.intIn("limit", 1, MaxListLimit, defaultListLimit)
	if err := p.done(); err != nil {
		return err
	}
	cs, err := a.Inventory.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]ClientView, 0, len(cs))
	for _, c := range cs {
		out = append(out, viewOf(c))
	}
	if err := a.markOrphaned(r.Context(), cs, out); err != nil { // reviews.go
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	c, err := a.Inventory.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v := viewOf(c)
	leaked, err := a.Inventory.LeakedAt(r.Context(), c)
	if err != nil {
		return err
	}
	if !leaked.IsZero() {
		v.LeakedAt = &leaked
	}
	views := []ClientView{v}
	if err := a.markOrphaned(r.Context(), []*identity.Client{c}, views); err != nil { // reviews.go
		return err
	}
	return writeJSON(w, http.StatusOK, views[0])
}

// statusChange is the optional body of suspend, resume and revoke.
type statusChange struct {
	Reason string `json:"reason"`
}

func (a *API) changeStatus(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
		var body statusChange
		if r.ContentLength != 0 {
			if err := decode(r, &body); err != nil {
				return err
			}
		}
		id := r.PathValue("id")
		if id == caller.Claims.ClientID && action != "resume" {
			return problem.New(http.StatusConflict, "self-lockout", "Refused", "an admin identity cannot "+action+" itself; use another admin identity")
		}
		var (
			c   *identity.Client
			err error
		)
		switch action {
		case "suspend":
			c, err = a.Inventory.Suspend(r.Context(), actor(caller), id, body.Reason)
		case "resume":
			c, err = a.Inventory.Resume(r.Context(), actor(caller), id, body.Reason)
		default:
			c, err = a.Inventory.Revoke(r.Context(), actor(caller), id, body.Reason)
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, viewOf(c))
	}
}

// listEvents serves GET /events: the admin log, for one target or all;
// limit is 1 to MaxListLimit (default 100).
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	p, err := newQueryParser(r.URL.RawQuery, eventParams)
	if err != nil {
		return err
	}
	target, limit := p.get("target"), p.intIn("limit", 1, MaxListLimit, defaultListLimit)
	if err := p.done(); err != nil {
		return err
	}
	evs, err := a.Events.ListAdminEvents(r.Context(), target, limit)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []store.AdminEvent{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	kid, err := a.Keys.Rotate(r.Context())
	if err != nil {
		return err
	}
	if err := a.Events.AppendAdminEvent(r.Context(), store.AdminEvent{Time: a.now(), Actor: actor(caller), Action: "keys.rotate", Target: kid}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
}

func actor(c *protect.Caller) string { return c.Claims.ClientID }

func (a *API) reloadRoutes(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	if a.Routes == nil {
		return problem.New(http.StatusConflict, "no-gateway", "No gateway", "the gateway is not running")
	}
	n, err := a.Routes.ReloadRoutes(r.Context())
	if err != nil {
		return problem.New(http.StatusUnprocessableEntity, "invalid-routes", "Routes not reloaded", "the running routes are unchanged: "+err.Error())
	}
	if err := a.Events.AppendAdminEvent(r.Context(), store.AdminEvent{Time: a.now(), Actor: actor(caller), Action: "gateway.reload", Target: "routes", Changes: map[string]string{"routes": strconv.Itoa(n)}}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{"routes": n})
}
