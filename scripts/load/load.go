package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"time"
)

// config is one load run.
type config struct {
	addr            string
	clients         int
	senders         int
	rate            float64
	duration        time.Duration
	drain           time.Duration
	dialConcurrency int
	pid             int
	attackers       int
	attackMode      attackMode
	attackNice      int
	keys            []clientKey
}

func (c *config) validate(keysDir string) error {
	switch {
	case keysDir == "":
		return errors.New("-keys-dir is required")
	case c.clients < 1:
		return errors.New("-n must be at least 1")
	case c.senders < 0:
		return errors.New("-senders must not be negative")
	case !(c.rate > 0) || math.IsInf(c.rate, 0):
		return errors.New("-rate must be positive")
	case c.duration <= 0 || c.drain < 0:
		return errors.New("-duration must be positive and -drain not negative")
	case c.dialConcurrency < 1:
		return errors.New("-dial-concurrency must be at least 1")
	case c.attackers < 0:
		return errors.New("-attackers must not be negative")
	case c.attackNice < -20 || c.attackNice > 19:
		return errors.New("-attack-nice must be from -20 to 19")
	}
	// So that a small -n works without also lowering -senders.
	c.senders = min(c.senders, c.clients)
	return nil
}

// settleTime is how long the idle RSS measurement waits after the last
// connection, for the flood of arrival events to be written out.
const settleTime = time.Second

// maxErrors is how many distinct errors of a kind the report lists.
const maxErrors = 5

