//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises this process's soft limit on open files to its
// hard limit, since every client is a socket, and returns the soft limit in
// force, raised or not. The Go runtime raises it at start-up on some
// systems; doing it here makes the limit known, and true everywhere.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("open files limit: %w", err)
	}
	if lim.Cur >= lim.Max {
		return uint64(lim.Cur), nil
	}
	soft := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return uint64(soft), fmt.Errorf("raising the open files limit from %d to %d: %w", soft, lim.Max, err)
	}
	return uint64(lim.Cur), nil
}
