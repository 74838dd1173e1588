package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestMessageRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		seq uint64
		ts  int64
	}{
		{0, 0},
		{1, 1},
		{42, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()},
		{math.MaxUint32, math.MaxInt64},
	} {
		msg := appendMessage(nil, tc.seq, tc.ts, '\n')
		if !bytes.HasSuffix(msg, []byte("\n")) || bytes.Count(msg, []byte("\n")) != 1 {
			t.Fatalf("appendMessage(%d, %d) = %q, want one line", tc.seq, tc.ts, msg)
		}
		// What another client receives: the sender's name, ": ", the text.
		line := append([]byte("load0007: "), bytes.TrimSuffix(msg, []byte("\n"))...)
		from, seq, ts, ok := parseDelivery(line)
		if !ok || string(from) != "load0007" || seq != tc.seq || ts != tc.ts {
			t.Errorf("parseDelivery(%q) = %q, %d, %d, %v; want load0007, %d, %d, true", line, from, seq, ts, ok, tc.seq, tc.ts)
		}
	}
}

func TestParseDeliveryRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"You are load0001",
		"load0001 has arrived",
		"load0001 has left",
		"load0001: hello",
		"load0001: load",
		"load0001: load 1",
		"load0001: load 1 ",
		"load0001: load  1 2",
		"load0001: load x 2",
		"load0001: load 1 2x",
		"load0001: load -1 2",
		"load0001: load 1 -2",
		"load0001: load 1 2 3",
		"load0001: load 1 99999999999999999999", // overflows uint64
		"load0001: load 1 18446744073709551615", // overflows int64
		": load 1 2",
		"load0001:load 1 2",
	} {
		if from, seq, ts, ok := parseDelivery([]byte(line)); ok {
			t.Errorf("parseDelivery(%q) = %q, %d, %d, true; want not ok", line, from, seq, ts)
		}
	}
}

func TestParseDeliveryDoesNotAllocate(t *testing.T) {
	line := []byte("load0001: load 123 1767225600000000000")
	if n := testing.AllocsPerRun(100, func() { parseDelivery(line) }); n != 0 {
		t.Errorf("parseDelivery allocates %v times per line", n)
	}
}

func TestHasTime(t *testing.T) {
	for line, want := range map[string]bool{
		"12:34 load0001: load 1 2": true,
		"00:00 alice has arrived":  true,
		"You are load0001":         false,
		"load0001: load 1 2":       false,
		"12:34":                    false,
		"1:234 x":                  false,
		"ab:cd x":                  false,
	} {
		if got := hasTime([]byte(line)); got != want {
			t.Errorf("hasTime(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestBucketsTileTheRangeWithin1Percent(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; ; i++ {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, prevHi+1)
		}
		if width := float64(hi - lo + 1); width > 1 && width/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d [%d, %d] is %.2f%% wide", i, lo, hi, 100*width/float64(lo))
		}
		for _, v := range []uint64{lo, lo + (hi-lo)/2, hi} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if hi >= maxValue {
			break
		}
		prevHi = hi
	}
}

func TestPercentiles(t *testing.T) {
	seq := func(from, to uint64) []uint64 {
		var vs []uint64
		for v := from; v <= to; v++ {
			vs = append(vs, v)
		}
		return vs
	}
	repeat := func(v uint64, n int) []uint64 {
		vs := make([]uint64, n)
		for i := range vs {
			vs[i] = v
		}
		return vs
	}
	for _, tc := range []struct {
		name               string
		values             []uint64
		p50, p95, p99, max uint64
		tolerance          float64 // relative
	}{
		{"empty", nil, 0, 0, 0, 0, 0},
		{"one value", []uint64{7}, 7, 7, 7, 7, 0},
		{"1..100 exact", seq(1, 100), 50, 95, 99, 100, 0},
		{"0..199 exact", seq(0, 199), 99, 189, 197, 199, 0},
		{"constant large", repeat(123456, 1000), 123456, 123456, 123456, 123456, 0},
		{"1000..100999", seq(1000, 100999), 50999, 95999, 99999, 100999, 0.005},
		{"tail", append(repeat(1000, 990), repeat(5_000_000, 10)...), 1000, 1000, 1000, 5_000_000, 0.005},
		{"beyond the range", []uint64{math.MaxUint64}, maxValue, maxValue, maxValue, maxValue, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			for _, v := range tc.values {
				h.record(v)
			}
			for _, c := range []struct {
				p    float64
				want uint64
			}{{50, tc.p50}, {95, tc.p95}, {99, tc.p99}, {100, tc.max}} {
				got := h.percentile(c.p)
				if diff := math.Abs(float64(got) - float64(c.want)); diff > tc.tolerance*float64(c.want) {
					t.Errorf("p%g = %d, want %d (±%g%%)", c.p, got, c.want, 100*tc.tolerance)
				}
			}
			if h.max != tc.max {
				t.Errorf("max = %d, want %d", h.max, tc.max)
			}
		})
	}
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	var all, a, b histogram
	for v := range uint64(5000) {
		x := v * v % 7919 * 97
		all.record(x)
		if v%3 == 0 {
			a.record(x)
		} else {
			b.record(x)
		}
	}
	var merged histogram
	merged.merge(&a)
	merged.merge(&histogram{})
	merged.merge(&b)
	if merged.total != all.total || merged.min != all.min || merged.max != all.max {
		t.Fatalf("merged total/min/max = %d/%d/%d, want %d/%d/%d", merged.total, merged.min, merged.max, all.total, all.min, all.max)
	}
	for _, p := range []float64{1, 50, 90, 99, 99.9} {
		if got, want := merged.percentile(p), all.percentile(p); got != want {
			t.Errorf("merged p%g = %d, want %d", p, got, want)
		}
	}
}

