package cluster

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
	"github.com/sshchat-dev/sshchat/sshchat"
	"github.com/sshchat-dev/sshchat/store"
)

// The tests run an embedded NATS server (JetStream on, random port, temp
// store) and several sshchat nodes in one process, and talk to the nodes
// with real x/crypto/ssh clients over loopback.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait for something that should happen promptly.
const waitLimit = 5 * time.Second

// testTTL is the peer TTL of the test nodes: a node silent this long is
// gone.
const testTTL = 2500 * time.Millisecond

// natsServer is an embedded NATS server that can be stopped and started
// again on the same port and store.
type natsServer struct {
	t    *testing.T
	srv  *natsserver.Server
	port int
	dir  string
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: -1, dir: t.TempDir()}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: ns.port, JetStream: true, StoreDir: ns.dir, NoSigs: true, NoLog: true})
	if err != nil {
		ns.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(waitLimit) {
		ns.t.Fatal("NATS server not ready")
	}
	ns.srv = srv
	ns.port = srv.Addr().(*net.TCPAddr).Port
}

func (ns *natsServer) stop() {
	if ns.srv != nil {
		ns.srv.Shutdown()
		ns.srv.WaitForShutdown()
		ns.srv = nil
	}
}

func (ns *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ns.port) }

// natsProxy relays connections to the NATS server, and can cut them and
// refuse new ones for a while: the link of the nodes behind it goes down
// while the others keep theirs.
type natsProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	l     net.Listener // nil while cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (c *cluster) proxy() *natsProxy {
	p := &natsProxy{t: c.t, target: strings.TrimPrefix(c.nats.url(), "nats://"), addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.restore()
	c.t.Cleanup(p.cut)
	return p
}

func (p *natsProxy) url() string { return "nats://" + p.addr }

// restore listens again, on the same port.
func (p *natsProxy) restore() {
	p.t.Helper()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			p.relay(conn)
		}
	})
}

func (p *natsProxy) relay(conn net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		conn.Close()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		conn.Close()
		server.Close()
		return
	}
	p.conns[conn], p.conns[server] = struct{}{}, struct{}{}
	for _, pair := range [][2]net.Conn{{conn, server}, {server, conn}} {
		p.wg.Go(func() {
			io.Copy(pair[0], pair[1])
			pair[0].Close()
			pair[1].Close()
		})
	}
}

// cut closes every relayed connection and refuses new ones until restore.
func (p *natsProxy) cut() {
	p.mu.Lock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for conn := range p.conns {
		conn.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

// allowList is the allowed keys every node shares.
type allowList struct {
	mu    sync.Mutex
	names map[string]string
}

func (a *allowList) Lookup(key gossh.PublicKey) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name, ok := a.names[string(key.Marshal())]
	return name, ok
}

// User makes the list an sshchat.UserDirectory, so that operators can act
// on users who are not online.
func (a *allowList) User(name string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.names {
		if strings.EqualFold(n, name) {
			return n, true
		}
	}
	return "", false
}

// cluster is the nodes of one test, sharing one NATS server and one
// allowed keys list.
type cluster struct {
	t     *testing.T
	nats  *natsServer
	allow *allowList
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, nats: startNATS(t), allow: &allowList{names: map[string]string{}}}
}

// user registers a new key under name.
// connect returns a plain NATS connection to the cluster's server, closed
// when the test ends: the test's own view of the traffic.
func (c *cluster) connect() *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.nats.url())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

func (c *cluster) user(name string) gossh.Signer {
	s := newSigner(c.t)
	c.allow.mu.Lock()
	c.allow.names[string(s.PublicKey().Marshal())] = name
	c.allow.mu.Unlock()
	return s
}

