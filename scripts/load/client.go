package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// connectTimeout bounds each client's dial, handshake and wait for its
// greeting.
const connectTimeout = 15 * time.Second

// shared is what every client of one run reads.
type shared struct {
	senders map[string]int // sender name → sender index; read-only
	// senderAddr is the address each sender is connected to, by index,
	// when there are several: a delivery between two of them is
	// cross-node. nil with one address.
	senderAddr []string
	maxSeq     uint64      // no sender sends a higher sequence number
	term       string      // the TERM of a PTY session; "" for line mode
	sending    atomic.Bool // the sending phase has begun
	stopping   atomic.Bool // the run is closing its connections
}

// ptyWidth and ptyHeight are the window a PTY client asks for: the classic
// terminal, wide enough that "[name] " and a load message never wrap.
const (
	ptyWidth  = 80
	ptyHeight = 24
)

// client is one chat session, in line mode or at a PTY. Its reader
// goroutine owns the receive statistics until done is closed; its sender,
// if it is one, owns sent and sendErr.
type client struct {
	idx    int
	name   string
	addr   string
	run    *shared
	conn   *ssh.Client
	stdin  io.Writer
	stdout io.Reader

	greeted     chan error    // the outcome of waiting for "You are NAME"
	done        chan struct{} // closed when the reader returns
	connectedAt time.Time     // when the greeting arrived

	delivered atomic.Int64 // unique deliveries so far, polled while draining
	// lastRecv is when the session last received anything, in Unix
	// nanoseconds: the room is quiet when no client's moves.
	lastRecv atomic.Int64

	screen screenLine // PTY sessions: the row being rebuilt
	prompt []byte     // PTY sessions: "[name] ", which starts the echo of what this client typed

	latency    histogram  // µs
	crossNode  histogram  // µs, of deliveries from a sender on another address
	seen       [][]uint64 // seen[sender] bit seq: delivered
	dups       int64
	selfEchoes int64
	foreign    int64 // load-looking lines from unknown senders or sequences
	leaves     int64 // "has left" seen while sending
	other      int64 // any other line seen while sending
	samples    []string
	notice     string // last "Disconnected..." notice
	disconnect string // why the session ended before the run closed it
	idleLoss   bool   // it ended before the sending phase

	sent    uint64
	sendErr error
}

// maxSamples is how many unexpected lines a client keeps for the report.
const maxSamples = 3

// connect dials addr as key and starts a chat session, at a PTY if
// run.term is set, returning once the server has greeted it.
// noticeMarker starts every line of a server notice in line mode.
var noticeMarker = []byte("-!- ")

func connect(addr string, key clientKey, run *shared, idx int) (*client, error) {
	raw, err := net.DialTimeout("tcp", addr, connectTimeout)
	if err != nil {
		return nil, err
	}
	// A stalled handshake fails at the deadline instead of hanging.
	raw.SetDeadline(time.Now().Add(connectTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{
		User: key.name, // ignored by sshchat: the key names the user
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key.signer)},
		// A load generator has no known_hosts to check against, and the
		// server's host key is generated per test directory.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	raw.SetDeadline(time.Time{})
	c := &client{
		idx:     idx,
		name:    key.name,
		addr:    addr,
		run:     run,
		conn:    ssh.NewClient(cc, chans, reqs),
		greeted: make(chan error, 1),
		done:    make(chan struct{}),
		seen:    make([][]uint64, len(run.senders)),
		prompt:  []byte("[" + key.name + "] "),
	}
	if err := c.startShell(); err != nil {
		c.conn.Close()
		return nil, err
	}
	go c.read()
	timer := time.NewTimer(connectTimeout)
	defer timer.Stop()
	select {
	case err = <-c.greeted:
	case <-timer.C:
		err = fmt.Errorf("no greeting within %s", connectTimeout)
	}
	if err != nil {
		c.conn.Close()
		<-c.done
		return nil, err
	}
	c.connectedAt = time.Now()
	return c, nil
}

// startShell opens a session, with a PTY if the run asks for one; without,
// sshchat is in line mode.
func (c *client) startShell() error {
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if c.run.term != "" {
		if err := sess.RequestPty(c.run.term, ptyHeight, ptyWidth, ssh.TerminalModes{}); err != nil {
			return fmt.Errorf("pty: %w", err)
		}
	}
	if c.stdin, err = sess.StdinPipe(); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	c.stdout = activityReader{stdout, &c.lastRecv}
	if err := sess.Shell(); err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	return nil
}

// activityReader records when each read returned something, so that the
// quiet wait sees any output at all, not only complete lines: a PTY's
// prompt redraw ends without a newline.
type activityReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// read consumes the session's output until it ends: first the scrollback
// and greeting, then deliveries and events.
func (c *client) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.stdout)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	greeted := false
	var last string // before the greeting: the last line that was not scrollback
	for sc.Scan() {
		line := sc.Bytes()
		if c.run.term != "" {
			if line = c.screen.render(line); bytes.HasPrefix(line, c.prompt) {
				continue // the echo of a line this client typed
			}
			line = stripTime(line)
		}
		if greeted {
			c.handle(line, time.Now())
			continue
		}
		// In line mode the server marks its notices, the greeting among them.
		if name, ok := bytes.CutPrefix(bytes.TrimPrefix(line, noticeMarker), []byte("You are ")); ok {
			greeted = true
			if string(name) != c.name {
				c.greeted <- fmt.Errorf("greeted as %q, want %q: is allowed_keys the one in -keys-dir?", name, c.name)
			} else {
				c.greeted <- nil
			}
		} else if !hasTime(line) {
			last = string(line)
		}
	}
	end := "connection closed"
	if err := sc.Err(); err != nil {
		end = err.Error()
	}
	switch {
	case !greeted && last != "":
		c.greeted <- fmt.Errorf("%s before the greeting; server said %q", end, last)
	case !greeted:
		c.greeted <- errors.New(end + " before the greeting")
	case c.run.stopping.Load():
	case c.notice != "":
		c.disconnect, c.idleLoss = c.notice, !c.run.sending.Load()
	default:
		c.disconnect, c.idleLoss = end, !c.run.sending.Load()
	}
}

