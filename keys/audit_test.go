package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openAudit(t testing.TB, path string) *AuditLog {
	t.Helper()
	a, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// auditLines returns each line of the audit log at path decoded as JSON,
// strictly: a line with any other field, or not a JSON object, fails t.
func auditLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	var records []map[string]any
	for n, line := range strings.Split(strings.TrimSuffix(readModFile(t, path), "\n"), "\n") {
		var r map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&r); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %q", n+1, err, line)
		}
		for field := range r {
			switch field {
			case "time", "operator", "action", "target", "reason", "until":
			default:
				t.Errorf("line %d has field %q", n+1, field)
			}
		}
		records = append(records, r)
	}
	return records
}

func TestAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "audit.log")
	a := openAudit(t, path)
	when := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 3600))
	records := []AuditRecord{
		{Time: when, Operator: "alice", Action: AuditBan, Target: "bob", Reason: `spam "again" <b>`, Until: when.Add(time.Hour)},
		{Time: when, Operator: "alice", Action: AuditMOTD, Reason: strings.Repeat("é", MaxMOTDLen/2)},
		{Operator: "carol", Action: AuditKick, Target: "dave"},
	}
	before := time.Now()
	for _, r := range records {
		if err := a.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()
	if got := modPerm(t, path); got != 0o600 {
		t.Errorf("audit log mode %v, want 0600", got)
	}
	if got := modPerm(t, filepath.Dir(path)); got != 0o700 {
		t.Errorf("data directory mode %v, want 0700", got)
	}
	lines := auditLines(t, path)
	want := []map[string]any{
		{"time": "2030-01-02T02:04:05.0000006Z", "operator": "alice", "action": "ban", "target": "bob", "reason": `spam "again" <b>`, "until": "2030-01-02T03:04:05.0000006Z"},
		{"time": "2030-01-02T02:04:05.0000006Z", "operator": "alice", "action": "motd", "reason": strings.Repeat("é", MaxMOTDLen/2)},
		{"operator": "carol", "action": "kick", "target": "dave"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i, w := range want {
		got := lines[i]
		if w["time"] == nil {
			stamp, _ := got["time"].(string)
			tm, err := time.Parse(time.RFC3339, stamp)
			if err != nil || tm.Before(before) || tm.After(after) || !strings.HasSuffix(stamp, "Z") {
				t.Errorf("line %d: time %q is not an RFC 3339 UTC time of the call (%v)", i+1, stamp, err)
			}
			w["time"] = stamp
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("line %d = %v\nwant %v", i+1, got, w)
		}
	}
	if !strings.Contains(readModFile(t, path), "<b>") {
		t.Error("HTML characters escaped: the log is for people and tools, not browsers")
	}
}

func TestAuditLogAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	tests := []struct {
		name     string
		existing string
		want     string
	}{
		{"complete line kept", `{"action":"old"}` + "\n", `{"action":"old"}` + "\n"},
		{"partial line ended", `{"action":"cut`, `{"action":"cut` + "\n"},
	}
	for _, tt := range tests {
		if err := os.WriteFile(path, []byte(tt.existing), 0o640); err != nil {
			t.Fatal(err)
		}
		a, err := OpenAuditLog(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Record(AuditRecord{Operator: "alice", Action: AuditOp, Target: "bob"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		got := readModFile(t, path)
		head, last, ok := strings.Cut(got, tt.want)
		if !ok || head != "" || !strings.HasPrefix(last, `{"time":`) || strings.Count(last, "\n") != 1 {
			t.Errorf("%s: log is\n%q\nwant %q followed by one record", tt.name, got, tt.want)
		}
		if got := modPerm(t, path); got != 0o640 {
			t.Errorf("%s: mode %v changed; want 0640 kept", tt.name, got)
		}
	}
}

func TestAuditRecordRefuses(t *testing.T) {
	valid := AuditRecord{Operator: "alice", Action: AuditMute, Target: "bob", Reason: "flood"}
	tests := []struct {
		name   string
		change func(r *AuditRecord)
		want   string
	}{
		{"no operator", func(r *AuditRecord) { r.Operator = "" }, "operator: missing"},
		{"bad operator", func(r *AuditRecord) { r.Operator = "root@host" }, "operator: name \"root@host\" contains '@'"},
		{"no action", func(r *AuditRecord) { r.Action = "" }, "action: missing"},
		{"long action", func(r *AuditRecord) { r.Action = AuditAction(strings.Repeat("a", 33)) }, "action is 33 bytes long"},
		{"bad target", func(r *AuditRecord) { r.Target = "bob\n" }, "target: name \"bob\\n\" contains"},
		{"escape in reason", func(r *AuditRecord) { r.Reason = "\x1b]0;pwned\a" }, "reason contains the control character U+001B"},
		{"long reason", func(r *AuditRecord) { r.Reason = strings.Repeat("r", MaxMOTDLen+1) }, "reason is 1025 bytes long"},
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	a := openAudit(t, path)
	for _, tt := range tests {
		r := valid
		tt.change(&r)
		if err := a.Record(r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if got := readModFile(t, path); got != "" {
		t.Errorf("refused records were written:\n%s", got)
	}
}

func TestAuditLogConcurrently(t *testing.T) {
	const writers, each = 8, 50
	path := filepath.Join(t.TempDir(), "audit.log")
	// Two logs on one file stand for two processes: each has its own file
	// offset, so only O_APPEND keeps their records apart.
	logs := []*AuditLog{openAudit(t, path), openAudit(t, path)}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := AuditRecord{
					Operator: fmt.Sprintf("op%d", w),
					Action:   AuditBan,
					Target:   fmt.Sprintf("u%d", i),
					Reason:   strings.Repeat(string(rune('a'+w)), MaxReasonLen),
				}
				if err := logs[w%len(logs)].Record(r); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := make(map[string]bool)
	for n, r := range auditLines(t, path) {
		op, _ := r["operator"].(string)
		reason, _ := r["reason"].(string)
		if len(op) != 3 || reason != strings.Repeat(string(rune('a'+op[2]-'0')), MaxReasonLen) {
			t.Errorf("line %d mixes records: %v", n+1, r)
		}
		seen[fmt.Sprint(op, r["target"])] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct records, want %d", len(seen), writers*each)
	}
}

func TestAuditLogAfterClose(t *testing.T) {
	a, err := OpenAuditLog(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Record(AuditRecord{Operator: "alice", Action: AuditDeop, Target: "bob"}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Record after Close: %v, want os.ErrClosed", err)
	}
}

func TestOpenAuditLogFails(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAuditLog(filepath.Join(blocker, "audit.log")); err == nil || !strings.Contains(err.Error(), "open audit log") {
		t.Errorf("error %v, want one saying the audit log cannot be opened", err)
	}
}
