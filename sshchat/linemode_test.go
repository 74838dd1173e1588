package sshchat

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/term"
)

// grammar is the line protocol of line mode, as the README documents it:
// every line a session without a PTY receives has one of these shapes.
var grammar = []*regexp.Regexp{
	regexp.MustCompile(`^[A-Za-z0-9_.-]+: .*$`),                                   // a public message
	regexp.MustCompile(`^\* [A-Za-z0-9_.-]+ .*$`),                                 // an action
	regexp.MustCompile(`^[A-Za-z0-9_.-]+ has (arrived|left)$`),                    // presence
	regexp.MustCompile(`^\d+ (person|people) (arrived|left): [A-Za-z0-9_., -]+$`), // presence, summarised
	regexp.MustCompile(`^\[PM from [A-Za-z0-9_.-]+\] .*$`),                        // a private message
	regexp.MustCompile(`^-!- .*$`),                                                // the server
}

func parseLine(line string) (shape int, ok bool) {
	for i, re := range grammar {
		if re.MatchString(line) {
			return i, true
		}
	}
	return 0, false
}

// A bot's whole transcript, greeting, replay, chat, actions, private
// messages, presence, command output, refusals and the goodbye, parses
// with the documented grammar, and no notice line passes for a message.
func TestLineModeGrammar(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Rate, c.Burst = 0.001, 12 })
	alice := ts.join(ts.user("alice"))
	alice.say("before the bot")
	bot := ts.openLine(ts.user("bot"))
	alice.expect("bot has arrived")
	alice.say("hello bot")
	alice.say("/me waves")
	alice.say("/msg bot psst")
	alice.expect("-!- [PM to bot] psst")
	bob := ts.join(ts.user("bob"))
	bob.say("/names")
	bob.skipUntil("-!- 3 online")
	bob.leave()
	for _, cmd := range []string{"/help", "/names", "/nope", "/history 2", "/away busy", "multi\tword line"} {
		bot.say(cmd)
	}
	for range 10 { // past the burst: refused, and told
		bot.say("flood")
	}
	alice.skipUntil("bot: flood")
	ctx, cancel := contextWithTimeout(waitLimit)
	defer cancel()
	ts.Shutdown(ctx)

	var transcript []string
	for line := range bot.lines {
		transcript = append(transcript, line)
	}
	seen := map[int]int{}
	for _, line := range transcript {
		shape, ok := parseLine(line)
		if !ok {
			t.Errorf("line %q has none of the documented shapes", line)
		}
		seen[shape]++
	}
	// Every shape but summaries showed up (TestRoomJoinStormIsSummarised
	// covers those), and the notices were many.
	for shape := range grammar {
		if shape != 3 && seen[shape] == 0 {
			t.Errorf("no line of shape %s in %q", grammar[shape], transcript)
		}
	}
	if seen[5] < 10 {
		t.Errorf("%d notice lines, want the greeting, /help, /names, refusals… in %q", seen[5], transcript)
	}
	for _, want := range []string{"-!- You are bot", "alice: before the bot", "alice: hello bot", "* alice waves", "[PM from alice] psst", "bob has arrived", "bob has left", "-!- Unknown command /nope; try /help.", "-!- The server is shutting down. Bye!"} {
		if !strings.Contains(strings.Join(transcript, "\n")+"\n", want+"\n") {
			t.Errorf("transcript lacks %q: %q", want, transcript)
		}
	}
}

// A multi-line paste in a terminal goes out line by line at the rate
// limit, in order, not cut at the burst.
func TestTerminalPasteGoesAtTheRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Rate, c.Burst = 200, 2 })
	b := ts.join(ts.user("bob"))
	a := ts.openTerminal(ts.user("alice"))
	a.readUntil("[alice] ")
	b.expect("alice has arrived")
	var paste strings.Builder
	paste.WriteString("\x1b[200~")
	for i := range 20 {
		fmt.Fprintf(&paste, "pasted line %d\r", i)
	}
	paste.WriteString("\x1b[201~")
	a.typeKeys(paste.String())
	a.typeKeys("typed after\r")
	for i := range 20 {
		b.expect(fmt.Sprintf("alice: pasted line %d", i))
	}
	b.expect("alice: typed after")
}

// A paste longer than the rate limit lets through in maxPasteWait is not
// queued beyond it: reserve refuses, and gives back what it took.
func TestRoomReservesPastedLines(t *testing.T) {
	r := newTestRoom(t, roomOptions{rate: 1, burst: 2})
	a := enter(t, r, "alice", 16)
	recv(t, a) // greeting
	var waits []time.Duration
	for {
		wait, ok := r.reserve(a)
		if !ok {
			break
		}
		waits = append(waits, wait)
	}
	// The clock stands still in room tests: the burst goes at once, then a
	// line a second, up to maxPasteWait.
	if want := 2 + int(maxPasteWait/time.Second); len(waits) != want || waits[0] != 0 || waits[len(waits)-1] != maxPasteWait {
		t.Fatalf("reserved %d lines, waiting %v; want %d, from 0 to %v", len(waits), waits, want, maxPasteWait)
	}
}

// A paste goes through the key filter in bulk, not a key at a time (which
// would cost a read and an echo write per key), and its lines stop growing
// at the limit too.
func TestKeyFilterPasteInBulk(t *testing.T) {
	const max = 64
	keys := pasteStart + strings.Repeat("p", 3000) + "\rsecond\r" + pasteEnd
	f := &keyFilter{r: strings.NewReader(keys), bell: io.Discard, max: max}
	reads := 0
	f.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{countingReader{f, &reads}, io.Discard}, "> ")
	f.complete = func(string, int, rune) (string, int, bool) { return "", 0, false }
	for _, want := range []string{strings.Repeat("p", max), "second"} {
		line, err := f.t.ReadLine()
		if !errors.Is(err, term.ErrPasteIndicator) || line != want {
			t.Fatalf("line %q, %v; want %q pasted", line, err, want)
		}
	}
	if reads > 20 {
		t.Fatalf("%d reads for a paste of %d bytes", reads, len(keys))
	}
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c countingReader) Read(p []byte) (int, error) {
	*c.n++
	return c.r.Read(p)
}
