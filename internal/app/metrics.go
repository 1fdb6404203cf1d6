package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/audit"
	"github.com/keybound/keybound/internal/revocation"
)

// registerGatewayMetrics exposes the state the gateway's hot path keeps in
// memory: how full and how healthy the audit queue is, and how often the
// token and client caches answer without a signature check or a store read.
// The values are read when Prometheus scrapes, so the request path pays
// nothing for them. tokens and clients are exported only when they are the
// caching kinds.
func registerGatewayMetrics(reg prometheus.Registerer, w *audit.Writer, tokens any, clients any) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keybound_audit_queue_depth",
			Help: "Audit events waiting in the gateway's bounded queue.",
		}, func() float64 { return float64(w.Stats().Queued) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keybound_audit_events_dropped_total",
			Help: "Audit events that will never reach every sink (queue full or sink retries exhausted). Alert on any increase.",
		}, func() float64 { return float64(w.Stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keybound_audit_events_written_total",
			Help: "Audit events every sink accepted.",
		}, func() float64 { return float64(w.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keybound_audit_sink_errors_total",
			Help: "Failed audit sink writes, retries included.",
		}, func() float64 { return float64(w.Stats().SinkErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keybound_audit_failing",
			Help: "1 while a fail_closed audit trail refuses events (and the gateway refuses traffic).",
		}, func() float64 {
			if w.Stats().Failing {
				return 1
			}
			return 0
		}),
	)
	lookups := func(cache string, get func() (hits, misses uint64)) {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "keybound_cache_lookups_total",
				Help:        "Lookups in in-memory caches (token: the gateway's verified tokens; client: client status, shared with the token endpoint and admin API) by result; hit rate = hit / (hit + miss).",
				ConstLabels: prometheus.Labels{"cache": cache, "result": "hit"},
			}, func() float64 { h, _ := get(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "keybound_cache_lookups_total",
				Help:        "Lookups in in-memory caches (token: the gateway's verified tokens; client: client status, shared with the token endpoint and admin API) by result; hit rate = hit / (hit + miss).",
				ConstLabels: prometheus.Labels{"cache": cache, "result": "miss"},
			}, func() float64 { _, m := get(); return float64(m) }),
		)
	}
	if c, ok := tokens.(*accesstoken.Cache); ok {
		lookups("token", func() (uint64, uint64) { s := c.Stats(); return s.Hits, s.Misses })
	}
	if c, ok := clients.(*revocation.Clients); ok {
		lookups("client", c.Stats)
	}
}