// runLoad runs the four phases, connect, idle, send and drain, and reports.
// Progress goes to log.
func runLoad(cfg config, log io.Writer) *report {
	rep := &report{
		Addr:            cfg.addr,
		Clients:         cfg.clients,
		Senders:         cfg.senders,
		RatePerSender:   cfg.rate,
		DurationSeconds: cfg.duration.Seconds(),
	}
	interval := time.Duration(float64(time.Second) / cfg.rate)
	run := &shared{
		senders: make(map[string]int, cfg.senders),
		maxSeq:  uint64(cfg.duration/interval) + 1,
	}
	for i := range cfg.senders {
		run.senders[cfg.keys[i].name] = i
	}
	srv := newProbe("")
	if cfg.pid > 0 {
		srv = newProbe(strconv.Itoa(cfg.pid))
	}
	self := newProbe("self")

	// 1. Connect.
	fmt.Fprintf(log, "load: connecting %d clients to %s\n", cfg.clients, cfg.addr)
	srv.sample("before")
	clients := make([]*client, cfg.clients)
	errs := make([]error, cfg.clients)
	sem := make(chan struct{}, cfg.dialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			clients[i], errs[i] = connect(cfg.addr, cfg.keys[i], run, i)
		})
	}
	wg.Wait()
	rep.Connect.WallSeconds = time.Since(start).Seconds()
	srv.sample("connected")
	var connected []*client
	var connectErrs tally
	for i, c := range clients {
		if c != nil {
			connected = append(connected, c)
			continue
		}
		rep.Connect.Failed++
		connectErrs.add(errs[i].Error(), cfg.keys[i].name)
	}
	rep.Connect.Errors = connectErrs.list()
	rep.Connect.Connected = len(connected)
	rep.Connect.HandshakesPerSec = float64(len(connected)) / rep.Connect.WallSeconds
	fmt.Fprintf(log, "load: %d connected, %d failed in %.2fs\n", len(connected), rep.Connect.Failed, rep.Connect.WallSeconds)
	if len(connected) == 0 {
		rep.Server = srv.report(rep, 0)
		return rep
	}

	// 2. Idle.
	time.Sleep(settleTime)
	srv.sample("idle")

	// 3. Send. Senders start spread evenly over one interval, so the
	// server sees a steady stream rather than S messages at each tick.
	var senders []*client
	for _, c := range connected {
		if _, ok := run.senders[c.name]; ok {
			senders = append(senders, c)
		}
	}
	fmt.Fprintf(log, "load: %d senders sending %g/s each for %s\n", len(senders), cfg.rate, cfg.duration)
	if cfg.attackers > 0 {
		fmt.Fprintf(log, "load: meanwhile %d attackers (%s)\n", cfg.attackers, cfg.attackMode)
	}
	run.sending.Store(true)
	srv.sample("send")
	self.sample("send")
	start = time.Now()
	end := start.Add(cfg.duration)
	sending, stopSending := context.WithDeadline(context.Background(), end)
	lag := startLagProbe(sending)
	var at *attackProcess
	if cfg.attackers > 0 {
		var err error
		if at, err = startAttackProcess(sending, cfg.addr, cfg.attackMode, cfg.attackers, cfg.attackNice, log); err != nil {
			rep.Attack = &attackReport{Mode: cfg.attackMode.String(), Attackers: cfg.attackers, Error: err.Error()}
		}
	}
	for j, c := range senders {
		offset := interval * time.Duration(j) / time.Duration(len(senders))
		wg.Go(func() { c.send(start.Add(offset), interval, end) })
	}
	wg.Wait()
	sendWall := time.Since(start)
	stopSending()
	if at != nil {
		rep.Attack = at.wait(end)
		rep.Attack.Mode, rep.Attack.Attackers = cfg.attackMode.String(), cfg.attackers
		fmt.Fprintf(log, "load: attackers stopped %.0f ms after the sending phase\n", rep.Attack.StopSeconds*1e3)
	}
	lagHist := <-lag

	// 4. Drain: until every expected delivery arrived, or -drain is up.
	var sent uint64
	var sendErrs tally
	for _, c := range senders {
		sent += c.sent
		if c.sendErr != nil {
			rep.Send.SendErrors++
			sendErrs.add(c.sendErr.Error(), c.name)
		}
	}
	rep.Send.SendErrorSamples = sendErrs.list()
	expected := sent * uint64(len(connected)-1)
	drainStart := time.Now()
	for time.Since(drainStart) < cfg.drain {
		var got int64
		for _, c := range connected {
			got += c.delivered.Load()
		}
		if uint64(got) >= expected {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep.Send.DrainSeconds = time.Since(drainStart).Seconds()
	srv.sample("drained")
	self.sample("drained")

	run.stopping.Store(true)
	for _, c := range connected {
		c.conn.Close()
	}
	for _, c := range connected {
		<-c.done
	}

	rep.Send.Sent = sent
	rep.Send.Expected = expected
	rep.Send.WallSeconds = sendWall.Seconds()
	var lat histogram
	var samples []string
	var disconnects tally
	for _, c := range connected {
		for _, s := range senders {
			rep.Send.Delivered += c.deliveredBelow(run.senders[s.name], s.sent)
		}
		lat.merge(&c.latency)
		rep.Send.Duplicates += c.dups
		rep.Send.Foreign += c.foreign
		rep.Send.SelfEchoes += c.selfEchoes
		rep.Disconnects.Leaves += c.leaves
		rep.Disconnects.OtherLines += c.other
		for _, l := range c.samples {
			samples = appendDistinct(samples, l, maxErrors)
		}
		if c.disconnect != "" {
			rep.Disconnects.Count++
			if c.idleLoss {
				rep.Disconnects.BeforeSending++
			}
			disconnects.add(c.disconnect, c.name)
		}
	}
	rep.Disconnects.Samples = disconnects.list()
	rep.Disconnects.OtherSamples = samples
	rep.Send.Lost = int64(expected) - int64(rep.Send.Delivered)
	rep.Send.DeliveriesPerSec = float64(rep.Send.Delivered) / sendWall.Seconds()
	rep.Latency = latencyReport{
		Count: lat.total,
		P50:   msec(lat.percentile(50)),
		P95:   msec(lat.percentile(95)),
		P99:   msec(lat.percentile(99)),
		Max:   msec(lat.max),
	}
	rep.Server = srv.report(rep, rep.Send.Delivered)
	rep.Tool = self.toolReport(rep.Send.Delivered)
	rep.Tool.SchedLagP99MS, rep.Tool.SchedLagMaxMS = msec(lagHist.percentile(99)), msec(lagHist.max)
	return rep
}

// lagTick is how often the lag probe sets a timer.
const lagTick = 5 * time.Millisecond

// startLagProbe measures, until ctx is done, how late this process's
// timers fire, in µs: a stand-in for how long a reader goroutine with a
// line to read waits for a CPU.
func startLagProbe(ctx context.Context) <-chan *histogram {
	out := make(chan *histogram, 1)
	go func() {
		h := new(histogram)
		t := time.NewTimer(lagTick)
		defer t.Stop()
		for {
			set := time.Now()
			t.Reset(lagTick)
			select {
			case <-ctx.Done():
				out <- h
				return
			case <-t.C:
				// Now, not the time on the channel: what matters is when
				// this goroutine got to run.
				h.record(uint64(max(time.Since(set)-lagTick, 0).Microseconds()))
			}
		}
	}()
	return out
}

func msec(us uint64) float64 { return float64(us) / 1e3 }

// appendDistinct appends s to list unless it is there or list is full.
func appendDistinct(list []string, s string, limit int) []string {
	if len(list) >= limit {
		return list
	}
	for _, l := range list {
		if l == s {
			return list
		}
	}
	return append(list, s)
}

// tally counts clients by what went wrong for them.
type tally struct {
	texts   []string // in order of first appearance
	counts  map[string]int
	example map[string]string
}

func (t *tally) add(text, client string) {
	if t.counts == nil {
		t.counts, t.example = make(map[string]int), make(map[string]string)
	}
	if t.counts[text] == 0 {
		t.texts = append(t.texts, text)
		t.example[text] = client
	}
	t.counts[text]++
}

// list describes the first maxErrors kinds, and how many more there are.
func (t *tally) list() []string {
	var out []string
	for i, text := range t.texts {
		if i == maxErrors {
			out = append(out, fmt.Sprintf("... and %d other kinds", len(t.texts)-maxErrors))
			break
		}
		out = append(out, fmt.Sprintf("%d× %s (e.g. %s)", t.counts[text], text, t.example[text]))
	}
	return out
}

// probe samples a process at named moments of the run: pid is its /proc
// directory name, "self" for this process, "" for none.
type probe struct {
	pid     string
	samples map[string]procSample
	err     error
}

func newProbe(pid string) *probe {
	return &probe{pid: pid, samples: make(map[string]procSample)}
}

func (p *probe) sample(at string) {
	if p.pid == "" || p.err != nil {
		return
	}
	s, err := readProc(p.pid)
	if err != nil {
		p.err = fmt.Errorf("at %s: %w", at, err)
		return
	}
	p.samples[at] = s
}

// cpuBetween returns the CPU time used between two samples, and the wall
// time between them.
func (p *probe) cpuBetween(from, to string) (cpu, wall time.Duration, ok bool) {
	a, okA := p.samples[from]
	b, okB := p.samples[to]
	if !okA || !okB {
		return 0, 0, false
	}
	return b.cpu - a.cpu, b.sample.Sub(a.sample), true
}

func (p *probe) report(rep *report, delivered uint64) *serverReport {
	if p.pid == "" {
		return nil
	}
	pid, _ := strconv.Atoi(p.pid)
	r := &serverReport{PID: pid}
	if p.err != nil {
		r.Error = p.err.Error()
	}
	mb := func(at string) float64 { return float64(p.samples[at].rssKB) / 1024 }
	r.RSSBeforeMB, r.RSSIdleMB, r.RSSAfterMB = mb("before"), mb("idle"), mb("drained")
	if last, ok := p.samples["drained"]; ok {
		r.PeakRSSMB = float64(last.hwmKB) / 1024
	}
	before, okB := p.samples["before"]
	idle, okI := p.samples["idle"]
	if okB && okI && rep.Connect.Connected > 0 {
		r.IdleKBPerSession = (float64(idle.rssKB) - float64(before.rssKB)) / float64(rep.Connect.Connected)
	}
	if cpu, _, ok := p.cpuBetween("before", "connected"); ok {
		r.CPUConnectSeconds = cpu.Seconds()
		if rep.Connect.Connected > 0 {
			r.CPUPerHandshakeUS = float64(cpu.Microseconds()) / float64(rep.Connect.Connected)
		}
	}
	if cpu, wall, ok := p.cpuBetween("send", "drained"); ok {
		r.CPUSendSeconds = cpu.Seconds()
		r.CPUSendCores = cpu.Seconds() / wall.Seconds()
		if delivered > 0 {
			r.CPUPerDeliveryUS = float64(cpu.Microseconds()) / float64(delivered)
		}
	}
	return r
}

func (p *probe) toolReport(delivered uint64) toolReport {
	var r toolReport
	if p.err != nil {
		r.Error = p.err.Error()
	}
	if cpu, wall, ok := p.cpuBetween("send", "drained"); ok {
		r.CPUSendSeconds = cpu.Seconds()
		r.CPUSendCores = cpu.Seconds() / wall.Seconds()
		if delivered > 0 {
			r.CPUPerDeliveryUS = float64(cpu.Microseconds()) / float64(delivered)
		}
	}
	if s, ok := p.samples["drained"]; ok {
		r.RSSMB = float64(s.rssKB) / 1024
	}
	return r
}
