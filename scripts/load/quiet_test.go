package main

import (
	"testing"
	"time"
)

// fakeClock is a clock whose Sleep moves time on at once.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time        { return c.now }
func (c *fakeClock) Sleep(d time.Duration) { c.now = c.now.Add(d) }

func TestAwaitQuiet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(offsets ...time.Duration) []time.Time {
		var ts []time.Time
		for _, o := range offsets {
			ts = append(ts, t0.Add(o))
		}
		return ts
	}
	steady := func(every, until time.Duration) []time.Time {
		var ts []time.Time
		for o := time.Duration(0); o <= until; o += every {
			ts = append(ts, t0.Add(o))
		}
		return ts
	}
	const ms = time.Millisecond
	for _, tc := range []struct {
		name       string
		activity   []time.Time // when output arrived, in order
		window     time.Duration
		limit      time.Duration
		wantLast   time.Duration // from t0
		wantQuiet  bool
		wantReturn time.Duration // when awaitQuiet returns, from t0
	}{
		{"silent from the start", nil, time.Second, time.Minute, 0, true, time.Second},
		{"a burst, then silence", at(100*ms, 400*ms, 1400*ms), time.Second, time.Minute, 1400 * ms, true, 2400 * ms},
		{"a gap just short of the window", at(0, 999*ms, 1998*ms), time.Second, time.Minute, 1998 * ms, true, 2998 * ms},
		{"output as the window ends restarts it", at(0, time.Second), time.Second, time.Minute, time.Second, true, 2 * time.Second},
		{"never quiet", steady(100*ms, time.Hour), time.Second, 5 * time.Second, 5 * time.Second, false, 5 * time.Second},
		{"quiet just at the limit", at(500 * ms), time.Second, 1500 * ms, 500 * ms, true, 1500 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: t0}
			last := func() time.Time {
				latest := t0 // as lastActivity: nothing before connecting ended counts
				for _, a := range tc.activity {
					if a.After(clk.now) {
						break
					}
					latest = a
				}
				return latest
			}
			gotLast, gotQuiet := awaitQuiet(last, tc.window, tc.limit, clk)
			if !gotLast.Equal(t0.Add(tc.wantLast)) || gotQuiet != tc.wantQuiet {
				t.Errorf("awaitQuiet = %s, %v; want %s, %v", gotLast.Sub(t0), gotQuiet, tc.wantLast, tc.wantQuiet)
			}
			if got := clk.now.Sub(t0); got != tc.wantReturn {
				t.Errorf("returned at %s, want %s", got, tc.wantReturn)
			}
		})
	}
}

func TestLastActivity(t *testing.T) {
	since := time.Unix(2000, 0)
	var a, b, idle client
	a.lastRecv.Store(since.Add(-time.Second).UnixNano()) // before all connected: does not count
	b.lastRecv.Store(since.Add(3 * time.Second).UnixNano())
	for _, tc := range []struct {
		name    string
		clients []*client
		want    time.Time
	}{
		{"none", nil, since},
		{"only earlier output", []*client{&a, &idle}, since},
		{"the latest wins", []*client{&a, &b, &idle}, since.Add(3 * time.Second)},
	} {
		if got := lastActivity(tc.clients, since); !got.Equal(tc.want) {
			t.Errorf("%s: lastActivity = %s, want %s", tc.name, got, tc.want)
		}
	}
}
