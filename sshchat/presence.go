package sshchat

import (
	"fmt"
	"strings"
)

// Arrivals and departures are announced one by one while the room is small
// and calm. In a room of more than announceMax users, or once more than
// stormAnnouncements went out in the current second, they are collected
// and announced once a second, one line per kind ("12 people arrived:
// alice, bob, … and 9 more"): fanning every arrival out to everyone would
// make a join storm cost the square of its size. /names stays exact.

// stormAnnouncements is how many arrivals and departures a second are
// announced one by one before the rest of that second's are summarised.
const stormAnnouncements = 10

// maxNamesInSummary bounds the names a summary lists.
const maxNamesInSummary = 10

// presenceNews is what has not been announced yet.
type presenceNews struct {
	arrived, left []string
	thisSecond    int // announced one by one since the last housekeeping tick
}

// announcePresence announces that name arrived (eventJoin) or left
// (eventLeave), now or in the next summary.
func (st *state) announcePresence(kind eventKind, name string) {
	n := &st.news
	if (st.opts.announceMax == 0 || len(st.clients) <= st.opts.announceMax) && n.thisSecond < stormAnnouncements {
		n.thisSecond++
		st.broadcast(st.newEvent(kind, name, ""), nil)
		return
	}
	if kind == eventJoin {
		n.arrived = append(n.arrived, name)
	} else {
		n.left = append(n.left, name)
	}
}

// announceSummaries announces what announcePresence collected; the
// housekeeping tick calls it.
func (st *state) announceSummaries() {
	n := &st.news
	for _, s := range []struct {
		kind  eventKind
		names []string
		verb  string
	}{{eventJoin, n.arrived, "arrived"}, {eventLeave, n.left, "left"}} {
		if len(s.names) > 0 {
			ev := st.newEvent(s.kind, "", summary(s.names, s.verb))
			st.broadcast(ev, nil)
		}
	}
	clear(n.arrived)
	clear(n.left)
	n.arrived, n.left, n.thisSecond = n.arrived[:0], n.left[:0], 0
}

// summary is "3 people arrived: alice, bob, carol" with at most
// maxNamesInSummary names.
func summary(names []string, verb string) string {
	shown := names[:min(len(names), maxNamesInSummary)]
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s %s: %s", len(names), plural(uint64(len(names)), "person", "people"), verb, strings.Join(shown, ", "))
	if more := len(names) - len(shown); more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	return b.String()
}
