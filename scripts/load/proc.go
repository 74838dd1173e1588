package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// procSample is a process's memory and CPU use at one moment, from Linux
// /proc.
type procSample struct {
	rssKB  uint64 // VmRSS
	hwmKB  uint64 // VmHWM: peak RSS
	cpu    time.Duration
	sample time.Time
}

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports (getconf CLK_TCK).
const clockTick = 10 * time.Millisecond

// readProc samples process pid ("self" for this one).
func readProc(pid string) (procSample, error) {
	s := procSample{sample: time.Now()}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return s, err
	}
	if s.rssKB, err = statusKB(status, "VmRSS:"); err != nil {
		return s, err
	}
	if s.hwmKB, err = statusKB(status, "VmHWM:"); err != nil {
		return s, err
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return s, err
	}
	s.cpu, err = statCPU(stat)
	return s, err
}

// statusKB returns the value of a "Field:   1234 kB" line of
// /proc/PID/status.
func statusKB(status []byte, field string) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(field))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("proc status: malformed %s line %q", field, bytes.TrimSpace(line))
		}
		return strconv.ParseUint(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("proc status: no %s line", field)
}

// statCPU returns utime+stime from /proc/PID/stat. The command name, field
// 2, is in parentheses and may hold spaces and parentheses itself, so
// fields are counted from its last ')': utime and stime are fields 14 and
// 15.
func statCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command name in %q", stat)
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}
