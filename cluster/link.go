// Package cluster links several sshchat nodes into one room over NATS
// (github.com/nats-io/nats.go).
//
// Each node's broadcaster serves its own users as when it runs alone; what
// its users do crosses NATS once, as one small JSON message per line (never
// one per delivery), which every other node hands to its own broadcaster.
// Subjects, under a prefix (Options.Prefix, default "sshchat"):
//
//	PREFIX.room      public lines, /me actions and users leaving the room, kept
//	                 in the stream PREFIX_history (see history.go):
//	                 {"kind":"say"|"action"|"seen","from","text"}
//	PREFIX.presence  join, leave, away, count (a user's chat sessions on the node
//	                 when a second one starts or ends), bye, and every second
//	                 the node's roster, its heartbeat:
//	                 {"kind":"roster","users":[{"name","away","sessions"}]}
//	PREFIX.private   /msg and /reply to a user on another node: {"kind":"private","from","to","text"}
//
// Every message also carries "v" (1), "node" (the sending node's name) and
// "boot" (its run, random per start, so a restarted node replaces its
// former self and leaves no ghosts). Operators can follow the traffic with
// `nats sub 'sshchat.>'`.
//
// One publisher goroutine per node sends, in order, from a bounded queue
// that the broadcaster never waits on; NATS keeps one publisher's order,
// so each sender's lines arrive in order everywhere. While the link is down
// nothing is buffered: lines stay on their node and are not sent twice.
// Subscriptions to presence and private messages and a JetStream ordered
// consumer of PREFIX_history, the lines, all deliver into one channel, which
// one goroutine reads; each message is checked for size and shape and
// handed to the room, which checks and sanitises it again. Each sender's
// lines, presence changes and private messages reach the room in the order
// it sent them, except as order.go says.
//
// Moderation (bans, mutes, message of the day) is shared through a
// JetStream key-value bucket; see SharedSanctions. History is shared
// through the stream: every node copies the other nodes' lines into its
// own store from the position it has reached, so a node that was down or
// cut off catches up, and a user's departure, in the same stream, sets
// their catch-up on every node. Limits (sessions and lines per user) hold
// per node.
package cluster

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sshchat-dev/sshchat/sshchat"
)

// Options configure a Link.
type Options struct {
	URLs      string // NATS server URLs, comma-separated
	CredsFile string // NATS credentials file; none if empty
	Node      string // this node's name: letters, digits, '.', '-', '_'
	Prefix    string // subject prefix; DefaultPrefix if empty
	QueueLen  int    // events waiting to be published before they are dropped; DefaultQueueLen if 0
	// OrderWait is how long a presence or private message from another
	// node waits for the lines that node sent before it (see order.go);
	// DefaultOrderWait if 0. Keep it well under the nodes' -node-ttl:
	// rosters, the nodes' heartbeat, wait too.
	OrderWait time.Duration
	// HoldLen is how many messages may wait for lines at once; past it
	// the oldest goes out of order. DefaultHoldLen if 0.
	HoldLen int
	// CatchUpWait is how long Start waits for the node to copy what the
	// shared history holds past its position before it serves users;
	// DefaultCatchUpWait if 0.
	CatchUpWait time.Duration
	// HistoryKeep is how long the shared history keeps a line: the
	// nodes' -history-keep. 0 keeps them for ever.
	HistoryKeep time.Duration
	// HistoryStored says the node's own store held history when it
	// started (store.DB.LastSeq > 0): it holds the lines the node said in
	// earlier runs, which the node then does not copy from the shared
	// history. A node with nothing stored (a new or wiped data directory)
	// copies them like the other nodes' lines.
	HistoryStored bool
	Logger        *slog.Logger
}

// Defaults of Options.
const (
	DefaultPrefix      = "sshchat"
	DefaultQueueLen    = 4096
	DefaultOrderWait   = 2 * time.Second
	DefaultHoldLen     = 4096
	DefaultCatchUpWait = 10 * time.Second
)

// MaxMessage is the largest NATS message a node accepts from another.
const MaxMessage = 1 << 20

