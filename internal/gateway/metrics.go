package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus series. Labels are route names (from
// configuration, bounded by route.MaxRoutes), decision (allow/deny) and a
// fixed set of reason codes: no per-client labels, so cardinality does not
// grow with the inventory.
type Metrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	staticKeys *prometheus.CounterVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_gateway_requests_total",
			Help: "Gateway decisions by route, decision and reason.",
		}, []string{"route", "decision", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keybound_gateway_request_duration_seconds",
			Help:    "Time from request to response, including the upstream, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"route"}),
		staticKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybound_gateway_static_key_requests_total",
			Help: "Requests authenticated by a static API key (a legacy shared secret), by route: the migration still to do.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency, m.staticKeys)
	return m
}

func (m *Metrics) observe(route, decision, reason string, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "(none)"
	}
	m.requests.WithLabelValues(route, decision, reason).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) staticKey(route string) {
	if m != nil {
		m.staticKeys.WithLabelValues(route).Inc()
	}
}
