package notify

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/store"
)

// Metrics counts warnings and deliveries. A nil *Metrics records nothing.
type Metrics struct {
	createdTotal    *prometheus.CounterVec
	deliveriesTotal *prometheus.CounterVec
	backlog         *prometheus.GaugeVec
}

// NewMetrics registers the notification metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		createdTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_notify_warnings_created_total",
			Help: "Expiry warnings recorded by this node, by event type (identity.expiring, identity.expired).",
		}, []string{"type"}),
		deliveriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_notify_deliveries_total",
			Help: "Webhook delivery attempts by outcome: delivered, retry (will be tried again), failed (given up).",
		}, []string{"outcome"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keybound_notify_notifications",
			Help: "Warnings in the store waiting for delivery (pending) or given up (failed), as of the last sweep. Alert on failed > 0.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.createdTotal, m.deliveriesTotal, m.backlog)
	return m
}

func (m *Metrics) created(kind string) {
	if m != nil {
		m.createdTotal.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) delivery(outcome string) {
	if m != nil {
		m.deliveriesTotal.WithLabelValues(outcome).Inc()
	}
}

// observe refreshes the backlog gauges from the store; a failed count
// leaves the gauge as it was.
func (m *Metrics) observe(ctx context.Context, st Store) {
	if m == nil {
		return
	}
	for _, s := range []store.NotificationStatus{store.NotificationPending, store.NotificationFailed} {
		if n, err := st.CountNotifications(ctx, s); err == nil {
			m.backlog.WithLabelValues(string(s)).Set(float64(n))
		}
	}
}