var (
	validNode   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Room is where a Link delivers what the other nodes say: *sshchat.Server.
// SharedHistory tells it the name of the shared history and returns the
// position in it of the last event its history holds.
type Room interface {
	FromPeer(ev sshchat.PeerEvent)
	PeerLink(up bool)
	SharedHistory(name string) (position uint64, err error)
}

// Link is this node's connection to the others. Its Publish method makes
// it an sshchat.Peers.
type Link struct {
	nc     *nats.Conn
	node   string
	boot   string
	prefix string
	keep   time.Duration
	stored bool // Options.HistoryStored
	log    *slog.Logger

	orderWait   time.Duration
	catchUpWait time.Duration
	holdLen     int

	queue    chan sshchat.PeerEvent
	dropped  atomic.Uint64 // events not published: queue full, or link down
	roomSent uint64        // messages published on PREFIX.room this boot; the publisher's
	quit     chan struct{}
	sent     chan struct{} // closed when the publisher has stopped

	reconnected chan struct{} // the receiver is to read the shared history again

	mu       sync.Mutex
	room     Room     // nil until Start
	order    *orderer // nil until Start
	subs     []*nats.Subscription
	received chan struct{} // closed when the receiver has stopped; nil until Start
	linkLost bool          // the room was told, and has not been told it is back
}

// Dial connects to NATS and returns a Link that queues what is published
// until Start. If no server answers at first, the connection keeps trying
// in the background, but ShareModeration and Start need NATS, with
// JetStream, reachable: they fail without it. Once they have succeeded,
// the link rides out outages, reconnecting for ever.
func Dial(o Options) (*Link, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.QueueLen == 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.OrderWait == 0 {
		o.OrderWait = DefaultOrderWait
	}
	if o.HoldLen == 0 {
		o.HoldLen = DefaultHoldLen
	}
	if o.CatchUpWait == 0 {
		o.CatchUpWait = DefaultCatchUpWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case !validNode.MatchString(o.Node):
		return nil, fmt.Errorf("cluster: node name %q: want 1 to 64 letters, digits, '.', '-' or '_'", o.Node)
	case !validPrefix.MatchString(o.Prefix):
		return nil, fmt.Errorf("cluster: subject prefix %q: want dot-separated tokens of letters, digits, '-' or '_'", o.Prefix)
	case o.QueueLen < 0:
		return nil, errors.New("cluster: queue length must not be negative")
	case o.OrderWait < 0 || o.HoldLen < 0 || o.CatchUpWait < 0:
		return nil, errors.New("cluster: order wait, hold length and catch-up wait must not be negative")
	case o.HistoryKeep < 0:
		return nil, errors.New("cluster: history retention must not be negative")
	}
	l := &Link{
		node:   o.Node,
		boot:   rand.Text()[:16],
		prefix: o.Prefix,
		keep:   o.HistoryKeep,
		stored: o.HistoryStored,
		log:    o.Logger.With("node", o.Node),

		orderWait:   o.OrderWait,
		holdLen:     o.HoldLen,
		catchUpWait: o.CatchUpWait,

		queue: make(chan sshchat.PeerEvent, o.QueueLen),
		quit:  make(chan struct{}),
		sent:  make(chan struct{}),

		reconnected: make(chan struct{}, 1),
	}
	opts := []nats.Option{
		nats.Name("sshchat " + o.Node),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		// Nothing is kept for later while the link is down: the users are
		// told their lines stay on this node, and they do.
		nats.ReconnectBufSize(-1),
		nats.NoEcho(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { l.linkChanged(false, err) }),
		nats.ReconnectHandler(func(*nats.Conn) {
			l.readHistoryAgain()
			l.linkChanged(true, nil)
		}),
		nats.ConnectHandler(func(*nats.Conn) { l.log.Info("cluster: connected to NATS") }),
		nats.ClosedHandler(func(*nats.Conn) { l.log.Info("cluster: NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			l.log.Error("cluster: NATS error", "err", err)
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	nc, err := nats.Connect(o.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to %s: %w", o.URLs, err)
	}
	l.nc = nc
	go l.publisher()
	return l, nil
}

// Node is the node's name; Boot identifies this run of it.
func (l *Link) Node() string { return l.node }

// Boot identifies this run of the node.
func (l *Link) Boot() string { return l.boot }

func (l *Link) subject(name string) string { return l.prefix + "." + name }

// Start subscribes to the other nodes' events and hands them to room. It
// first hands it what the shared history holds after the room's position
// in it (waiting up to Options.CatchUpWait), so call it before serving users.
// It fails if NATS is not reachable.
func (l *Link) Start(room Room) error {
	msgs, err := l.subscribe(room)
	if err != nil {
		return err
	}
	// Once the server has the subscriptions, nothing said from now on is
	// missed.
	if err := l.nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("cluster: NATS %s: %w", needNATS, err)
	}
	if err := l.followHistory(room, msgs); err != nil {
		return err
	}
	l.log.Info("cluster: following the other nodes", "subjects", l.subjectsHelp(), "history", l.historyStream(), "boot", l.boot)
	return nil
}

// receiveBuffer is how many messages may wait to be handled before NATS
// drops them (and the link logs it as a slow consumer; a line of the
// shared history is fetched again): what a node says must not be lost to
// a brief burst.
const receiveBuffer = 1 << 14

// subscribe subscribes to the presence and private messages of the other
// nodes and returns the channel they come in; their public lines come
// through the shared history, in the same channel (followHistory).
func (l *Link) subscribe(room Room) (chan *nats.Msg, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.room = room
	l.order = newOrderer(room, l.orderWait, l.holdLen, l.log)
	// One channel for every subject, filled by the connection's reader in
	// the order the messages came and read by one goroutine: they are
	// handled in that order (see order.go).
	msgs := make(chan *nats.Msg, receiveBuffer)
	for _, name := range []string{"presence", "private"} {
		sub, err := l.nc.ChanSubscribe(l.subject(name), msgs)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribing to %s: %w", l.subject(name), err)
		}
		l.subs = append(l.subs, sub)
	}
	return msgs, nil
}

// startReceiver starts handing the room what comes in msgs, until Close.
func (l *Link) startReceiver(msgs <-chan *nats.Msg, history *historyFollower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received = make(chan struct{})
	go l.receiver(msgs, history, l.received)
}

// receiver handles the messages of the subscriptions, in order, until
// Close.
func (l *Link) receiver(msgs <-chan *nats.Msg, history *historyFollower, done chan<- struct{}) {
	defer close(done)
	// The reader of the moment: resubscribe replaces it.
	defer func() { history.sub.Unsubscribe() }()
	room := l.subject("room")
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case m := <-msgs:
			switch {
			case m.Subject != room:
				l.receive(m, history.order)
			case m.Sub == history.sub:
				history.receive(m)
			}
			// Else from a former reader of the history: the current one
			// brings it again.
		case <-l.reconnected:
			if !history.resubscribe() {
				retry = time.AfterFunc(time.Second, l.readHistoryAgain)
			}
		case <-l.quit:
			return
		}
	}
}

// readHistoryAgain has the receiver read the shared history again from
// where it has reached.
func (l *Link) readHistoryAgain() {
	select {
	case l.reconnected <- struct{}{}:
	default: // already asked
	}
}

// flushTimeout bounds a round trip to the NATS server.
const flushTimeout = 2 * time.Second

// needNATS says why a node that cannot reach NATS does not start: its
// shared history and moderation are made and read then.
const needNATS = "not reachable: it must be, with JetStream, when a node starts (later outages are ridden out)"

// linkChanged tells the room, once, that the link went down or came back.
func (l *Link) linkChanged(up bool, err error) {
	l.mu.Lock()
	room, tell := l.room, l.linkLost == up
	l.linkLost = !up
	l.mu.Unlock()
	if up {
		l.log.Info("cluster: reconnected to NATS", "url", l.nc.ConnectedUrlRedacted())
	} else {
		l.log.Warn("cluster: disconnected from NATS", "err", err)
	}
	if tell && room != nil {
		room.PeerLink(up)
	}
}

// Publish queues ev for the other nodes. It never blocks: when the queue is
// full the event is dropped, counted and logged.
func (l *Link) Publish(ev sshchat.PeerEvent) {
	select {
	case l.queue <- ev:
	default:
		if n := l.dropped.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8...: logged, not flooded
			l.log.Error("cluster: publish queue full; events dropped", "dropped_total", n, "queue", cap(l.queue))
		}
	}
}

