package main

import "time"

// After the last client connects, the room is still announcing arrivals:
// with n clients, up to n² lines are on their way. The room is quiet once no
// client has received anything for a whole window; how long that took from
// the start of connecting is the join storm's real cost, and only then does
// the server's memory show what idle sessions cost.

// clock is the time as awaitQuiet sees it, so tests can run it without
// waiting.
type clock interface {
	Now() time.Time
	Sleep(time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }

// awaitQuiet waits until lastActivity has not moved for window, or until
// limit has passed, and returns the last activity and whether the quiet
// came. It sleeps until the earliest moment the window could be over, and
// looks again: the result is exact however rarely it looks, because it is
// the activity's own time.
func awaitQuiet(lastActivity func() time.Time, window, limit time.Duration, clk clock) (last time.Time, quiet bool) {
	deadline := clk.Now().Add(limit)
	for {
		last = lastActivity()
		now := clk.Now()
		idle := now.Sub(last)
		if idle >= window {
			return last, true
		}
		if !now.Before(deadline) {
			return last, false
		}
		clk.Sleep(min(window-idle, deadline.Sub(now)))
	}
}

// lastActivity returns when any of the clients last received something, or
// since if that is later: output from before all clients were connected
// does not count against the quiet.
func lastActivity(clients []*client, since time.Time) time.Time {
	latest := since.UnixNano()
	for _, c := range clients {
		latest = max(latest, c.lastRecv.Load())
	}
	return time.Unix(0, latest)
}
