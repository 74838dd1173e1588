package keys

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func perm(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestAdd(t *testing.T) {
	alice := line(ed25519Key(t), "alice")
	tests := []struct {
		name     string
		existing string // "" and exists false: no file
		exists   bool
		perm     fs.FileMode
		wantPerm fs.FileMode
		// want is the content before the new line.
		want     string
		wantLine int
	}{
		{"new file", "", false, 0, 0o600, newFileHeader, 2},
		{"empty file", "", true, 0o644, 0o644, newFileHeader, 2},
		{
			"keeps comments and line endings",
			"# team\r\n" + alice + "\r\n\n  # end\n", true, 0o640, 0o640,
			"# team\r\n" + alice + "\r\n\n  # end\n", 5,
		},
		{"no final newline", "# only\n" + alice, true, 0o600, 0o600, "# only\n" + alice + "\n", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			if tt.exists {
				writeFile(t, path, tt.existing, tt.perm)
			}
			key := ed25519Key(t)
			e, err := Add(path, Entry{Name: "bob", Key: key})
			if err != nil {
				t.Fatal(err)
			}
			assertEntries(t, []Entry{e}, []Entry{{Name: "bob", Key: key, Line: tt.wantLine}})
			if got, want := readFile(t, path), tt.want+line(key, "bob")+"\n"; got != want {
				t.Errorf("file is\n%q\nwant\n%q", got, want)
			}
			if got := perm(t, path); got != tt.wantPerm {
				t.Errorf("mode %v, want %v", got, tt.wantPerm)
			}
			s, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if name, ok := s.Lookup(key); !ok || name != "bob" {
				t.Errorf("Lookup(new key) = %q, %v", name, ok)
			}
			assertNoTempFiles(t, filepath.Dir(path))
		})
	}
}

// assertNoTempFiles checks that dir holds no temporary file and no lock
// file: nothing but what the edits meant to write.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".") || strings.HasSuffix(ent.Name(), ".lock") {
			t.Errorf("%s left behind", ent.Name())
		}
	}
}

func TestAddCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "sshchat")
	path := filepath.Join(dir, "allowed_keys")
	if _, err := Add(path, Entry{Name: "alice", Key: ed25519Key(t)}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if got := perm(t, d); got != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, got)
		}
	}
	if got := perm(t, path); got != 0o600 {
		t.Errorf("new file has mode %v, want 0600", got)
	}
}

func TestAddRefuses(t *testing.T) {
	aliceKey := ed25519Key(t)
	valid := lines("# team", line(aliceKey, "alice"))
	tests := []struct {
		name     string
		existing string
		entry    Entry
		wantIs   error
		want     string
	}{
		{"invalid name", valid, Entry{Name: "bad name", Key: ed25519Key(t)}, nil, `allowed_keys: names may not contain spaces: "bad name"`},
		{"taken name in other case", valid, Entry{Name: "ALICE", Key: ed25519Key(t)}, ErrDuplicateName, `duplicate name: "ALICE" is taken by "alice" on line 2 (names are case-insensitive); to add a key for that user, spell it "alice"`},
		{"key of another user", valid, Entry{Name: "bob", Key: aliceKey}, ErrDuplicateKey, `allowed_keys: duplicate key: key already belongs to "alice" on line 2`},
		{"key of the same user", valid, Entry{Name: "alice", Label: "again", Key: aliceKey}, ErrDuplicateKey, `allowed_keys: duplicate key: same key already listed for "alice" on line 2`},
		{"small rsa key", valid, Entry{Name: "bob", Key: rsa1024Key(t)}, nil, "at least 2048"},
		{"certificate", valid, Entry{Name: "bob", Key: certKey(t)}, nil, "certificates are not supported"},
		{"control character in label", valid, Entry{Name: "bob", Label: "lap\x1b[2Jtop", Key: ed25519Key(t)}, nil, `label "lap\x1b[2Jtop" contains the control or format character U+001B`},
		{
			"invalid file", lines("ssh-foo AAAA x", line(aliceKey, "alice")), Entry{Name: "bob", Key: ed25519Key(t)}, ErrInvalidFile,
			"allowed_keys: refusing to edit: the file has errors, so a running server does not load it either; fix or delete these lines with a text editor, then run the command again:\n" +
				"PATH:1: unknown key type \"ssh-foo\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			writeFile(t, path, tt.existing, 0o600)
			_, err := Add(path, tt.entry)
			if want := strings.ReplaceAll(tt.want, "PATH", path); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Add error = %v, want it to contain %q", err, want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if got := readFile(t, path); got != tt.existing {
				t.Errorf("file changed to\n%s", got)
			}
		})
	}
}

