package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
)

// keysTestKey returns a fresh ed25519 key and its public key file content
// with the given comment.
func keysTestKey(t *testing.T, comment string) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, authorizedLine(key, comment) + "\n"
}

// authorizedLine formats key as an allowed keys line with the comment.
func authorizedLine(key ssh.PublicKey, comment string) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n") + " " + comment
}

// testEnv returns a getenv that knows only env, whose keys are variable
// names.
func testEnv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// runCLI runs "sshchat GROUP args..." through run, as main does.
func runCLI(env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errs strings.Builder
	code = run(args, strings.NewReader(stdin), &out, &errs, testEnv(env))
	return code, out.String(), errs.String()
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

func describe(name, label string, key ssh.PublicKey) string {
	return keys.Describe(keys.Entry{Name: name, Label: label, Key: key}) + "\n"
}

// cliStep is one command of a CLI scenario, run in order with the others.
type cliStep struct {
	env   map[string]string
	stdin string
	args  []string
	want  string // stdout
}

func runSteps(t *testing.T, steps []cliStep) {
	t.Helper()
	for _, s := range steps {
		code, stdout, stderr := runCLI(s.env, s.stdin, s.args...)
		if code != 0 || stdout != s.want || stderr != "" {
			t.Fatalf("sshchat %q = %d\nstdout %q\nstderr %q\nwant 0, stdout %q", s.args, code, stdout, stderr, s.want)
		}
	}
}

func TestKeysAddListRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "allowed_keys")
	env := map[string]string{"SSHCHAT_KEYS": path}
	alice, alicePub := keysTestKey(t, "alice@laptop")
	desktop, desktopPub := keysTestKey(t, "")
	bob, bobPub := keysTestKey(t, "bob@work  big box")
	carol, carolPub := keysTestKey(t, "me@laptop")
	pubFile := filepath.Join(dir, "id_ed25519.pub")
	writeTestFile(t, pubFile, alicePub)

	runSteps(t, []cliStep{
		{nil, "", []string{"keys", "add", "-keys", path, "alice", pubFile}, describe("alice", "alice@laptop", alice)},
		{env, bobPub, []string{"keys", "add", "bob", "-"}, describe("bob", "bob@work  big box", bob)},
		{env, carolPub, []string{"keys", "add", "carol"}, describe("carol", "me@laptop", carol)},
		// A further key for alice, flags after the arguments.
		{nil, desktopPub, []string{"keys", "add", "alice", "-", "-keys", path}, describe("alice", "", desktop)},
		{env, "", []string{"keys", "list"},
			describe("alice", "alice@laptop", alice) + describe("bob", "bob@work  big box", bob) +
				describe("carol", "me@laptop", carol) + describe("alice", "", desktop)},
		{env, "", []string{"keys", "remove", ssh.FingerprintSHA256(alice)}, "removed " + describe("alice", "alice@laptop", alice)},
		{nil, "", []string{"keys", "-keys", path, "remove", "ALICE"}, "removed 1 key(s) for alice\n"},
		{map[string]string{"SSHCHAT_KEYS": "elsewhere"}, "", []string{"keys", "list", "-keys=" + path},
			describe("bob", "bob@work  big box", bob) + describe("carol", "me@laptop", carol)},
	})
	if !regexp.MustCompile(`^256 SHA256:[A-Za-z0-9+/]{43} bob bob@work  big box \(ED25519\)\n$`).MatchString(describe("bob", "bob@work  big box", bob)) {
		t.Errorf("list line %q is not in ssh-keygen -l format", describe("bob", "bob@work  big box", bob))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("allowed keys file: %v, %v; want mode 0600", fi, err)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
}

