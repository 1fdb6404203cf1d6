package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Store is what the service keeps its warnings in.
type Store interface {
	CreateNotification(ctx context.Context, n *store.Notification) (bool, error)
	ListNotifications(ctx context.Context, f store.NotificationFilter) ([]*store.Notification, error)
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]*store.Notification, error)
	ClaimNotification(ctx context.Context, id string, due, until time.Time) (bool, error)
	UpdateNotification(ctx context.Context, id string, claimed time.Time, u store.NotificationUpdate) error
	CountNotifications(ctx context.Context, status store.NotificationStatus) (int, error)
	ExpiringClients(ctx context.Context, from, to time.Time, limit int) ([]*identity.Client, error)
	GetClient(ctx context.Context, id string) (*identity.Client, error)
}

// Defaults of the delivery schedule.
const (
	// DefaultBaseDelay is the wait after the first failed attempt; it
	// doubles with each further one. The sweep interval is the finest
	// grain: a retry due between sweeps goes out at the next one.
	DefaultBaseDelay = 30 * time.Second
	// DefaultMaxDelay caps the wait between attempts.
	DefaultMaxDelay = time.Hour
	// DefaultExpiredWindow is how long after an expiry an identity.expired
	// warning is still created: a first start on an old inventory does not
	// flood the receiver with every identity that expired years ago.
	DefaultExpiredWindow = 30 * 24 * time.Hour
	// maxDuePerSweep bounds the deliveries one sweep attempts, so a backlog
	// drains over several sweeps instead of holding one for long.
	maxDuePerSweep = 100
)

// Service creates expiry warnings and delivers them. Sweep is idempotent:
// run on every node every sweep interval, it sends each warning once (at
// least once, if a node dies between delivering and recording; receivers
// drop a Warning.ID seen before).
type Service struct {
	Store Store
	// LeadTimes are how long before an expiry a warning is due.
	LeadTimes []time.Duration
	// Issuer names this keybound in each warning.
	Issuer string
	// Log, when set, writes each warning to the server log when it is
	// created, by the node that created it.
	Log *Log
	// Webhook, when set, is the tracked delivery: a warning stays pending
	// until it answers 2xx. Without it a warning is delivered when created.
	Webhook *Webhook
	// MaxAttempts bounds the webhook attempts of one warning (at least 1).
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff; zero: the defaults.
	BaseDelay, MaxDelay time.Duration
	// ExpiredWindow; zero: DefaultExpiredWindow.
	ExpiredWindow time.Duration
	Metrics       *Metrics
	// OpLog receives operational messages (a failed delivery), never a
	// secret or a body.
	OpLog *slog.Logger
	// rnd jitters the backoff; nil: math/rand/v2.
	rnd func() float64
	// clock is the current time, which claims are leased from; nil:
	// time.Now. Tests step it to stand for slow deliveries.
	clock func() time.Time
}

func (s *Service) clockNow() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// Sweep creates the warnings due at now and attempts the deliveries due.
func (s *Service) Sweep(ctx context.Context, now time.Time) error {
	errCreate := s.createDue(ctx, now)
	var errDeliver error
	if s.Webhook != nil {
		errDeliver = s.deliverDue(ctx, now)
	}
	s.Metrics.observe(ctx, s.Store)
	return errors.Join(errCreate, errDeliver)
}

// dueLead returns the warning due for an identity expiring at exp: the
// expired one once exp has passed, else the smallest lead time whose window
// has opened. Larger leads whose windows opened too are superseded: an
// identity registered two days before its expiry gets the 3-day warning,
// not the 14-day one as well.
func (s *Service) dueLead(exp, now time.Time) (kind string, lead time.Duration, ok bool) {
	if !now.Before(exp) {
		return EventExpired, 0, true
	}
	left := exp.Sub(now)
	for _, l := range s.LeadTimes {
		if l >= left && (!ok || l < lead) {
			lead, ok = l, true
		}
	}
	return EventExpiring, lead, ok
}

