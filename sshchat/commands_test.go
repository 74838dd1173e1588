package sshchat

import (
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	ts := startServer(t, nil)
	cs := ts.joinAll("alice", "bob", "carol")
	a, b, c := cs[0], cs[1], cs[2]

	a.say("/help")
	if got := a.next(); !strings.HasPrefix(got, "-!- Commands") {
		t.Fatalf("help starts %q", got)
	}
	help := []string{}
	for _, c := range commands {
		if !c.forOperators { // not shown to alice, who is no operator
			help = append(help, a.next())
		}
	}
	if !strings.Contains(strings.Join(help, "\n"), "/msg NAME TEXT") {
		t.Fatalf("help lacks /msg: %q", help)
	}

	a.say("/names")
	a.expect("-!- 3 online: alice, bob, carol")

	a.say("/me waves")
	b.expect("* alice waves")
	c.expect("* alice waves")

	a.say("/msg bob secret")
	a.expect("-!- [PM to bob] secret")
	b.expect("[PM from alice] secret")
	b.say("/reply back at you")
	b.expect("-!- [PM to alice] back at you")
	a.expect("[PM from bob] back at you")
	a.say("/msg nobody hi")
	a.expect("-!- No one called nobody is online.")

	c.say("/away lunch")
	c.expect("-!- You are marked away: lunch")
	a.say("/names")
	a.expect("-!- 3 online: alice, bob, carol (away: lunch)")
	a.say("/msg carol you there?")
	a.expect("-!- [PM to carol] you there?", "-!- carol is away: lunch")
	c.expect("[PM from alice] you there?")
	c.say("/back")
	c.expect("-!- Welcome back.")

	a.say("/nope")
	a.expect("-!- Unknown command /nope; try /help.")
	a.say("//slashes are fine")
	b.expect("alice: /slashes are fine")
	// carol never saw the private messages: her next line is this one.
	c.expect("alice: /slashes are fine")

	a.say("/quit")
	a.expectEnd()
	b.expect("alice has left")
}

func TestComplete(t *testing.T) {
	names := func() []string { return []string{"alice", "albert", "bob"} }
	tests := []struct {
		line    string
		pos     int
		want    string
		wantPos int
		ok      bool
	}{
		{"@b", 2, "@bob: ", 6, true},
		{"hi @b", 5, "hi @bob ", 8, true},
		{"hi @al", 6, "", 0, false}, // alice/albert: nothing longer in common
		{"hi @ali", 7, "hi @alice ", 10, true},
		{"@Bo", 3, "@bob: ", 6, true},
		{"/ms", 3, "/msg ", 5, true},
		{"/n", 2, "/names ", 7, true},
		{"/", 1, "", 0, false},
		{"say /ms", 7, "", 0, false}, // commands only at the start
		{"plain", 5, "", 0, false},
		{"@bx", 3, "", 0, false},
		{"@b rest", 2, "@bob:  rest", 6, true},
	}
	for _, tt := range tests {
		got, pos, ok := complete(tt.line, tt.pos, names)
		if got != tt.want || pos != tt.wantPos || ok != tt.ok {
			t.Errorf("complete(%q, %d) = %q, %d, %v; want %q, %d, %v", tt.line, tt.pos, got, pos, ok, tt.want, tt.wantPos, tt.ok)
		}
	}
}