// Dropped is how many events were not published: the queue was full or
// the link was down.
func (l *Link) Dropped() uint64 { return l.dropped.Load() }

// wireEvent is a PeerEvent as it crosses NATS.
type wireEvent struct {
	V        int        `json:"v"`
	Node     string     `json:"node"`
	Boot     string     `json:"boot"`
	Kind     string     `json:"kind"`
	From     string     `json:"from,omitempty"`
	To       string     `json:"to,omitempty"`
	Text     string     `json:"text,omitempty"`
	Announce bool       `json:"announce,omitempty"`
	Count    int        `json:"count,omitempty"`
	Users    []wireUser `json:"users,omitempty"`
	// After is how many messages the sending node's boot published on
	// PREFIX.room before this one; absent (0), nothing to wait for.
	After uint64 `json:"after,omitempty"`
}

type wireUser struct {
	Name     string `json:"name"`
	Away     string `json:"away,omitempty"`
	Sessions int    `json:"sessions,omitempty"`
}

// wireVersion is the version of wireEvent this node speaks.
const wireVersion = 1

// subjects says which subject each kind is sent on.
var subjects = map[sshchat.PeerKind]string{
	sshchat.PeerSay: "room", sshchat.PeerAction: "room", sshchat.PeerSeen: "room",
	sshchat.PeerJoin: "presence", sshchat.PeerLeave: "presence", sshchat.PeerAway: "presence", sshchat.PeerCount: "presence",
	sshchat.PeerRoster: "presence", sshchat.PeerBye: "presence",
	sshchat.PeerPrivate: "private",
}

