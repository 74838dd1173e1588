package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config is one load run.
type config struct {
	addrs           []string // clients are spread over them round-robin
	clients         int
	senders         int
	rate            float64
	duration        time.Duration
	drain           time.Duration
	quiet           time.Duration
	quietTimeout    time.Duration
	dialConcurrency int
	pid             int
	term            string // the TERM of PTY clients; "" for line mode
	attackers       int
	attackMode      attackMode
	attackNice      int
	keys            []clientKey
}

func (c *config) validate(keysDir string) error {
	switch {
	case keysDir == "":
		return errors.New("-keys-dir is required")
	case len(c.addrs) == 0:
		return errors.New("-addr needs at least one address")
	case c.clients < 1:
		return errors.New("-n must be at least 1")
	case c.senders < 0:
		return errors.New("-senders must not be negative")
	case !(c.rate > 0) || math.IsInf(c.rate, 0):
		return errors.New("-rate must be positive")
	case c.duration <= 0 || c.drain < 0:
		return errors.New("-duration must be positive and -drain not negative")
	case c.quiet <= 0 || c.quietTimeout <= 0:
		return errors.New("-quiet and -quiet-timeout must be positive")
	case c.dialConcurrency < 1:
		return errors.New("-dial-concurrency must be at least 1")
	case c.attackers < 0:
		return errors.New("-attackers must not be negative")
	case c.attackNice < -20 || c.attackNice > 19:
		return errors.New("-attack-nice must be from -20 to 19")
	}
	for _, a := range c.addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
	}
	// So that a small -n works without also lowering -senders.
	c.senders = min(c.senders, c.clients)
	return nil
}

// parseAddrs splits -addr's comma-separated list, ignoring empty items and
// spaces around commas.
func parseAddrs(s string) []string {
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// addrFor is the address client i connects to: round-robin, so that every
// address gets the same share of clients, and of senders, which are the
// first clients.
func addrFor(addrs []string, i int) string { return addrs[i%len(addrs)] }

// maxErrors is how many distinct errors of a kind the report lists.
const maxErrors = 5

// loadRun is a run in progress: what its phases hand on to each other.
type loadRun struct {
	cfg      config
	log      io.Writer // progress
	rep      *report
	shared   *shared
	interval time.Duration // between one sender's messages
	srv      *probe
	self     *probe

	start     time.Time // connecting began
	connected []*client
	senders   []*client // the connected ones among the first -senders clients
	sent      uint64
	sendWall  time.Duration
	lag       *histogram // timer lag while sending, µs
}

// runLoad runs the phases, connect, quiet, send and drain, and reports.
// Progress goes to log.
func runLoad(cfg config, log io.Writer) *report {
	r := newLoadRun(cfg, log)
	if !r.connectAll() {
		r.rep.Server = r.srv.report(r.rep, 0)
		return r.rep
	}
	r.awaitQuiet()
	r.send()
	r.drain()
	r.closeAll()
	r.tallyReceived()
	return r.rep
}

func newLoadRun(cfg config, log io.Writer) *loadRun {
	r := &loadRun{
		cfg: cfg,
		log: log,
		rep: &report{
			Addr:            strings.Join(cfg.addrs, ","),
			Clients:         cfg.clients,
			Senders:         cfg.senders,
			PTY:             cfg.term != "",
			RatePerSender:   cfg.rate,
			DurationSeconds: cfg.duration.Seconds(),
		},
		interval: time.Duration(float64(time.Second) / cfg.rate),
		srv:      newProbe(""),
		self:     newProbe("self"),
	}
	r.shared = &shared{
		senders: make(map[string]int, cfg.senders),
		maxSeq:  uint64(cfg.duration/r.interval) + 1,
		term:    cfg.term,
	}
	for i := range cfg.senders {
		r.shared.senders[cfg.keys[i].name] = i
		if len(cfg.addrs) > 1 {
			r.shared.senderAddr = append(r.shared.senderAddr, addrFor(cfg.addrs, i))
		}
	}
	if cfg.pid > 0 {
		r.srv = newProbe(strconv.Itoa(cfg.pid))
	}
	return r
}

// connectAll connects every client, -dial-concurrency at a time, and
// reports whether any made it.
func (r *loadRun) connectAll() bool {
	cfg := r.cfg
	fmt.Fprintf(r.log, "load: connecting %d clients to %s\n", cfg.clients, r.rep.Addr)
	r.srv.sample("before")
	clients := make([]*client, cfg.clients)
	errs := make([]error, cfg.clients)
	sem := make(chan struct{}, cfg.dialConcurrency)
	var wg sync.WaitGroup
	r.start = time.Now()
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			clients[i], errs[i] = connect(addrFor(cfg.addrs, i), cfg.keys[i], r.shared, i)
		})
	}
	wg.Wait()
	rc := &r.rep.Connect
	rc.WallSeconds = time.Since(r.start).Seconds()
	r.srv.sample("connected")
	var connectErrs tally
	lastGreeting := r.start
	for i, c := range clients {
		if c == nil {
			rc.Failed++
			connectErrs.add(errs[i].Error(), cfg.keys[i].name)
			continue
		}
		r.connected = append(r.connected, c)
		if c.connectedAt.After(lastGreeting) {
			lastGreeting = c.connectedAt
		}
		if len(cfg.addrs) > 1 {
			if rc.PerAddr == nil {
				rc.PerAddr = make(map[string]int)
			}
			rc.PerAddr[c.addr]++
		}
	}
	rc.Errors = connectErrs.list()
	rc.Connected = len(r.connected)
	rc.HandshakesPerSec = float64(rc.Connected) / rc.WallSeconds
	rc.TimeToConnectAllSeconds = lastGreeting.Sub(r.start).Seconds()
	fmt.Fprintf(r.log, "load: %d connected, %d failed in %.2fs\n", rc.Connected, rc.Failed, rc.WallSeconds)
	return rc.Connected > 0
}

