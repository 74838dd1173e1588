package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help"}, 0, "sshchat keys add NAME"},
		{[]string{"serve", "-h"}, 0, "-max-conns-per-ip"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"serve", "extra"}, 2, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		code := run(tt.args, strings.NewReader(""), &out, &out, func(string) string { return "" })
		if code != tt.code || !strings.Contains(out.String(), tt.want) {
			t.Errorf("run(%q) = %d, %q; want %d and %q", tt.args, code, out.String(), tt.code, tt.want)
		}
	}
}

// TestServeAsANewcomer runs the real binary the way the README's first
// command does, in an empty directory, for a user with a key in ~/.ssh: the
// host key is generated, the allowed keys are seeded from ~/.ssh, that user
// can chat, a key added with "keys add" logs in without a restart, and
// SIGTERM tells users and exits 0.
func TestServeAsANewcomer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "sshchat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home, work := t.TempDir(), t.TempDir()
	me := writeUserKey(t, filepath.Join(home, ".ssh", "id_ed25519.pub"))
	bob := writeUserKey(t, filepath.Join(work, "bob.pub"))
	env := append(os.Environ(), "HOME="+home, "USER=newcomer", "SSHCHAT_ADDR=127.0.0.1:0")

	cmd := exec.Command(bin)
	cmd.Dir, cmd.Env = work, env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	logs := make(chan string, 1000)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case logs <- sc.Text():
			default: // nobody is waiting for that many lines
			}
		}
		exitErr = cmd.Wait()
	}()
	waitLog := func(pattern string) []string {
		t.Helper()
		re := regexp.MustCompile(pattern)
		timeout := time.After(10 * time.Second)
		for {
			select {
			case line := <-logs:
				if m := re.FindStringSubmatch(line); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("no log line matching %q", pattern)
			}
		}
	}
	waitLog(`msg="generated host key" path=keys/host_ed25519`)
	waitLog(`msg="seeded allowed keys from your ~/.ssh".* newcomer \(ED25519\)`)
	addr := waitLog(`msg=listening addr=(\S+)`)[1]
	if info, err := os.Stat(filepath.Join(work, "keys", "host_ed25519")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, %v", info, err)
	}

	a := dialChat(t, addr, me)
	expectLine(t, a, "You are newcomer")

	keysAdd := exec.Command(bin, "keys", "add", "bob", "bob.pub")
	keysAdd.Dir, keysAdd.Env = work, env
	if out, err := keysAdd.CombinedOutput(); err != nil || !strings.Contains(string(out), " bob (ED25519)") {
		t.Fatalf("keys add: %v: %s", err, out)
	}
	waitLog(`msg="keys: reloaded allowed keys file".* keys=2`)
	b := dialChat(t, addr, bob)
	expectLine(t, b, "You are bob")
	expectLine(t, a, "bob has arrived")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectLine(t, a, "The server is shutting down. Bye!")
	expectLine(t, b, "The server is shutting down. Bye!")
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("exit: %v", exitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server still running after SIGTERM")
	}
}

// writeUserKey writes a new public key file at path and returns its signer.
func writeUserKey(t *testing.T, path string) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return signer
}

// dialChat logs in with signer and returns the session's output lines.
func dialChat(t *testing.T, addr string, signer gossh.Signer) <-chan string {
	t.Helper()
	client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "x",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), // a fresh server's key
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Keep stdin open: its end (EOF) would mean leaving the chat.
	if _, err := sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case got := <-lines:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no line; want %q", want)
	}
}
