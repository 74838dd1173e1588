// Package sshchat is a chat server reached with a plain ssh client.
//
// Users authenticate with a public key only; the Authorizer (the allowed
// keys file) names them. Each SSH session channel is one chat connection in
// a single room, whose broadcaster goroutine (room.go) owns the set of
// clients, gopl.io ch8 style.
//
// The chat itself (room.go, state.go, commands.go, event.go, sanitize.go)
// knows nothing of SSH. The transport is server.go (configuration, accept
// loop, auth, Shutdown), conn.go (connection limits and tracking),
// session.go (session channels), input.go and output.go (a session's
// reader and writer).
//
// # What gliderlabs/ssh does for us
//
// From github.com/gliderlabs/ssh, sshchat uses Server.HandleConn: the
// per-connection handshake (configured through ServerConfigCallback,
// PublicKeyHandler, HostSigners and Version), its Context, and dispatch of
// channels (ChannelHandlers) and global requests (RequestHandlers, left
// empty so that port forwarding and the rest are refused). It bypasses:
//   - Serve and Shutdown, which only track connections once their handshake
//     is done: ours track every connection from accept, so that Shutdown
//     honours its deadline even with clients stalled before authenticating;
//   - the session Handler, which accepts agent forwarding, stores env
//     requests without bound and blocks its request loop on window changes:
//     session.go handles session channels instead;
//   - the public key it records in the Context, which is every key the
//     client offered, not the one that signed (CVE-2024-45337): identity
//     comes from x/crypto's VerifiedPublicKeyCallback;
//   - IdleTimeout and MaxTimeout, left unset: their per-packet deadline
//     updates are absorbed by trackedConn.SetDeadline.
package sshchat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sshchat-dev/sshchat/store"

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
	MaxSessionRate     float64       // session starts per second per user, after a burst of MaxSessionsPerUser
	AnnounceMax        int           // users in the room above which arrivals and departures are only summarised, once a second
	MaxSessionsPerConn int           // concurrent session channels on one SSH connection
	MaxConns           int           // concurrent connections, authenticated or not
	MaxConnsPerIP      int           // concurrent connections from one IP address
	MaxAuthTries       int           // authentication attempts per connection (required > 0)
	LoginGrace         time.Duration // from connect, or from a connection's last session, to a started chat session (required > 0)
	WriteTimeout       time.Duration // for one write to a client (required > 0)
	IdleTimeout        time.Duration // disconnect a session this long without a line; 0 = never
	AuthLogRate        float64       // log records per second about refused connections and logins; 0 = all

	// Catchup is the most public messages replayed to a returning user.
	Catchup int
	// Store keeps the history and when users last left across restarts;
	// nil keeps them in memory only. HistoryKeep is how long stored
	// messages are kept (0 = forever). The Server writes to Store until
	// Shutdown; the caller closes it after.
	Store       *store.DB
	HistoryKeep time.Duration
	// Moderation is what operators act on; its nil fields disable what
	// they serve.
	Moderation Moderation
	// Metrics, if set, is where the server registers its Prometheus
	// metrics.
	Metrics prometheus.Registerer
	// Peers, if set, links this node to the other nodes of a cluster
	// (package cluster), which then hands their events to FromPeer. A node
	// not heard from for PeerTTL is taken as gone, with its users.
	Peers   Peers
	PeerTTL time.Duration
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
		MaxSessionRate:     1,
		AnnounceMax:        200,
		MaxSessionsPerConn: 4,
		MaxConns:           4096,
		MaxConnsPerIP:      32,
		MaxAuthTries:       6,
		LoginGrace:         10 * time.Second,
		WriteTimeout:       10 * time.Second,
		AuthLogRate:        20,
		Catchup:            100,
		HistoryKeep:        30 * 24 * time.Hour,
		PeerTTL:            DefaultPeerTTL,
	}
}

