package sshchat

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

// A join storm is announced one by one up to stormAnnouncements a second,
// then in summaries; every arrival is counted exactly once.
func TestRoomJoinStormIsSummarised(t *testing.T) {
	tests := []struct {
		name          string
		announceMax   int
		joiners       int
		maxIndividual int
	}{
		{"storm in a small room", 0, 25, 2 * stormAnnouncements}, // the tick may fall mid-storm
		{"big room", 3, 6, 3}, // while the room holds at most 3
	}
	summaryLine := regexp.MustCompile(`^(\d+) (person|people) arrived: `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoom(t, roomOptions{announceMax: tt.announceMax})
			observer := enter(t, r, "observer", 4*tt.joiners)
			recv(t, observer) // the greeting
			for i := range tt.joiners {
				enter(t, r, fmt.Sprint("u", i), 2*tt.joiners)
			}
			counted, individual := 0, 0
			for counted < tt.joiners {
				line := recv(t, observer)
				if m := summaryLine.FindStringSubmatch(line); m != nil {
					n, _ := strconv.Atoi(m[1])
					counted += n
					continue
				}
				if !regexp.MustCompile(`^u\d+ has arrived$`).MatchString(line) {
					t.Fatalf("observer got %q", line)
				}
				counted++
				individual++
			}
			if counted != tt.joiners || individual > tt.maxIndividual {
				t.Fatalf("%d arrivals announced, %d one by one; want %d, at most %d one by one", counted, individual, tt.joiners, tt.maxIndividual)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{1, "1 person left: a0"},
		{3, "3 people left: a0, a1, a2"},
		{12, "12 people left: a0, a1, a2, a3, a4, a5, a6, a7, a8, a9 and 2 more"},
	}
	for _, tt := range tests {
		var names []string
		for i := range tt.n {
			names = append(names, fmt.Sprint("a", i))
		}
		if got := summary(names, "left"); got != tt.want {
			t.Errorf("summary of %d = %q, want %q", tt.n, got, tt.want)
		}
	}
}
