package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The shared history is the JetStream stream PREFIX_history (dots in the
// prefix become '_'), whose subject is PREFIX.room: what the nodes
// publish there, public lines and departures ("seen"), is stored in
// one order for the whole room with nothing published twice. Every node
// reads it through an ordered consumer from the position after the last
// one its history holds (sshchat.Server.SharedHistory), so it copies what
// was said on the other nodes while it was down or cut off, and skips what
// it said itself, which it stored as it said it. The ordered consumer
// starts again where it stopped after a reconnect, so nothing is handed to
// the room twice. Messages older than Options.HistoryKeep are dropped from
// the stream, as from each node's store.

// catchUpWait bounds how long Start waits for the node to copy what the
// shared history holds before it lets the node serve its users.
const catchUpWait = 10 * time.Second

// historyFollower reads the shared history into the room.
type historyFollower struct {
	link     *Link
	order    *orderer // told of each line handed over
	consumer jetstream.ConsumeContext

	handled  atomic.Uint64 // stream position of the last message read
	target   uint64        // what the stream held at start
	once     sync.Once
	caughtUp chan struct{} // closed once handled reaches target
}

// historyStream is the name of the shared history's stream.
func (l *Link) historyStream() string {
	return strings.ReplaceAll(l.prefix, ".", "_") + "_history"
}

// followHistory opens (creating it if need be) the shared history and
// hands the room what it holds after the room's position, then what
// arrives, until Close. It waits, up to catchUpWait, for what it held at
// the start to be handed over.
func (l *Link) followHistory(room Room) (*historyFollower, error) {
	name := l.historyStream()
	ctx, cancel := context.WithTimeout(context.Background(), 2*flushTimeout)
	defer cancel()
	js, err := jetstream.New(l.nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: shared history: %w", err)
	}
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
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: shared history stream %s: %w", name, err)
	}
	pos, err := room.SharedHistory(name)
	if err != nil {
		return nil, fmt.Errorf("cluster: shared history: %w", err)
	}
	last := info.State.LastSeq
	if pos > last {
		// The stream is not the one the node followed: it was deleted and
		// made again. All it holds is new to the node.
		l.log.Warn("cluster: the shared history is behind this node's position in it; copying it from its start", "stream", name, "position", pos, "stream_last", last)
		pos = 0
	} else if first := info.State.FirstSeq; info.State.Msgs > 0 && pos+1 < first {
		l.log.Warn("cluster: lines of the shared history expired before this node copied them", "stream", name, "missed", first-pos-1)
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if pos > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: pos + 1}
	}
	consumer, err := js.OrderedConsumer(ctx, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the shared history %s: %w", name, err)
	}
	l.mu.Lock()
	order := l.order
	l.mu.Unlock()
	f := &historyFollower{link: l, order: order, target: last, caughtUp: make(chan struct{})}
	f.handled.Store(pos)
	if pos >= last {
		f.once.Do(func() { close(f.caughtUp) })
	}
	f.consumer, err = consumer.Consume(func(m jetstream.Msg) { f.receive(m, room) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			l.log.Info("cluster: reading the shared history", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the shared history %s: %w", name, err)
	}
	select {
	case <-f.caughtUp:
		l.log.Info("cluster: shared history copied", "stream", name, "from", pos+1, "to", last)
	case <-time.After(catchUpWait):
		l.log.Warn("cluster: still copying the shared history; serving meanwhile", "stream", name, "position", f.handled.Load(), "to", last)
	}
	return f, nil
}

// receive hands the room one message of the shared history, unless this
// node sent it.
func (f *historyFollower) receive(m jetstream.Msg, room Room) {
	meta, err := m.Metadata()
	if err != nil {
		f.link.log.Warn("cluster: shared history message without metadata dropped", "err", err)
		return
	}
	defer f.handledUpTo(meta.Sequence.Stream)
	data := m.Data()
	ev, after, err := decode(data)
	if err != nil {
		f.link.log.Warn("cluster: malformed message in the shared history dropped", "position", meta.Sequence.Stream, "bytes", len(data), "err", err)
		return
	}
	if ev.Node == f.link.node {
		return // stored as it was said
	}
	ev.Stream, ev.At = meta.Sequence.Stream, meta.Timestamp
	room.FromPeer(ev)
	// Before the next line: what the node sent after this one comes now.
	f.order.streamed(ev.Node, ev.Boot, after)
}

func (f *historyFollower) handledUpTo(pos uint64) {
	f.handled.Store(pos)
	if pos >= f.target {
		f.once.Do(func() { close(f.caughtUp) })
	}
}

// stop stops reading and waits for the message being handed over.
func (f *historyFollower) stop() {
	f.consumer.Stop()
	select {
	case <-f.consumer.Closed():
	case <-time.After(flushTimeout):
		f.link.log.Warn("cluster: the shared history reader did not stop in time")
	}
}
