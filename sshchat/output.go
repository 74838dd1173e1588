package sshchat

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Output: a session's writer goroutine drains its client's queue to the
// channel, coalescing whatever is queued into one write, and applies the
// terminal's size changes. Every write to a channel, echo and repaints
// included, runs under a watchdog.

// maxBatch bounds how much queued output one write coalesces: about one SSH
// packet's worth.
const maxBatch = 32 << 10

// window is a terminal size.
type window struct{ width, height int }

// output is where a session's chat output goes.
type output interface {
	// write sends a batch of rendered events.
	write(p []byte) error
	// resize applies a new terminal size.
	resize(w window) error
	// style says how to render events.
	style() style
}

// writeLoop drains cli.out to w until the broadcaster closes it, coalescing
// whatever is queued into one write per wake-up: for a busy room that is one
// SSH packet for many lines instead of one per line. Meanwhile it applies
// the window sizes arriving on resized.
func (cli *client) writeLoop(w output, resized <-chan window, m *metrics) error {
	st := w.style()
	for {
		select {
		case size := <-resized:
			if err := w.resize(size); err != nil {
				return err
			}
		case ev, ok := <-cli.out:
			if !ok {
				if cli.hangup.notice != "" {
					return w.write(noticeEvent(cli.hangup.notice).appendTo(nil, st))
				}
				return nil
			}
			if err := cli.writeBatch(w, st, ev, m); err != nil {
				return err
			}
		}
	}
}

// batchBuffers are the buffers writers coalesce output in, shared so that
// an idle session holds none.
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// writeBatch writes ev and whatever else is queued behind it, up to
// maxBatch, in one write, and measures the delivery lag of sampled events.
// It does not wait for more to arrive: under load events queue up while the
// writer waits for a CPU or a write anyway, and a 1 ms wait made no fewer
// writes at saturation but cut a closed loop's throughput to a third.
func (cli *client) writeBatch(w output, st style, ev *event, m *metrics) error {
	b := batch{st: st, m: m}
	bp := batchBuffers.Get().(*[]byte)
	b.buf = (*bp)[:0]
	b.add(ev)
	b.drain(cli.out)
	err := w.write(b.buf)
	*bp = b.buf
	batchBuffers.Put(bp)
	if err == nil {
		m.wrote(b.samples[:b.sampled])
	}
	return err
}

// batch is one write's worth of rendered events.
type batch struct {
	st      style
	m       *metrics
	buf     []byte
	samples [8]time.Time // on the stack: a batch has few sampled events
	sampled int
}

func (b *batch) add(ev *event) {
	b.buf = ev.appendTo(b.buf, b.st)
	if ev.sampled && b.m != nil && b.sampled < len(b.samples) {
		b.samples[b.sampled] = ev.at
		b.sampled++
	}
}

// drain adds what is queued on out, up to maxBatch, without waiting. A
// closed queue is left for writeLoop to see on its next receive.
func (b *batch) drain(out <-chan *event) {
	for len(b.buf) < maxBatch {
		select {
		case ev, ok := <-out:
			if !ok {
				return
			}
			b.add(ev)
		default:
			return
		}
	}
}

// appendTo appends ev rendered in st: for line mode, the shared bytes
// rendered once when the event was made.
func (ev *event) appendTo(buf []byte, st style) []byte {
	switch {
	case st == lineMode:
		return append(buf, ev.line...)
	case st.json:
		return ev.appendJSON(buf)
	}
	return ev.render(buf, st)
}

// watchdog closes a connection whose writes stop making progress: a peer
// that stops reading, or vanishes without a FIN, would otherwise hold a
// write, and the session with it, forever. Several goroutines may write at
// once (the writer, and x/term echoing keys); the connection is closed once
// a write has been under way for the timeout without any write completing.
//
// A write only counts itself and stamps the time on atomics: the timer is
// armed by the first write after an idle spell and then checks at most once
// per timeout, rather than being reset and stopped around every write,
// which costs a lock and a timer-heap update per delivery.
type watchdog struct {
	timeout time.Duration
	expired func()
	writing atomic.Int32
	// progress is when a write last completed, or began with none under
	// way, in nanoseconds since start.
	progress atomic.Int64
	start    time.Time
	armed    atomic.Bool

	mu      sync.Mutex // arms and stops timer
	timer   *time.Timer
	stopped bool
}

