package authserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the token service's Prometheus series. Labels are bounded:
// method, binding, endpoint and error code are small fixed sets; no client
// ids, so cardinality cannot grow with the inventory.
type Metrics struct {
	issuedTotal   *prometheus.CounterVec
	rejectedTotal *prometheus.CounterVec
	latency       prometheus.Histogram
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		issuedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_tokens_issued_total",
			Help: "Access tokens issued, by client authentication method and binding.",
		}, []string{"auth_method", "binding"}),
		rejectedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_token_requests_rejected_total",
			Help: "Requests refused by the token service, by endpoint and OAuth error code.",
		}, []string{"endpoint", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keybound_token_issue_duration_seconds",
			Help:    "Time to handle a successful token request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
	}
	reg.MustRegister(m.issuedTotal, m.rejectedTotal, m.latency)
	return m
}

func (m *Metrics) issued(method, binding string) {
	if m != nil {
		m.issuedTotal.WithLabelValues(method, binding).Inc()
	}
}

func (m *Metrics) rejected(endpoint, reason string) {
	if m != nil {
		m.rejectedTotal.WithLabelValues(endpoint, reason).Inc()
	}
}

func (m *Metrics) observeToken(d time.Duration) {
	if m != nil {
		m.latency.Observe(d.Seconds())
	}
}
