package sshchat

import (
	"time"

	"github.com/sshchat-dev/sshchat/store"
)

// The cluster's shared history. In a cluster, the public lines and the
// departures of every node also go to a log the nodes share (package
// cluster keeps it in JetStream), which numbers them in one order for the
// whole room. Each node copies into its own history what the others put
// there, from where it stopped, so a node that was down or cut off from
// the others catches up; its store keeps the position up to which its
// history holds the log, so that nothing is copied twice. A departure in
// the log (PeerSeen) marks where that user's catch-up starts, at the same
// place among the lines on every node: whichever node the user comes back
// to tells them what they missed.

// sharedHistory is how far the room has copied the shared history.
type sharedHistory struct {
	name     string // of the log; "" until the room follows one
	position uint64 // of the last event handled
	covers   uint64 // the room's seq when it was handled
	saved    uint64 // the position last handed to the store
}

// earliestShared is the earliest time the room takes from the shared
// history for a line; an earlier one is replaced by the time it arrives.
var earliestShared = time.Unix(1, 0)

// SharedHistory makes the room follow the cluster's shared history called
// name and returns the position in it of the last event this node's
// history holds (0: none), from the store. Without a store the history is
// in memory, and holds none of it.
func (s *Server) SharedHistory(name string) (uint64, error) {
	var pos uint64
	if s.cfg.Store != nil {
		var err error
		if pos, err = s.cfg.Store.Position(name); err != nil {
			return 0, err
		}
	}
	s.room.do(func(st *state) { st.shared = sharedHistory{name: name, position: pos, saved: pos} })
	return pos, nil
}

// fromSharedHistory handles an event of the shared history from another
// node, already checked by fromPeer: a line to add to this node's history,
// or a user's departure. Nothing of it is presence: the node may have said
// it long ago, in an earlier run.
func (st *state) fromSharedHistory(ev PeerEvent) {
	// When the log took it, not when it arrives: a line copied after an
	// outage keeps its time. The log's clock is trusted no more than the
	// rest of it.
	at := ev.At
	if now := st.now(); at.Before(earliestShared) || at.After(now) {
		at = now
	}
	switch ev.Kind {
	case PeerSay, PeerAction:
		st.peerLine(ev, at)
	case PeerSeen:
		if u := st.users[ev.From]; ev.From != "" && (u == nil || u.sessions == 0) {
			// After every line this node has published so far, as in the log.
			st.rememberSeen(map[string]store.Seen{ev.From: {At: at, Seq: st.seq}})
		}
	default:
		st.log.Warn("cluster: event from another node dropped", "why", "not a line or departure in the shared history", "node", ev.Node, "kind", string(ev.Kind))
	}
	st.shared.position, st.shared.covers = ev.Stream, st.seq
	st.saveSharedPosition(false)
}

// saveSharedPosition hands the store the position up to which the room's
// history holds the shared history, once the history logger has logged
// the lines it covers, so that a crash never leaves one out; a kill -9 may
// then copy the last few twice. At close (final) the lines the logger
// still holds are logged before the store closes.
func (st *state) saveSharedPosition(final bool) {
	sh := &st.shared
	if st.opts.stored == nil || sh.position == sh.saved || !final && sh.covers > st.shown {
		return
	}
	sh.saved = sh.position
	name, pos, log := sh.name, sh.position, st.log
	if !st.opts.stored.Submit(store.Batch{Positions: map[string]uint64{name: pos}}, func(err error) {
		if err != nil {
			log.Error("history: the position in the shared history was not stored; lines after the last one stored may be copied twice", "log", name, "position", pos, "err", err)
		}
	}) {
		log.Error("history: the store is not keeping up; the position in the shared history was not stored", "log", name, "position", pos)
	}
}

// tellLeft tells the other nodes, through the shared history, that name
// has left the room, unless they are still on another node.
func (st *state) tellLeft(name string) {
	if !st.elsewhere(name, nil) {
		st.tellPeers(PeerEvent{Kind: PeerSeen, From: name})
	}
}
