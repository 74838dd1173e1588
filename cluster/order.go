package cluster

import (
	"log/slog"
	"sync"
	"time"

	"github.com/sshchat-dev/sshchat/sshchat"
)

// Lines reach the other nodes through the shared history, everything else
// (presence, private messages) through plain subjects. Every message of
// both arrives through one connection and one channel, and is handled by
// one goroutine in the order it came (Link.receiver), so nothing is
// reordered on this side. A presence or private message sent before a
// line therefore reaches the room first: a NATS server delivers a plain
// message as it takes it in, and a line published after it only once the
// stream has stored it. That holds when the nodes share one NATS server;
// between servers of a NATS cluster the two take different routes, and it
// is only likely.
//
// The other way round, a departure sent right after a line overtakes it:
// the line is still being stored. To keep each node's order, every
// message a node sends carries "after": how many messages this run of the
// node (its boot) put on PREFIX.room before it. The receiving side counts,
// per node and boot, the room messages the shared history has handed to
// the room, and holds a presence or private message back until that count
// reaches its "after", or for Options.OrderWait at most (the line may have
// been lost, or be far behind in a backlog). Held messages of one node
// leave in the order they came, right after the line they waited for and
// before the next, so the room sees the node's order.
//
// The first message heard from a node's boot is taken as its starting
// point: lines it counts that this node has not seen are older than this
// node's position in the shared history, or on their way in a backlog,
// and nothing waits for them. A new boot of a node lets its former boot's
// held messages go at once: nothing more is to come from it.

// orderer holds messages from other nodes until the lines sent before them
// have been handed to the room.
type orderer struct {
	room    Room
	wait    time.Duration
	maxHeld int
	log     *slog.Logger

	// mu is held while messages are handed to the room, so that what one
	// goroutine lets go is not overtaken by another's.
	mu     sync.Mutex
	nodes  map[string]*nodeOrder
	held   int
	full   uint64 // messages let go early because maxHeld were held
	timer  *time.Timer
	closed bool
}

// nodeOrder is what the orderer knows of one node.
type nodeOrder struct {
	boot     string      // the run its presence messages come from
	streamed uint64      // its room messages handed to the room (the highest "after" + 1)
	other    bootCount   // the last other run seen in the shared history: the next one, or a former one in a backlog
	queue    []heldEvent // in the order they came
}

type bootCount struct {
	boot     string
	streamed uint64
}

type heldEvent struct {
	ev    sshchat.PeerEvent
	after uint64
	until time.Time
}

// maxOrderedNodes bounds the nodes the orderer keeps track of; a stranger
// on NATS can invent node names.
const maxOrderedNodes = 1024

func newOrderer(room Room, wait time.Duration, maxHeld int, log *slog.Logger) *orderer {
	return &orderer{room: room, wait: wait, maxHeld: maxHeld, log: log, nodes: make(map[string]*nodeOrder)}
}

// streamed records that the shared history handed the room a message of
// node's run boot, sent after `after` others, and lets go what waited for
// it.
func (o *orderer) streamed(node, boot string, after uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.nodes[node]
	if n == nil {
		if n = o.track(node); n == nil {
			return
		}
		n.boot = boot
	}
	switch {
	case n.boot == boot:
		n.streamed = max(n.streamed, after+1)
		o.release(n, time.Now())
	case n.other.boot == boot:
		n.other.streamed = max(n.other.streamed, after+1)
	default:
		n.other = bootCount{boot, after + 1}
	}
}