func TestClientCountsDeliveries(t *testing.T) {
	run := &shared{senders: map[string]int{"load0000": 0, "load0001": 1}, maxSeq: 200}
	c := &client{name: "load0001", run: run, seen: make([][]uint64, 2)}
	now := time.Unix(100, 0)
	line := func(from string, seq uint64, sentAgo time.Duration) []byte {
		msg := appendMessage([]byte(from+": "), seq, now.Add(-sentAgo).UnixNano(), '\n')
		return bytes.TrimSuffix(msg, []byte("\n"))
	}
	c.handle(line("load0000", 0, 2*time.Millisecond), now)
	c.handle(line("load0000", 130, 4*time.Millisecond), now)
	c.handle(line("load0000", 130, time.Millisecond), now) // duplicate
	c.handle(line("load0001", 3, time.Millisecond), now)   // its own line
	c.handle(line("load0002", 1, time.Millisecond), now)   // not a sender
	c.handle(line("load0000", 201, time.Millisecond), now) // never sent
	c.handle([]byte("load0005 has arrived"), now)          // before sending: ignored
	run.sending.Store(true)
	c.handle([]byte("load0005 has left"), now)
	c.handle([]byte("Disconnected: you were not reading fast enough (256 messages queued)."), now)

	if got := c.delivered.Load(); got != 2 {
		t.Errorf("delivered = %d, want 2", got)
	}
	if c.dups != 1 || c.selfEchoes != 1 || c.foreign != 2 || c.leaves != 1 || c.other != 1 {
		t.Errorf("dups, self-echoes, foreign, leaves, other = %d, %d, %d, %d, %d; want 1, 1, 2, 1, 1", c.dups, c.selfEchoes, c.foreign, c.leaves, c.other)
	}
	if !strings.HasPrefix(c.notice, "Disconnected:") {
		t.Errorf("notice = %q, want the Disconnected notice", c.notice)
	}
	if c.latency.min != 2000 || c.latency.max != 4000 {
		t.Errorf("latency min, max = %dµs, %dµs; want 2000, 4000", c.latency.min, c.latency.max)
	}
	for _, tc := range []struct {
		below uint64
		want  uint64
	}{{0, 0}, {1, 1}, {64, 1}, {130, 1}, {131, 2}, {1000, 2}} {
		if got := c.deliveredBelow(0, tc.below); got != tc.want {
			t.Errorf("deliveredBelow(0, %d) = %d, want %d", tc.below, got, tc.want)
		}
	}
}

// validName is the server's rule for chat names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// readAllowed parses an allowed_keys file into name → marshalled key.
func readAllowed(t *testing.T, path string) (names []string, byName map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	byName = map[string]string{}
	for rest := data; len(rest) > 0; {
		key, comment, _, next, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			t.Fatalf("allowed_keys: %v", err)
		}
		if key.Type() != ssh.KeyAlgoED25519 {
			t.Errorf("key type %s, want ed25519", key.Type())
		}
		if !validName.MatchString(comment) {
			t.Errorf("name %q is not a valid chat name", comment)
		}
		if _, dup := byName[comment]; dup {
			t.Errorf("name %q appears twice", comment)
		}
		names = append(names, comment)
		byName[comment] = string(key.Marshal())
		rest = next
	}
	return names, byName
}

