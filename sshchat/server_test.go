package sshchat

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestChatRoundTrip(t *testing.T) {
	ts := startServer(t, nil)
	alice, bob, carol := ts.user("alice"), ts.user("bob"), ts.user("carol")

	a := ts.openLine(alice)
	a.expectWelcome("alice", "alice")
	b := ts.openLine(bob)
	b.expectWelcome("bob", "alice", "bob")
	a.expect("bob has arrived")
	c := ts.openLine(carol)
	c.expectWelcome("carol", "alice", "bob", "carol")
	a.expect("carol has arrived")
	b.expect("carol has arrived")

	a.say("hi")
	b.expect("alice: hi")
	c.expect("alice: hi")
	// Not echoed: alice's next line is bob's message, not her own.
	b.say("hello alice")
	a.expect("bob: hello alice")
	c.expect("bob: hello alice")

	c.leave()
	a.expect("carol has left")
	b.expect("carol has left")
	b.say("/quit")
	b.expectEnd()
	a.expect("bob has left")
}

func TestSameUserTwoSessions(t *testing.T) {
	ts := startServer(t, nil)
	alice := ts.user("alice")
	a1 := ts.join(alice)
	a2 := ts.join(alice)
	// Only a user's first session is announced: a1's next line is bob's.
	b := ts.join(ts.user("bob"))
	a1.expect("bob has arrived")
	a2.expect("bob has arrived")

	b.say("hi both")
	a1.expect("bob: hi both")
	a2.expect("bob: hi both")
	// Another session of the same user is another client: it sees the line.
	a1.say("from one")
	a2.expect("alice: from one")
	b.expect("alice: from one")
}

func TestRefusedAuthentication(t *testing.T) {
	ts := startServer(t, nil)
	ts.user("alice")
	stranger := newSigner(t)
	tests := []struct {
		name string
		auth []gossh.AuthMethod
	}{
		{"unknown key", []gossh.AuthMethod{gossh.PublicKeys(stranger)}},
		{"password", []gossh.AuthMethod{gossh.Password("alice")}},
		{"keyboard-interactive", []gossh.AuthMethod{gossh.KeyboardInteractive(
			func(string, string, []string, []bool) ([]string, error) { return []string{"alice"}, nil })}},
		{"none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := ts.dial(tt.auth...)
			if err == nil {
				client.Close()
				t.Fatal("authenticated; want refused")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("err = %v, want an authentication failure", err)
			}
		})
	}
}

// offerOnly is a key the client offers but cannot sign with: the server
// answers the query, but the client never proves it holds the key.
type offerOnly struct{ gossh.Signer }

func (offerOnly) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return nil, errors.New("no private key")
}

// A key that was only offered (and approved) in a query must not become the
// identity of a connection that then signs with another key
// (CVE-2024-45337). Each case offers keys it cannot sign with, in order,
// before signing with the last one.
func TestIdentityIsTheSigningKey(t *testing.T) {
	ts := startServer(t, nil)
	alice, bob := ts.user("alice"), ts.user("bob")
	tests := []struct {
		name    string
		offered []gossh.Signer
		signer  gossh.Signer
		want    string
	}{
		{"offer alice, sign bob", []gossh.Signer{alice}, bob, "-!- You are bob"},
		{"offer bob then alice, sign bob", []gossh.Signer{bob, alice}, bob, "-!- You are bob"},
		{"offer bob, sign alice", []gossh.Signer{bob}, alice, "-!- You are alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every method is "publickey", which the client tries only once
			// unless AuthCallback hands it the next one.
			methods := []gossh.AuthMethod{}
			for _, k := range tt.offered {
				methods = append(methods, gossh.PublicKeys(offerOnly{k}))
			}
			methods = append(methods, gossh.PublicKeys(tt.signer))
			client, err := ts.dialConfig(&gossh.ClientConfig{
				Auth: methods[:1],
				AuthCallback: func(*gossh.ClientAuthContext) (gossh.AuthMethod, error) {
					methods = methods[1:]
					if len(methods) == 0 {
						return nil, errors.New("out of methods")
					}
					return methods[0], nil
				},
			})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { client.Close() })
			startLineChat(t, client).skipUntil(tt.want)
		})
	}
}

func TestRevalidateDisconnectsRemovedKeys(t *testing.T) {
	ts := startServer(t, nil)
	alice, bob := ts.user("alice"), ts.user("bob")
	a := ts.join(alice)
	b := ts.join(bob)
	a.expect("bob has arrived")

	ts.allow.set(bob.PublicKey(), "")
	ts.Revalidate()
	b.expectEnd("-!- Your key was removed from the allowed keys; goodbye.")
	a.expect("bob has left")
	if client, err := ts.dial(gossh.PublicKeys(bob)); err == nil {
		client.Close()
		t.Fatal("removed key still logs in")
	}
	// A renamed key ends the session too (it was for the old name), and
	// says so.
	ts.allow.set(alice.PublicKey(), "alicia")
	ts.Revalidate()
	a.expectEnd("-!- You are now alicia in the allowed keys; reconnect to chat as alicia.")
}

func TestShutdownTellsEveryone(t *testing.T) {
	ts := startServer(t, nil)
	var cs []*chatter
	for i := range 5 {
		cs = append(cs, ts.join(ts.user(fmt.Sprintf("u%d", i))))
	}
	ctx, cancel := contextWithTimeout(waitLimit)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range cs {
		if got := c.skipUntil("-!- The server"); got != "-!- The server is shutting down. Bye!" {
			t.Fatalf("got %q", got)
		}
		c.expectEnd()
	}
}

func TestHostKeyCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "host_ed25519")
	first, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", info.Mode().Perm())
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v, want 0700", dir.Mode().Perm())
	}
	second, created, err := LoadOrCreateHostKey(path)
	if err != nil || created {
		t.Fatalf("second load: created=%v err=%v", created, err)
	}
	if gossh.FingerprintSHA256(first.PublicKey()) != gossh.FingerprintSHA256(second.PublicKey()) {
		t.Fatal("host key changed between runs")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateHostKey(path); err == nil {
		t.Fatal("garbage host key accepted")
	}
}

// rawConn dials the server without speaking SSH.
func (ts *testServer) rawConn() net.Conn {
	ts.t.Helper()
	conn, err := net.DialTimeout("tcp", ts.addr, waitLimit)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { conn.Close() })
	return conn
}

// expectClosed fails unless the server closes conn within waitLimit.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

func TestThrottledLog(t *testing.T) {
	var buf strings.Builder
	tl := newThrottledLog(slog.New(slog.NewTextHandler(&buf, nil)), 0.001) // one record, then none for ages
	for i := range 5 {
		tl.log(slog.LevelInfo, "refused", "n", i)
	}
	if got := strings.Count(buf.String(), "msg=refused"); got != 1 {
		t.Fatalf("%d records logged, want 1:\n%s", got, buf.String())
	}
	tl.limit.SetBurstAt(time.Now(), 1) // let one more through
	tl.limit.SetLimit(1e9)
	tl.log(slog.LevelInfo, "refused", "n", 5)
	if !strings.Contains(buf.String(), "suppressed_before=4") {
		t.Fatalf("suppressed count not reported:\n%s", buf.String())
	}
}