// awaitQuiet waits until no client has received anything for -quiet, the
// tail of the arrival announcements, or for -quiet-timeout; then the
// server's memory is what idle sessions cost.
func (r *loadRun) awaitQuiet() {
	fmt.Fprintf(r.log, "load: waiting for %s without output (at most %s)\n", r.cfg.quiet, r.cfg.quietTimeout)
	connectedAt := r.start.Add(time.Duration(r.rep.Connect.WallSeconds * float64(time.Second)))
	last, quiet := awaitQuiet(func() time.Time { return lastActivity(r.connected, connectedAt) }, r.cfg.quiet, r.cfg.quietTimeout, realClock{})
	rc := &r.rep.Connect
	rc.Quiet = quiet
	rc.TimeToQuietSeconds = last.Sub(r.start).Seconds()
	if !quiet {
		fmt.Fprintf(r.log, "load: the room was still busy after %s; sending anyway\n", r.cfg.quietTimeout)
	}
	r.srv.sample("idle")
}

// send runs the sending phase, with the attackers if there are any.
// Senders start spread evenly over one interval, so the server sees a
// steady stream rather than S messages at each tick.
func (r *loadRun) send() {
	cfg := r.cfg
	for _, c := range r.connected {
		if _, ok := r.shared.senders[c.name]; ok {
			r.senders = append(r.senders, c)
		}
	}
	fmt.Fprintf(r.log, "load: %d senders sending %g/s each for %s\n", len(r.senders), cfg.rate, cfg.duration)
	if cfg.attackers > 0 {
		fmt.Fprintf(r.log, "load: meanwhile %d attackers (%s)\n", cfg.attackers, cfg.attackMode)
	}
	r.shared.sending.Store(true)
	r.srv.sample("send")
	r.self.sample("send")
	start := time.Now()
	end := start.Add(cfg.duration)
	sending, stopSending := context.WithDeadline(context.Background(), end)
	lag := startLagProbe(sending)
	at := r.startAttack(sending)
	var wg sync.WaitGroup
	for j, c := range r.senders {
		offset := r.interval * time.Duration(j) / time.Duration(len(r.senders))
		wg.Go(func() { c.send(start.Add(offset), r.interval, end) })
	}
	wg.Wait()
	r.sendWall = time.Since(start)
	stopSending()
	if at != nil {
		r.rep.Attack = at.wait(end)
		r.rep.Attack.Mode, r.rep.Attack.Attackers = cfg.attackMode.String(), cfg.attackers
		fmt.Fprintf(r.log, "load: attackers stopped %.0f ms after the sending phase\n", r.rep.Attack.StopSeconds*1e3)
	}
	r.lag = <-lag

	var sendErrs tally
	for _, c := range r.senders {
		r.sent += c.sent
		if c.sendErr != nil {
			r.rep.Send.SendErrors++
			sendErrs.add(c.sendErr.Error(), c.name)
		}
	}
	r.rep.Send.SendErrorSamples = sendErrs.list()
}