// handle counts one line received after the greeting.
func (c *client) handle(line []byte, now time.Time) {
	from, seq, sent, ok := parseDelivery(line)
	if !ok {
		c.handleOther(line)
		return
	}
	s, known := c.run.senders[string(from)]
	switch {
	case !known || seq > c.run.maxSeq:
		c.foreign++
		return
	case string(from) == c.name:
		c.selfEchoes++
		return
	}
	word, bit := int(seq/64), seq%64
	for len(c.seen[s]) <= word {
		c.seen[s] = append(c.seen[s], 0)
	}
	if c.seen[s][word]&(1<<bit) != 0 {
		c.dups++
		return
	}
	c.seen[s][word] |= 1 << bit
	us := uint64(max(now.UnixNano()-sent, 0) / 1e3)
	c.latency.record(us)
	if c.run.senderAddr != nil && c.run.senderAddr[s] != c.addr {
		c.crossNode.record(us)
	}
	c.delivered.Add(1)
}

// handleOther notes events and notices; only those seen while sending are
// of interest: arrivals are expected before, departures after.
func (c *client) handleOther(line []byte) {
	if bytes.HasPrefix(line, []byte("Disconnected")) {
		c.notice = string(line)
	}
	if !c.run.sending.Load() || c.run.stopping.Load() {
		return
	}
	if bytes.HasSuffix(line, []byte(" has left")) {
		c.leaves++
		return
	}
	c.other++
	if len(c.samples) < maxSamples {
		c.samples = append(c.samples, string(line))
	}
}

// deliveredBelow counts the distinct messages seen from sender s with
// sequence numbers below n.
func (c *client) deliveredBelow(s int, n uint64) uint64 {
	var count uint64
	for w, word := range c.seen[s] {
		switch lo := uint64(w) * 64; {
		case lo >= n:
			return count
		case lo+64 > n:
			word &= 1<<(n-lo) - 1
		}
		count += uint64(bits.OnesCount64(word))
	}
	return count
}

// send sends load messages every interval from start until end.
func (c *client) send(start time.Time, interval time.Duration, end time.Time) {
	time.Sleep(time.Until(start))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	stop := time.NewTimer(time.Until(end))
	defer stop.Stop()
	// Enter on a terminal sends CR; a line-mode client ends lines with LF.
	enter := byte('\n')
	if c.run.term != "" {
		enter = '\r'
	}
	buf := make([]byte, 0, 64)
	for seq := uint64(0); seq <= c.run.maxSeq; seq++ {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		buf = appendMessage(buf[:0], seq, now.UnixNano(), enter)
		if _, err := c.stdin.Write(buf); err != nil {
			c.sendErr = err
			return
		}
		c.sent = seq + 1
		select {
		case <-tick.C:
		case <-stop.C:
			return
		}
	}
}
