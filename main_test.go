package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// waitLimit bounds every wait for a process, a log line or a chat line.
const waitLimit = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is the sshchat binary, built once for the tests that run it.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// binary returns the path of the sshchat binary built from this package.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "sshchat-test")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "sshchat")
		if out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStdout string // "" means: nothing on stdout
		wantStderr string // "" means: nothing on stderr
	}{
		{[]string{"help"}, 0, "sshchat keys add NAME", ""},
		{[]string{"--help"}, 0, "sshchat version", ""},
		{[]string{"serve", "-h"}, 0, "-max-conns-per-ip", ""},
		{[]string{"-help"}, 0, "sshchat serve -h", ""},
		{[]string{"serve", "--help"}, 0, "(env SSHCHAT_MAX_AUTH_TRIES)", ""},
		{[]string{"-no-such-flag"}, 2, "", "flag provided but not defined: -no-such-flag"},
		{[]string{"serve", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"-max-auth-tries", "0"}, 2, "", "-max-auth-tries (env SSHCHAT_MAX_AUTH_TRIES) is 0: it must be more than 0"},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"version"}, 0, "sshchat ", ""},
		{[]string{"--version"}, 0, "sshchat ", ""},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		if code != tt.code {
			t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.code)
		}
		for _, out := range []struct {
			name      string
			got, want string
		}{{"stdout", stdout.String(), tt.wantStdout}, {"stderr", stderr.String(), tt.wantStderr}} {
			if out.want == "" && out.got != "" || !strings.Contains(out.got, out.want) {
				t.Errorf("run(%q) %s = %q, want %q", tt.args, out.name, out.got, out.want)
			}
		}
	}
}

// TestVersionCommand checks that "version", "--version" and the start-up
// log line agree.
func TestVersionCommand(t *testing.T) {
	bin := binary(t)
	var lines []string
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		lines = append(lines, string(out))
	}
	re := regexp.MustCompile(`^sshchat \S+ \((revision [0-9a-f]{40}, )?(modified, )?(committed \S+, )?go1\.\S+\)\n$`)
	if !re.MatchString(lines[0]) || lines[1] != lines[0] {
		t.Fatalf("version printed %q and --version %q; want one line matching %s", lines[0], lines[1], re)
	}

	p := startBinary(t, t.TempDir(), append(os.Environ(), "HOME="+t.TempDir(), "SSHCHAT_ADDR=127.0.0.1:0"), nil)
	m := p.logs.waitFor(`msg="sshchat starting" version=(\S+) revision="?([0-9a-f]*)"? `)
	if !strings.HasPrefix(lines[0], "sshchat "+m[1]+" ") || m[2] != "" && !strings.Contains(lines[0], "revision "+m[2]) {
		t.Errorf("start-up log says version %s revision %q; version says %q", m[1], m[2], lines[0])
	}
}

// TestServeAsANewcomer runs the real binary the way the README's first
// command does, in an empty directory, for a user with a key in ~/.ssh: the
// host key is generated, the allowed keys are seeded from ~/.ssh, the
// absolute paths are logged, that user can chat, a key added with "keys
// add" logs in without a restart, and SIGTERM tells users and exits 0.
func TestServeAsANewcomer(t *testing.T) {
	bin := binary(t)
	home, work := t.TempDir(), t.TempDir()
	me := writeUserKey(t, filepath.Join(home, ".ssh", "id_ed25519.pub"))
	bob := writeUserKey(t, filepath.Join(work, "bob.pub"))
	env := append(os.Environ(), "HOME="+home, "USER=newcomer", "SSHCHAT_ADDR=127.0.0.1:0")

	p := startBinary(t, work, env, nil)
	p.logs.waitFor(regexp.QuoteMeta(fmt.Sprintf(`host_key=%s allowed_keys=%s ops=%s data=%s`,
		filepath.Join(work, "keys/host_ed25519"), filepath.Join(work, "keys/allowed_keys"),
		filepath.Join(work, "keys/ops"), filepath.Join(work, "data"))))
	p.logs.waitFor(`msg="generated host key" path=keys/host_ed25519`)
	p.logs.waitFor(`msg="seeded allowed keys from your ~/.ssh".* newcomer \(ED25519\)`)
	addr := p.logs.waitFor(`msg=listening addr=(\S+)`)[1]
	if info, err := os.Stat(filepath.Join(work, "keys", "host_ed25519")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, %v", info, err)
	}
	if info, err := os.Stat(filepath.Join(work, "data")); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v, %v", info, err)
	}

	a := dialChat(t, addr, me)
	expectWelcome(t, a, "newcomer", "newcomer")

	keysAdd := exec.Command(bin, "keys", "add", "bob", "bob.pub")
	keysAdd.Dir, keysAdd.Env = work, env
	if out, err := keysAdd.CombinedOutput(); err != nil || !strings.Contains(string(out), " bob (ED25519)") {
		t.Fatalf("keys add: %v: %s", err, out)
	}
	p.logs.waitFor(`msg="keys: reloaded allowed keys file".* keys=2`)
	b := dialChat(t, addr, bob)
	expectWelcome(t, b, "bob", "bob", "newcomer")
	expectLine(t, a, "bob has arrived")

	p.signal(syscall.SIGTERM)
	expectLine(t, a, "-!- The server is shutting down. Bye!")
	expectLine(t, b, "-!- The server is shutting down. Bye!")
	if err := p.wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestSystemdUnit checks scripts/sshchat.service with systemd-analyze, if
