package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics adds the link's metrics to r, so that what the users are
// told of the link ("messages stay on this node") also reaches the
// operators' dashboards.
func (l *Link) RegisterMetrics(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sshchat_cluster_events_dropped_total",
			Help: "Events (lines, presence, private messages) not sent to the other nodes: publish queue full or NATS unreachable.",
		}, func() float64 { return float64(l.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sshchat_cluster_link_up",
			Help: "1 while the node is connected to NATS, else 0.",
		}, func() float64 {
			if l.Connected() {
				return 1
			}
			return 0
		}),
	} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("cluster: metrics: %w", err)
		}
	}
	return nil
}