func (c *Config) validate() error {
	switch {
	case c.HostKey == nil:
		return errors.New("no host key")
	case c.Auth == nil:
		return errors.New("no authorizer")
	case c.MaxLine <= 0 || c.QueueLen <= 0 || c.MaxAuthTries <= 0 || c.LoginGrace <= 0 || c.WriteTimeout <= 0:
		return errors.New("max line, queue length, max auth tries, login grace and write timeout must be positive")
	case c.History < 0 || c.Rate < 0 || c.Burst < 0 || c.MaxSessionsPerUser < 0 || c.MaxSessionRate < 0 ||
		c.MaxSessionsPerConn < 0 || c.AnnounceMax < 0 || c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.IdleTimeout < 0 || c.AuthLogRate < 0:
		return errors.New("limits must not be negative")
	case c.Catchup < 0 || c.HistoryKeep < 0:
		return errors.New("catch-up and history retention must not be negative")
	case c.Peers != nil && c.PeerTTL <= 2*housekeepingEvery:
		return fmt.Errorf("peer TTL %s must be longer than %s: nodes are heard from every %s", c.PeerTTL, 2*housekeepingEvery, housekeepingEvery)
	case c.MaxLine > store.MaxText:
		return fmt.Errorf("max line %d is longer than the store keeps (%d)", c.MaxLine, store.MaxText)
	}
	return nil
}

// Algorithms: what current OpenSSH offers by default, without SHA-1.
var (
	keyExchanges = []string{
		gossh.KeyExchangeMLKEM768X25519, gossh.KeyExchangeCurve25519,
		gossh.KeyExchangeECDHP256, gossh.KeyExchangeECDHP384, gossh.KeyExchangeECDHP521,
		gossh.KeyExchangeDH16SHA512, gossh.KeyExchangeDH14SHA256,
	}
	ciphers = []string{
		gossh.CipherChaCha20Poly1305, gossh.CipherAES128GCM, gossh.CipherAES256GCM,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR,
	}
	macs              = []string{gossh.HMACSHA256ETM, gossh.HMACSHA512ETM}
	userKeySignatures = []string{
		gossh.KeyAlgoED25519, gossh.KeyAlgoSKED25519,
		gossh.KeyAlgoECDSA256, gossh.KeyAlgoECDSA384, gossh.KeyAlgoECDSA521, gossh.KeyAlgoSKECDSA256,
		gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSASHA512,
	}
)

// Server is an SSH chat server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	noisy   *throttledLog // for what unauthenticated peers can trigger at will
	room    *room
	store   *store.Writer // nil without a Config.Store
	metrics *metrics      // nil without Config.Metrics
	ssh     *gliderssh.Server
	limit   connLimiter

	mu        sync.Mutex
	stopping  bool // once set, nothing new starts
	listeners []net.Listener
	conns     map[*trackedConn]struct{}
	active    sync.WaitGroup // connection and session goroutines
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
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		noisy:   newThrottledLog(cfg.Logger, cfg.AuthLogRate),
		limit:   connLimiter{max: cfg.MaxConns, maxPerIP: cfg.MaxConnsPerIP, perIP: make(map[string]int)},
		conns:   make(map[*trackedConn]struct{}),
		metrics: newMetrics(cfg.Metrics),
	}
	opts := roomOptions{
		history:     cfg.History,
		catchup:     cfg.Catchup,
		rate:        rate.Limit(cfg.Rate),
		burst:       max(cfg.Burst, 1),
		maxPerUser:  cfg.MaxSessionsPerUser,
		sessionRate: rate.Limit(cfg.MaxSessionRate),
		announceMax: cfg.AnnounceMax,
		refuse:      s.refusal,
		moderation:  cfg.Moderation,
		metrics:     s.metrics,
		log:         cfg.Logger,
		peers:       cfg.Peers,
		peerTTL:     cfg.PeerTTL,
		maxLine:     cfg.MaxLine,
		queue:       cfg.QueueLen,
		keep:        cfg.HistoryKeep,
	}
	opts.directory, _ = cfg.Auth.(UserDirectory)
	if cfg.Store != nil {
		saved, err := loadSaved(cfg.Store, max(cfg.History, cfg.Catchup, maxHistoryShown), cfg.HistoryKeep)
		if err != nil {
			return nil, err
		}
		s.store = store.NewWriter(cfg.Store, store.WriterOptions{Keep: cfg.HistoryKeep}, cfg.Logger)
		opts.stored, opts.saved = s.store, saved
	}
	s.room = newRoom(opts, time.Now)
	s.ssh = &gliderssh.Server{
		Version:     "sshchat",
		HostSigners: []gliderssh.Signer{cfg.HostKey},
		// The only auth method. It is a pure yes/no: gliderlabs/ssh records
		// every approved key in the context, even one the client merely
		// asked about, so the identity comes from sshConfig's
		// VerifiedPublicKeyCallback instead.
		PublicKeyHandler:         s.knownKey,
		ServerConfigCallback:     s.sshConfig,
		ConnCallback:             rememberConn,
		ConnectionFailedCallback: s.handshakeFailed,
		ChannelHandlers:          map[string]gliderssh.ChannelHandler{"session": s.handleSession},
		RequestHandlers:          map[string]gliderssh.RequestHandler{},
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown, or until accepting fails
// for a reason other than a temporary shortage.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		l.Close()
		return nil
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
			if !temporary(err) {
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
		s.accept(conn)
	}
}