func (s *Service) createDue(ctx context.Context, now time.Time) error {
	var maxLead time.Duration
	if len(s.LeadTimes) > 0 {
		maxLead = slices.Max(s.LeadTimes)
	}
	window := s.ExpiredWindow
	if window <= 0 {
		window = DefaultExpiredWindow
	}
	// Expiring at now+maxLead exactly is due too: ExpiringClients' to is
	// exclusive, hence the nanosecond.
	clients, err := s.Store.ExpiringClients(ctx, now.Add(-window), now.Add(maxLead+time.Nanosecond), 0)
	if err != nil {
		return fmt.Errorf("notify: list expiring identities: %w", err)
	}
	var errs []error
	for _, c := range clients {
		kind, lead, ok := s.dueLead(c.ExpiresAt, now)
		if !ok {
			continue
		}
		n := &store.Notification{
			ID: NewDeliveryID(), Kind: kind, ClientID: c.ID, ExpiresAt: c.ExpiresAt, Lead: lead, CreatedAt: now,
			Status: store.NotificationPending, NextAttemptAt: now,
		}
		if s.Webhook == nil {
			n.Status, n.NextAttemptAt, n.DeliveredAt = store.NotificationDelivered, time.Time{}, now
		}
		created, err := s.Store.CreateNotification(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("notify: record warning for %s: %w", c.ID, err))
			continue
		}
		if !created {
			continue
		}
		s.Metrics.created(kind)
		if s.Log != nil {
			_ = s.Log.Notify(ctx, s.warning(n, c))
		}
	}
	return errors.Join(errs...)
}

// warning is the body of n about c.
func (s *Service) warning(n *store.Notification, c *identity.Client) Warning {
	w := Warning{
		ID: n.ID, Type: n.Kind, Issuer: s.Issuer, CreatedAt: n.CreatedAt.UTC(),
		ClientID: n.ClientID, ExpiresAt: n.ExpiresAt.UTC(), LeadSeconds: int64(n.Lead / time.Second),
	}
	if n.Lead > 0 {
		w.LeadTime = n.Lead.String()
	}
	if c != nil {
		w.Name, w.Owner, w.Environment = c.Name, c.Owner, c.Environment
	}
	return w
}

// lease is how long a claim holds a notification: one attempt's timeout
// and a margin. A node that dies mid-attempt delays the retry by this much.
func (s *Service) lease() time.Duration { return s.Webhook.timeout + 30*time.Second }