// A user may have several keys, each with its own label; the name must be
// spelled as on the user's other lines.
func TestAddFurtherKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	laptop, desktop, bob := ed25519Key(t), ecdsaKey(t, elliptic.P256()), ed25519Key(t)
	steps := []Entry{
		{Name: "alice", Label: "laptop", Key: laptop},
		{Name: "bob", Key: bob},
		{Name: "alice", Label: "alice@desktop  home", Key: desktop},
	}
	for i, e := range steps {
		got, err := Add(path, e)
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		e.Line = i + 2 // after the header
		assertEntries(t, []Entry{got}, []Entry{e})
	}
	want := newFileHeader + lines(line(laptop, "alice laptop"), line(bob, "bob"), line(desktop, "alice alice@desktop  home"))
	if got := readFile(t, path); got != want {
		t.Errorf("file is\n%s\nwant\n%s", got, want)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	assertEntries(t, s.Entries(), []Entry{
		{Name: "alice", Label: "laptop", Key: laptop, Line: 2},
		{Name: "bob", Key: bob, Line: 3},
		{Name: "alice", Label: "alice@desktop  home", Key: desktop, Line: 4},
	})
}

func TestAddFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	link := filepath.Join(dir, "allowed_keys")
	writeFile(t, real, "", 0o600)
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	key := ed25519Key(t)
	if _, err := Add(link, Entry{Name: "alice", Key: key}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symlink (%v)", link, err)
	}
	if got, want := readFile(t, real), newFileHeader+line(key, "alice")+"\n"; got != want {
		t.Errorf("target is\n%q\nwant\n%q", got, want)
	}
}

func TestAddKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file away")
	}
	path := filepath.Join(t.TempDir(), "allowed_keys")
	writeFile(t, path, "", 0o600)
	const uid, gid = 4242, 4343
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(path, Entry{Name: "alice", Key: ed25519Key(t)}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

func TestAddConcurrently(t *testing.T) {
	const n = 20
	path := filepath.Join(t.TempDir(), "allowed_keys")
	keys := make([]ssh.PublicKey, n)
	for i := range keys {
		keys[i] = ed25519Key(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, key := range keys {
		wg.Go(func() {
			if _, err := Add(path, Entry{Name: fmt.Sprintf("user%d", i), Key: key}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != n {
		t.Errorf("file has %d keys, want %d", s.Len(), n)
	}
	for i, key := range keys {
		if name, ok := s.Lookup(key); !ok || name != fmt.Sprintf("user%d", i) {
			t.Errorf("Lookup(key %d) = %q, %v", i, name, ok)
		}
	}
	assertNoTempFiles(t, filepath.Dir(path))
}

func TestRemove(t *testing.T) {
	a1, a2, b := line(ed25519Key(t), "alice laptop"), line(ed25519Key(t), "alice"), line(ed25519Key(t), "bob")
	tests := []struct {
		name     string
		existing string
		user     string
		want     string
		wantErr  error
		removed  []int // lines removed
	}{
		{
			"every key of the user, any case",
			"# team\r\n" + a1 + "\r\n" + b + "\n\n" + a2 + "\n# end",
			"ALICE",
			"# team\r\n" + b + "\n\n# end",
			nil, []int{2, 5},
		},
		{"last user", a1 + "\n", "alice", "", nil, []int{1}},
		{"invalid file", lines("garbage", b, a1), "bob", lines("garbage", b, a1), ErrInvalidFile, nil},
		{"no such user", lines(a1, b), "carol", lines(a1, b), ErrNoSuchUser, nil},
		{"commented out", lines("# "+b, a1), "bob", lines("# "+b, a1), ErrNoSuchUser, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			writeFile(t, path, tt.existing, 0o640)
			removed, err := Remove(path, tt.user)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Remove error = %v, want %v", err, tt.wantErr)
			}
			var got []int
			for _, e := range removed {
				if !strings.EqualFold(e.Name, tt.user) {
					t.Errorf("removed an entry of %q", e.Name)
				}
				got = append(got, e.Line)
			}
			if !slices.Equal(got, tt.removed) {
				t.Errorf("removed lines %v, want %v", got, tt.removed)
			}
			if got := readFile(t, path); got != tt.want {
				t.Errorf("file is\n%q\nwant\n%q", got, tt.want)
			}
			if got := perm(t, path); got != 0o640 {
				t.Errorf("mode %v, want 0640", got)
			}
		})
	}
}

func TestRemoveFingerprint(t *testing.T) {
	laptop, desktop := ed25519Key(t), ed25519Key(t)
	existing := lines("# team", line(laptop, "alice laptop"), line(desktop, "alice desktop"))
	tests := []struct {
		name        string
		existing    string
		fingerprint string
		want        string
		wantErr     error
		wantLine    int
	}{
		{"one of two keys", existing, ssh.FingerprintSHA256(desktop), lines("# team", line(laptop, "alice laptop")), nil, 3},
		{"unknown fingerprint", existing, ssh.FingerprintSHA256(ed25519Key(t)), existing, ErrNoSuchKey, 0},
		{"not a fingerprint", existing, "SHA256:nope", existing, ErrNoSuchKey, 0},
		{"invalid file", "x\n" + existing, ssh.FingerprintSHA256(desktop), "x\n" + existing, ErrInvalidFile, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			writeFile(t, path, tt.existing, 0o600)
			e, err := RemoveFingerprint(path, tt.fingerprint)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RemoveFingerprint error = %v, want %v", err, tt.wantErr)
			}
			if e.Line != tt.wantLine || (tt.wantErr == nil && (e.Name != "alice" || e.Label != "desktop")) {
				t.Errorf("removed %+v, want alice's desktop key from line %d", e, tt.wantLine)
			}
			if got := readFile(t, path); got != tt.want {
				t.Errorf("file is\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestRename(t *testing.T) {
	k1, k2, k3 := ed25519Key(t), ed25519Key(t), ed25519Key(t)
	existing := "# team\r\n" + line(k1, "alice laptop") + "\r\n" + line(k2, "bob") + "\n" + line(k3, "alice  big desktop")
	tests := []struct {
		name     string
		existing string
		old, new string
		want     string // the file afterwards
		wantErr  string
		wantIs   error
		renamed  []int
	}{
		{
			"every line, labels and line endings kept", existing, "ALICE", "carol",
			"# team\r\n" + line(k1, "carol laptop") + "\r\n" + line(k2, "bob") + "\n" + line(k3, "carol big desktop"),
			"", nil, []int{2, 4},
		},
		{
			"case only", existing, "bob", "Bob",
			"# team\r\n" + line(k1, "alice laptop") + "\r\n" + line(k2, "Bob") + "\n" + line(k3, "alice  big desktop"),
			"", nil, []int{3},
		},
		{"name of another user", existing, "bob", "Alice", existing, `duplicate name: "Alice" is taken by "alice" on line 2`, ErrDuplicateName, nil},
		{"no such user", existing, "carol", "dave", existing, `no such user: "carol"`, ErrNoSuchUser, nil},
		{"invalid new name", existing, "bob", "bob@home", existing, `name "bob@home" contains '@'`, nil, nil},
		{"invalid file", "ssh-foo AAAA bob\n" + existing, "bob", "robert", "ssh-foo AAAA bob\n" + existing, `:1: unknown key type "ssh-foo"`, ErrInvalidFile, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			writeFile(t, path, tt.existing, 0o600)
			renamed, err := Rename(path, tt.old, tt.new)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Rename error = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Rename error = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			var got []int
			for _, e := range renamed {
				if e.Name != tt.new {
					t.Errorf("renamed entry has name %q, want %q", e.Name, tt.new)
				}
				got = append(got, e.Line)
			}
			if !slices.Equal(got, tt.renamed) {
				t.Errorf("renamed lines %v, want %v", got, tt.renamed)
			}
			if got := readFile(t, path); got != tt.want {
				t.Errorf("file is\n%q\nwant\n%q", got, tt.want)
			}
			if tt.wantErr == "" {
				if _, err := Load(path); err != nil {
					t.Errorf("renamed file does not load: %v", err)
				}
			}
		})
	}
}

func TestRemoveMissingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Remove(filepath.Join(dir, "allowed_keys"), "alice")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove error = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove created %s", dir)
	}
}

func TestSeed(t *testing.T) {
	dir := t.TempDir()
	ed, p256 := ed25519Key(t), ecdsaKey(t, elliptic.P256())
	pub := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content, 0o644)
		return p
	}
	files := []string{
		pub("id_ed25519.pub", line(ed, "me@laptop")+"\n"),
		pub("id_dsa.pub", dssLine("me@laptop")+"\n"),
		filepath.Join(dir, "id_missing.pub"),
		pub("copy.pub", line(ed, "copy")+"\n"),
		pub("id_ecdsa.pub", line(p256, "me@desktop")+"\n"),
	}
	path := filepath.Join(dir, "keys", "allowed_keys")

	entries, err := Seed(path, "me", files)
	for _, want := range []string{"skipping " + files[1], "skipping " + files[2], "skipping " + files[3]} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Seed error = %v, want it to mention %q", err, want)
		}
	}
	assertEntries(t, entries, []Entry{{Name: "me", Label: "me@laptop", Key: ed, Line: 2}, {Name: "me", Label: "me@desktop", Key: p256, Line: 3}})
	want := newFileHeader + line(ed, "me me@laptop") + "\n" + line(p256, "me me@desktop") + "\n"
	if got := readFile(t, path); got != want {
		t.Errorf("file is\n%q\nwant\n%q", got, want)
	}
	if got := perm(t, path); got != 0o600 {
		t.Errorf("mode %v, want 0600", got)
	}

	// Once the file exists, Seed leaves it alone.
	entries, err = Seed(path, "other", []string{pub("new.pub", line(ed25519Key(t), "x"))})
	if entries != nil || err != nil {
		t.Errorf("second Seed = %v, %v; want nil, nil", entries, err)
	}
	if got := readFile(t, path); got != want {
		t.Errorf("second Seed changed the file to\n%s", got)
	}
}

func TestSeedWritesNothing(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		user    string
		files   []string
		wantErr string
	}{
		{"no files", "me", nil, ""},
		{"no usable key", "me", []string{filepath.Join(dir, "missing.pub")}, "skipping"},
		{"invalid name", "John Smith", []string{filepath.Join(dir, "missing.pub")}, "may not contain spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name, "allowed_keys")
			entries, err := Seed(path, tt.user, tt.files)
			if entries != nil {
				t.Errorf("Seed returned %v", entries)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Seed error = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Seed error = %v, want it to contain %q", err, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Seed created %s", filepath.Dir(path))
			}
		})
	}
}