// temporary reports whether an accept error is a shortage that may pass.
func temporary(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// accept applies the connection limits to a new connection and serves it.
func (s *Server) accept(conn net.Conn) {
	remote := conn.RemoteAddr().String()
	ip := remoteIP(conn.RemoteAddr())
	if why, reason := s.limit.acquire(ip); why != "" {
		s.metrics.connRefused(reason)
		s.noisy.log(slog.LevelWarn, "connection refused", "reason", why, "remote", remote)
		// Before the SSH version exchange a server may send lines of text
		// (RFC 4253, 4.2): clients show them, so the user learns why.
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(conn, "sshchat: "+why+"; try again later\r\n")
		conn.Close()
		return
	}
	tc := newTrackedConn(conn, s.cfg.LoginGrace,
		func(tc *trackedConn) {
			s.metrics.connRefused(reasonLoginGrace)
			s.noisy.log(slog.LevelInfo, "login grace expired", "remote", remote, "grace", s.cfg.LoginGrace)
			tc.Close()
		},
		func(tc *trackedConn) {
			s.metrics.connection(-1)
			s.limit.release(ip)
			s.mu.Lock()
			delete(s.conns, tc)
			s.mu.Unlock()
		})
	s.metrics.connection(1)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.metrics.connRefused(reasonShuttingDown)
		tc.Close()
		return
	}
	s.conns[tc] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.active.Done()
		s.ssh.HandleConn(tc)
	}()
}

// begin counts a new session goroutine, or reports false once the server
// is shutting down. Each true must be matched by s.active.Done().
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.active.Add(1)
	return true
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// closeConns closes the connections for which which reports true.
func (s *Server) closeConns(which func(*trackedConn) bool) {
	s.mu.Lock()
	var doomed []*trackedConn
	for c := range s.conns {
		if which(c) {
			doomed = append(doomed, c)
		}
	}
	s.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// Shutdown stops accepting connections, closes those that have not started
// chatting, tells every user the server is shutting down and waits for
// their sessions to end. If ctx is done first, it closes every connection
// left and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.room.close("The server is shutting down. Bye!")
	if s.store != nil {
		s.store.Close() // writes what the room handed it
	}
	s.closeConns(func(c *trackedConn) bool { return !c.isChatting() })

	ended := make(chan struct{})
	go func() {
		s.active.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		s.closeConns(func(*trackedConn) bool { return true })
		<-ended
		return ctx.Err()
	}
}

// Revalidate disconnects every session whose key the Authorizer no longer
// maps to the same name, telling its user why; their writers then close the
// connections. It also closes the connections without a session in the chat
// (an OpenSSH ControlMaster, say) whose key it no longer knows. Sessions not
// yet in the room are checked as they join. Call it after the allowed keys
// change.
func (s *Server) Revalidate() {
	s.room.revoke(s.refusal)
	s.closeConns(func(c *trackedConn) bool {
		key, ok := c.identity()
		return ok && !c.isChatting() && s.nameOf(key) == ""
	})
}

