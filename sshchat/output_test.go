package sshchat

import (
	"testing"
	"time"
)

// The watchdog expires when a write has been under way for its timeout
// with none completing, and not while writes complete or none is under way.
func TestWatchdogCheck(t *testing.T) {
	const timeout = time.Hour // the timer never fires by itself here
	tests := []struct {
		name    string
		writing int32
		idle    time.Duration // since the last progress
		expired bool
		armed   bool
	}{
		{"no write under way", 0, 2 * timeout, false, false},
		{"write under way, progress within the timeout", 1, timeout / 2, false, true},
		{"write under way for the timeout", 1, timeout, true, false},
		{"two writes, no progress for longer", 2, 3 * timeout, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expired := false
			wd := newWatchdog(timeout, func() { expired = true })
			defer wd.stop()
			wd.writing.Store(tt.writing)
			wd.progress.Store(wd.now() - int64(tt.idle))
			wd.check()
			if expired != tt.expired || wd.armed.Load() != tt.armed {
				t.Errorf("expired %v, armed %v; want %v, %v", expired, wd.armed.Load(), tt.expired, tt.armed)
			}
		})
	}
}

// A write that never completes, after one that did, is caught by the timer
// armed by the first.
func TestWatchdogExpiresStuckWrite(t *testing.T) {
	expired := make(chan struct{})
	wd := newWatchdog(20*time.Millisecond, func() { close(expired) })
	defer wd.stop()
	wd.begin()
	wd.end()
	wd.begin() // stuck
	select {
	case <-expired:
	case <-time.After(waitLimit):
		t.Fatal("a stuck write did not expire the watchdog")
	}
}
