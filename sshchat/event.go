package sshchat

import (
	"hash/fnv"
	"strconv"
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
)

// event is one thing to show clients. The broadcaster builds it once and
// shares the same pointer with every recipient, so it is read-only once
// queued; line-mode clients write its pre-rendered bytes as they are.
type event struct {
	kind     eventKind
	from     string
	text     string
	at       time.Time
	isReplay bool   // scrollback shown on join
	line     []byte // line-mode rendering, with its newline
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

// replay returns a copy of ev marked as scrollback, which is shown with its
// time even in line mode.
func (ev *event) replay() *event {
	r := *ev
	r.isReplay = true
	r.line = r.render(make([]byte, 0, len(r.from)+len(r.text)+lineOverhead), lineMode)
	return &r
}

// timeLayout is how events are stamped: hours and minutes, in UTC, so that
// everyone in the room sees the same time for the same line.
const timeLayout = "15:04"

// style is how a session shows events.
type style struct {
	terminal bool // a person at a PTY: events are timestamped
	color    bool // names are coloured
}

// lineMode is the style of sessions without a PTY: the plain line protocol.
var lineMode = style{}

// render appends ev as one line of text to buf.
func (ev *event) render(buf []byte, st style) []byte {
	if ev.kind != eventNotice && (st.terminal || ev.isReplay) {
		buf = ev.at.UTC().AppendFormat(buf, timeLayout)
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
	case eventJoin:
		buf = append(name(buf), " has arrived"...)
	case eventLeave:
		buf = append(name(buf), " has left"...)
	case eventPrivate:
		buf = append(buf, "[PM from "...)
		buf = append(name(buf), "] "...)
		buf = append(buf, ev.text...)
	case eventNotice:
		buf = append(buf, ev.text...)
	}
	return append(buf, '\n')
}

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