// nameOf returns the name the Authorizer gives key now, or "".
func (s *Server) nameOf(key identityKey) string {
	pub, err := gossh.ParsePublicKey([]byte(key))
	if err != nil {
		return ""
	}
	name, _ := s.cfg.Auth.Lookup(pub)
	return name
}

// refusal says why the user name, authenticated with key, may not chat, or
// returns "". It is the one place that decides, for sessions joining the
// room and for sessions already in it: the key may have been removed, or
// the user banned, since its connection authenticated.
func (s *Server) refusal(name string, key identityKey) string {
	now := s.nameOf(key)
	switch {
	case now == "":
		return "Your key was removed from the allowed keys; goodbye."
	case now != name:
		return fmt.Sprintf("You are now %s in the allowed keys; reconnect to chat as %s.", now, now)
	}
	if sanctions := s.cfg.Moderation.Sanctions; sanctions != nil {
		if ban, ok := sanctions.Current().Banned(name, time.Now()); ok {
			return bannedNotice(ban)
		}
	}
	return ""
}

// loadSaved reads what the room needs from the store at start-up: the
// recent messages kept no longer than keep (0 = forever), which the store's
// writer has yet to prune.
func loadSaved(db *store.DB, recent int, keep time.Duration) (savedHistory, error) {
	var saved savedHistory
	var err error
	if saved.recent, err = db.Recent(recent); err != nil {
		return saved, fmt.Errorf("sshchat: reading history: %w", err)
	}
	if keep > 0 {
		cutoff := time.Now().Add(-keep)
		saved.recent = slices.DeleteFunc(saved.recent, func(m store.Message) bool { return m.At.Before(cutoff) })
	}
	if saved.lastSeen, err = db.LastSeen(); err != nil {
		return saved, fmt.Errorf("sshchat: reading when users last left: %w", err)
	}
	saved.lastSeq = db.LastSeq()
	return saved, nil
}

// knownKey is the PublicKeyHandler: is this key allowed at all?
func (s *Server) knownKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	if _, ok := s.cfg.Auth.Lookup(key); ok {
		return true
	}
	s.metrics.authFailed(reasonUnknownKey)
	s.noisy.log(slog.LevelInfo, "auth refused", "reason", "unknown key", "key", gossh.FingerprintSHA256(key), "remote", ctx.RemoteAddr().String())
	return false
}

// connKey is the gliderlabs Context key of a connection's *trackedConn.
type connKey struct{}

// rememberConn is the ConnCallback: it keeps the *trackedConn in the
// connection's Context for the session handlers.
func rememberConn(ctx gliderssh.Context, conn net.Conn) net.Conn {
	ctx.SetValue(connKey{}, conn)
	return conn
}

func connOf(ctx gliderssh.Context) *trackedConn {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	return tc
}

func (s *Server) sshConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	tc := connOf(ctx)
	return &gossh.ServerConfig{
		Config:                  gossh.Config{KeyExchanges: keyExchanges, Ciphers: ciphers, MACs: macs},
		PublicKeyAuthAlgorithms: userKeySignatures,
		MaxAuthTries:            s.cfg.MaxAuthTries,
		// This runs once the client has proved it holds key by signing
		// with it, and records who that key belongs to. This binding, not
		// any key the client only offered, is the session's identity (see
		// CVE-2024-45337).
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			name, ok := s.cfg.Auth.Lookup(key)
			if !ok {
				s.metrics.authFailed(reasonKeyRemoved)
				return nil, errors.New("key is no longer allowed")
			}
			wire := string(key.Marshal())
			if tc != nil {
				tc.authenticated(identityKey(wire))
				s.metrics.handshakeTook(time.Since(tc.acceptedAt))
			}
			return &gossh.Permissions{Extensions: map[string]string{extUser: name, extKey: wire}}, nil
		},
	}
}

func (s *Server) handshakeFailed(conn net.Conn, err error) {
	s.metrics.authFailed(reasonHandshake)
	s.noisy.log(slog.LevelInfo, "handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
}
