package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSIGHUP runs the binary without a controlling terminal (setsid), where
// SIGHUP reloads and the server keeps serving, and with one (a
// pseudo-terminal), where SIGHUP, sent or caused by the terminal closing,
// shuts it down gracefully.
func TestSIGHUP(t *testing.T) {
	tests := []struct {
		name          string
		terminal      bool
		closeTerminal bool // hang up by closing the terminal rather than by kill -HUP
	}{
		{"no terminal: reload", false, false},
		{"terminal, kill -HUP: shut down", true, false},
		{"terminal closed: shut down", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home, work := t.TempDir(), t.TempDir()
			me := writeUserKey(t, filepath.Join(home, ".ssh", "id_ed25519.pub"))
			env := append(os.Environ(), "HOME="+home, "USER=alice", "SSHCHAT_ADDR=127.0.0.1:0")
			var terminal *os.File
			p := startBinary(t, work, env, func(cmd *exec.Cmd) {
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				if tt.terminal {
					var tty *os.File
					terminal, tty = openPTY(t)
					cmd.Stdin = tty
					cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0 // stdin
				}
			})
			addr := p.logs.waitFor(`msg=listening addr=(\S+)`)[1]
			a := dialChat(t, addr, me)
			expectWelcome(t, a, "alice", "alice")

			if tt.closeTerminal {
				terminal.Close() // the kernel sends SIGHUP to the session leader
			} else {
				p.signal(syscall.SIGHUP)
			}
			if !tt.terminal {
				p.logs.waitFor(`msg="SIGHUP: reloading allowed keys"`)
				p.logs.waitFor(`msg="keys: reloaded allowed keys file" .*keys=1`)
				b := dialChat(t, addr, me)
				// A second session of alice: not announced to the first.
				expectWelcome(t, b, "alice", "alice")
				p.signal(syscall.SIGTERM)
			} else {
				p.logs.waitFor(`msg="terminal hung up: shutting down`)
			}
			skipTo(t, a, "-!- The server is shutting down. Bye!")
			if err := p.wait(); err != nil {
				t.Fatalf("exit: %v", err)
			}
		})
	}
}

// TestClosedStderr reproduces `sshchat 2>&1 | tee log` then Ctrl-C, which
// kills tee first: the log records of the shutdown go to a closed pipe, and
// yet the users are told goodbye and the server exits 0.
func TestClosedStderr(t *testing.T) {
	home, work := t.TempDir(), t.TempDir()
	me := writeUserKey(t, filepath.Join(home, ".ssh", "id_ed25519.pub"))
	env := append(os.Environ(), "HOME="+home, "USER=alice", "SSHCHAT_ADDR=127.0.0.1:0")
	p := startBinary(t, work, env, nil)
	addr := p.logs.waitFor(`msg=listening addr=(\S+)`)[1]
	a := dialChat(t, addr, me)
	expectWelcome(t, a, "alice", "alice")

	p.stderr.Close()
	p.signal(syscall.SIGINT)
	expectLine(t, a, "-!- The server is shutting down. Bye!")
	if err := p.wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// openPTY returns a new pseudo-terminal's two ends: the terminal (what a
// terminal emulator holds) and the tty a program runs in.
func openPTY(t *testing.T) (terminal, tty *os.File) {
	t.Helper()
	terminal, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { terminal.Close() })
	fd := int(terminal.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return terminal, tty
}