func TestEnsureKeysWritesAndReuses(t *testing.T) {
	dir := t.TempDir()
	allowedPath := filepath.Join(dir, allowedKeysFile)

	ks, err := ensureKeys(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.keys) != 3 || ks.generated != 3 || !ks.allowedChanged {
		t.Fatalf("first call: %d keys, %d generated, changed %v; want 3, 3, true", len(ks.keys), ks.generated, ks.allowedChanged)
	}
	names, byName := readAllowed(t, allowedPath)
	if want := []string{"load0000", "load0001", "load0002"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("names %v, want %v", names, want)
	}
	for _, k := range ks.keys {
		if byName[k.name] != string(k.signer.PublicKey().Marshal()) {
			t.Errorf("allowed_keys has the wrong key for %s", k.name)
		}
	}
	first := pubKeys(ks.keys)
	stat, err := os.Stat(allowedPath)
	if err != nil {
		t.Fatal(err)
	}

	for _, n := range []int{3, 2} {
		again, err := ensureKeys(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		if again.generated != 0 || again.allowedChanged || fmt.Sprint(pubKeys(again.keys)) != fmt.Sprint(first) {
			t.Errorf("ensureKeys(%d) again: %d generated, changed %v, same keys %v; want 0, false, true",
				n, again.generated, again.allowedChanged, fmt.Sprint(pubKeys(again.keys)) == fmt.Sprint(first))
		}
	}
	if st, err := os.Stat(allowedPath); err != nil || !os.SameFile(st, stat) {
		t.Errorf("allowed_keys was rewritten without a change (err %v)", err)
	}

	more, err := ensureKeys(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(more.keys) != 5 || more.generated != 2 || !more.allowedChanged {
		t.Fatalf("growing to 5: %d keys, %d generated, changed %v; want 5, 2, true", len(more.keys), more.generated, more.allowedChanged)
	}
	if got := pubKeys(more.keys[:3]); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Error("growing replaced the existing keys")
	}
	if names, _ := readAllowed(t, allowedPath); len(names) != 5 || names[4] != "load0004" {
		t.Errorf("after growing, allowed_keys names %v", names)
	}
	if st, err := os.Stat(filepath.Join(dir, clientKeysFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("clients.keys: %v, mode %v; want 0600", err, st.Mode())
	}
}

func pubKeys(keys []clientKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, string(ssh.MarshalAuthorizedKey(k.signer.PublicKey())))
	}
	return out
}

func TestEnsureKeysRejectsMalformedKeysFile(t *testing.T) {
	for _, content := range []string{
		"not hex\n",
		strings.Repeat("ab", 31) + "\n",
		strings.Repeat("ab", 33) + "\n",
		strings.Repeat("zz", 32) + "\n",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, clientKeysFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ensureKeys(dir, 1); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("clients.keys %q: error %v, want one naming line 1", content, err)
		}
	}
}

