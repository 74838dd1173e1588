// Package sshchat is a chat server reached with a plain ssh client.
//
// Users authenticate with a public key only; the Authorizer (the allowed
// keys file) names them. Each SSH session channel is one chat connection in
// a single Room, whose broadcaster goroutine (room.go) owns the set of
// clients, gopl.io ch8 style. This file wires the SSH transport: auth,
// connection limits and deadlines; session.go handles session channels.
package sshchat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"
)

// Authorizer says who a public key belongs to. keys.Store implements it.
type Authorizer interface {
	Lookup(key gossh.PublicKey) (name string, ok bool)
}

// Config configures a Server. Zero limits mean unlimited unless noted.
type Config struct {
	HostKey gossh.Signer
	Auth    Authorizer
	Logger  *slog.Logger // slog.Default() if nil

	MaxLine            int           // bytes per chat line (required > 0)
	QueueLen           int           // events queued per client before it is dropped as too slow (required > 0)
	History            int           // public messages replayed to a joiner
	Rate               float64       // lines per second per user
	Burst              int           // lines a user may send at once before Rate applies
	MaxSessionsPerUser int           // concurrent sessions of one user
	MaxSessionsPerConn int           // concurrent session channels on one SSH connection
	MaxConns           int           // concurrent connections, authenticated or not
	MaxConnsPerIP      int           // concurrent connections from one IP address
	MaxAuthTries       int           // authentication attempts per connection
	LoginGrace         time.Duration // from connect to a started chat session (required > 0)
	WriteTimeout       time.Duration // for one write to a client (required > 0)
	IdleTimeout        time.Duration // disconnect a session this long without a line; 0 = never
	AuthLogRate        float64       // log records per second about refused connections and logins; 0 = all
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		MaxLine:            1024,
		QueueLen:           256,
		History:            20,
		Rate:               5,
		Burst:              10,
		MaxSessionsPerUser: 8,
		MaxSessionsPerConn: 4,
		MaxConns:           4096,
		MaxConnsPerIP:      32,
		MaxAuthTries:       6,
		LoginGrace:         10 * time.Second,
		WriteTimeout:       10 * time.Second,
		AuthLogRate:        20,
	}
}

func (c *Config) validate() error {
	switch {
	case c.HostKey == nil:
		return errors.New("no host key")
	case c.Auth == nil:
		return errors.New("no authorizer")
	case c.MaxLine <= 0 || c.QueueLen <= 0 || c.LoginGrace <= 0 || c.WriteTimeout <= 0:
		return errors.New("max line, queue length, login grace and write timeout must be positive")
	case c.History < 0 || c.Rate < 0 || c.Burst < 0 || c.AuthLogRate < 0:
		return errors.New("history, rate, burst and auth log rate must not be negative")
	case c.History+1 > c.QueueLen:
		// The joiner's replay and greeting are queued at once.
		return fmt.Errorf("queue length %d must exceed history %d", c.QueueLen, c.History)
	}
	return nil
}

// Server is an SSH chat server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	noisy *throttledLog // for what unauthenticated peers can trigger at will
	room  *Room
	ssh   *gliderssh.Server
	conns connLimiter
	// active counts connection and session goroutines, which gliderlabs/ssh
	// does not all wait for on Shutdown. Once stopping is set, nothing new
	// starts.
	mu        sync.Mutex
	stopping  bool
	listeners []net.Listener
	active    sync.WaitGroup
}

// begin counts a new connection or session, or reports false once the
// server is shutting down. Each true must be matched by s.active.Done().
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.active.Add(1)
	return true
}

// permissions extensions recorded for the key that signed the
// authentication.
const (
	extUser = "sshchat-user"
	extKey  = "sshchat-key"
)

// New returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sshchat: config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, noisy: newThrottledLog(cfg.Logger, cfg.AuthLogRate)}
	s.conns = connLimiter{max: cfg.MaxConns, maxPerIP: cfg.MaxConnsPerIP, perIP: make(map[string]int)}
	s.room = newRoom(roomOptions{
		history:    cfg.History,
		rate:       rate.Limit(cfg.Rate),
		burst:      max(cfg.Burst, 1),
		maxPerUser: cfg.MaxSessionsPerUser,
	}, time.Now)
	s.ssh = &gliderssh.Server{
		Version:     "sshchat",
		HostSigners: []gliderssh.Signer{cfg.HostKey},
		// The only auth method. It is a pure yes/no: gliderlabs/ssh records
		// every approved key in the context, even one the client merely
		// asked about, so the identity comes from verifiedKey instead.
		PublicKeyHandler:         s.knownKey,
		ServerConfigCallback:     s.sshConfig,
		ConnCallback:             s.acceptConn,
		ConnectionFailedCallback: s.handshakeFailed,
		Handler:                  func(gliderssh.Session) {}, // unused: session channels go to handleSession
		ChannelHandlers:          map[string]gliderssh.ChannelHandler{"session": s.handleSession},
		// No global requests: port forwarding and the rest are refused.
		RequestHandlers: map[string]gliderssh.RequestHandler{},
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown.
//
// It runs its own accept loop rather than gliderlabs' Serve so that every
// connection's goroutine, handshake failures included, is counted for
// Shutdown to wait on.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return l.Close()
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.log.Info("listening", "addr", l.Addr().String(), "host_key", gossh.FingerprintSHA256(s.cfg.HostKey.PublicKey()))
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isStopping() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("sshchat: accept: %w", err)
			}
			// Out of file descriptors and the like: wait for some to
			// free up, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.begin() {
			conn.Close()
			return nil
		}
		go func() {
			defer s.active.Done()
			s.ssh.HandleConn(conn)
		}()
	}
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// Shutdown stops accepting connections, tells every user the server is
// shutting down, closes their sessions and waits for connections to end
// until ctx is done, then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.room.Close("The server is shutting down. Bye!")
	// gliderlabs tracks authenticated connections: wait for them to close,
	// or close them when ctx is done.
	err := s.ssh.Shutdown(ctx)
	if err != nil {
		s.ssh.Close()
	}
	// Connections still in their handshake end by the login grace at the
	// latest.
	s.active.Wait()
	return err
}

