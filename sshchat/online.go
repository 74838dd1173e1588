package sshchat

import "slices"

// onlineSet is everyone in the room, on this node or on another, in name
// order. A joiner's welcome reads it ("K online: alice, bob, …"), so it is
// kept sorted as people come and go: sorting every name for every arrival
// made a join storm of n users cost n² log n.
type onlineSet struct {
	places map[string]int // name → where they are: this node, and each other node listing them
	sorted []string
}

// add notes that name is in one more place.
func (o *onlineSet) add(name string) {
	if o.places == nil {
		o.places = make(map[string]int)
	}
	if o.places[name]++; o.places[name] == 1 {
		i, _ := slices.BinarySearch(o.sorted, name)
		o.sorted = slices.Insert(o.sorted, i, name)
	}
}

// remove notes that name is in one place less.
func (o *onlineSet) remove(name string) {
	switch o.places[name] {
	case 0:
	case 1:
		delete(o.places, name)
		if i, found := slices.BinarySearch(o.sorted, name); found {
			o.sorted = slices.Delete(o.sorted, i, i+1)
		}
	default:
		o.places[name]--
	}
}

// names returns everyone, sorted. The slice is the set's own: it changes
// as people come and go, so whoever keeps it, or hands it to another
// goroutine, takes a copy.
func (o *onlineSet) names() []string { return o.sorted }