// publisher sends what is queued, in order, until Close.
func (l *Link) publisher() {
	defer close(l.sent)
	for {
		select {
		case ev := <-l.queue:
			l.send(ev)
		case <-l.quit:
			for { // what was queued before Close, then stop
				select {
				case ev := <-l.queue:
					l.send(ev)
				default:
					return
				}
			}
		}
	}
}

func (l *Link) send(ev sshchat.PeerEvent) {
	subject, ok := subjects[ev.Kind]
	if !ok {
		l.log.Error("cluster: unknown event kind not published", "kind", string(ev.Kind))
		return
	}
	w := wireEvent{V: wireVersion, Node: l.node, Boot: l.boot, Kind: string(ev.Kind), From: ev.From, To: ev.To, Text: ev.Text, Announce: ev.Announce, Count: ev.Count, After: l.roomSent}
	for _, u := range ev.Users {
		w.Users = append(w.Users, wireUser(u))
	}
	data, err := json.Marshal(w)
	if err == nil && len(data) > MaxMessage {
		err = fmt.Errorf("message of %d bytes is longer than %d", len(data), MaxMessage)
	}
	if err == nil {
		err = l.nc.Publish(l.subject(subject), data)
	}
	if err == nil && subject == "room" {
		// Counted only once it is on its way: nothing waits for a line
		// that was not sent.
		l.roomSent++
	}
	if err != nil {
		// While the link is down: the users were told.
		if n := l.dropped.Add(1); n&(n-1) == 0 || !errors.Is(err, nats.ErrReconnectBufExceeded) {
			l.log.Warn("cluster: event not published", "kind", string(ev.Kind), "err", err, "dropped_total", n)
		}
	}
}

// receive handles one presence or private message from another node.
func (l *Link) receive(m *nats.Msg, order *orderer) {
	ev, after, err := decode(m.Data)
	if err == nil && ev.Node == l.node {
		err = errors.New("sent under this node's own name: is -node the same on two nodes?")
	}
	if err != nil {
		l.log.Warn("cluster: malformed message dropped", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		return
	}
	order.received(ev, after)
}

// decode parses and checks the shape of a message from another node, and
// returns it with how many room messages its sender published before it;
// the room checks and sanitises its content.
func decode(data []byte) (ev sshchat.PeerEvent, after uint64, err error) {
	if len(data) > MaxMessage {
		return ev, 0, fmt.Errorf("longer than %d bytes", MaxMessage)
	}
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return ev, 0, err
	}
	switch {
	case w.V != wireVersion:
		return ev, 0, fmt.Errorf("version %d, want %d", w.V, wireVersion)
	case !validNode.MatchString(w.Node):
		return ev, 0, fmt.Errorf("invalid node name %q", w.Node)
	case w.Boot == "" || len(w.Boot) > 64:
		return ev, 0, errors.New("missing or overlong boot id")
	}
	if _, ok := subjects[sshchat.PeerKind(w.Kind)]; !ok {
		return ev, 0, fmt.Errorf("unknown kind %q", w.Kind)
	}
	ev = sshchat.PeerEvent{Kind: sshchat.PeerKind(w.Kind), Node: w.Node, Boot: w.Boot, From: w.From, To: w.To, Text: w.Text, Announce: w.Announce, Count: w.Count}
	for _, u := range w.Users {
		ev.Users = append(ev.Users, sshchat.PeerUser(u))
	}
	return ev, w.After, nil
}

// Close publishes what is queued, then closes the connection to NATS. Call
// it after the server has shut down, so the others hear this node's bye.
func (l *Link) Close() {
	close(l.quit)
	<-l.sent
	l.mu.Lock()
	subs, order, received := l.subs, l.order, l.received
	l.mu.Unlock()
	for _, sub := range subs {
		sub.Unsubscribe()
	}
	if received != nil {
		<-received
	}
	if order != nil {
		order.close()
	}
	if err := l.nc.FlushTimeout(flushTimeout); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		l.log.Debug("cluster: flushing before close", "err", err)
	}
	l.nc.Close()
}

// Connected reports whether the link to NATS is up.
func (l *Link) Connected() bool { return l.nc.IsConnected() }

// subjectsHelp lists the subjects for logs and documentation.
func (l *Link) subjectsHelp() string {
	return strings.Join([]string{l.subject("room"), l.subject("presence"), l.subject("private")}, ", ")
}