func newWatchdog(timeout time.Duration, expired func()) *watchdog {
	wd := &watchdog{timeout: timeout, expired: expired, start: time.Now()}
	wd.timer = time.AfterFunc(time.Hour, wd.check)
	wd.timer.Stop()
	return wd
}

func (wd *watchdog) now() int64 { return int64(time.Since(wd.start)) }

func (wd *watchdog) begin() {
	// The stamp goes before the count, so that check never sees this write
	// under way with the time of an older one.
	if wd.writing.Load() == 0 {
		wd.progress.Store(wd.now())
	}
	wd.writing.Add(1)
	if !wd.armed.Load() {
		wd.arm(wd.timeout)
	}
}

func (wd *watchdog) end() {
	wd.progress.Store(wd.now())
	wd.writing.Add(-1)
}

func (wd *watchdog) arm(d time.Duration) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.stopped && !wd.armed.Load() {
		wd.armed.Store(true)
		wd.timer.Reset(d)
	}
}

// check runs when the timer fires: it expires the watchdog if a write is
// under way and none has made progress for the timeout, and otherwise
// checks again when that could first be so. With no write under way it
// stays disarmed until the next one begins.
func (wd *watchdog) check() {
	// Disarmed before looking, so that a write beginning meanwhile either
	// is seen here or arms the timer itself.
	wd.armed.Store(false)
	if wd.writing.Load() == 0 {
		return
	}
	idle := time.Duration(wd.now() - wd.progress.Load())
	if idle >= wd.timeout {
		wd.expired()
		return
	}
	wd.arm(wd.timeout - idle)
}

func (wd *watchdog) stop() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.stopped = true
	wd.timer.Stop()
}

// watchedWriter writes to w under a watchdog.
type watchedWriter struct {
	w  io.Writer
	wd *watchdog
}

func (ww watchedWriter) Write(p []byte) (int, error) {
	ww.wd.begin()
	defer ww.wd.end()
	return ww.w.Write(p)
}

// channelOutput writes line-mode sessions: plain text, no escapes.
type channelOutput struct{ w io.Writer }

func (o channelOutput) write(p []byte) error {
	_, err := o.w.Write(p)
	return err
}

func (channelOutput) resize(window) error { return nil }
func (channelOutput) style() style        { return lineMode }

// dumbOutput writes PTY sessions on a dumb terminal: timestamps, CRLF line
// ends, no colours and no cursor control.
type dumbOutput struct{ w io.Writer }

func (o dumbOutput) write(p []byte) error {
	bp := batchBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, c := range p {
		if c == '\n' {
			buf = append(buf, '\r')
		}
		buf = append(buf, c)
	}
	_, err := o.w.Write(buf)
	*bp = buf
	batchBuffers.Put(bp)
	return err
}

func (dumbOutput) resize(window) error { return nil }
func (dumbOutput) style() style        { return style{terminal: true} }

// terminalOutput writes PTY sessions through x/term, which prints above the
// prompt and redraws what the user was typing. x/term writes the line
// clearing, each line, each line end and the prompt separately; they are
// held and sent as one channel write.
type terminalOutput struct {
	t      *term.Terminal
	held   *heldWriter
	colors bool
}

func (o *terminalOutput) write(p []byte) error {
	o.held.hold()
	_, err := o.t.Write(p)
	return firstErr(err, o.held.release())
}

func (o *terminalOutput) resize(w window) error {
	o.held.hold()
	err := o.t.SetSize(w.width, w.height)
	return firstErr(err, o.held.release())
}

func (o *terminalOutput) style() style { return style{terminal: true, color: o.colors} }

// heldWriter is a terminal's way out: writes go straight through, except
// between hold and release, when they are collected and sent as one.
type heldWriter struct {
	mu   sync.Mutex
	w    io.Writer
	held *[]byte // from batchBuffers while held
}

func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil {
		*h.held = append(*h.held, p...)
		return len(p), nil
	}
	return h.w.Write(p)
}

func (h *heldWriter) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = batchBuffers.Get().(*[]byte)
	*h.held = (*h.held)[:0]
}

func (h *heldWriter) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	bp := h.held
	h.held = nil
	var err error
	if len(*bp) > 0 {
		_, err = h.w.Write(*bp)
	}
	batchBuffers.Put(bp)
	return err
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
