package main

import (
	"fmt"
	"io"
	"strings"
)

// report is the outcome of a run; its JSON form is the -json output.
type report struct {
	Addr            string  `json:"addr"`
	Clients         int     `json:"clients"`
	Senders         int     `json:"senders"`
	RatePerSender   float64 `json:"rate_per_sender"`
	DurationSeconds float64 `json:"duration_s"`

	Connect     connectReport    `json:"connect"`
	Send        sendReport       `json:"send"`
	Latency     latencyReport    `json:"latency_ms"`
	Disconnects disconnectReport `json:"disconnects"`
	Server      *serverReport    `json:"server,omitempty"`
	Tool        toolReport       `json:"load_tool"`
}

type connectReport struct {
	Connected        int      `json:"connected"`
	Failed           int      `json:"failed"`
	Errors           []string `json:"errors,omitempty"` // the first few distinct ones
	WallSeconds      float64  `json:"wall_s"`
	HandshakesPerSec float64  `json:"handshakes_per_s"`
}

type sendReport struct {
	Sent             uint64   `json:"sent"`
	SendErrors       int      `json:"send_errors"`
	SendErrorSamples []string `json:"send_error_samples,omitempty"`
	Expected         uint64   `json:"expected"` // sent × (connected - 1)
	Delivered        uint64   `json:"delivered"`
	Lost             int64    `json:"lost"`
	Duplicates       int64    `json:"duplicates"`
	Foreign          int64    `json:"foreign"`     // load lines from unknown senders or sequences
	SelfEchoes       int64    `json:"self_echoes"` // a sender's own line sent back to it
	WallSeconds      float64  `json:"wall_s"`
	DrainSeconds     float64  `json:"drain_s"`
	DeliveriesPerSec float64  `json:"deliveries_per_s"`
}

type latencyReport struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

type disconnectReport struct {
	Count         int      `json:"count"`          // sessions that ended before the run closed them
	BeforeSending int      `json:"before_sending"` // of which before the sending phase, yet counted in expected
	Samples       []string `json:"samples,omitempty"`
	Leaves        int64    `json:"leaves_seen"` // "has left" lines received while sending
	OtherLines    int64    `json:"other_lines"` // other unexpected lines received while sending
	OtherSamples  []string `json:"other_samples,omitempty"`
}

type serverReport struct {
	PID               int     `json:"pid"`
	RSSBeforeMB       float64 `json:"rss_before_mb"`
	RSSIdleMB         float64 `json:"rss_idle_mb"`
	RSSAfterMB        float64 `json:"rss_after_mb"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	IdleKBPerSession  float64 `json:"idle_kb_per_session"`
	CPUConnectSeconds float64 `json:"cpu_connect_s"`
	CPUPerHandshakeUS float64 `json:"cpu_per_handshake_us"`
	CPUSendSeconds    float64 `json:"cpu_send_s"` // sending and draining
	CPUSendCores      float64 `json:"cpu_send_cores"`
	CPUPerDeliveryUS  float64 `json:"cpu_per_delivery_us"`
	Error             string  `json:"error,omitempty"`
}

type toolReport struct {
	CPUSendSeconds   float64 `json:"cpu_send_s"`
	CPUSendCores     float64 `json:"cpu_send_cores"`
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"`
	RSSMB            float64 `json:"rss_mb"`
	Error            string  `json:"error,omitempty"`
}

// writeSummary prints the report for people.
func (r *report) writeSummary(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	list := func(items []string) {
		for _, s := range items {
			p("              %s", s)
		}
	}
	p("sshchat load: %d clients, %d sending %g msg/s for %gs, against %s", r.Clients, r.Senders, r.RatePerSender, r.DurationSeconds, r.Addr)
	c := r.Connect
	p("connect       %d/%d in %.2fs (%.0f handshakes/s), %d failed", c.Connected, r.Clients, c.WallSeconds, c.HandshakesPerSec, c.Failed)
	list(c.Errors)
	if c.Connected == 0 {
		return
	}
	s := r.Send
	p("send          %d sent (%d send errors), %d expected deliveries", s.Sent, s.SendErrors, s.Expected)
	list(s.SendErrorSamples)
	p("deliveries    %d delivered, %d lost (%.3f%%), %d duplicates, %d foreign, %d self-echoes", s.Delivered, s.Lost, pct(s.Lost, s.Expected), s.Duplicates, s.Foreign, s.SelfEchoes)
	p("throughput    %.0f deliveries/s over %.2fs of sending (+%.2fs drain)", s.DeliveriesPerSec, s.WallSeconds, s.DrainSeconds)
	l := r.Latency
	p("latency ms    p50 %.2f  p95 %.2f  p99 %.2f  max %.2f", l.P50, l.P95, l.P99, l.Max)
	d := r.Disconnects
	p("disconnects   %d, %d of them before sending (%d 'has left' and %d other unexpected lines while sending)", d.Count, d.BeforeSending, d.Leaves, d.OtherLines)
	list(d.Samples)
	list(d.OtherSamples)
	if v := r.Server; v != nil {
		p("server RSS    %.1f MB before, %.1f MB idle (%.1f KB/session), %.1f MB after, %.1f MB peak", v.RSSBeforeMB, v.RSSIdleMB, v.IdleKBPerSession, v.RSSAfterMB, v.PeakRSSMB)
		p("server CPU    %.2fs connecting (%.0f µs/handshake); %.2fs sending (%.2f cores, %.2f µs/delivery)", v.CPUConnectSeconds, v.CPUPerHandshakeUS, v.CPUSendSeconds, v.CPUSendCores, v.CPUPerDeliveryUS)
		if v.Error != "" {
			p("server        %s", v.Error)
		}
	}
	t := r.Tool
	p("load tool     %.2fs CPU sending (%.2f cores, %.2f µs/delivery), %.1f MB RSS%s", t.CPUSendSeconds, t.CPUSendCores, t.CPUPerDeliveryUS, t.RSSMB, strings.TrimSuffix(" "+t.Error, " "))
}

func pct(n int64, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
