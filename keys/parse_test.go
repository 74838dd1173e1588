package keys

import (
	"bytes"
	"crypto/elliptic"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParse(t *testing.T) {
	ed, ed2 := ed25519Key(t), ed25519Key(t)
	p256, p384, p521 := ecdsaKey(t, elliptic.P256()), ecdsaKey(t, elliptic.P384()), ecdsaKey(t, elliptic.P521())
	rsa := rsa2048Key(t)
	skEd, skEC := skKey(t, ssh.KeyAlgoSKED25519), skKey(t, ssh.KeyAlgoSKECDSA256)
	tabbed := strings.Replace(line(ed, "alice"), " ", "\t", 1)

	tests := []struct {
		name string
		data string
		want []Entry
	}{
		{"empty", "", nil},
		{"only comments", lines("# allowed keys", "", "  # indented"), nil},
		{
			"comments and blank lines",
			lines("# team", "", line(ed, "alice"), "   ", "\t# laptop", line(p256, "bob")),
			[]Entry{{Name: "alice", Key: ed, Line: 3}, {Name: "bob", Key: p256, Line: 6}},
		},
		{
			"CRLF line endings",
			"# team\r\n" + line(ed, "alice") + "\r\n\r\n" + line(p256, "bob") + "\r\n",
			[]Entry{{Name: "alice", Key: ed, Line: 2}, {Name: "bob", Key: p256, Line: 4}},
		},
		{"no final newline", line(ed, "alice"), []Entry{{Name: "alice", Key: ed, Line: 1}}},
		{"tabs and surrounding blanks", "  " + tabbed + " \t\n", []Entry{{Name: "alice", Key: ed, Line: 1}}},
		{
			"several keys for one user",
			lines(line(ed, "alice"), line(rsa, "bob"), line(ed2, "alice")),
			[]Entry{{Name: "alice", Key: ed, Line: 1}, {Name: "bob", Key: rsa, Line: 2}, {Name: "alice", Key: ed2, Line: 3}},
		},
		{
			"every accepted key type",
			lines(line(ed, "a"), line(p256, "b"), line(p384, "c"), line(p521, "d"), line(rsa, "e"), line(skEd, "f"), line(skEC, "g")),
			[]Entry{{Name: "a", Key: ed, Line: 1}, {Name: "b", Key: p256, Line: 2}, {Name: "c", Key: p384, Line: 3}, {Name: "d", Key: p521, Line: 4}, {Name: "e", Key: rsa, Line: 5}, {Name: "f", Key: skEd, Line: 6}, {Name: "g", Key: skEC, Line: 7}},
		},
		{
			"name characters",
			lines(line(ed, "Alice_B.c-9"), line(ed2, "7up")),
			[]Entry{{Name: "Alice_B.c-9", Key: ed, Line: 1}, {Name: "7up", Key: ed2, Line: 2}},
		},
		{
			"labels",
			lines(line(ed, "alice laptop"), line(ed2, "alice\talice@desktop  at home "), line(p256, "bob zoë's 💻")),
			[]Entry{
				{Name: "alice", Label: "laptop", Key: ed, Line: 1},
				{Name: "alice", Label: "alice@desktop  at home", Key: ed2, Line: 2},
				{Name: "bob", Label: "zoë's 💻", Key: p256, Line: 3},
			},
		},
		{
			"longest line and name",
			line(rsa, strings.Repeat("n", maxNameLen)) + strings.Repeat(" ", MaxLineLen-len(line(rsa, strings.Repeat("n", maxNameLen)))),
			[]Entry{{Name: strings.Repeat("n", maxNameLen), Key: rsa, Line: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.data))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			assertEntries(t, s.Entries(), tt.want)
			if s.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", s.Len(), len(tt.want))
			}
			for _, e := range tt.want {
				if name, ok := s.Lookup(e.Key); !ok || name != e.Name {
					t.Errorf("Lookup(key of line %d) = %q, %v; want %q, true", e.Line, name, ok, e.Name)
				}
			}
			if name, ok := s.Lookup(ed25519Key(t)); ok {
				t.Errorf("Lookup(unknown key) = %q, true", name)
			}
		})
	}
}

