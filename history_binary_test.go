package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// The durable history of the real binary: what survives kill -9, and how a
// damaged file stops start-up.

// allowUsers writes the allowed keys file of a server run in work, with a
// new key for each name, and returns their signers.
func allowUsers(t *testing.T, work string, names ...string) map[string]gossh.Signer {
	t.Helper()
	signers := make(map[string]gossh.Signer)
	var file bytes.Buffer
	for _, name := range names {
		pub := filepath.Join(t.TempDir(), name+".pub")
		signers[name] = writeUserKey(t, pub)
		line, err := os.ReadFile(pub)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&file, "%s %s\n", bytes.TrimSpace(line), name)
	}
	path := filepath.Join(work, "keys", "allowed_keys")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return signers
}

// serveEnv is the environment of a server run in a test: no ~/.ssh to seed
// keys from, a free port, no rate limit.
func serveEnv(t *testing.T) []string {
	return append(os.Environ(), "HOME="+t.TempDir(), "USER=nobody", "SSHCHAT_ADDR=127.0.0.1:0", "SSHCHAT_RATE=0")
}

// talker is a chat session whose input the test writes.
type talker struct {
	in    io.WriteCloser
	lines <-chan string
}

func dialTalker(t *testing.T, addr string, signer gossh.Signer) talker {
	t.Helper()
	_, in, lines := dialSession(t, addr, signer, 1000)
	return talker{in, lines}
}

// Every message a client received before the server was killed with
// SIGKILL is in the history when it starts again, in order. Alice keeps
// talking while the server is killed, so that writes are in flight.
func TestKill9LosesNoDeliveredMessage(t *testing.T) {
	const (
		total  = 2000
		before = 20 // received by bob when the server is killed
	)
	work := t.TempDir()
	// A queue for everything alice says, so that bob, however slow, is
	// not dropped; a replay of everything, to check it.
	env := append(serveEnv(t), fmt.Sprint("SSHCHAT_QUEUE=", 2*total), fmt.Sprint("SSHCHAT_HISTORY=", total))
	users := allowUsers(t, work, "alice", "bob", "carol")
	p := startBinary(t, work, env, nil)
	addr := p.logs.waitFor(`msg=listening addr=(\S+)`)[1]
	alice := dialTalker(t, addr, users["alice"])
	expectWelcome(t, alice.lines, "alice", "alice")
	bob := dialTalker(t, addr, users["bob"])
	expectWelcome(t, bob.lines, "bob", "alice", "bob")

	talking := make(chan struct{})
	go func() {
		defer close(talking)
		for i := range total {
			if _, err := fmt.Fprintf(alice.in, "line %d\n", i); err != nil {
				return // the server is gone
			}
		}
	}()
	var received []string
	for line := range bob.lines {
		if text, ok := strings.CutPrefix(line, "alice: "); ok {
			received = append(received, text)
		}
		if len(received) == before {
			p.signal(syscall.SIGKILL)
			break
		}
	}
	// What reached bob between the signal and the connection's end was
	// delivered too.
	for line := range bob.lines {
		if text, ok := strings.CutPrefix(line, "alice: "); ok {
			received = append(received, text)
		}
	}
	<-talking
	if err := p.wait(); err == nil {
		t.Fatal("sshchat exited cleanly after SIGKILL")
	}
	t.Logf("bob received %d of %d lines before the server died", len(received), total)

	// carol has never been here: she is shown the last -history lines,
	// that is, everything stored.
	p = startBinary(t, work, env, nil)
	addr = p.logs.waitFor(`msg=listening addr=(\S+)`)[1]
	carol := dialTalker(t, addr, users["carol"])
	var stored []string
	replayed := regexp.MustCompile(`^alice: (line \d+)$`)
	for line := range carol.lines {
		if m := replayed.FindStringSubmatch(line); m != nil {
			stored = append(stored, m[1])
			continue
		}
		if line != "-!- 1 online: carol" {
			t.Fatalf("carol got %q", line)
		}
		break
	}
	if len(stored) < len(received) {
		t.Fatalf("history has %d messages, bob received %d", len(stored), len(received))
	}
	for i, text := range received {
		if stored[i] != text || text != fmt.Sprintf("line %d", i) {
			t.Fatalf("message %d: bob received %q, history has %q", i, text, stored[i])
		}
	}
}

// A history file that is not a database stops start-up with an error that
// names it and says what to do, and is left as it was.
func TestDamagedHistoryStopsStartUp(t *testing.T) {
	work := t.TempDir()
	path := filepath.Join(work, "data", "history.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("this is not a bbolt file\n"), 1000)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, work, serveEnv(t), nil)
	p.logs.waitFor(`level=ERROR msg="sshchat stopped" err=.*data/history\.db is damaged .*; move it aside to start with empty history, or restore it from a backup`)
	var exit *exec.ExitError
	if err := p.wait(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v; want status 1", err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, garbage) {
		t.Fatalf("the damaged file was changed (%v)", err)
	}
}