func (s *Service) deliverDue(ctx context.Context, now time.Time) error {
	due, err := s.Store.DueNotifications(ctx, now, maxDuePerSweep)
	if err != nil {
		return fmt.Errorf("notify: list due deliveries: %w", err)
	}
	var errs []error
	// Other nodes judge a claim by their own clock, so each claim's lease
	// counts from the current time, not from now: deliveries take real
	// time, and now may be older still (the sweep's start, or a caller's
	// stale instant). A claim that ended before it was made would let
	// another node send the same warning at once. now+spent keeps leases
	// in order when now is ahead of the clock (tests step it forward). One
	// sweep spends at most one lease delivering; the rest wait for the
	// next sweep.
	began := s.clockNow()
	for _, n := range due {
		current := s.clockNow()
		spent := current.Sub(began)
		if ctx.Err() != nil || spent > s.lease() {
			break
		}
		until := later(now.Add(spent), current).Add(s.lease())
		ok, err := s.Store.ClaimNotification(ctx, n.ID, n.NextAttemptAt, until)
		if err != nil {
			errs = append(errs, fmt.Errorf("notify: claim %s: %w", n.ID, err))
			continue
		}
		if !ok {
			continue // another node has it
		}
		unavailable, err := s.attempt(ctx, n, now, until)
		if err != nil {
			errs = append(errs, err)
		}
		if unavailable {
			// The receiver is down or overloaded: the rest keep their
			// schedule and go out at a later sweep, instead of each
			// waiting out a timeout now.
			break
		}
	}
	return errors.Join(errs...)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// attempt delivers the claimed n once and records the outcome. It reports
// whether the receiver looked unavailable (a retryable failure).
func (s *Service) attempt(ctx context.Context, n *store.Notification, now, claimed time.Time) (bool, error) {
	u := store.NotificationUpdate{Attempts: n.Attempts, LastError: n.LastError, LastAttemptAt: n.LastAttemptAt}
	c, err := s.Store.GetClient(ctx, n.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("notify: read identity %s: %w", n.ClientID, err)
	}
	unavailable := false
	switch {
	case c == nil || c.Status == identity.StatusRevoked:
		u.Status, u.LastError = store.NotificationSkipped, "the identity was revoked before delivery"
	case !c.ExpiresAt.Equal(n.ExpiresAt):
		u.Status, u.LastError = store.NotificationSkipped, "the identity's expiry changed before delivery"
	default:
		u.Attempts++
		u.LastAttemptAt = now
		_, err := s.Webhook.Deliver(ctx, s.warning(n, c))
		var de *DeliveryError
		switch {
		case err == nil:
			u.Status, u.DeliveredAt, u.LastError = store.NotificationDelivered, now, ""
			s.Metrics.delivery("delivered")
		case errors.As(err, &de) && !de.Permanent && u.Attempts < s.MaxAttempts:
			unavailable = true
			wait := max(Backoff(u.Attempts, orDefault(s.BaseDelay, DefaultBaseDelay), orDefault(s.MaxDelay, DefaultMaxDelay), s.rnd), de.RetryAfter)
			u.Status, u.NextAttemptAt, u.LastError = store.NotificationPending, now.Add(wait), bound(de.Reason)
			s.Metrics.delivery("retry")
		default:
			reason := bound(err.Error())
			if errors.As(err, &de) {
				unavailable = !de.Permanent
				reason = de.Reason
				if !de.Permanent {
					reason = bound(fmt.Sprintf("gave up after %s: %s", attemptsText(u.Attempts), de.Reason))
				}
			}
			u.Status, u.LastError = store.NotificationFailed, reason
			s.Metrics.delivery("failed")
			if s.OpLog != nil {
				s.OpLog.Warn("expiry warning not delivered", "delivery_id", n.ID, "client_id", n.ClientID,
					"webhook", s.Webhook.Host(), "attempts", u.Attempts, "reason", reason)
			}
		}
	}
	if err := s.Store.UpdateNotification(ctx, n.ID, claimed, u); err != nil {
		return unavailable, fmt.Errorf("notify: record delivery of %s: %w", n.ID, err)
	}
	return unavailable, nil
}

func attemptsText(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// List returns the recorded warnings matching f, newest first.
func (s *Service) List(ctx context.Context, f store.NotificationFilter) ([]*store.Notification, error) {
	return s.Store.ListNotifications(ctx, f)
}

// TestResult is the outcome of one test delivery.
type TestResult struct {
	DeliveryID string `json:"delivery_id"`
	// Webhook is the receiver's scheme and host (its path is not shown).
	Webhook   string `json:"webhook"`
	Delivered bool   `json:"delivered"`
	// Status is the receiver's HTTP status; 0 when it did not answer.
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// ErrNoWebhook is returned by Test when no webhook is configured.
var ErrNoWebhook = errors.New("notify: no webhook is configured (governance.notify.webhook.url)")

// Test sends one keybound.test warning to the webhook, once, and reports
// what happened. It records nothing in the store.
func (s *Service) Test(ctx context.Context, now time.Time) (TestResult, error) {
	if s.Webhook == nil {
		return TestResult{}, ErrNoWebhook
	}
	w := Warning{ID: NewDeliveryID(), Type: EventTest, Issuer: s.Issuer, CreatedAt: now.UTC()}
	start := time.Now()
	code, err := s.Webhook.Deliver(ctx, w)
	r := TestResult{DeliveryID: w.ID, Webhook: s.Webhook.Host(), Delivered: err == nil, Status: code, DurationMS: time.Since(start).Milliseconds()}
	if err != nil {
		var de *DeliveryError
		if errors.As(err, &de) {
			r.Error = de.Reason
		} else {
			r.Error = bound(err.Error())
		}
	}
	return r, nil
}