// received hands ev, sent after `after` room messages of its run, to the
// room now if nothing it follows is missing, or holds it back.
func (o *orderer) received(ev sshchat.PeerEvent, after uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	n := o.nodes[ev.Node]
	if n == nil {
		if n = o.track(ev.Node); n == nil {
			o.room.FromPeer(ev)
			return
		}
		n.boot = "" // below: the first run heard from
	}
	if n.boot != ev.Boot {
		o.restarted(n, ev.Boot, after)
	}
	if len(n.queue) == 0 && after <= n.streamed {
		o.room.FromPeer(ev)
		return
	}
	now := time.Now()
	if o.held >= o.maxHeld {
		o.full++
		if o.full&(o.full-1) == 0 { // 1, 2, 4, 8...: logged, not flooded
			o.log.Warn("cluster: too many messages held back waiting for lines; letting the oldest go out of order", "held", o.held, "let_go_total", o.full)
		}
		o.releaseOldest(now)
	}
	n.queue = append(n.queue, heldEvent{ev: ev, after: after, until: now.Add(o.wait)})
	o.held++
	o.armTimer(now)
}

// restarted makes boot the run n's messages come from, letting go what the
// former run's messages waited for.
func (o *orderer) restarted(n *nodeOrder, boot string, after uint64) {
	for _, h := range n.queue {
		o.room.FromPeer(h.ev)
	}
	o.held -= len(n.queue)
	clear(n.queue)
	n.queue = n.queue[:0]
	streamed := after // its first message heard: the starting point
	if n.other.boot == boot {
		streamed = max(streamed, n.other.streamed)
	}
	if n.boot != "" {
		n.other = bootCount{n.boot, n.streamed}
	}
	n.boot, n.streamed = boot, streamed
}

// track starts keeping track of node, forgetting a node with nothing held
// if there are too many; it returns nil if it cannot.
func (o *orderer) track(node string) *nodeOrder {
	if len(o.nodes) >= maxOrderedNodes {
		for name, n := range o.nodes {
			if len(n.queue) == 0 {
				delete(o.nodes, name)
				break
			}
		}
		if len(o.nodes) >= maxOrderedNodes {
			return nil
		}
	}
	n := &nodeOrder{}
	o.nodes[node] = n
	return n
}

// release hands the room n's held messages, in order, up to the first that
// still waits for a line before its time is up.
func (o *orderer) release(n *nodeOrder, now time.Time) {
	i := 0
	for ; i < len(n.queue); i++ {
		h := n.queue[i]
		if h.after > n.streamed {
			if now.Before(h.until) {
				break
			}
			o.log.Debug("cluster: lines a message was sent after did not arrive in time; handing it over anyway",
				"from_node", h.ev.Node, "kind", string(h.ev.Kind), "after", h.after, "lines_arrived", n.streamed, "waited", o.wait.String())
		}
		o.room.FromPeer(h.ev)
	}
	if i == 0 {
		return
	}
	o.held -= i
	clear(n.queue[:i])
	n.queue = n.queue[i:]
	if len(n.queue) == 0 {
		n.queue = nil
	}
}

// releaseOldest lets go the message held longest, and what follows it of
// its node and no longer waits.
func (o *orderer) releaseOldest(now time.Time) {
	var oldest *nodeOrder
	for _, n := range o.nodes {
		if len(n.queue) > 0 && (oldest == nil || n.queue[0].until.Before(oldest.queue[0].until)) {
			oldest = n
		}
	}
	if oldest != nil {
		oldest.queue[0].until = now
		o.release(oldest, now)
	}
}

// armTimer makes the timer fire when the first held message's time is up.
func (o *orderer) armTimer(now time.Time) {
	var first time.Time
	for _, n := range o.nodes {
		if len(n.queue) > 0 && (first.IsZero() || n.queue[0].until.Before(first)) {
			first = n.queue[0].until
		}
	}
	switch {
	case first.IsZero():
	case o.timer == nil:
		o.timer = time.AfterFunc(first.Sub(now), o.timeUp)
	default:
		o.timer.Reset(first.Sub(now))
	}
}

// timeUp lets go the messages whose time is up.
func (o *orderer) timeUp() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	now := time.Now()
	for _, n := range o.nodes {
		o.release(n, now)
	}
	o.armTimer(now)
}

// close stops handing messages to the room; those still held are dropped,
// and logged.
func (o *orderer) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.timer != nil {
		o.timer.Stop()
	}
	if o.held > 0 {
		o.log.Info("cluster: closing with messages from other nodes still waiting for lines; dropped", "held", o.held)
	}
}
