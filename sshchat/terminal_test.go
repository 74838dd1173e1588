package sshchat

import (
	"regexp"
	"strings"
	"testing"
)

func TestTerminalSession(t *testing.T) {
	ts := startServer(t, nil)
	b := ts.join(ts.user("bob"))
	b.say("before alice")
	a := ts.openTerminal(ts.user("alice"))
	// Scrollback, greeting and prompt; colours on for xterm-256color.
	screen := a.readUntil("You are alice\r\n[alice] ")
	for _, want := range []string{"bob\x1b[0m: before alice\r\n", "You are alice\r\n"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen %q lacks %q", screen, want)
		}
	}
	b.expect("alice has arrived")

	// A message arriving while alice types is printed above her prompt and
	// her partial line is redrawn.
	a.typeKeys("hel")
	a.readUntil("hel")
	b.say("interrupting")
	screen = a.readUntil("[alice] hel")
	if !regexp.MustCompile(`\d\d:\d\d \x1b\[38;5;\d+mbob\x1b\[0m: interrupting\r\n`).MatchString(screen) {
		t.Fatalf("incoming line not rendered above the prompt: %q", screen)
	}
	a.typeKeys("lo\r")
	b.expect("alice: hello")

	// Ctrl-C clears the line instead of leaving.
	a.typeKeys("oops\x03fine\r")
	b.expect("alice: fine")

	// Tab completes names after @.
	a.typeKeys("hey @b\t\r")
	b.expect("alice: hey @bob")

	// Window changes are taken without blocking the session.
	for i := range 50 {
		if err := a.session.WindowChange(24, 40+i); err != nil {
			t.Fatal(err)
		}
	}
	b.say("after resize")
	a.readUntil("after resize")

	// Ctrl-D on an empty line leaves.
	a.typeKeys("\x04")
	b.expect("alice has left")
}

func TestTerminalNoColor(t *testing.T) {
	ts := startServer(t, nil)
	b := ts.join(ts.user("bob"))
	client := ts.connect(ts.user("alice"))
	a := startChatWith(t, client, chatRequest{term: "xterm-256color", env: map[string]string{"NO_COLOR": "1"}})
	a.readUntil("You are alice\r\n[alice] ")
	b.expect("alice has arrived")
	b.say("plain please")
	screen := a.readUntil("plain please")
	if strings.Contains(screen, "\x1b[38;5;") {
		t.Fatalf("colour despite NO_COLOR: %q", screen)
	}
	if !regexp.MustCompile(`\d\d:\d\d bob: plain please$`).MatchString(screen) {
		t.Fatalf("got %q", screen)
	}
}
