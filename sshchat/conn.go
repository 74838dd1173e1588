package sshchat

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// trackedConn is an accepted connection, counted against the connection
// limits from accept until it closes, so that Shutdown can close it and
// Revalidate can find it by the key it authenticated with.
type trackedConn struct {
	net.Conn
	acceptedAt time.Time
	release    func() // frees the limits' slot and the server's record
	once       sync.Once
	closed     atomic.Bool
	done       chan struct{} // closed by Close

	// The login grace: a connection is closed while it has gone this long
	// without a chat session, before authenticating or after its last
	// session ended.
	grace    *time.Timer
	graceFor time.Duration

	mu       sync.Mutex
	sessions int         // open session channels
	chats    int         // sessions in the chat
	key      identityKey // set once authenticated
	hasKey   bool

	deadlineSet atomic.Bool

	// What one read fetched beyond a small read's buffer; see Read.
	// Only the goroutine reading the connection touches it: x/crypto
	// reads from one goroutine at a time.
	unread []byte
}

// smallRead is the largest read that Read serves from its own buffer of
// readAhead bytes: x/crypto reads the client's version line, up to 255
// bytes, one byte per read, a system call each (40 for OpenSSH's).
const (
	smallRead = 16
	readAhead = 256
)

// newTrackedConn tracks conn, calling expired when its login grace expires
// and release when it closes.
func newTrackedConn(conn net.Conn, graceFor time.Duration, expired, release func(*trackedConn)) *trackedConn {
	c := &trackedConn{Conn: conn, graceFor: graceFor, acceptedAt: time.Now(), done: make(chan struct{})}
	c.release = func() { release(c) }
	c.mu.Lock() // the timer may fire before c.grace is set
	defer c.mu.Unlock()
	c.grace = time.AfterFunc(graceFor, func() { expired(c) })
	return c
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed.Store(true) // under mu, so closeSession cannot re-arm the grace after
		c.grace.Stop()
		c.mu.Unlock()
		close(c.done)
		c.release()
	})
	return c.Conn.Close()
}

// SetDeadline ignores requests to clear a deadline that was never set.
// gliderlabs/ssh makes one on every read and write of a connection, which
// costs a timer update per packet for nothing: sshchat sets none.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if t.IsZero() && !c.deadlineSet.Load() {
		return nil
	}
	c.deadlineSet.Store(true)
	return c.Conn.SetDeadline(t)
}

// Read fills a small read with one larger read of the connection and
// serves the next ones from what that fetched, so that reading the version
// line costs a system call or two instead of one per byte. Reads of
// packets, into x/crypto's 4 KiB buffer, go straight to the connection once
// what was read ahead is taken.
func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		if c.unread = c.unread[n:]; len(c.unread) == 0 {
			c.unread = nil
		}
		return n, nil
	}
	if len(p) > smallRead {
		return c.Conn.Read(p)
	}
	buf := make([]byte, readAhead)
	n, err := c.Conn.Read(buf)
	m := copy(p, buf[:n])
	if m < n {
		// The error, if any, comes again on the read after these bytes.
		c.unread = buf[m:n]
		return m, nil
	}
	return m, err
}

// authenticated records the key the connection signed with.
func (c *trackedConn) authenticated(key identityKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key, c.hasKey = key, true
}

// identity returns the key the connection signed with, if it has.
func (c *trackedConn) identity() (identityKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key, c.hasKey
}

// openSession counts a new session channel, reporting false if the
// connection already has max (0 = unlimited).
func (c *trackedConn) openSession(max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.sessions >= max {
		return false
	}
	c.sessions++
	c.grace.Stop()
	return true
}

// closeSession counts a session channel gone; the last one re-arms the login
// grace, so a connection cannot be held open without a session. Sessions
// often end after their connection closed: its grace stays stopped then.
func (c *trackedConn) closeSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions--; c.sessions == 0 && !c.closed.Load() {
		c.grace.Reset(c.graceFor)
	}
}

// startChat and endChat count the connection's sessions in the chat.
func (c *trackedConn) startChat() { c.addChats(1) }
func (c *trackedConn) endChat()   { c.addChats(-1) }

func (c *trackedConn) addChats(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chats += n
}

// isChatting reports whether a session of the connection is in the chat:
// its users are told why before the connection closes.
func (c *trackedConn) isChatting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chats > 0
}

// connLimiter counts open connections, in total and per IP address.
type connLimiter struct {
	mu       sync.Mutex
	max      int
	maxPerIP int
	total    int
	perIP    map[string]int
}

// acquire counts a new connection from ip, or says why it is refused, and
// the reason for the metrics.
func (l *connLimiter) acquire(ip string) (why, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return fmt.Sprintf("server full (%d connections)", l.max), reasonTotalCap
	case l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP:
		return fmt.Sprintf("too many connections from %s (%d)", ip, l.maxPerIP), reasonPerIPCap
	}
	l.total++
	l.perIP[ip]++
	return "", ""
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] == 0 {
		delete(l.perIP, ip)
	}
}

func remoteIP(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return addr.String()
}

// throttledLog rate-limits log records that anyone can cause without
// authenticating (refused connections and keys, failed handshakes), so that
// an attack cannot fill the disk or spend the server's CPU on logging. The
// next record it lets through says how many it dropped.
type throttledLog struct {
	logger     *slog.Logger
	limit      *rate.Limiter // nil: log everything
	suppressed atomic.Int64
}

func newThrottledLog(log *slog.Logger, perSecond float64) *throttledLog {
	t := &throttledLog{logger: log}
	if perSecond > 0 {
		t.limit = rate.NewLimiter(rate.Limit(perSecond), int(max(perSecond, 1)))
	}
	return t
}

func (t *throttledLog) log(level slog.Level, msg string, args ...any) {
	if t.limit != nil && !t.limit.Allow() {
		t.suppressed.Add(1)
		return
	}
	if n := t.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_before", n)
	}
	t.logger.Log(context.Background(), level, msg, args...)
}