// startAttack starts the -attackers, if any, until ctx is done; a failure
// to start them goes in the report.
func (r *loadRun) startAttack(ctx context.Context) *attackProcess {
	cfg := r.cfg
	if cfg.attackers == 0 {
		return nil
	}
	at, err := startAttackProcess(ctx, cfg.addrs, cfg.attackMode, cfg.attackers, cfg.attackNice, r.log)
	if err != nil {
		r.rep.Attack = &attackReport{Mode: cfg.attackMode.String(), Attackers: cfg.attackers, Error: err.Error()}
	}
	return at
}

// drainPoll is how often the drain phase counts deliveries.
const drainPoll = 10 * time.Millisecond

// drain waits until every expected delivery arrived, or -drain is up.
func (r *loadRun) drain() {
	expected := r.sent * uint64(len(r.connected)-1)
	start := time.Now()
	for time.Since(start) < r.cfg.drain {
		var got int64
		for _, c := range r.connected {
			got += c.delivered.Load()
		}
		if uint64(got) >= expected {
			break
		}
		time.Sleep(drainPoll)
	}
	r.rep.Send.DrainSeconds = time.Since(start).Seconds()
	r.srv.sample("drained")
	r.self.sample("drained")
}

// closeAll ends every session and waits for the readers, which hand over
// their statistics when they return.
func (r *loadRun) closeAll() {
	r.shared.stopping.Store(true)
	for _, c := range r.connected {
		c.conn.Close()
	}
	for _, c := range r.connected {
		<-c.done
	}
}

// tallyReceived adds up what the readers counted.
func (r *loadRun) tallyReceived() {
	rep := r.rep
	rep.Send.Sent = r.sent
	rep.Send.Expected = r.sent * uint64(len(r.connected)-1)
	rep.Send.WallSeconds = r.sendWall.Seconds()
	var lat, cross histogram
	var samples []string
	var disconnects tally
	for _, c := range r.connected {
		for _, s := range r.senders {
			rep.Send.Delivered += c.deliveredBelow(r.shared.senders[s.name], s.sent)
		}
		lat.merge(&c.latency)
		cross.merge(&c.crossNode)
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
	rep.Send.Lost = int64(rep.Send.Expected) - int64(rep.Send.Delivered)
	if r.sendWall > 0 {
		rep.Send.DeliveriesPerSec = float64(rep.Send.Delivered) / r.sendWall.Seconds()
	}
	rep.Latency = newLatencyReport(&lat)
	if r.shared.senderAddr != nil {
		cr := newLatencyReport(&cross)
		rep.CrossNode = &cr
	}
	rep.Server = r.srv.report(rep, rep.Send.Delivered)
	rep.Tool = r.self.toolReport(rep.Send.Delivered)
	rep.Tool.SchedLagP99MS, rep.Tool.SchedLagMaxMS = msec(r.lag.percentile(99)), msec(r.lag.max)
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
