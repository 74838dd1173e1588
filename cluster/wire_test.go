package cluster

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/sshchat-dev/sshchat/sshchat"
)

func TestDecodeRefusesMalformedMessages(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"not JSON", `hello`, "invalid character"},
		{"no version", `{"node":"n1","boot":"b","kind":"say"}`, "version 0"},
		{"future version", `{"v":2,"node":"n1","boot":"b","kind":"say"}`, "version 2"},
		{"no node", `{"v":1,"boot":"b","kind":"say"}`, "invalid node name"},
		{"node with a control", `{"v":1,"node":"n\u001b1","boot":"b","kind":"say"}`, "invalid node name"},
		{"node with a space", `{"v":1,"node":"n 1","boot":"b","kind":"say"}`, "invalid node name"},
		{"no boot", `{"v":1,"node":"n1","kind":"say"}`, "boot id"},
		{"long boot", `{"v":1,"node":"n1","boot":"` + strings.Repeat("b", 65) + `","kind":"say"}`, "boot id"},
		{"unknown kind", `{"v":1,"node":"n1","boot":"b","kind":"shout"}`, "unknown kind"},
		{"users of the wrong type", `{"v":1,"node":"n1","boot":"b","kind":"roster","users":"alice"}`, "cannot unmarshal"},
		{"too long", `{"v":1,"node":"n1","boot":"b","kind":"say","text":"` + strings.Repeat("x", MaxMessage) + `"}`, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decode([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decode(%.60q) = %v, want an error containing %q", tc.data, err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"node":"n1","boot":"b","kind":"say","from":"alice","text":"hi"}`))
	f.Add([]byte(`{"v":1,"node":"n1","boot":"b","kind":"roster","users":[{"name":"alice","away":"lunch"}]}`))
	f.Add([]byte(`{"v":1,"node":"n1","boot":"b","kind":"private","from":"alice","to":"bob","text":"psst"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, _, err := decode(data)
		if err != nil {
			return
		}
		if !validNode.MatchString(ev.Node) || ev.Boot == "" || subjects[ev.Kind] == "" {
			t.Fatalf("decode accepted %q as %+v", data, ev)
		}
	})
}

// TestHostileMessagesFromNATS publishes, as a stranger on the NATS server,
// what a well-behaved node never sends: every node must drop it or clean it
// up, and go on.
func TestHostileMessagesFromNATS(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", nil)
	alice := n1.join(c.user("alice"))
	stranger := c.connect()
	send := func(subject string, v any) {
		t.Helper()
		data, ok := v.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := stranger.Publish("sshchat."+subject, data); err != nil {
			t.Fatal(err)
		}
	}
	line := func(from, text string) wireEvent {
		return wireEvent{V: 1, Node: "evil", Boot: "b1", Kind: string(sshchat.PeerSay), From: from, Text: text}
	}
	send("presence", []byte("not json"))
	send("presence", wireEvent{V: 1, Node: "evil", Boot: "b1", Kind: string(sshchat.PeerRoster), Users: []wireUser{{Name: "ok"}, {Name: "bad name"}}})
	alice.expect("ok has arrived")
	// Lines come through the shared history, which keeps them whatever
	// they hold.
	send("room", []byte("not json"))
	send("room", line("alice\x1b[2J", "bad name"))
	send("room", line("mallory", strings.Repeat("x", 1025)))                 // longer than -max-line
	send("room", line("mallory", "\x1b]0;pwned\x07\x1b[31mcolour\u202e me")) // escapes and bidi
	send("room", wireEvent{V: 1, Node: "evil", Boot: "b1", Kind: string(sshchat.PeerSeen), From: "bad name"})
	send("room", wireEvent{V: 1, Node: "evil", Boot: "b1", Kind: string(sshchat.PeerRoster), Users: []wireUser{{Name: "ghost"}}})
	send("room", line("mallory", "the end"))
	if err := stranger.Flush(); err != nil {
		t.Fatal(err)
	}
	alice.expect("mallory: colour me", "mallory: the end")
	// A node starting now copies the same and cleans it up the same way.
	n2 := c.start("n2", nil)
	bob := n2.join(c.user("bob"))
	if want := []string{"mallory: colour me", "mallory: the end"}; !slices.Equal(bob.greeting[:2], want) {
		t.Errorf("bob's greeting on a node started later: %q, want it to start with %q", bob.greeting, want)
	}
}
