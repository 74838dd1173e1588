package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The shared history is the JetStream stream PREFIX_history (dots in the
// prefix become '_'), whose subject is PREFIX.room: what the nodes
// publish there, public lines and departures ("seen"), is stored in
// one order for the whole room with nothing published twice. Every node
// reads it through an ordered consumer from the position after the last
// one its history holds (sshchat.Server.SharedHistory), so it copies what
// was said on the other nodes while it was down or cut off, and skips what
// it said itself, which it stored as it said it: in this run, or, if its
// store held history or a position when it started, in earlier runs too.
// A node that starts from nothing (its data wiped, or history in memory)
// under a name that spoke before copies that name's earlier lines like
// any other. After a reconnect the
// node reads it again from the position after the last message it
// handled, so nothing is handed to the room twice or missed. If the
// server came back without the stream (it restarted without its store),
// the node makes it again and, finding it behind its position, reads it
// from its start. A stream deleted and made again while the node stays
// connected is not noticed until the next reconnect. Messages older than
// Options.HistoryKeep are dropped from the stream, as from each node's
// store.

// historyFollower reads the shared history into the room.
type historyFollower struct {
	link  *Link
	room  Room
	order *orderer // told of each line handed over
	js    nats.JetStreamContext
	jsm   jetstream.JetStream // to make the stream again
	msgs  chan *nats.Msg
	sub   *nats.Subscription // the receiver's

	// ownStored: the node's store held history or a position when it
	// started, so it holds what the node said in earlier runs too.
	ownStored bool
	handled   uint64        // stream position of the last message read; the receiver's
	target    uint64        // what the stream held at start
	caughtUp  chan struct{} // closed once handled reaches target
}

// historyStream is the name of the shared history's stream.
func (l *Link) historyStream() string {
	return strings.ReplaceAll(l.prefix, ".", "_") + "_history"
}

// followHistory opens (creating it if need be) the shared history and has
// the receiver hand the room what it holds after the room's position, then what
// arrives, until Close. The lines come through msgs, the channel of the
// presence and private subscriptions, and receiver hands the room
// everything in the order the connection brought it (see order.go). It
// waits, up to Options.CatchUpWait, for what the stream held at the start to be
// handed over.
func (l *Link) followHistory(room Room, msgs chan *nats.Msg) error {
	name := l.historyStream()
	ctx, cancel := context.WithTimeout(context.Background(), 2*flushTimeout)
	defer cancel()
	js, err := jetstream.New(l.nc)
	if err != nil {
		return fmt.Errorf("cluster: shared history: %w", err)
	}
	stream, err := l.makeHistory(ctx, js)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("cluster: shared history stream %s: %w", name, err)
	}
	pos, err := room.SharedHistory(name)
	if err != nil {
		return fmt.Errorf("cluster: shared history: %w", err)
	}
	ownStored := pos > 0 || l.stored
	last := info.State.LastSeq
	if pos > last {
		// The stream is not the one the node followed: it was deleted and
		// made again. All it holds is new to the node.
		l.log.Warn("cluster: the shared history is behind this node's position in it; copying it from its start", "stream", name, "position", pos, "stream_last", last)
		pos = 0
	} else if first := info.State.FirstSeq; info.State.Msgs > 0 && pos+1 < first {
		l.log.Warn("cluster: lines of the shared history expired before this node copied them", "stream", name, "missed", first-pos-1)
	}
	l.mu.Lock()
	order := l.order
	l.mu.Unlock()
	f := &historyFollower{link: l, room: room, order: order, jsm: js, msgs: msgs, ownStored: ownStored, handled: pos, target: last, caughtUp: make(chan struct{})}
	if pos >= last {
		close(f.caughtUp)
	}
	// The JetStream API of nats.go that delivers into a channel: the
	// jetstream package hands messages to a callback on a goroutine of
	// its own, which a presence message that came before could not be
	// kept in order with.
	if f.js, err = l.nc.JetStream(); err != nil {
		return fmt.Errorf("cluster: shared history: %w", err)
	}
	if err := f.subscribe(); err != nil {
		return err
	}
	l.startReceiver(msgs, f)
	select {
	case <-f.caughtUp:
		l.log.Info("cluster: shared history copied", "stream", name, "from", pos+1, "to", last)
	case <-time.After(l.catchUpWait):
		l.log.Warn("cluster: still copying the shared history; serving meanwhile", "stream", name, "to", last)
	}
	return nil
}