func newSigner(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// node is one sshchat server linked to the cluster.
type node struct {
	t      *testing.T
	name   string
	link   *Link
	server *sshchat.Server
	addr   string
	host   gossh.PublicKey
	stop   func()

	moderation     *keys.ModerationStore // the node's own file
	moderationPath string
	shared         *SharedSanctions
	changed        chan struct{} // a change from another node was applied

	handed chan sshchat.PeerEvent // what the link handed the room, if nodeOptions.watch
}

// watchedRoom is a node's room that also tells the test what the link
// hands it, in that order.
type watchedRoom struct {
	*sshchat.Server
	handed chan<- sshchat.PeerEvent
}

func (r watchedRoom) FromPeer(ev sshchat.PeerEvent) {
	r.handed <- ev
	r.Server.FromPeer(ev)
}

// nextHanded returns the next event the link handed n's room that
// satisfies want, failing the test after waitLimit.
func (n *node) nextHanded(want func(sshchat.PeerEvent) bool) sshchat.PeerEvent {
	n.t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case ev := <-n.handed:
			if want(ev) {
				return ev
			}
		case <-timeout:
			n.t.Fatalf("%s: nothing wanted handed to the room within %v", n.name, waitLimit)
		}
	}
}

// waitModeration waits until the node's moderation file satisfies ok.
func (n *node) waitModeration(ok func(*keys.Moderation) bool) {
	n.t.Helper()
	timeout := time.After(waitLimit)
	for !ok(n.moderation.Current()) {
		select {
		case <-n.changed:
		case <-timeout:
			n.t.Fatalf("%s: moderation still %+v after %v", n.name, n.moderation.Current(), waitLimit)
		}
	}
}

// start runs a node called name, changed by tweak; the test's cleanup stops
// it, unless stop was called first.
func (c *cluster) start(name string, tweak func(*sshchat.Config)) *node {
	c.t.Helper()
	return c.startWith(name, nodeOptions{tweak: tweak})
}

// nodeOptions say how to run a node; the zero value is what start does.
type nodeOptions struct {
	tweak func(*sshchat.Config)
	data  string // the store's directory; empty: history in memory
	nats  string // the NATS URL, if not the cluster's server (a proxy)
	keep  time.Duration
	watch bool // keep what the link hands the room in node.handed
	// logged, if not nil, gets each line the node logs; a line that
	// finds it full is dropped.
	logged chan<- string
}

// startWith runs a node called name as o says.
func (c *cluster) startWith(name string, o nodeOptions) *node {
	t := c.t
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t, name, o.logged}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := sshchat.DefaultConfig()
	cfg.HistoryKeep = o.keep
	var db *store.DB
	var err error
	if o.data != "" {
		if db, err = store.Open(o.data, log); err != nil {
			t.Fatal(err)
		}
		cfg.Store = db
	}
	link, err := Dial(Options{URLs: cmp.Or(o.nats, c.nats.url()), Node: name, HistoryKeep: o.keep, HistoryStored: db != nil && db.LastSeq() > 0, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	host := newSigner(t)
	cfg.HostKey, cfg.Auth, cfg.Logger = host, c.allow, log
	cfg.Rate = 0
	cfg.Peers, cfg.PeerTTL = link, testTTL
	moderationPath := filepath.Join(t.TempDir(), "moderation.json")
	local := keys.NewModerationStore(moderationPath, log)
	shared, err := link.ShareModeration(local)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Moderation = sshchat.Moderation{Operators: operators{"alice": true}, Sanctions: shared}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	srv, err := sshchat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, name: name, link: link, server: srv, host: host.PublicKey(),
		moderation: local, moderationPath: moderationPath, shared: shared, changed: make(chan struct{}, 1)}
	var room Room = srv
	if o.watch {
		// Deep enough for a test's events: the link must not wait on it.
		n.handed = make(chan sshchat.PeerEvent, 1<<14)
		room = watchedRoom{srv, n.handed}
	}
	if err := link.Start(room); err != nil {
		t.Fatal(err)
	}
	if err := shared.Follow(func() {
		srv.Revalidate()
		select {
		case n.changed <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	n.addr = l.Addr().String()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			srv.Shutdown(ctx)
			if err := <-served; err != nil {
				t.Errorf("%s: Serve: %v", name, err)
			}
			shared.Close()
			link.Close()
			if db != nil {
				if err := db.Close(); err != nil {
					t.Errorf("%s: closing the store: %v", name, err)
				}
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

// operators are the operators of every node.
type operators map[string]bool

func (o operators) IsOp(name string) bool { return o[name] }

func (operators) SetOp(string, bool) error { return errors.New("the test's operators are fixed") }

// testWriter sends a node's logs to the test log, shown on failure, and
// to logged if it is not nil.
type testWriter struct {
	t      *testing.T
	node   string
	logged chan<- string
}

func (w testWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.t.Logf("%s: %s", w.node, line)
	if w.logged != nil {
		select {
		case w.logged <- line:
		default:
		}
	}
	return len(p), nil
}

// waitLogged reads logged until a line contains msg, failing the test
// after waitLimit.
func waitLogged(t *testing.T, logged <-chan string, msg string) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case line := <-logged:
			if strings.Contains(line, msg) {
				return
			}
		case <-timeout:
			t.Fatalf("nothing logged with %q within %v", msg, waitLimit)
		}
	}
}

// chatter is one line-mode chat session.
type chatter struct {
	t        *testing.T
	name     string
	greeting []string // the lines before "You are NAME"
	stdin    io.WriteCloser
	lines    chan string
}

// join connects signer to n and reads its greeting up to "You are NAME".
func (n *node) join(signer gossh.Signer) *chatter {
	n.t.Helper()
	c := n.open(signer)
	greeting, you := c.collectUntil("-!- You are ", waitLimit)
	c.greeting, c.name = greeting, strings.TrimPrefix(you, "-!- You are ")
	return c
}

// refused connects signer to n and returns what it was told before the
// session ended.
func (n *node) refused(signer gossh.Signer) []string {
	n.t.Helper()
	return n.open(signer).ended()
}

// ended returns what the session was told until it ended.
func (c *chatter) ended() []string {
	c.t.Helper()
	var told []string
	timeout := time.After(waitLimit)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return told
			}
			told = append(told, line)
		case <-timeout:
			c.t.Fatalf("%s: session still open after %v; told %q", c.name, waitLimit, told)
		}
	}
}