func TestEnsureKeysAppendsAfterAFileWithoutItsLastNewline(t *testing.T) {
	dir := t.TempDir()
	ks, err := ensureKeys(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, clientKeysFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.TrimSuffix(data, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	more, err := ensureKeys(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ensureKeys(dir, 2)
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if fmt.Sprint(pubKeys(again.keys)) != fmt.Sprint(pubKeys(more.keys)) || fmt.Sprint(pubKeys(again.keys[:1])) != fmt.Sprint(pubKeys(ks.keys)) {
		t.Error("the keys read back differ from those written")
	}
}

func TestClientNamesAreValidBeyondFourDigits(t *testing.T) {
	for _, i := range []int{0, 9999, 10000, 1 << 20} {
		if name := clientName(i); !validName.MatchString(name) {
			t.Errorf("clientName(%d) = %q, not a valid chat name", i, name)
		}
	}
}

func TestWriteKeysOnly(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"-keys-dir", dir, "-n", "4", "-write-keys"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if names, _ := readAllowed(t, filepath.Join(dir, allowedKeysFile)); len(names) != 4 {
		t.Errorf("allowed_keys holds %d keys, want 4", len(names))
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},                            // no -keys-dir
		{"-keys-dir", "x", "-n", "0"}, // no clients
		{"-keys-dir", "x", "-senders", "-1"},
		{"-keys-dir", "x", "-rate", "0"},
		{"-keys-dir", "x", "-duration", "0s"},
		{"-keys-dir", "x", "-dial-concurrency", "0"},
		{"-keys-dir", "x", "-quiet", "0s"},
		{"-keys-dir", "x", "-quiet-timeout", "0s"},
		{"-keys-dir", "x", "-addr", " , "},
		{"-keys-dir", "x", "-addr", "127.0.0.1:2222,nohost"},
		{"-bogus"},
	} {
		if code := run(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

func TestProcParsing(t *testing.T) {
	status := []byte("Name:\tsshchat\nVmPeak:\t  20000 kB\nVmHWM:\t   18000 kB\nVmRSS:\t   17540 kB\nThreads:\t9\n")
	if rss, err := statusKB(status, "VmRSS:"); err != nil || rss != 17540 {
		t.Errorf("VmRSS = %d, %v; want 17540", rss, err)
	}
	if hwm, err := statusKB(status, "VmHWM:"); err != nil || hwm != 18000 {
		t.Errorf("VmHWM = %d, %v; want 18000", hwm, err)
	}
	if _, err := statusKB(status, "VmSwap:"); err == nil {
		t.Error("missing field: no error")
	}
	if _, err := statusKB([]byte("VmRSS:\t12 MB\n"), "VmRSS:"); err == nil {
		t.Error("wrong unit: no error")
	}

	// utime 250 and stime 50 ticks; the command name holds ") (" to
	// trip a parser that splits on the first ')'.
	stat := []byte("4242 (ssh chat) (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 100 1000000 4385 18446744073709551615\n")
	if cpu, err := statCPU(stat); err != nil || cpu != 3*time.Second {
		t.Errorf("statCPU = %v, %v; want 3s", cpu, err)
	}
	if _, err := statCPU([]byte("4242 (sshchat) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
}

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	s, err := readProc("self")
	if err != nil || s.rssKB == 0 || s.hwmKB < s.rssKB {
		t.Errorf("readProc(self) = %+v, %v", s, err)
	}
}

func TestTallyGroupsByText(t *testing.T) {
	var tl tally
	tl.add("refused", "load0001")
	tl.add("timeout", "load0002")
	tl.add("refused", "load0003")
	for i := range maxErrors + 2 {
		tl.add(fmt.Sprint("kind ", i), "x")
	}
	got := tl.list()
	if len(got) != maxErrors+1 || got[0] != "2× refused (e.g. load0001)" || got[1] != "1× timeout (e.g. load0002)" || got[maxErrors] != "... and 4 other kinds" {
		t.Errorf("list() = %q", got)
	}
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rep report) string {
		path := filepath.Join(dir, name+".json")
		if err := writeJSON(path, &rep, io.Discard); err != nil {
			t.Fatal(err)
		}
		return name + "=" + path
	}
	pty := write("terminal", report{
		Clients: 1000, Senders: 20, RatePerSender: 0.9, PTY: true,
		Connect: connectReport{Connected: 1000, TimeToConnectAllSeconds: 1.5, TimeToQuietSeconds: 2.25, Quiet: true, HandshakesPerSec: 660},
		Send:    sendReport{Lost: 3, DeliveriesPerSec: 17982},
		Latency: latencyReport{P50: 9.5, P99: 27.25},
		Server:  &serverReport{IdleKBPerSession: 70.5, CPUPerDeliveryUS: 15.6, WritesSend: 100, WritesPerDelivery: 0.94},
	})
	noPID := write("idle", report{Clients: 10, Connect: connectReport{Connected: 10, TimeToQuietSeconds: 30}})
	var out, errOut bytes.Buffer
	if code := runTable([]string{pty, noPID}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s\nwant a header and 2 rows", out.String())
	}
	for i, want := range [][]string{
		{"scenario", "µs/delivery", "writes/delivery", "p99", "lost"},
		{"terminal", "1000", "pty", "20×0.9", "1.5", "2.2", "660", "70.5", "15.60", "0.94", "9.50", "27.25", "3", "17982"},
		{"idle", "10", "line", ">30.0", "-"},
	} {
		fields := strings.Fields(lines[i])
		for _, w := range want {
			if !slices.Contains(fields, w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	for _, args := range [][]string{{}, {"nopath"}, {"=x.json"}} {
		if code := runTable(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("runTable(%q) = %d, want 2", args, code)
		}
	}
	if code := runTable([]string{"x=" + filepath.Join(dir, "missing.json")}, io.Discard, io.Discard); code != 1 {
		t.Errorf("a missing report: exit %d, want 1", code)
	}
}

func TestEnsureFileLimit(t *testing.T) {
	limit, err := ensureFileLimit(1, io.Discard)
	if err != nil || limit < spareFiles+1 {
		t.Fatalf("ensureFileLimit(1) = %d, %v", limit, err)
	}
	if _, err := ensureFileLimit(int(min(limit, 1<<40)), io.Discard); err == nil || !strings.Contains(err.Error(), "ulimit -Hn") {
		t.Errorf("more clients than the limit allows: %v, want an error naming ulimit -Hn", err)
	}
}

func TestProcIOWrites(t *testing.T) {
	io := []byte("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 42\nread_bytes: 0\n")
	if n, err := ioField(io, "syscw:"); err != nil || n != 42 {
		t.Errorf("syscw = %d, %v; want 42", n, err)
	}
	if _, err := ioField(io, "cancelled_write_bytes:"); err == nil {
		t.Error("missing field: no error")
	}
}
