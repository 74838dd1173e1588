package sshchat

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestOnlineSet(t *testing.T) {
	var o onlineSet
	o.add("carol")
	o.add("alice")
	o.add("bob")
	o.add("alice") // on another node as well
	o.remove("bob")
	o.remove("alice") // still on the other node
	o.remove("dave")  // never there
	if got, want := o.names(), []string{"alice", "carol"}; !slices.Equal(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
	o.remove("alice")
	if got, want := o.names(), []string{"carol"}; !slices.Equal(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
}

// The set agrees with a plain count of places, sorted when asked, after
// any sequence of arrivals and departures.
func TestOnlineSetAgreesWithModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var o onlineSet
	model := map[string]int{}
	for range 20_000 {
		name := string(rune('a' + r.IntN(26)))
		if r.IntN(2) == 0 {
			o.add(name)
			model[name]++
		} else {
			o.remove(name)
			if model[name]--; model[name] <= 0 {
				delete(model, name)
			}
		}
		if want := slices.Sorted(maps.Keys(model)); !slices.Equal(o.names(), want) {
			t.Fatalf("names %q, want %q", o.names(), want)
		}
	}
}
