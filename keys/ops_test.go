package keys

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseOps(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"empty", "", nil},
		{"comments and blank lines", "# operators\n\n  # indented\n", nil},
		{"names", lines("alice", "Bob_2", "c.d-e"), []string{"alice", "Bob_2", "c.d-e"}},
		{"blanks around names, CRLF, no final newline", "  alice \t\r\n\r\n\tbob", []string{"alice", "bob"}},
		{"longest name", strings.Repeat("n", maxNameLen), []string{strings.Repeat("n", maxNameLen)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOps([]byte(tt.data))
			if err != nil {
				t.Fatalf("ParseOps: %v", err)
			}
			if got := o.Names(); !slices.Equal(got, tt.want) || o.Len() != len(tt.want) {
				t.Errorf("Names() = %q (Len %d), want %q", got, o.Len(), tt.want)
			}
			for _, name := range tt.want {
				if !o.Has(name) || !o.Has(strings.ToUpper(name)) {
					t.Errorf("Has(%q) is false in some case", name)
				}
			}
			if o.Has("mallory") {
				t.Error(`Has("mallory") = true`)
			}
		})
	}
}

func TestParseOpsErrors(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		wantLine int
		want     string
	}{
		{"two names", "alice bob", 1, `2 words on one line ("alice bob"): list one user name per line`},
		{"trailing comment", "alice # boss", 1, "3 words on one line"},
		{"bad character", lines("# ops", "alice@laptop"), 2, `name "alice@laptop" contains '@'`},
		{"bad first character", "-alice", 1, `name "-alice" must start with a letter or a digit`},
		{"too long", strings.Repeat("a", maxNameLen+1), 1, "line is 33 bytes long; a user name is at most 32"},
		{"very long line", strings.Repeat("a b ", MaxLineLen), 1, "line is 65535 bytes long; a user name is at most 32"},
		{"listed twice", lines("alice", "bob", "ALICE"), 3, `duplicate name: "ALICE" is already listed on line 1 (names are case-insensitive)`},
		{"control character", "al\x00ice", 1, `name "al\x00ice" contains '\x00'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOps([]byte(tt.data))
			if o != nil {
				t.Errorf("ParseOps returned Ops %q with error %v", o.Names(), err)
			}
			errs := lineErrors(t, err)
			if len(errs) != 1 || errs[0].Line != tt.wantLine {
				t.Fatalf("got line errors %v, want one on line %d", err, tt.wantLine)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseOpsReportsEveryBadLine(t *testing.T) {
	_, err := ParseOps([]byte(lines("alice", "a b", "bob", "b@c", "Alice")))
	var got []int
	for _, le := range lineErrors(t, err) {
		got = append(got, le.Line)
	}
	if want := []int{2, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("errors on lines %v, want %v: %v", got, want, err)
	}
}

func TestLoadOps(t *testing.T) {
	dir := t.TempDir()
	o, err := LoadOps(filepath.Join(dir, "missing"))
	if err != nil || o.Len() != 0 {
		t.Errorf("LoadOps(missing) = %v, %v; want no operators and no error", o, err)
	}
	bad := filepath.Join(dir, "ops")
	writeFile(t, bad, "alice\nbad name\n", 0o600)
	if _, err := LoadOps(bad); err == nil || err.Error() != bad+`:2: 2 words on one line ("bad name"): list one user name per line` {
		t.Errorf("LoadOps(bad) error = %v", err)
	}
}

func FuzzParseOps(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte(lines("# ops", "alice", "  Bob\r", "", "carol")))
	f.Add([]byte("alice\nALICE\n"))
	f.Add([]byte("a b\n@x\n" + strings.Repeat("z", 40)))
	f.Add([]byte("\xff\x00\t#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseOps(data)
		if err != nil {
			if o != nil {
				t.Fatal("ParseOps returned both Ops and an error")
			}
			lineErrors(t, err)
			return
		}
		var out bytes.Buffer
		for _, name := range o.Names() {
			if CheckName(name) != nil || !o.Has(name) {
				t.Fatalf("accepted name %q is invalid or not found", name)
			}
			out.WriteString(name + "\n")
		}
		again, err := ParseOps(out.Bytes())
		if err != nil || !slices.Equal(again.Names(), o.Names()) {
			t.Fatalf("re-parsing %q: %v, %v", out.String(), again, err)
		}
	})
}

func TestOpsEdits(t *testing.T) {
	const broken = "alice\nbad name\n"
	tests := []struct {
		name     string
		existing string // "" means no file
		edit     func(path string) error
		want     string // the file afterwards; "" means no file
		wantErr  string
		wantIs   error
	}{
		{"add creates the file", "", func(p string) error { return AddOp(p, "alice") }, newOpsHeader + "alice\n", "", nil},
		{"add appends", "# mine\r\nbob", func(p string) error { return AddOp(p, "alice") }, "# mine\r\nbob\nalice\n", "", nil},
		{"add listed", "Alice\n", func(p string) error { return AddOp(p, "alice") }, "Alice\n", `duplicate name: "alice" is already an operator (line 1)`, ErrDuplicateName},
		{"add invalid name", "", func(p string) error { return AddOp(p, "a b") }, "", `names may not contain spaces: "a b"`, nil},
		{"add to a broken file", broken, func(p string) error { return AddOp(p, "carol") }, broken, `refusing to edit: the file has errors`, ErrInvalidFile},
		{"remove keeps the rest", "# ops\r\nalice\r\n  BOB \r\ncarol", func(p string) error { return RemoveOp(p, "bob") }, "# ops\r\nalice\r\ncarol", "", nil},
		{"remove the last", "alice", func(p string) error { return RemoveOp(p, "alice") }, "", "", nil},
		{"remove unlisted", "alice\n", func(p string) error { return RemoveOp(p, "bob") }, "alice\n", `no such user: "bob" is not an operator`, ErrNoSuchUser},
		{"remove without a file", "", func(p string) error { return RemoveOp(p, "bob") }, "", `"bob" is not an operator (there is no operators file)`, ErrNoSuchUser},
		{"remove from a broken file", broken, func(p string) error { return RemoveOp(p, "alice") }, broken, ":2: 2 words on one line", ErrInvalidFile},
		{"rename", "alice\r\nbob\n", renameOp("Alice", "carol", true), "carol\r\nbob\n", "", nil},
		{"rename onto a listed name", "alice\nbob\n", renameOp("alice", "BOB", true), "bob\n", "", nil},
		{"rename unlisted", "alice\n", renameOp("bob", "carol", false), "alice\n", "", nil},
		{"rename without a file", "", renameOp("bob", "carol", false), "", "", nil},
		{"rename in a broken file", broken, renameOp("alice", "carol", false), broken, "refusing to edit", ErrInvalidFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ops")
			if tt.existing != "" {
				writeFile(t, path, tt.existing, 0o640)
			}
			err := tt.edit(path)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			data, err := os.ReadFile(path)
			if got := string(data); got != tt.want || (err != nil) != (tt.want == "" && tt.existing == "") {
				t.Errorf("file is %q (%v), want %q", got, err, tt.want)
			}
			assertNoTempFiles(t, filepath.Dir(path))
		})
	}
}

// renameOp returns an edit that renames old to newName and checks what
// RenameOp reports.
func renameOp(old, newName string, want bool) func(string) error {
	return func(path string) error {
		renamed, err := RenameOp(path, old, newName)
		if err == nil && renamed != want {
			return errors.New("RenameOp reported the wrong result")
		}
		return err
	}
}

func TestOpStore(t *testing.T) {
	log, records := testLogger()
	path := filepath.Join(t.TempDir(), "ops")
	st := NewOpStore(path, log)
	if err := st.Reload(); err != nil || st.Ops().Len() != 0 || st.Path() != path {
		t.Fatalf("a missing file: Reload = %v, %d operators; want nil, 0", err, st.Ops().Len())
	}
	changes, _ := startRun(t, st)

	if err := AddOp(path, "alice"); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	if !st.IsOp("alice") || !st.IsOp("ALICE") || st.IsOp("bob") {
		t.Fatalf("after AddOp: %q", st.Ops().Names())
	}
	waitForLog(t, records, slog.LevelInfo, "keys: reloaded operators file", "operators", "1")

	// A broken file keeps the operators and says why.
	good := st.Ops()
	replace(t, path, "alice\nbob carol\n")
	waitForLog(t, records, slog.LevelWarn, "keys: invalid line; keeping previous operators", "line", "2")
	if st.Ops() != good {
		t.Error("a broken file replaced the operators")
	}

	// A missing file means no operators.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	if st.IsOp("alice") || st.Ops().Len() != 0 {
		t.Errorf("after removing the file: %q, want no operators", st.Ops().Names())
	}
}
