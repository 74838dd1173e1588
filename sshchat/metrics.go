package sshchat

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. A nil *metrics (no
// Config.Metrics) counts nothing, so that a server without metrics pays
// nothing for them. No label carries a user name or an address.
type metrics struct {
	sessions     *prometheus.GaugeVec
	connections  prometheus.Gauge
	usersOnline  prometheus.Gauge
	messages     prometheus.Counter
	deliveries   prometheus.Counter
	authFailures *prometheus.CounterVec
	refused      *prometheus.CounterVec
	slowDrops    prometheus.Counter
	rateLimited  prometheus.Counter
	unstored     prometheus.Counter
	handshake    prometheus.Histogram
	deliveryLag  prometheus.Histogram
}

// Session kinds, the label of sshchat_sessions.
const (
	kindTerminal = "terminal"
	kindLine     = "line"
	kindExec     = "exec"
)

// Reasons, the labels of the auth failure and refused connection counters.
const (
	reasonUnknownKey   = "unknown_key"
	reasonKeyRemoved   = "key_removed"
	reasonHandshake    = "handshake_failed"
	reasonTotalCap     = "max_conns"
	reasonPerIPCap     = "max_conns_per_ip"
	reasonLoginGrace   = "login_grace"
	reasonShuttingDown = "shutting_down"
)

// lagSampleEvery is how many public messages pass for each whose delivery
// lag is measured: measuring costs a clock read and a histogram update in
// every writer that delivers it.
const lagSampleEvery = 16

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sshchat_sessions", Help: "Open chat sessions, by kind (terminal, line, exec).",
		}, []string{"kind"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sshchat_connections", Help: "Open SSH connections, authenticated or not.",
		}),
		usersOnline: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sshchat_users_online", Help: "Users with at least one chat session.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshchat_messages_total", Help: "Public lines and actions accepted by the room.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshchat_deliveries_total", Help: "Events queued for a session's writer.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshchat_auth_failures_total", Help: "Refused authentications and failed handshakes, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshchat_connections_refused_total", Help: "Connections refused or closed by a limit, by reason.",
		}, []string{"reason"}),
		slowDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshchat_slow_client_drops_total", Help: "Sessions disconnected because their queue was full.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshchat_rate_limited_total", Help: "Lines refused by the per-user rate limit.",
		}),
		unstored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshchat_history_unstored_total", Help: "Public messages delivered but not written to the history store.",
		}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sshchat_handshake_seconds", Help: "Time from accepting a connection to its authentication.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sshchat_delivery_lag_seconds", Help: "Time from a public line being accepted to its bytes being written to a session (sampled).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	reg.MustRegister(m.sessions, m.connections, m.usersOnline, m.messages, m.deliveries, m.authFailures,
		m.refused, m.slowDrops, m.rateLimited, m.unstored, m.handshake, m.deliveryLag)
	return m
}

func (m *metrics) session(kind string, delta float64) {
	if m != nil {
		m.sessions.WithLabelValues(kind).Add(delta)
	}
}

func (m *metrics) connection(delta float64) {
	if m != nil {
		m.connections.Add(delta)
	}
}

func (m *metrics) userOnline(delta float64) {
	if m != nil {
		m.usersOnline.Add(delta)
	}
}

func (m *metrics) message() {
	if m != nil {
		m.messages.Inc()
	}
}

func (m *metrics) delivered(n int) {
	if m != nil && n > 0 {
		m.deliveries.Add(float64(n))
	}
}

func (m *metrics) authFailed(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) connRefused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) slowDrop() {
	if m != nil {
		m.slowDrops.Inc()
	}
}

func (m *metrics) rateLimit() {
	if m != nil {
		m.rateLimited.Inc()
	}
}

func (m *metrics) notStored() {
	if m != nil {
		m.unstored.Inc()
	}
}

func (m *metrics) handshakeTook(d time.Duration) {
	if m != nil {
		m.handshake.Observe(d.Seconds())
	}
}

// wrote observes the delivery lag of the sampled events in a batch just
// written.
func (m *metrics) wrote(sampled []time.Time) {
	if m == nil {
		return
	}
	now := time.Now()
	for _, at := range sampled {
		m.deliveryLag.Observe(now.Sub(at).Seconds())
	}
}