// open starts a line-mode chat session of signer on n.
func (n *node) open(signer gossh.Signer) *chatter {
	t := n.t
	t.Helper()
	client, err := gossh.Dial("tcp", n.addr, &gossh.ClientConfig{
		User: "ignored", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(n.host), Timeout: waitLimit,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { client.Close() })
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	c := &chatter{t: t, stdin: stdin, lines: make(chan string, 4096)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c
}

func (c *chatter) say(text string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, text+"\n"); err != nil {
		c.t.Fatalf("%s: say %q: %v", c.name, text, err)
	}
}

// pipe is `printf 'LINE\n...' | ssh -T`: signer connects to n without a
// terminal, sends lines, closes its input and waits for the session to
// end.
func (n *node) pipe(signer gossh.Signer, lines ...string) {
	n.t.Helper()
	c := n.open(signer)
	for _, line := range lines {
		c.say(line)
	}
	if err := c.stdin.Close(); err != nil {
		n.t.Fatal(err)
	}
	c.ended()
}

// quit leaves the chat and waits for the session to end: by then the node
// has let the session go.
func (c *chatter) quit() {
	c.t.Helper()
	c.say("/quit")
	c.ended()
}

// nextWithin returns the next line, failing the test after d.
func (c *chatter) nextWithin(d time.Duration) string {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("%s: session ended while waiting for a line", c.name)
		}
		return line
	case <-time.After(d):
		c.t.Fatalf("%s: no line within %v", c.name, d)
	}
	return ""
}

// expect fails unless the next lines are exactly want.
func (c *chatter) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.nextWithin(waitLimit); got != w {
			c.t.Fatalf("%s: got line %q, want %q", c.name, got, w)
		}
	}
}

// skipUntil reads lines until one starts with prefix and returns it.
func (c *chatter) skipUntil(prefix string) string {
	c.t.Helper()
	_, line := c.collectUntil(prefix, waitLimit)
	return line
}

// collectUntil reads lines until one starts with prefix, within d in all,
// and returns the lines before it and the line.
func (c *chatter) collectUntil(prefix string, d time.Duration) (before []string, line string) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		line := c.nextWithin(max(time.Until(deadline), time.Millisecond))
		if strings.HasPrefix(line, prefix) {
			return before, line
		}
		before = append(before, line)
	}
}
