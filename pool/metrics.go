package pool

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of every pool of a server. Create one
// with NewMetrics and pass it to each pool.
type Metrics struct {
	sessions   *prometheus.GaugeVec
	allocation *prometheus.HistogramVec
	executions *prometheus.CounterVec
	execTime   *prometheus.HistogramVec
	failures   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with r (nil: not
// registered, for tests that do not look at them).
func NewMetrics(r prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpool_sandboxes",
			Help: "Sandboxes of a pool by state (Pending, Ready, Allocated, Deleting).",
		}, []string{"pool", "state"}),
		allocation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandpool_allocation_seconds",
			Help:    "Time to give a new session its sandbox, by source (warm pool or cold start).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"pool", "source"}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpool_executions_total",
			Help: "Executions by outcome (ok, error, timeout, interrupted, crashed, failed).",
		}, []string{"pool", "outcome"}),
		execTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandpool_execution_seconds",
			Help:    "Execution round trip time as the pool sees it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpool_creation_failures_total",
			Help: "Sandboxes that failed to be created.",
		}, []string{"pool"}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.allocation, m.executions, m.execTime, m.failures} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("register pool metrics: %w", err)
			}
		}
	}
	return m, nil
}