// Revalidate disconnects every session whose key the Authorizer no longer
// maps to the same name. Call it after the allowed keys change.
func (s *Server) Revalidate() {
	s.room.Revoke(func(name string, key gossh.PublicKey) bool {
		now, ok := s.cfg.Auth.Lookup(key)
		return ok && now == name
	}, "Your key was removed from the allowed keys; goodbye.")
}

// knownKey is the PublicKeyHandler: is this key allowed at all?
func (s *Server) knownKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	if _, ok := s.cfg.Auth.Lookup(key); ok {
		return true
	}
	s.noisy.log(slog.LevelInfo, "auth refused", "reason", "unknown key", "key", gossh.FingerprintSHA256(key), "remote", ctx.RemoteAddr().String())
	return false
}

func (s *Server) sshConfig(gliderssh.Context) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		MaxAuthTries:              s.cfg.MaxAuthTries,
		VerifiedPublicKeyCallback: s.verifiedKey,
	}
}

// verifiedKey runs once the client has proved it holds key by signing with
// it, and records who that key belongs to. This binding, not any key the
// client only offered, is the session's identity (see CVE-2024-45337).
func (s *Server) verifiedKey(_ gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
	name, ok := s.cfg.Auth.Lookup(key)
	if !ok {
		return nil, errors.New("key is no longer allowed")
	}
	return &gossh.Permissions{Extensions: map[string]string{extUser: name, extKey: string(key.Marshal())}}, nil
}

func (s *Server) handshakeFailed(conn net.Conn, err error) {
	s.noisy.log(slog.LevelInfo, "handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
}

// guardedConnKey is the context key of a connection's *guardedConn.
type contextKey string

const guardedConnKey contextKey = "sshchat-conn"

// acceptConn is the ConnCallback: it applies the connection limits and arms
// the login grace timer, which gliderlabs/ssh lacks (a client could
// otherwise hold a connection open forever without authenticating).
func (s *Server) acceptConn(ctx gliderssh.Context, conn net.Conn) net.Conn {
	ip := remoteIP(conn.RemoteAddr())
	if why := s.conns.acquire(ip); why != "" {
		s.noisy.log(slog.LevelWarn, "connection refused", "reason", why, "remote", conn.RemoteAddr().String())
		return nil
	}
	gc := &guardedConn{Conn: conn, release: func() { s.conns.release(ip) }}
	gc.grace = time.AfterFunc(s.cfg.LoginGrace, func() {
		s.noisy.log(slog.LevelInfo, "login grace expired", "remote", conn.RemoteAddr().String(), "grace", s.cfg.LoginGrace)
		conn.Close() // the handshake or session wait fails, and gc is closed
	})
	ctx.SetValue(guardedConnKey, gc)
	return gc
}

func remoteIP(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return addr.String()
}

// guardedConn is a connection counted against the limits.
type guardedConn struct {
	net.Conn
	grace    *time.Timer
	release  func()
	once     sync.Once
	sessions atomic.Int32
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.grace.Stop()
		c.release()
	})
	return c.Conn.Close()
}

// loggedIn stops the login grace timer once a chat session has started.
func (c *guardedConn) loggedIn() { c.grace.Stop() }

// openSession counts a new session channel, reporting false if the
// connection already has max (0 = unlimited).
func (c *guardedConn) openSession(max int) bool {
	if n := c.sessions.Add(1); max > 0 && int(n) > max {
		c.sessions.Add(-1)
		return false
	}
	return true
}

func (c *guardedConn) closeSession() { c.sessions.Add(-1) }

// connLimiter counts open connections, in total and per IP address.
type connLimiter struct {
	mu       sync.Mutex
	max      int
	maxPerIP int
	total    int
	perIP    map[string]int
}

// acquire counts a new connection from ip, or says why it is refused.
func (l *connLimiter) acquire(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return fmt.Sprintf("server full (%d connections)", l.max)
	case l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP:
		return fmt.Sprintf("too many connections from %s (%d)", ip, l.maxPerIP)
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] == 0 {
		delete(l.perIP, ip)
	}
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