func assertEntries(t *testing.T, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Label != w.Label || g.Line != w.Line || !bytes.Equal(g.Key.Marshal(), w.Key.Marshal()) {
			t.Errorf("entry %d = {%q, %q, %s, line %d}, want {%q, %q, %s, line %d}",
				i, g.Name, g.Label, ssh.FingerprintSHA256(g.Key), g.Line, w.Name, w.Label, ssh.FingerprintSHA256(w.Key), w.Line)
		}
	}
}

func TestParseErrors(t *testing.T) {
	ed, ed2, ed3 := ed25519Key(t), ed25519Key(t), ed25519Key(t)
	edData := strings.Fields(line(ed, ""))[1]
	alice := line(ed, "alice")
	longName := strings.Repeat("a", maxNameLen+1)

	tests := []struct {
		name     string
		data     string
		wantLine int
		want     string
	}{
		{"bad base64", "ssh-ed25519 AAAA!!!notbase64 alice", 1, "invalid base64 key data"},
		{"base64 cut short", "ssh-ed25519 " + edData[:21] + " alice", 1, "invalid base64 key data"},
		{"truncated key data", "ssh-ed25519 " + edData[:20] + " alice", 1, "invalid ssh-ed25519 key data"},
		{"type without key", "ssh-ed25519", 1, `missing key data after "ssh-ed25519"`},
		{"unknown type", "ssh-foo " + edData + " alice", 1, `unknown key type "ssh-foo"`},
		{"garbage", "hello", 1, `unknown key type "hello"`},
		{"type mismatch", "ssh-rsa " + edData + " alice", 1, `key type "ssh-rsa" does not match its key data, which is ssh-ed25519`},
		{"dss", dssLine("alice"), 1, "ssh-dss (DSA) keys are not supported"},
		{"small rsa", line(rsa1024Key(t), "alice"), 1, "ssh-rsa key has 1024 bits; at least 2048 are required"},
		{"certificate", line(certKey(t), "alice"), 1, "certificates are not supported (ssh-ed25519-cert-v01@openssh.com)"},
		{"from option", `from="10.0.0.0/8" ` + alice, 1, `options are not supported: from="10.0.0.0/8"`},
		{"several options", `no-pty,command="echo hi there" ` + alice, 1, `options are not supported: no-pty,command="echo hi there"`},
		{"option before bad key", "restrict ssh-ed25519 AAAA!!! alice", 1, "options are not supported: restrict"},
		{"missing name", line(ed, ""), 1, "missing name: the key's comment is the user name"},
		{
			"pasted from a .pub file", line(ed, "alice@laptop"), 1,
			`name "alice@laptop" contains '@'; only letters, digits, '_', '.' and '-' are allowed; the comment's first word is the user name, so write this line instead: ` + line(ed, "alice alice@laptop"),
		},
		{
			"pasted from a .pub file, with more", line(ed, "alice@laptop  home"), 1,
			"so write this line instead: " + line(ed, "alice alice@laptop  home"),
		},
		{"bad name character", line(ed, "alice/laptop"), 1, `name "alice/laptop" contains '/'`},
		{"control character in label", line(ed, "alice lap\x1btop"), 1, `label "lap\x1btop" contains the control or format character U+001B`},
		{"bidi override in label", line(ed, "alice \u202egoogle"), 1, "contains the control or format character U+202E"},
		{"invalid UTF-8 in label", line(ed, "alice \xff"), 1, `label "\xff" is not valid UTF-8`},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", 1, "this is a private key"},
		{"non-ASCII name", line(ed, "ålice"), 1, `name "ålice" must start with a letter or a digit`},
		{"bad first character", line(ed, "_alice"), 1, `name "_alice" must start with a letter or a digit`},
		{"name too long", line(ed, longName), 1, "name is 33 bytes long; at most 32 are allowed"},
		{"same key, two names", lines(alice, "# x", line(ed, "bob")), 3, `duplicate key: key already belongs to "alice" on line 1`},
		{"same key twice", lines(alice, alice), 2, `duplicate key: same key already listed for "alice" on line 1`},
		{"names differ in case", lines(alice, line(ed2, "bob"), line(ed3, "ALICE")), 3, `duplicate name: "ALICE" clashes with "alice" on line 1 (names are case-insensitive)`},
		{"over-long comment line", "# " + strings.Repeat("x", MaxLineLen), 1, "line is 16386 bytes long; at most 16384 are allowed"},
		{"over-long key line", lines(alice, line(ed2, "bob")+strings.Repeat(" ", MaxLineLen)), 2, "at most 16384 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.data))
			if s != nil {
				t.Errorf("Parse returned a Set with %d entries and error %v", s.Len(), err)
			}
			errs := lineErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d line errors, want 1: %v", len(errs), err)
			}
			if errs[0].Line != tt.wantLine {
				t.Errorf("error on line %d, want line %d: %v", errs[0].Line, tt.wantLine, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// lineErrors returns the *LineErrors that err joins, failing if it joins
// anything else.
func lineErrors(t testing.TB, err error) []*LineError {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not a joined error", err, err)
	}
	var les []*LineError
	for _, e := range joined.Unwrap() {
		le, ok := e.(*LineError)
		if !ok {
			t.Fatalf("joined error %v is a %T, not a *LineError", e, e)
		}
		les = append(les, le)
	}
	return les
}

// The fixed line is offered only where the user name is plain to see.
func TestParseOffersNoFixWithoutUser(t *testing.T) {
	ed := ed25519Key(t)
	for _, comment := range []string{"@laptop", "_x@laptop", "alice@laptop\x00"} {
		_, err := Parse([]byte(line(ed, comment)))
		if err == nil || strings.Contains(err.Error(), "instead") {
			t.Errorf("Parse(comment %q) error = %v, want one with no fixed line", comment, err)
		}
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	ed := ed25519Key(t)
	data := lines(
		line(ed, "alice"),
		"ssh-foo AAAA x",
		line(ed25519Key(t), "bob"),
		line(ed, "carol"),
		line(ed25519Key(t), "bad/name"),
	)
	_, err := Parse([]byte(data))
	errs := lineErrors(t, err)
	var got []int
	for _, le := range errs {
		got = append(got, le.Line)
	}
	if want := []int{2, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("errors on lines %v, want %v: %v", got, want, err)
	}
	if want := "line 4: duplicate key"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("errors.Is(%v, ErrDuplicateKey) = false", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	writeFile(t, good, lines(line(ed25519Key(t), "alice")), 0o600)
	writeFile(t, bad, lines("# header", "ssh-foo AAAA alice"), 0o600)

	s, err := Load(good)
	if err != nil || s.Len() != 1 {
		t.Errorf("Load(good) = %v entries, %v; want 1, nil", s, err)
	}

	s, err = Load(bad)
	if s != nil {
		t.Errorf("Load(bad) returned a Set")
	}
	if want := bad + `:2: unknown key type "ssh-foo"`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %s", err, want)
	}

	s, err = Load(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want fs.ErrNotExist", err)
	}
	if s == nil || s.Len() != 0 {
		t.Errorf("Load(missing) = %v, want an empty Set", s)
	}
}

func writeFile(t testing.TB, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // beat the umask
		t.Fatal(err)
	}
}

func TestParseKey(t *testing.T) {
	ed := ed25519Key(t)
	tests := []struct {
		name        string
		data        string
		wantComment string
		wantErr     string
	}{
		{"public key file", line(ed, "alice@laptop home") + "\n", "alice@laptop home", ""},
		{"no comment", line(ed, ""), "", ""},
		{"comments first", lines("# mine", "", line(ed, "x")), "x", ""},
		{"first key wins", lines(line(ed, "x"), "garbage"), "x", ""},
		{"empty", "", "", "no public key found"},
		{"only comments", lines("# nothing"), "", "no public key found"},
		{"dss", dssLine("alice"), "", "ssh-dss (DSA) keys are not supported"},
		{"options", "no-pty " + line(ed, "x"), "", "options are not supported"},
		{"OpenSSH private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", "", ErrPrivateKey.Error()},
		{"PEM RSA private key", "\n-----BEGIN RSA PRIVATE KEY-----\r\nMIIE\n", "", ErrPrivateKey.Error()},
		{"PKCS#8 private key", "-----BEGIN PRIVATE KEY-----\n", "", ErrPrivateKey.Error()},
		{"PuTTY private key", "PuTTY-User-Key-File-3: ssh-ed25519\n", "", ErrPrivateKey.Error()},
		{"PEM public key", "-----BEGIN PUBLIC KEY-----\n", "", `unknown key type "-----BEGIN"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, comment, err := ParseKey([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey error = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(tt.name, "private") && !errors.Is(err, ErrPrivateKey) {
					t.Errorf("errors.Is(%v, ErrPrivateKey) = false", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key.Marshal(), ed.Marshal()) {
				t.Errorf("ParseKey returned %s, want %s", ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(ed))
			}
			if comment != tt.wantComment {
				t.Errorf("comment %q, want %q", comment, tt.wantComment)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"alice", ""},
		{"A", ""},
		{"9lives", ""},
		{"j.doe_2-x", ""},
		{strings.Repeat("z", 32), ""},
		{"", "missing name"},
		{strings.Repeat("z", 33), "at most 32"},
		{"two words", "may not contain spaces"},
		{"tab\there", "may not contain spaces"},
		{".hidden", "must start with a letter or a digit"},
		{"-flag", "must start with a letter or a digit"},
		{"a/b", `contains '/'`},
		{"me@host", `contains '@'`},
		{"zoë", `contains 'ë'`},
		{"nl\nx", `contains '\n'`},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("CheckName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckName(%q) = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func FuzzParse(f *testing.F) {
	golden, err := os.ReadFile("testdata/allowed_keys")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	for l := range bytes.Lines(golden) {
		f.Add(l)
		f.Add(append([]byte(`from="x" `), l...))
		f.Add(bytes.ReplaceAll(l, []byte(" "), []byte("\t")))
		f.Add(bytes.ToUpper(l))
		f.Add(append(bytes.TrimSuffix(l, []byte("\n")), " \tlaptop  at home \r\n"...))
		f.Add(bytes.Replace(l, []byte(" alice"), []byte(" alice@laptop"), 1))
	}
	f.Add([]byte(""))
	f.Add([]byte("# comment\r\n\r\n"))
	f.Add([]byte(dssLine("x")))
	f.Add([]byte("ssh-ed25519 AAAA!!! a"))
	f.Add([]byte(`command="a b" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 a`))

	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatal("Parse returned both a Set and an error")
			}
			lineErrors(t, err)
			return
		}
		var out strings.Builder
		for _, e := range s.Entries() {
			out.WriteString(formatEntry(e) + "\n")
			if name, ok := s.Lookup(e.Key); !ok || name != e.Name {
				t.Fatalf("Lookup(key of line %d) = %q, %v; want %q", e.Line, name, ok, e.Name)
			}
		}
		again, err := Parse([]byte(out.String()))
		if err != nil {
			t.Fatalf("re-parsing accepted entries: %v\n%s", err, out.String())
		}
		want := s.Entries()
		for i := range want {
			want[i].Line = i + 1
		}
		assertEntries(t, again.Entries(), want)
	})
}
