package sshchat

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// run runs a one-shot command as signer, with stdin as its input, and
// returns what it printed and its exit status.
func (ts *testServer) run(t *testing.T, signer gossh.Signer, command, stdin string) (stdout, stderr string, status int) {
	t.Helper()
	client, err := ts.dial(gossh.PublicKeys(signer))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	var out, errOut bytes.Buffer
	sess.Stdin, sess.Stdout, sess.Stderr = strings.NewReader(stdin), &out, &errOut
	err = sess.Run(command)
	var exit *gossh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = exit.ExitStatus()
	default:
		t.Fatalf("run %q: %v", command, err)
	}
	return out.String(), errOut.String(), status
}

func TestExecSay(t *testing.T) {
	tests := []struct {
		name, command, stdin string
		delivered            []string
		stderr               string
		status               int
	}{
		{"text", "say hello   world", "", []string{"alice: hello   world"}, "", 0},
		{"stdin, a line each", "say", "one\n\ntwo\n", []string{"alice: one", "alice: two"}, "", 0},
		{"sanitised", "say", "\x1b[31mred\x1b[0m\n", []string{"alice: red"}, "", 0},
		{"over the rate limit", "say", "1\n2\n3\n4\n5\n", []string{"alice: 1", "alice: 2"},
			"sshchat: 3 of 5 lines not sent: 3 over the rate limit\n", 1},
		{"too long", "say", strings.Repeat("x", 40) + "\nshort\n", []string{"alice: short"},
			"sshchat: 1 of 2 lines not sent: 1 longer than 32 bytes\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.Rate, c.Burst, c.MaxLine = 0.001, 2, 32 })
			alice := ts.user("alice")
			b := ts.join(ts.user("bob"))
			_, stderr, status := ts.run(t, alice, tt.command, tt.stdin)
			if stderr != tt.stderr || status != tt.status {
				t.Fatalf("stderr %q, status %d; want %q, %d", stderr, status, tt.stderr, tt.status)
			}
			// Nothing else, no arrival or departure: bob's next line is his own
			// marker, echoed by nobody, so say it as carol.
			b.expect(tt.delivered...)
			ts.join(ts.user("carol"))
			b.expect("carol has arrived")
		})
	}
}

func TestExecUsageErrors(t *testing.T) {
	ts := startServer(t, nil)
	alice := ts.user("alice")
	for _, command := range []string{"cat /etc/passwd", "history ten", "history -3", "names everyone", "tail -f"} {
		t.Run(command, func(t *testing.T) {
			stdout, stderr, status := ts.run(t, alice, command, "")
			if status != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "sshchat: ") {
				t.Fatalf("stdout %q stderr %q status %d; want one line of error and status 2", stdout, stderr, status)
			}
		})
	}
}

func TestExecNamesHistoryHelp(t *testing.T) {
	ts := startServer(t, nil)
	cs := ts.joinAll("alice", "bob")
	cs[0].say("first")
	cs[1].expect("alice: first")
	cs[1].say("second")
	cs[0].expect("bob: second")
	cs[0].say("/away lunch")
	cs[0].expect("-!- You are marked away: lunch")
	carol := ts.user("carol")

	out, _, status := ts.run(t, carol, "names", "")
	if want := "alice 1 session, idle 0s, away: lunch\nbob 1 session, idle 0s\n"; out != want || status != 0 {
		t.Fatalf("names printed %q (status %d), want %q", out, status, want)
	}
	out, _, _ = ts.run(t, carol, "names --json", "")
	var alice presence
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &alice); err != nil || alice != (presence{Name: "alice", Sessions: 1, Away: "lunch"}) {
		t.Fatalf("names --json first line %q: %+v, %v", out, alice, err)
	}

	out, _, _ = ts.run(t, carol, "history 1", "")
	if out != "bob: second\n" {
		t.Fatalf("history 1 printed %q", out)
	}
	for _, command := range []string{"history --json", "history 5 --json", "--json history"} {
		out, _, _ = ts.run(t, carol, command, "")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s printed %q, want 2 lines", command, out)
		}
		var ev eventJSON
		dec := json.NewDecoder(strings.NewReader(lines[0]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, ev.Time); err != nil || ev.From != "alice" || ev.Kind != "message" || ev.Text != "first" {
			t.Fatalf("%s first line %q", command, lines[0])
		}
	}

	out, _, _ = ts.run(t, carol, "help", "")
	for _, name := range []string{"say", "names", "history", "tail", "help", "--json"} {
		if !strings.Contains(out, name) {
			t.Errorf("help lacks %s: %q", name, out)
		}
	}
}

func TestExecTail(t *testing.T) {
	ts := startServer(t, nil)
	b := ts.join(ts.user("bob"))
	client := ts.connect(ts.user("alice"))
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Start("tail --json"); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var pending string
		for {
			n, err := stdout.Read(buf)
			pending += string(buf[:n])
			for {
				line, rest, ok := strings.Cut(pending, "\n")
				if !ok {
					break
				}
				lines <- line
				pending = rest
			}
			if err != nil {
				return
			}
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case line := <-lines:
			return line
		case <-time.After(waitLimit):
			t.Fatal("tail printed nothing")
		}
		return ""
	}
	if line := next(); line != `{"kind":"notice","text":"`+tailStarted+`"}` {
		t.Fatalf("tail started with %q", line)
	}
	// tail is not announced, and sees what is said from now on.
	b.say("/names")
	b.expect("-!- 1 online: bob")
	b.say("hello tail")
	{
		line := next()
		var ev eventJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.From != "bob" || ev.Kind != "message" || ev.Text != "hello tail" {
			t.Fatalf("tail printed %q", line)
		}
	}
	stdin.Close()
	if err := sess.Wait(); err != nil {
		t.Fatalf("tail ended with %v", err)
	}
	ts.join(ts.user("carol"))
	b.expect("carol has arrived") // no "alice has left" before it
}

func TestExecCountsAgainstSessionLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxSessionsPerUser = 1 })
	alice := ts.user("alice")
	ts.join(alice)
	_, stderr, status := ts.run(t, alice, "say hi", "")
	if status != exitRefused || stderr != "sshchat: Too many sessions for alice (at most 1).\n" {
		t.Fatalf("stderr %q status %d", stderr, status)
	}
}
