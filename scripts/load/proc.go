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
	// writes counts write(2)-family system calls, syscw in /proc/PID/io:
	// every send on a socket is one. Reading it takes ptrace-read access
	// to the process, so it may be missing when the rest is not.
	writes    uint64
	hasWrites bool
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
	if s.cpu, err = statCPU(stat); err != nil {
		return s, err
	}
	if io, err := os.ReadFile("/proc/" + pid + "/io"); err == nil {
		s.writes, err = ioField(io, "syscw:")
		s.hasWrites = err == nil
	}
	return s, nil
}

// ioField returns the value of a "field: 1234" line of /proc/PID/io.
func ioField(io []byte, field string) (uint64, error) {
	for line := range bytes.Lines(io) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		}
	}
	return 0, fmt.Errorf("proc io: no %s line", field)
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

// probe samples a process at named moments of the run: pid is its /proc
// directory name, "self" for this process, "" for none.
type probe struct {
	pid     string
	samples map[string]procSample
	err     error
}

func newProbe(pid string) *probe {
	return &probe{pid: pid, samples: make(map[string]procSample)}
}

func (p *probe) sample(at string) {
	if p.pid == "" || p.err != nil {
		return
	}
	s, err := readProc(p.pid)
	if err != nil {
		p.err = fmt.Errorf("at %s: %w", at, err)
		return
	}
	p.samples[at] = s
}

// cpuBetween returns the CPU time used between two samples, and the wall
// time between them.
func (p *probe) cpuBetween(from, to string) (cpu, wall time.Duration, ok bool) {
	a, okA := p.samples[from]
	b, okB := p.samples[to]
	if !okA || !okB {
		return 0, 0, false
	}
	return b.cpu - a.cpu, b.sample.Sub(a.sample), true
}

func (p *probe) report(rep *report, delivered uint64) *serverReport {
	if p.pid == "" {
		return nil
	}
	pid, _ := strconv.Atoi(p.pid)
	r := &serverReport{PID: pid}
	if p.err != nil {
		r.Error = p.err.Error()
	}
	mb := func(at string) float64 { return float64(p.samples[at].rssKB) / 1024 }
	r.RSSBeforeMB, r.RSSIdleMB, r.RSSAfterMB = mb("before"), mb("idle"), mb("drained")
	if last, ok := p.samples["drained"]; ok {
		r.PeakRSSMB = float64(last.hwmKB) / 1024
	}
	before, okB := p.samples["before"]
	idle, okI := p.samples["idle"]
	if okB && okI && rep.Connect.Connected > 0 {
		r.IdleKBPerSession = (float64(idle.rssKB) - float64(before.rssKB)) / float64(rep.Connect.Connected)
	}
	if cpu, _, ok := p.cpuBetween("before", "connected"); ok {
		r.CPUConnectSeconds = cpu.Seconds()
		if rep.Connect.Connected > 0 {
			r.CPUPerHandshakeUS = float64(cpu.Microseconds()) / float64(rep.Connect.Connected)
		}
	}
	if cpu, wall, ok := p.cpuBetween("send", "drained"); ok {
		r.CPUSendSeconds = cpu.Seconds()
		r.CPUSendCores = cpu.Seconds() / wall.Seconds()
		if delivered > 0 {
			r.CPUPerDeliveryUS = float64(cpu.Microseconds()) / float64(delivered)
		}
	}
	if a, b := p.samples["send"], p.samples["drained"]; a.hasWrites && b.hasWrites {
		r.WritesSend = b.writes - a.writes
		if delivered > 0 {
			r.WritesPerDelivery = float64(r.WritesSend) / float64(delivered)
		}
	}
	return r
}

func (p *probe) toolReport(delivered uint64) toolReport {
	var r toolReport
	if p.err != nil {
		r.Error = p.err.Error()
	}
	if cpu, wall, ok := p.cpuBetween("send", "drained"); ok {
		r.CPUSendSeconds = cpu.Seconds()
		r.CPUSendCores = cpu.Seconds() / wall.Seconds()
		if delivered > 0 {
			r.CPUPerDeliveryUS = float64(cpu.Microseconds()) / float64(delivered)
		}
	}
	if s, ok := p.samples["drained"]; ok {
		r.RSSMB = float64(s.rssKB) / 1024
	}
	return r
}
