package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// Output of a real sshchat PTY session (commit 434333d, x/term v0.48.0,
// TERM=xterm-256color, 80 columns), as load0001 saw it: scrollback, the
// greeting, a delivery, its own typed line, a delivery arriving while it
// had typed "loa" (erased and redrawn), the rest of that line, an action,
// an arrival and a departure. The same with NO_COLOR set follows.
const (
	capturedColor = "[load0001] \x1b[11D\x1b[K08:42 \x1b[38;5;63mload0002\x1b[0m: load 0 1767225600000000000\r\n" +
		"You are load0001\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 \x1b[38;5;63mload0002\x1b[0m: load 1 1767225600000000001\r\n" +
		"[load0001] load 0 1767225600000000002\r\n" +
		"[load0001] loa\x1b[14D\x1b[K08:42 \x1b[38;5;63mload0002\x1b[0m: load 2 1767225600000000003\r\n" +
		"[load0001] load 1 1767225600000000004\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 * \x1b[38;5;63mload0002\x1b[0m waves\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 \x1b[38;5;141mload0003\x1b[0m has arrived\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 \x1b[38;5;141mload0003\x1b[0m has left\r\n" +
		"[load0001] "
	capturedNoColor = "[load0001] \x1b[11D\x1b[K08:42 load0002: load 0 1767225600000000000\r\n" +
		"08:42 load0002: load 1 1767225600000000001\r\n" +
		"08:42 load0001: load 0 1767225600000000002\r\n" +
		"You are load0001\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 load0002: load 1 1767225600000000001\r\n" +
		"[load0001] loa\x1b[14D\x1b[K08:42 load0002: load 2 1767225600000000003\r\n" +
		"[load0001] \x1b[11D\x1b[K08:42 * load0002 waves\r\n" +
		"[load0001] "
)

func TestScreenLineRender(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"plain", "You are load0001\r", "You are load0001"},
		{"prompt erased by moving left", "[load0001] \x1b[11D\x1b[K08:42 load0002: load 1 2\r", "08:42 load0002: load 1 2"},
		{"prompt erased by CR", "[load0001] \r\x1b[K08:42 load0002: load 1 2\r", "08:42 load0002: load 1 2"},
		{"partial input erased", "[load0001] loa\x1b[14D\x1b[K08:42 load0002: load 2 3\r", "08:42 load0002: load 2 3"},
		{"colour", "08:42 \x1b[38;5;63mload0002\x1b[0m: load 0 1\r", "08:42 load0002: load 0 1"},
		{"own typed line", "[load0001] load 0 2\r", "[load0001] load 0 2"},
		{"erase whole line", "junk\x1b[2Kok", "    ok"},
		{"erase to the left", "abcdef\x1b[3D\x1b[1K", "    ef"},
		{"explicit 0K", "abcdef\x1b[2D\x1b[0K", "abcd"},
		{"overwrite after CR", "abcdef\rxy", "xycdef"},
		{"move right pads", "ab\x1b[3Cc", "ab   c"},
		{"move left past column 0", "ab\x1b[9Dc", "cb"},
		{"move up and down ignored", "a\x1b[Ab\x1b[2Bc", "abc"},
		{"two-byte escape", "a\x1b7b", "ab"},
		{"cut-off CSI", "ab\x1b[3", "ab"},
		{"lone ESC at the end", "ab\x1b", "ab"},
		{"controls", "a\x07b\x08c\x7fd", "abcd"},
		{"huge move", "a\x1b[99999999999999999999Cb", "a" + strings.Repeat(" ", maxColumns-1) + "b"},
		{"many moves", "a" + strings.Repeat("\x1b[4000C", 100) + "b", "a" + strings.Repeat(" ", maxColumns-1) + "b"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s screenLine
			if got := string(s.render([]byte(tc.raw))); got != tc.want {
				t.Errorf("render(%q) = %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
}

func TestScreenLineReusesItsBuffer(t *testing.T) {
	var s screenLine
	s.render([]byte("a long line to size the buffer"))
	line := []byte("[load0001] \x1b[11D\x1b[K08:42 \x1b[38;5;63mload0002\x1b[0m: load 1 2\r")
	if n := testing.AllocsPerRun(100, func() { s.render(line) }); n != 0 {
		t.Errorf("render allocates %v times per line", n)
	}
}

func FuzzScreenLine(f *testing.F) {
	for line := range strings.SplitSeq(capturedColor+capturedNoColor, "\n") {
		f.Add([]byte(line))
	}
	f.Add([]byte("\x1b[99999999999C\x1b[1K\x1b[2K\x1b["))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s screenLine
		out := s.render(raw)
		if bytes.ContainsFunc(out, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Errorf("render(%q) = %q, which holds control bytes", raw, out)
		}
		if !bytes.Contains(raw, []byte{0x1b}) && len(out) > len(raw) {
			t.Errorf("render(%q) = %q, longer without any cursor movement", raw, out)
		}
		if len(out) > len(raw)+maxColumns {
			t.Errorf("render of %d bytes gave %d, more than %d columns of padding", len(raw), len(out), maxColumns)
		}
		if !bytes.ContainsFunc(raw, func(r rune) bool { return r < ' ' || r == 0x7f }) && !bytes.Equal(out, raw) {
			t.Errorf("render(%q) = %q, want plain text unchanged", raw, out)
		}
	})
}

