package sshchat

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

type eventKind uint8

const (
	eventChat    eventKind = iota // alice: hi
	eventAction                   // * alice waves
	eventJoin                     // alice has arrived
	eventLeave                    // alice has left
	eventPrivate                  // [PM from alice] hi
	eventNotice                   // server text for one client
	eventGroup                    // several events written as one
)

// event is one thing to show clients. The broadcaster builds it once and
// shares the same pointer with every recipient, so it is read-only once
// queued; line-mode clients write its pre-rendered bytes as they are.
type event struct {
	kind     eventKind
	from     string
	text     string
	at       time.Time
	seq      uint64 // public messages: their place in the room's history
	withDate bool   // a replayed line from before today
	sampled  bool   // its delivery lag is measured
	line     []byte // line-mode rendering, with its newline
	group    []*event
}

func newEvent(kind eventKind, from, text string, at time.Time) *event {
	ev := &event{kind: kind, from: from, text: text, at: at}
	ev.line = ev.render(make([]byte, 0, len(from)+len(text)+lineOverhead), lineMode)
	return ev
}

// lineOverhead is room for the decoration a rendered line adds to the name
// and text, so that rendering allocates once.
const lineOverhead = 24

func noticeEvent(text string) *event {
	return newEvent(eventNotice, "", text, time.Time{})
}

// groupEvent makes evs one event, written at once: a joiner's replay and
// greeting, or /history.
func groupEvent(evs []*event) *event {
	g := &event{kind: eventGroup, group: evs}
	for _, ev := range evs {
		g.line = append(g.line, ev.line...)
	}
	return g
}

// replay returns ev as scrollback: a terminal shows a line from another day
// than now with its date, so that is a copy marked withDate. In line mode a
// replayed line has the shape of a live one.
func (ev *event) replay(now time.Time) *event {
	if ev.at.UTC().Format(time.DateOnly) == now.UTC().Format(time.DateOnly) {
		return ev
	}
	r := *ev
	r.withDate = true
	return &r
}

// timeLayout is how events are stamped: hours and minutes, in UTC, so that
// everyone in the room sees the same time for the same line. Replayed lines
// from another day carry the date too.
const (
	timeLayout     = "15:04"
	dateTimeLayout = "2006-01-02 15:04"
)

// style is how a session shows events.
type style struct {
	terminal bool // a person at a PTY: events are timestamped
	color    bool // names are coloured
	json     bool // one JSON object per line, for scripts
}

// lineMode is the style of sessions without a PTY: the plain line protocol.
var lineMode = style{}

// render appends ev as one line of text to buf (a group as several).
func (ev *event) render(buf []byte, st style) []byte {
	if ev.kind == eventGroup {
		for _, e := range ev.group {
			buf = e.render(buf, st)
		}
		return buf
	}
	if ev.kind != eventNotice && st.terminal {
		layout := timeLayout
		if ev.withDate {
			layout = dateTimeLayout
		}
		buf = ev.at.UTC().AppendFormat(buf, layout)
		buf = append(buf, ' ')
	}
	name := func(buf []byte) []byte { return appendName(buf, ev.from, st.color) }
	switch ev.kind {
	case eventChat:
		buf = append(name(buf), ": "...)
		buf = append(buf, ev.text...)
	case eventAction:
		buf = append(buf, "* "...)
		buf = append(name(buf), ' ')
		buf = append(buf, ev.text...)
	case eventJoin, eventLeave:
		if ev.from == "" { // a summary of several
			buf = append(buf, ev.text...)
		} else if ev.kind == eventJoin {
			buf = append(name(buf), " has arrived"...)
		} else {
			buf = append(name(buf), " has left"...)
		}
	case eventPrivate:
		buf = append(buf, "[PM from "...)
		buf = append(name(buf), "] "...)
		buf = append(buf, ev.text...)
	case eventNotice:
		if st.terminal {
			buf = append(buf, ev.text...)
			break
		}
		// In line mode every line of a notice is marked, so that a program
		// can tell the server's words from the users'.
		for i, line := range strings.Split(ev.text, "\n") {
			if i > 0 {
				buf = append(buf, '\n')
			}
			buf = append(append(buf, noticeMarker...), line...)
		}
	}
	return append(buf, '\n')
}

// noticeMarker starts every line of a server notice in line mode.
const noticeMarker = "-!- "

// palette holds 256-colour indexes that read well on dark and light
// backgrounds.
var palette = []int{1, 2, 3, 4, 5, 6, 9, 12, 13, 14, 27, 33, 39, 63, 69, 99, 105, 130, 135, 141, 166, 172, 178, 202, 208}

// appendName appends name, coloured by a stable hash of it when color is set,
// so each user keeps the same colour everywhere.
func appendName(buf []byte, name string, color bool) []byte {
	if !color {
		return append(buf, name...)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	buf = append(buf, "\x1b[38;5;"...)
	buf = strconv.AppendInt(buf, int64(palette[h.Sum32()%uint32(len(palette))]), 10)
	buf = append(buf, 'm')
	buf = append(buf, name...)
	return append(buf, "\x1b[0m"...)
}

// eventJSON is an event as one-shot commands print it with --json.
type eventJSON struct {
	Time string `json:"time,omitempty"` // RFC 3339
	From string `json:"from,omitempty"`
	Kind string `json:"kind"`
	Text string `json:"text,omitempty"`
}

var jsonKinds = map[eventKind]string{
	eventChat: "message", eventAction: "action", eventJoin: "join", eventLeave: "leave",
	eventPrivate: "private", eventNotice: "notice",
}

// appendJSON appends ev as JSON lines, one per event of a group.
func (ev *event) appendJSON(buf []byte) []byte {
	if ev.kind == eventGroup {
		for _, e := range ev.group {
			buf = e.appendJSON(buf)
		}
		return buf
	}
	j := eventJSON{From: ev.from, Kind: jsonKinds[ev.kind], Text: ev.text}
	if !ev.at.IsZero() {
		j.Time = ev.at.UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(j) // strings and a known struct: cannot fail
	return append(append(buf, b...), '\n')
}