// makeHistory creates the shared history's stream, or brings its settings
// in line if it exists. Start calls it, and so does every reconnect: a
// NATS server that came back without its store has lost the stream, and
// without it the nodes' lines go nowhere.
func (l *Link) makeHistory(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	name := l.historyStream()
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "sshchat public lines and departures, shared by every node",
		Subjects:    []string{l.subject("room")},
		Storage:     jetstream.FileStorage,
		MaxAge:      l.keep,
		MaxMsgSize:  MaxMessage,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: shared history stream %s (is JetStream enabled on the NATS server?): %w", name, err)
	}
	return stream, nil
}

// subscribe reads the shared history into the channel from the position
// after the last one handled.
func (f *historyFollower) subscribe() error {
	start := nats.DeliverAll()
	if f.handled > 0 {
		start = nats.StartSequence(f.handled + 1)
	}
	name := f.link.historyStream()
	sub, err := f.js.ChanSubscribe(f.link.subject("room"), f.msgs, nats.BindStream(name), nats.OrderedConsumer(), start)
	if err != nil {
		return fmt.Errorf("cluster: reading the shared history %s: %w", name, err)
	}
	f.sub = sub
	return nil
}

// resubscribe reads the shared history again from where the receiver has
// reached, after a reconnect: the server may have forgotten the reader
// (it restarted, or the link was down long enough), and a reader that
// delivers into a channel does not notice. The server may also have lost
// the stream (it restarted without its store): it is made again, and read
// from its start. What the former reader had put in the channel is
// dropped, and comes again. Only the receiver calls it; it returns false
// if the reader could not be made.
func (f *historyFollower) resubscribe() bool {
	if err := f.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
		f.link.log.Debug("cluster: leaving the former reader of the shared history", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*flushTimeout)
	defer cancel()
	stream, err := f.link.makeHistory(ctx, f.jsm)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = stream.Info(ctx)
	}
	if err == nil && f.handled > info.State.LastSeq {
		// Not the stream the node followed: it was lost and made again.
		// All it holds is new to the node.
		f.link.log.Warn("cluster: the shared history is behind this node's position in it; it was lost or made again: copying it from its start",
			"stream", f.link.historyStream(), "position", f.handled, "stream_last", info.State.LastSeq)
		if f.handled < f.target {
			close(f.caughtUp) // what Start waits for is gone
		}
		f.handled, f.target = 0, 0
	}
	if err == nil {
		err = f.subscribe()
	}
	if err != nil {
		f.link.log.Warn("cluster: reading the shared history again after a reconnect failed; trying again", "err", err)
		return false
	}
	return true
}

// receive hands the room one message of the shared history, unless this
// node sent it. Only the receiver calls it.
func (f *historyFollower) receive(m *nats.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		f.link.log.Warn("cluster: shared history message without metadata dropped", "err", err)
		return
	}
	defer f.handledUpTo(meta.Sequence.Stream)
	ev, after, err := decode(m.Data)
	if err != nil {
		f.link.log.Warn("cluster: malformed message in the shared history dropped", "position", meta.Sequence.Stream, "bytes", len(m.Data), "err", err)
		return
	}
	if ev.Node == f.link.node && (ev.Boot == f.link.boot || f.ownStored) {
		return // stored as it was said
	}
	ev.Stream, ev.At = meta.Sequence.Stream, meta.Timestamp
	f.room.FromPeer(ev)
	// Before the next line: what the node sent after this one comes now.
	f.order.streamed(ev.Node, ev.Boot, after)
}

func (f *historyFollower) handledUpTo(pos uint64) {
	before := f.handled
	f.handled = pos
	if before < f.target && pos >= f.target {
		close(f.caughtUp)
	}
}