// TestPTYClientReadsCapturedOutput feeds captured terminal output to a PTY
// client's reader and checks what it counted.
func TestPTYClientReadsCapturedOutput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		output    string
		delivered []uint64 // sequence numbers from load0002
		other     int64    // unexpected lines while sending
	}{
		{"colour", capturedColor, []uint64{1, 2}, 2},      // the action and the arrival
		{"no colour", capturedNoColor, []uint64{1, 2}, 1}, // the action
		{
			// How a terminal writer that sends a whole batch at once,
			// clearing the prompt with CR, would look.
			"batched, CR", "You are load0001\r\n" +
				"[load0001] \r\x1b[K09:00 load0002: load 1 5\r\n09:00 load0002: load 2 5\r\n[load0001] lo\r\x1b[K09:00 load0002: load 3 5\r\n[load0001] lo",
			[]uint64{1, 2, 3}, 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &shared{senders: map[string]int{"load0001": 0, "load0002": 1}, maxSeq: 10, term: "xterm-256color"}
			run.sending.Store(true)
			c := &client{
				name: "load0001", run: run, seen: make([][]uint64, 2), prompt: []byte("[load0001] "),
				stdout: strings.NewReader(tc.output), greeted: make(chan error, 1), done: make(chan struct{}),
			}
			c.read()
			if err := <-c.greeted; err != nil {
				t.Fatalf("greeting: %v", err)
			}
			if got := c.delivered.Load(); got != int64(len(tc.delivered)) {
				t.Errorf("delivered %d, want %d", got, len(tc.delivered))
			}
			for _, seq := range tc.delivered {
				if c.deliveredBelow(1, seq+1)-c.deliveredBelow(1, seq) != 1 {
					t.Errorf("load 2's message %d not counted", seq)
				}
			}
			if c.selfEchoes != 0 || c.foreign != 0 || c.dups != 0 || c.other != tc.other {
				t.Errorf("self-echoes, foreign, dups, other = %d, %d, %d, %d; want 0, 0, 0, %d (samples %q)", c.selfEchoes, c.foreign, c.dups, c.other, tc.other, c.samples)
			}
			if tc.name == "colour" && c.leaves != 1 {
				t.Errorf("leaves %d, want 1", c.leaves)
			}
		})
	}
}

// TestLineModeIsNotRendered checks that a line-mode client takes escape
// bytes in a line literally: only a PTY's output is meant for a terminal.
func TestLineModeIsNotRendered(t *testing.T) {
	run := &shared{senders: map[string]int{"load0002": 0}, maxSeq: 10}
	run.sending.Store(true)
	out := "You are load0001\n\x1b[Kload0002: load 1 5\nload0002: load 2 5\n"
	c := &client{name: "load0001", run: run, seen: make([][]uint64, 1), stdout: bufio.NewReader(strings.NewReader(out)),
		greeted: make(chan error, 1), done: make(chan struct{})}
	c.read()
	if got := c.delivered.Load(); got != 1 || c.foreign != 1 {
		t.Errorf("delivered %d, foreign %d; want 1, 1", got, c.foreign)
	}
}

func TestStripTime(t *testing.T) {
	for line, want := range map[string]string{
		"12:34 load0002: load 1 2": "load0002: load 1 2",
		"You are load0001":         "You are load0001",
		"12:34 ":                   "12:34 ",
		"Disconnected: slow":       "Disconnected: slow",
	} {
		if got := string(stripTime([]byte(line))); got != want {
			t.Errorf("stripTime(%q) = %q, want %q", line, got, want)
		}
	}
}
