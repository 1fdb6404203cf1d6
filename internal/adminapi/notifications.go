package adminapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/notify"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
	"github.com/keybound/keybound/internal/store"
)

// Notifications is the expiry warning service: what was warned about and
// how delivery went, and a test delivery to the webhook.
type Notifications interface {
	List(ctx context.Context, f store.NotificationFilter) ([]*store.Notification, error)
	Test(ctx context.Context, now time.Time) (notify.TestResult, error)
}

// Limits of GET /notifications.
const (
	DefaultNotificationLimit = 100
	MaxNotificationLimit     = MaxListLimit
)

var notificationParams = []string{"status", "client_id", "limit"}

// NotificationView is one recorded warning as the admin API shows it.
// LastError is a bounded reason (a status code, a timeout), never a body.
type NotificationView struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	ClientID      string    `json:"client_id"`
	ExpiresAt     time.Time `json:"expires_at"`
	LeadSeconds   int64     `json:"lead_seconds"`
	CreatedAt     time.Time `json:"created_at"`
	Status        string    `json:"status"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitempty"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	DeliveredAt   time.Time `json:"delivered_at,omitzero"`
}

func notificationViewOf(n *store.Notification) NotificationView {
	return NotificationView{
		ID: n.ID, Type: n.Kind, ClientID: n.ClientID, ExpiresAt: n.ExpiresAt, LeadSeconds: int64(n.Lead / time.Second),
		CreatedAt: n.CreatedAt, Status: string(n.Status), Attempts: n.Attempts, LastError: n.LastError,
		LastAttemptAt: n.LastAttemptAt, NextAttemptAt: n.NextAttemptAt, DeliveredAt: n.DeliveredAt,
	}
}

func (a *API) registerNotifications(mux *http.ServeMux) {
	mux.Handle("GET "+Prefix+"/notifications", a.wrap(a.listNotifications))
	mux.Handle("POST "+Prefix+"/notifications/test", a.wrap(a.testNotification))
}

// ParseNotificationQuery reads the query of GET /notifications: status
// (pending, delivered, failed or skipped), client_id and limit. The CLI
// calls it to refuse bad flags before any request, in the same words.
func ParseNotificationQuery(rawQuery string) (store.NotificationFilter, error) {
	f := store.NotificationFilter{Limit: DefaultNotificationLimit}
	p, err := newQueryParser(rawQuery, notificationParams)
	if err != nil {
		return f, err
	}
	if st := store.NotificationStatus(p.get("status")); st != "" {
		if !st.Valid() {
			p.bad("status", "must be pending, delivered, failed or skipped, not %q", st)
		}
		f.Status = st
	}
	if id := p.get("client_id"); len(id) > identity.MaxTextLen {
		p.bad("client_id", "is longer than %d characters", identity.MaxTextLen)
	} else {
		f.ClientID = id
	}
	f.Limit = p.intIn("limit", 1, MaxNotificationLimit, DefaultNotificationLimit)
	return f, p.done()
}

func (a *API) listNotifications(w http.ResponseWriter, r *http.Request, _ *protect.Caller) error {
	if a.Notifications == nil {
		return problem.New(http.StatusNotImplemented, "not-implemented", "Not available", "expiry warnings are not kept by this server")
	}
	f, err := ParseNotificationQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	ns, err := a.Notifications.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]NotificationView, 0, len(ns))
	for _, n := range ns {
		out = append(out, notificationViewOf(n))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"notifications": out})
}

// testNotification sends one keybound.test warning to the webhook and
// answers what happened: 200 whether or not the receiver took it (the
// outcome is in the body), 409 when no webhook is configured. The attempt
// is recorded in the admin log, since it sends data out.
func (a *API) testNotification(w http.ResponseWriter, r *http.Request, caller *protect.Caller) error {
	if a.Notifications == nil {
		return problem.New(http.StatusNotImplemented, "not-implemented", "Not available", "expiry warnings are not kept by this server")
	}
	now := a.now()
	res, err := a.Notifications.Test(r.Context(), now)
	if errors.Is(err, notify.ErrNoWebhook) {
		return problem.New(http.StatusConflict, "no-webhook", "No webhook", "no webhook is configured; set governance.notify.webhook.url and restart")
	}
	if err != nil {
		return err
	}
	outcome := "delivered"
	if !res.Delivered {
		outcome = "failed"
	}
	if err := a.Events.AppendAdminEvent(r.Context(), store.AdminEvent{Time: now, Actor: actor(caller), Action: "notify.test", Target: res.DeliveryID,
		Changes: map[string]string{"webhook": res.Webhook, "outcome": outcome, "status": strconv.Itoa(res.Status)}}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}
