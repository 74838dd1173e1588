package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// report is the outcome of a run; its JSON form is the -json output.
type report struct {
	Addr            string  `json:"addr"`
	Clients         int     `json:"clients"`
	Senders         int     `json:"senders"`
	PTY             bool    `json:"pty"`
	RatePerSender   float64 `json:"rate_per_sender"`
	DurationSeconds float64 `json:"duration_s"`

	Connect     connectReport    `json:"connect"`
	Send        sendReport       `json:"send"`
	Latency     latencyReport    `json:"latency_ms"`
	CrossNode   *latencyReport   `json:"cross_node_latency_ms,omitempty"` // with several -addr: between clients of different addresses
	Disconnects disconnectReport `json:"disconnects"`
	Attack      *attackReport    `json:"attack,omitempty"`
	Server      *serverReport    `json:"server,omitempty"`
	Tool        toolReport       `json:"load_tool"`
}

type connectReport struct {
	Connected        int      `json:"connected"`
	Failed           int      `json:"failed"`
	Errors           []string `json:"errors,omitempty"` // the first few distinct ones
	WallSeconds      float64  `json:"wall_s"`
	HandshakesPerSec float64  `json:"handshakes_per_s"`
	// From the start of connecting to the last client's greeting.
	TimeToConnectAllSeconds float64 `json:"time_to_connect_all_s"`
	// From the start of connecting to the last output any client received
	// before the room went quiet (no output for -quiet).
	TimeToQuietSeconds float64        `json:"time_to_quiet_s"`
	Quiet              bool           `json:"quiet"` // false: still busy at -quiet-timeout
	PerAddr            map[string]int `json:"per_addr,omitempty"`
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

func newLatencyReport(h *histogram) latencyReport {
	return latencyReport{
		Count: h.total,
		P50:   msec(h.percentile(50)),
		P95:   msec(h.percentile(95)),
		P99:   msec(h.percentile(99)),
		Max:   msec(h.max),
	}
}

type disconnectReport struct {
	Count         int      `json:"count"`          // sessions that ended before the run closed them
	BeforeSending int      `json:"before_sending"` // of which before the sending phase, yet counted in expected
	Samples       []string `json:"samples,omitempty"`
	Leaves        int64    `json:"leaves_seen"` // "has left" lines received while sending
	OtherLines    int64    `json:"other_lines"` // other unexpected lines received while sending
	OtherSamples  []string `json:"other_samples,omitempty"`
}

// attackReport is what the -attackers did during the sending phase.
type attackReport struct {
	Mode      string `json:"mode"`
	Attackers int    `json:"attackers"`
	Attempts  int64  `json:"attempts"` // finished ones: refused + accepted + held + other_errors
	Refused   int64  `json:"refused"`  // authentication failed, as it must
	Accepted  int64  `json:"accepted"` // authentication succeeded: a security bug, must be 0
	Held      int64  `json:"held"`     // slowloris: idle connections the server greeted, then closed
	// OtherErrors are connections that ended before authentication:
	// refused by a connection cap, reset, timed out.
	OtherErrors        int64    `json:"other_errors"`
	Errors             []string `json:"error_samples,omitempty"` // the most frequent kinds
	RefusedAs          string   `json:"refused_as,omitempty"`    // the first refusal's text
	Unfinished         int64    `json:"unfinished"`              // cut short by the end of the sending phase; not in attempts
	WallSeconds        float64  `json:"wall_s"`
	AttemptsPerSec     float64  `json:"attempts_per_s"`
	HoldP50Seconds     float64  `json:"hold_p50_s,omitempty"` // slowloris: how long the server held an idle connection
	HoldMaxSeconds     float64  `json:"hold_max_s,omitempty"`
	LongestOpenSeconds float64  `json:"longest_open_hold_s,omitempty"` // slowloris: the longest hold still open at the end
	StopSeconds        float64  `json:"stop_s"`                        // from the end of the sending phase to the last attacker stopping
	Nice               int      `json:"nice"`                          // the attack process's niceness relative to this one
	CPUSeconds         float64  `json:"cpu_s"`                         // the attack process's CPU time
	CPUCores           float64  `json:"cpu_cores"`
	Error              string   `json:"error,omitempty"`
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
	// write(2)-family system calls while sending and draining; omitted
	// when /proc/PID/io cannot be read.
	WritesSend        uint64  `json:"writes_send,omitempty"`
	WritesPerDelivery float64 `json:"writes_per_delivery,omitempty"`
	Error             string  `json:"error,omitempty"`
}

type toolReport struct {
	CPUSendSeconds   float64 `json:"cpu_send_s"`
	CPUSendCores     float64 `json:"cpu_send_cores"`
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"`
	RSSMB            float64 `json:"rss_mb"`
	// How late a timer in this process fired while sending: if the tool
	// itself is starved, reader goroutines see lines late and the latency
	// figures blame the server for it.
	SchedLagP99MS  float64 `json:"sched_lag_p99_ms"`
	SchedLagMaxMS  float64 `json:"sched_lag_max_ms"`
	OpenFilesLimit uint64  `json:"open_files_limit"`
	Error          string  `json:"error,omitempty"`
}

// writeSummary prints the report for people.
func (r *report) writeSummary(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	list := func(items []string) {
		for _, s := range items {
			p("              %s", s)
		}
	}
	mode := "line-mode"
	if r.PTY {
		mode = "PTY"
	}
	p("sshchat load: %d %s clients, %d sending %g msg/s for %gs, against %s", r.Clients, mode, r.Senders, r.RatePerSender, r.DurationSeconds, r.Addr)
	c := r.Connect
	p("connect       %d/%d in %.2fs (%.0f handshakes/s), %d failed", c.Connected, r.Clients, c.WallSeconds, c.HandshakesPerSec, c.Failed)
	list(c.Errors)
	if c.Connected == 0 {
		return
	}
	quiet := fmt.Sprintf("quiet after %.2fs", c.TimeToQuietSeconds)
	if !c.Quiet {
		quiet = fmt.Sprintf("NOT quiet yet; last output at %.2fs", c.TimeToQuietSeconds)
	}
	p("join storm    all connected after %.2fs, %s", c.TimeToConnectAllSeconds, quiet)
	if len(c.PerAddr) > 0 {
		p("per address   %s", formatCounts(c.PerAddr))
	}
	s := r.Send
	p("send          %d sent (%d send errors), %d expected deliveries", s.Sent, s.SendErrors, s.Expected)
	list(s.SendErrorSamples)
	p("deliveries    %d delivered, %d lost (%.3f%%), %d duplicates, %d foreign, %d self-echoes", s.Delivered, s.Lost, pct(s.Lost, s.Expected), s.Duplicates, s.Foreign, s.SelfEchoes)
	p("throughput    %.0f deliveries/s over %.2fs of sending (+%.2fs drain)", s.DeliveriesPerSec, s.WallSeconds, s.DrainSeconds)
	l := r.Latency
	p("latency ms    p50 %.2f  p95 %.2f  p99 %.2f  max %.2f", l.P50, l.P95, l.P99, l.Max)
	if c := r.CrossNode; c != nil {
		p("  cross-node  p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  (%d deliveries)", c.P50, c.P95, c.P99, c.Max, c.Count)
	}
	d := r.Disconnects
	p("disconnects   %d, %d of them before sending (%d 'has left' and %d other unexpected lines while sending)", d.Count, d.BeforeSending, d.Leaves, d.OtherLines)
	list(d.Samples)
	list(d.OtherSamples)
	if a := r.Attack; a != nil {
		a.writeSummary(p, list)
	}
	if v := r.Server; v != nil {
		p("server RSS    %.1f MB before, %.1f MB idle (%.1f KB/session), %.1f MB after, %.1f MB peak", v.RSSBeforeMB, v.RSSIdleMB, v.IdleKBPerSession, v.RSSAfterMB, v.PeakRSSMB)
		p("server CPU    %.2fs connecting (%.0f µs/handshake); %.2fs sending (%.2f cores, %.2f µs/delivery)", v.CPUConnectSeconds, v.CPUPerHandshakeUS, v.CPUSendSeconds, v.CPUSendCores, v.CPUPerDeliveryUS)
		if v.WritesSend > 0 {
			p("server writes %d write syscalls sending (%.2f/delivery)", v.WritesSend, v.WritesPerDelivery)
		}
		if v.Error != "" {
			p("server        %s", v.Error)
		}
	}
	t := r.Tool
	p("load tool     %.2fs CPU sending (%.2f cores, %.2f µs/delivery), %.1f MB RSS, timer lag p99 %.2f ms max %.2f ms, %d open files allowed%s",
		t.CPUSendSeconds, t.CPUSendCores, t.CPUPerDeliveryUS, t.RSSMB, t.SchedLagP99MS, t.SchedLagMaxMS, t.OpenFilesLimit, strings.TrimSuffix(" "+t.Error, " "))
}

// formatCounts lists counts by key, in key order: "a 3, b 2".
func formatCounts(counts map[string]int) string {
	keys := slices.Sorted(maps.Keys(counts))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

func (a *attackReport) writeSummary(p func(string, ...any), list func([]string)) {
	p("attack        %s ×%d: %d attempts (%.0f/s over %.1fs): %d refused, %d accepted, %d held, %d other errors; %d unfinished, stopped %.0f ms after the end",
		a.Mode, a.Attackers, a.Attempts, a.AttemptsPerSec, a.WallSeconds, a.Refused, a.Accepted, a.Held, a.OtherErrors, a.Unfinished, a.StopSeconds*1e3)
	if a.Error != "" {
		p("attack        FAILED: %s", a.Error)
	}
	if a.Accepted > 0 {
		p("attack        !!! %d ACCEPTED: the server let in a %s attempt it must refuse. SECURITY BUG !!!", a.Accepted, a.Mode)
	}
	if a.RefusedAs != "" {
		p("attack        refused as: %s", a.RefusedAs)
	}
	if a.Held > 0 || a.LongestOpenSeconds > 0 {
		p("attack hold   server closed idle connections after p50 %.2fs, max %.2fs; longest still open at the end %.2fs", a.HoldP50Seconds, a.HoldMaxSeconds, a.LongestOpenSeconds)
	}
	list(a.Errors)
	p("attack CPU    %.2fs in the attack process at nice %d (%.2f cores)", a.CPUSeconds, a.Nice, a.CPUCores)
}

func pct(n int64, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