// this machine has it.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze here")
	}
	bin := binary(t)
	unit, err := os.ReadFile("scripts/sshchat.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's program to exist: point it at the one
	// just built.
	const installed = "/usr/local/bin/sshchat"
	if !bytes.Contains(unit, []byte("ExecStart="+installed+" ")) {
		t.Fatalf("unit does not run %s", installed)
	}
	path := filepath.Join(t.TempDir(), "sshchat.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte(installed), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// proc is the sshchat binary running.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *os.File // read end
	logs   *logLines
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// startBinary runs the sshchat binary with args in dir with env, after
// setup (if not nil) has had its say on the command, and reads its stderr.
func startBinary(t *testing.T, dir string, env []string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir, cmd.Env = dir, env
	if setup != nil {
		setup(cmd)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, stderr: r, logs: readLines(t, r), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		r.Close()
	})
	return p
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns the error of cmd.Wait.
func (p *proc) wait() error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(waitLimit):
		p.t.Fatal("sshchat still running")
		return nil
	}
}

// logLines hands over the lines read from a process's output.
type logLines struct {
	t     *testing.T
	lines chan string
}

func readLines(t *testing.T, r io.Reader) *logLines {
	l := &logLines{t: t, lines: make(chan string, 1000)}
	go func() {
		defer close(l.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case l.lines <- sc.Text():
			default: // nobody is waiting for that many lines
			}
		}
	}()
	return l
}

// waitFor skips lines up to one matching pattern and returns its
// submatches.
func (l *logLines) waitFor(pattern string) []string {
	l.t.Helper()
	re := regexp.MustCompile(pattern)
	timeout := time.After(waitLimit)
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				l.t.Fatalf("output ended without a line matching %q", pattern)
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timeout:
			l.t.Fatalf("no line matching %q", pattern)
		}
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
	_, lines := dialChatClient(t, addr, signer)
	return lines
}

// dialChatClient is dialChat, also returning the client, which the test
// closes at the end unless it does earlier.
func dialChatClient(t *testing.T, addr string, signer gossh.Signer) (*gossh.Client, <-chan string) {
	t.Helper()
	// Keep stdin open: its end (EOF) would mean leaving the chat.
	client, _, lines := dialSession(t, addr, signer, 100)
	return client, lines
}

// dialSession logs in with signer and starts a chat session, returning the
// client, the session's input and its output lines, buffered up to
// buffered lines.
func dialSession(t *testing.T, addr string, signer gossh.Signer, buffered int) (*gossh.Client, io.WriteCloser, <-chan string) {
	t.Helper()
	client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "x",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), // a fresh server's key
		Timeout:         waitLimit,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, buffered)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return client, in, lines
}

// expectWelcome expects the greeting of a session of name, with the users
// online.
func expectWelcome(t *testing.T, lines <-chan string, name string, online ...string) {
	t.Helper()
	expectLine(t, lines, fmt.Sprintf("-!- %d online: %s", len(online), strings.Join(online, ", ")))
	expectLine(t, lines, "-!- Type /help for commands.")
	expectLine(t, lines, "-!- You are "+name)
}

func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case got := <-lines:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("no line; want %q", want)
	}
}

// skipTo skips lines up to want.
func skipTo(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case got, ok := <-lines:
			if !ok {
				t.Fatalf("session ended; want %q", want)
			}
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no line %q", want)
		}
	}
}
