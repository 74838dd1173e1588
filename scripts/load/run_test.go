package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeChat is a chat room that speaks sshchat's protocol as far as the load
// tool sees it, in line mode and at a PTY, shared by several listeners as
// a cluster's nodes share one room.
type fakeChat struct {
	t      *testing.T
	cfg    *ssh.ServerConfig
	mu     sync.Mutex
	member map[*fakeSession]bool
	byAddr map[string][]string // names by the address they connected to
}

type fakeSession struct {
	name string
	pty  bool
	ch   ssh.Channel
}

func newFakeChat(t *testing.T, keys []clientKey) *fakeChat {
	names := make(map[string]string, len(keys))
	for _, k := range keys {
		names[string(k.signer.PublicKey().Marshal())] = k.name
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeChat{t: t, member: make(map[*fakeSession]bool), byAddr: make(map[string][]string)}
	fc.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			name, ok := names[string(key.Marshal())]
			if !ok {
				return nil, errors.New("unknown key")
			}
			return &ssh.Permissions{Extensions: map[string]string{"name": name}}, nil
		},
	}
	fc.cfg.AddHostKey(host)
	return fc
}

// serve runs one connection's single chat session.
func (fc *fakeChat) serve(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, fc.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	newCh, ok := <-chans
	if !ok {
		return
	}
	go func() {
		for c := range chans {
			c.Reject(ssh.Prohibited, "one session")
		}
	}()
	ch, chReqs, err := newCh.Accept()
	if err != nil {
		return
	}
	s := &fakeSession{name: sc.Permissions.Extensions["name"], ch: ch}
	for req := range chReqs {
		switch req.Type {
		case "pty-req":
			s.pty = true
			req.Reply(true, nil)
			continue
		case "shell":
			req.Reply(true, nil)
		default:
			req.Reply(false, nil)
			continue
		}
		break
	}
	go ssh.DiscardRequests(chReqs)
	fc.join(s, c.LocalAddr().String())
	defer fc.leave(s)
	end := byte('\n')
	if s.pty {
		end = '\r'
	}
	r := bufio.NewReader(ch)
	for {
		line, err := r.ReadString(end)
		if err != nil {
			return
		}
		fc.say(s, line[:len(line)-1])
	}
}

func (fc *fakeChat) prompt(s *fakeSession) string { return "[" + s.name + "] " }

func (fc *fakeChat) join(s *fakeSession, addr string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.member[s] = true
	fc.byAddr[addr] = append(fc.byAddr[addr], s.name)
	if s.pty {
		p := fc.prompt(s)
		fmt.Fprintf(s.ch, "%s\x1b[%dD\x1b[KYou are %s\r\n%s", p, len(p), s.name, p)
	} else {
		fmt.Fprintf(s.ch, "-!- You are %s\n", s.name)
	}
}

func (fc *fakeChat) leave(s *fakeSession) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	delete(fc.member, s)
}

// say sends text to everyone else, rendered for each as sshchat would,
// and at a PTY echoes it to its sender as x/term does.
func (fc *fakeChat) say(from *fakeSession, text string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for s := range fc.member {
		switch {
		case s == from && s.pty:
			fmt.Fprintf(s.ch, "%s\r\n%s", text, fc.prompt(s))
		case s == from:
		case s.pty:
			fmt.Fprintf(s.ch, "\r\x1b[K12:00 \x1b[38;5;63m%s\x1b[0m: %s\r\n%s", from.name, text, fc.prompt(s))
		default:
			fmt.Fprintf(s.ch, "%s: %s\n", from.name, text)
		}
	}
}

// TestRunLoadOverSeveralAddresses runs every phase against one room
// reached through three addresses, in line mode and at a PTY.
func TestRunLoadOverSeveralAddresses(t *testing.T) {
	const clients, senders = 7, 3
	ks, err := ensureKeys(t.TempDir(), clients)
	if err != nil {
		t.Fatal(err)
	}
	for _, term := range []string{"", "xterm-256color"} {
		t.Run(fmt.Sprintf("term=%q", term), func(t *testing.T) {
			fc := newFakeChat(t, ks.keys)
			addrs := []string{listen(t, fc.serve), listen(t, fc.serve), listen(t, fc.serve)}
			rep := runLoad(config{
				addrs: addrs, clients: clients, senders: senders, rate: 20,
				duration: 300 * time.Millisecond, drain: 10 * time.Second,
				quiet: 20 * time.Millisecond, quietTimeout: 10 * time.Second,
				dialConcurrency: 4, term: term, keys: ks.keys,
			}, io.Discard)

			// Client i, and so sender i, goes to address i mod 3.
			fc.mu.Lock()
			for a, addr := range addrs {
				var want []string
				for i := a; i < clients; i += len(addrs) {
					want = append(want, clientName(i))
				}
				if got := fc.byAddr[addr]; !sameSet(got, want) {
					t.Errorf("%s got %v, want %v", addr, got, want)
				}
				if n := rep.Connect.PerAddr[addr]; n != len(want) {
					t.Errorf("report: %d clients on %s, want %d", n, addr, len(want))
				}
			}
			fc.mu.Unlock()

			c, s := rep.Connect, rep.Send
			if c.Connected != clients || c.Failed != 0 || !c.Quiet || c.TimeToConnectAllSeconds <= 0 || c.TimeToConnectAllSeconds > c.WallSeconds {
				t.Errorf("connect = %+v; want all %d connected, quiet, connected within the phase", c, clients)
			}
			if rep.PTY != (term != "") {
				t.Errorf("report PTY %v for term %q", rep.PTY, term)
			}
			if s.Sent < senders || s.Expected != s.Sent*(clients-1) || s.Delivered != s.Expected || s.Lost != 0 {
				t.Errorf("send = %+v; want every message delivered to the %d others", s, clients-1)
			}
			if s.Duplicates != 0 || s.Foreign != 0 || s.SelfEchoes != 0 || rep.Disconnects.OtherLines != 0 || rep.Disconnects.Count != 0 {
				t.Errorf("unexpected lines: send %+v, disconnects %+v", s, rep.Disconnects)
			}
			if rep.Latency.Count != s.Delivered {
				t.Errorf("%d latencies for %d deliveries", rep.Latency.Count, s.Delivered)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int)
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x]--; seen[x] < 0 {
			return false
		}
	}
	return true
}

func TestParseAddrs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:2222", []string{"127.0.0.1:2222"}},
		{"a:1,b:2, c:3 ,", []string{"a:1", "b:2", "c:3"}},
		{"[::1]:2222,127.0.0.1:2223", []string{"[::1]:2222", "127.0.0.1:2223"}},
		{" , ", nil},
		{"", nil},
	} {
		if got := parseAddrs(tc.in); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseAddrs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAddrForIsRoundRobin(t *testing.T) {
	addrs := []string{"a", "b", "c"}
	counts := map[string]int{}
	for i := range 10 {
		counts[addrFor(addrs, i)]++
		if got, want := addrFor(addrs, i), addrs[i%3]; got != want {
			t.Errorf("addrFor(%d) = %s, want %s", i, got, want)
		}
	}
	if counts["a"] != 4 || counts["b"] != 3 || counts["c"] != 3 {
		t.Errorf("spread %v, want a 4, b 3, c 3", counts)
	}
}