func TestKeysErrors(t *testing.T) {
	alice, alicePub := keysTestKey(t, "alice@laptop")
	_, newPub := keysTestKey(t, "me@laptop")
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		want     string // in stderr; "PATH" stands for the allowed keys file
	}{
		{"no subcommand", "", nil, 2, "usage: sshchat keys SUBCOMMAND"},
		{"help", "", []string{"-h"}, 0, "usage: sshchat keys SUBCOMMAND"},
		{"unknown subcommand", "", []string{"frob"}, 2, `sshchat keys: unknown subcommand "frob"`},
		{"add -h", "", []string{"add", "-h"}, 0, "usage: sshchat keys add [flags] NAME [PUBKEY_FILE|-]"},
		{"remove -h", "", []string{"remove", "-h"}, 0, "-keys FILE\n"},
		{"rename -h after the arguments", "", []string{"rename", "a", "b", "-h"}, 0, "usage: sshchat keys rename [flags] OLD NEW"},
		{"add without name", "", []string{"add"}, 2, "sshchat keys add: wrong number of arguments\nusage:"},
		{"list with argument", "", []string{"list", "x"}, 2, "sshchat keys list: wrong number of arguments"},
		{"rename with one argument", "", []string{"rename", "alice"}, 2, "sshchat keys rename: wrong number of arguments"},
		{"undefined flag", "", []string{"list", "-x"}, 2, "flag provided but not defined: -x"},
		{"undefined flag first", "", []string{"-x", "list"}, 2, "flag provided but not defined: -x\nusage: sshchat keys list [flags]"},
		{"only flags", "", []string{"-keys", "x"}, 2, "usage: sshchat keys SUBCOMMAND"},
		{"undefined flag after the arguments", newPub, []string{"add", "bob", "-", "-x"}, 2, "flag provided but not defined: -x"},
		{"flag without value", "", []string{"list", "-keys"}, 2, "flag needs an argument: -keys"},
		{"name spelled differently", newPub, []string{"add", "Alice"}, 1, `sshchat keys add: PATH: duplicate name: "Alice" is taken by "alice" on line 2 (names are case-insensitive); to add a key for that user, spell it "alice"`},
		{"known key", alicePub, []string{"add", "bob"}, 1, `sshchat keys add: PATH: duplicate key: key already belongs to "alice" on line 2`},
		{"known key, same user", alicePub, []string{"add", "alice"}, 1, `sshchat keys add: PATH: duplicate key: same key already listed for "alice" on line 2`},
		{"bad key", "ssh-ed25519 AAAA!!! x\n", []string{"add", "bob"}, 1, "sshchat keys add: stdin: invalid base64 key data"},
		{"empty input", "", []string{"add", "bob"}, 1, "sshchat keys add: stdin: no public key found"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", []string{"add", "bob"}, 1, "sshchat keys add: stdin: " + keys.ErrPrivateKey.Error()},
		{"invalid name", newPub, []string{"add", "bob@laptop"}, 1, `name "bob@laptop" contains '@'`},
		{"control character in the label", authorizedLine(alice, "x\x1b[31m") + "\n", []string{"add", "bob"}, 1, `label "x\x1b[31m" contains the control or format character U+001B`},
		{"missing key file", "", []string{"add", "bob", "/nonexistent/id.pub"}, 1, "open /nonexistent/id.pub: no such file or directory"},
		{"unknown user", "", []string{"remove", "carol"}, 1, `sshchat keys remove: PATH: no such user: "carol"`},
		{"unknown fingerprint", "", []string{"remove", "SHA256:x"}, 1, `sshchat keys remove: PATH: no such key: no key has the fingerprint "SHA256:x"`},
		{"rename unknown user", "", []string{"rename", "carol", "dave"}, 1, `sshchat keys rename: PATH: no such user: "carol"`},
		{"rename to an invalid name", "", []string{"rename", "alice", "a b"}, 1, `sshchat keys rename: names may not contain spaces: "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			if _, err := keys.Add(path, keys.Entry{Name: "alice", Key: alice}); err != nil {
				t.Fatal(err)
			}
			before := readTestFile(t, path)
			code, stdout, stderr := runCLI(map[string]string{"SSHCHAT_KEYS": path}, tt.stdin, append([]string{"keys"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if want := strings.ReplaceAll(tt.want, "PATH", path); !strings.Contains(stderr, want) {
				t.Errorf("stderr %q does not contain %q", stderr, want)
			}
			if code == 1 && strings.Count(stderr, "\n") != 1 {
				t.Errorf("error is not one line: %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if after := readTestFile(t, path); after != before {
				t.Errorf("allowed keys file changed:\n%s", after)
			}
		})
	}
}

// Every edit refuses a file with errors, names each bad line, says how to
// fix it, and changes nothing: not the allowed keys, not the operators.
func TestKeysRefuseBrokenFile(t *testing.T) {
	alice, _ := keysTestKey(t, "")
	bob, _ := keysTestKey(t, "")
	_, newPub := keysTestKey(t, "carol@laptop")
	broken := strings.Join([]string{
		"# team",
		authorizedLine(alice, "alice"),
		"ssh-foo AAAA x",
		authorizedLine(bob, "bob@desktop"), // pasted from bob's .pub
	}, "\n") + "\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"add", newPub, []string{"add", "carol"}},
		{"add a further key", newPub, []string{"add", "alice"}},
		{"remove", "", []string{"remove", "alice"}},
		{"remove a key", "", []string{"remove", ssh.FingerprintSHA256(alice)}},
		{"rename", "", []string{"rename", "alice", "carol"}},
		{"list", "", []string{"list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, ops := filepath.Join(dir, "allowed_keys"), filepath.Join(dir, "ops")
			writeTestFile(t, path, broken)
			writeTestFile(t, ops, "alice\n")
			code, stdout, stderr := runCLI(map[string]string{"SSHCHAT_KEYS": path, "SSHCHAT_OPS": ops}, tt.stdin, append([]string{"keys"}, tt.args...)...)
			prog := "sshchat keys " + tt.args[0] + ": "
			wants := []string{
				prog + path + `:3: unknown key type "ssh-foo"` + "\n",
				prog + path + `:4: name "bob@desktop" contains '@'; only letters, digits, '_', '.' and '-' are allowed; ` +
					"the comment's first word is the user name, so write this line instead: " + authorizedLine(bob, "bob bob@desktop") + "\n",
			}
			if tt.args[0] != "list" {
				wants = append(wants, "fix or delete these lines with a text editor, then run the command again:\n")
			}
			for _, want := range wants {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr\n%s\ndoes not contain\n%s", stderr, want)
				}
			}
			if code != 1 || stdout != "" {
				t.Errorf("exit code %d, stdout %q; want 1 and nothing", code, stdout)
			}
			if got := readTestFile(t, path); got != broken {
				t.Errorf("allowed keys file changed to\n%s", got)
			}
			if got := readTestFile(t, ops); got != "alice\n" {
				t.Errorf("operators file changed to %q", got)
			}
		})
	}
}

func TestKeysRename(t *testing.T) {
	laptop, _ := keysTestKey(t, "")
	desktop, _ := keysTestKey(t, "")
	bob, _ := keysTestKey(t, "")
	allowed := authorizedLine(laptop, "alice laptop") + "\n" + authorizedLine(bob, "bob") + "\n" + authorizedLine(desktop, "alice") + "\n"
	tests := []struct {
		name             string
		ops              string // "" means no operators file
		args             []string
		wantCode         int
		wantOut, wantErr string // "KEYS" and "OPS" stand for the files' paths
		wantKeys         string
		wantOps          string
	}{
		{
			"user and operator", "# ops\nbob\nALICE\n", []string{"rename", "alice", "carol"}, 0,
			"renamed alice to carol in KEYS\nrenamed alice to carol in OPS\n", "",
			authorizedLine(laptop, "carol laptop") + "\n" + authorizedLine(bob, "bob") + "\n" + authorizedLine(desktop, "carol") + "\n",
			"# ops\nbob\ncarol\n",
		},
		{
			"not an operator, no operators file", "", []string{"rename", "bob", "robert"}, 0,
			"renamed bob to robert in KEYS\n", "",
			strings.Replace(allowed, " bob\n", " robert\n", 1), "",
		},
		{
			"flags after the arguments", "bob\n", []string{"rename", "bob", "Bob", "-ops", "OPS", "-keys", "KEYS"}, 0,
			"renamed bob to Bob in KEYS\nrenamed bob to Bob in OPS\n", "",
			strings.Replace(allowed, " bob\n", " Bob\n", 1), "Bob\n",
		},
		{
			"taken name", "alice\n", []string{"rename", "alice", "BOB"}, 1,
			"", `sshchat keys rename: KEYS: duplicate name: "BOB" is taken by "bob" on line 2`,
			allowed, "alice\n",
		},
		{
			"broken operators file", "alice\nnot a name\n", []string{"rename", "alice", "carol"}, 1,
			"", "sshchat keys rename: nothing renamed: the operators file has errors; fix or delete these lines with a text editor, then run the command again:\n" +
				`sshchat keys rename: OPS:2: 3 words on one line ("not a name"): list one user name per line` + "\n",
			allowed, "alice\nnot a name\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, ops := filepath.Join(dir, "allowed_keys"), filepath.Join(dir, "ops")
			writeTestFile(t, path, allowed)
			if tt.ops != "" {
				writeTestFile(t, ops, tt.ops)
			}
			paths := strings.NewReplacer("KEYS", path, "OPS", ops)
			args := []string{"keys"}
			for _, a := range tt.args {
				args = append(args, paths.Replace(a))
			}
			env := map[string]string{"SSHCHAT_KEYS": path, "SSHCHAT_OPS": ops, "SSHCHAT_DATA": dir}
			if strings.Contains(tt.name, "flags") {
				env = nil
			}
			code, stdout, stderr := runCLI(env, "", args...)
			if code != tt.wantCode || stdout != paths.Replace(tt.wantOut) || !strings.Contains(stderr, paths.Replace(tt.wantErr)) {
				t.Errorf("keys %q = %d\nstdout %q\nstderr %q\nwant %d\nstdout %q\nstderr %q", tt.args, code, stdout, stderr, tt.wantCode, paths.Replace(tt.wantOut), paths.Replace(tt.wantErr))
			}
			if tt.wantErr == "" && stderr != "" {
				t.Errorf("stderr %q, want nothing", stderr)
			}
			if got := readTestFile(t, path); got != tt.wantKeys {
				t.Errorf("allowed keys file is\n%s\nwant\n%s", got, tt.wantKeys)
			}
			if got := readTestFile(t, ops); got != tt.wantOps {
				t.Errorf("operators file is %q, want %q", got, tt.wantOps)
			}
		})
	}
}

// keys rename renames a user's bans and mutes too, and the operator who
// imposed them.
func TestKeysRenameModeration(t *testing.T) {
	dir := t.TempDir()
	path, moderation := filepath.Join(dir, "allowed_keys"), filepath.Join(dir, moderationFile)
	alice, _ := keysTestKey(t, "")
	bob, _ := keysTestKey(t, "")
	writeTestFile(t, path, authorizedLine(alice, "alice")+"\n"+authorizedLine(bob, "bob")+"\n")
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	if _, err := keys.Ban(moderation, keys.Sanction{Target: "bob", By: "alice", Reason: "spam", At: at}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SSHCHAT_KEYS": path, "SSHCHAT_OPS": filepath.Join(dir, "ops"), "SSHCHAT_DATA": dir}
	for _, rename := range [][2]string{{"bob", "robert"}, {"alice", "alicia"}} {
		code, stdout, stderr := runCLI(env, "", "keys", "rename", rename[0], rename[1])
		want := fmt.Sprintf("renamed %s to %s in %s\nrenamed %s to %s in %s\n", rename[0], rename[1], path, rename[0], rename[1], moderation)
		if code != 0 || stdout != want || stderr != "" {
			t.Fatalf("rename %v = %d\nstdout %q\nstderr %q\nwant stdout %q", rename, code, stdout, stderr, want)
		}
	}
	m, err := keys.LoadModeration(moderation)
	if err != nil {
		t.Fatal(err)
	}
	if ban, ok := m.Banned("robert", at); !ok || ban.By != "alicia" || len(m.Bans) != 1 {
		t.Fatalf("bans after renames: %+v", m.Bans)
	}
}

func TestKeysListMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	code, stdout, stderr := runCLI(map[string]string{"SSHCHAT_KEYS": path}, "", "keys", "list")
	if code != 0 || stdout != "" {
		t.Errorf("keys list = %d, stdout %q; want 0 and nothing", code, stdout)
	}
	if want := "no allowed keys file at " + path; !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line containing %q", stderr, want)
	}
}

func TestKeysListInvalidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	writeTestFile(t, path, "ssh-foo AAAA x\n# ok\nssh-bar AAAA y\n")
	code, stdout, stderr := runCLI(map[string]string{"SSHCHAT_KEYS": path}, "", "keys", "list")
	want := "sshchat keys list: " + path + `:1: unknown key type "ssh-foo"` + "\n" +
		"sshchat keys list: " + path + `:3: unknown key type "ssh-bar"` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("keys list = %d, stdout %q, stderr\n%q\nwant 1, nothing,\n%q", code, stdout, stderr, want)
	}
}

// A user whose last key goes is no longer an operator: whoever is given
// the name next must not inherit the role.
func TestKeysRemoveLastKeyDropsOperator(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"SSHCHAT_KEYS": filepath.Join(dir, "allowed_keys"), "SSHCHAT_OPS": filepath.Join(dir, "ops")}
	laptop, laptopPub := keysTestKey(t, "alice@laptop")
	desktop, desktopPub := keysTestKey(t, "alice@desktop")
	runSteps(t, []cliStep{
		{env, laptopPub, []string{"keys", "add", "alice"}, describe("alice", "alice@laptop", laptop)},
		{env, desktopPub, []string{"keys", "add", "alice"}, describe("alice", "alice@desktop", desktop)},
		{env, "", []string{"ops", "add", "alice"}, "alice is now an operator\n"},
		// One key left: still alice, still an operator.
		{env, "", []string{"keys", "remove", ssh.FingerprintSHA256(laptop)}, "removed " + describe("alice", "alice@laptop", laptop)},
		{env, "", []string{"ops", "list"}, "alice\n"},
		{env, "", []string{"keys", "remove", ssh.FingerprintSHA256(desktop)},
			"removed " + describe("alice", "alice@desktop", desktop) + "alice is no longer an operator: they have no key left\n"},
		{env, "", []string{"ops", "list"}, ""},
	})
}
