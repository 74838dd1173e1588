package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshchat-dev/sshchat/keys"
)

// keysTestKey returns a fresh ed25519 key and its public key file content,
// comment included.
func keysTestKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n") + " me@laptop\n"
}

// runKeysWith runs "sshchat keys args..." with SSHCHAT_KEYS set to envPath
// (unset if empty).
func runKeysWith(envPath, stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errs strings.Builder
	getenv := func(name string) string {
		if name == "SSHCHAT_KEYS" {
			return envPath
		}
		return ""
	}
	code = runKeys(args, strings.NewReader(stdin), &out, &errs, getenv)
	return code, out.String(), errs.String()
}

func TestKeysAddListRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "allowed_keys")
	alice, alicePub := keysTestKey(t)
	bob, bobPub := keysTestKey(t)
	carol, carolPub := keysTestKey(t)
	pubFile := filepath.Join(dir, "id_ed25519.pub")
	if err := os.WriteFile(pubFile, []byte(alicePub), 0o644); err != nil {
		t.Fatal(err)
	}
	describe := func(name string, key ssh.PublicKey) string {
		return keys.Describe(keys.Entry{Name: name, Key: key}) + "\n"
	}

	steps := []struct {
		env, stdin string
		args       []string
		want       string
	}{
		{"", "", []string{"add", "-keys", path, "alice", pubFile}, describe("alice", alice)},
		{path, bobPub, []string{"add", "bob", "-"}, describe("bob", bob)},
		{path, carolPub, []string{"add", "carol"}, describe("carol", carol)},
		{path, "", []string{"list"}, describe("alice", alice) + describe("bob", bob) + describe("carol", carol)},
		{path, "", []string{"remove", "ALICE"}, "removed 1 key(s) for alice\n"},
		{"elsewhere", "", []string{"list", "-keys", path}, describe("bob", bob) + describe("carol", carol)},
	}
	for _, s := range steps {
		code, stdout, stderr := runKeysWith(s.env, s.stdin, s.args...)
		if code != 0 || stdout != s.want || stderr != "" {
			t.Fatalf("keys %q = %d\nstdout %q\nstderr %q\nwant 0, stdout %q", s.args, code, stdout, stderr, s.want)
		}
	}
	if !regexp.MustCompile(`^256 SHA256:[A-Za-z0-9+/]{43} bob \(ED25519\)\n$`).MatchString(describe("bob", bob)) {
		t.Errorf("list line %q is not in ssh-keygen -l format", describe("bob", bob))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("allowed keys file: %v, %v; want mode 0600", fi, err)
	}
}

func TestKeysErrors(t *testing.T) {
	alice, alicePub := keysTestKey(t)
	_, newPub := keysTestKey(t)
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
		{"add -h", "", []string{"add", "-h"}, 0, "usage: sshchat keys add [-keys FILE] NAME [PUBKEY_FILE|-]"},
		{"remove -h", "", []string{"remove", "-h"}, 0, "-keys FILE\n"},
		{"add without name", "", []string{"add"}, 2, "sshchat keys add: wrong number of arguments\nusage:"},
		{"list with argument", "", []string{"list", "x"}, 2, "sshchat keys list: wrong number of arguments"},
		{"undefined flag", "", []string{"list", "-x"}, 2, "flag provided but not defined: -x"},
		{"taken name", newPub, []string{"add", "Alice"}, 1, `sshchat keys add: PATH: duplicate name: "Alice" is taken by "alice" on line 2`},
		{"known key", alicePub, []string{"add", "bob"}, 1, `sshchat keys add: PATH: duplicate key: key already belongs to "alice" on line 2`},
		{"bad key", "ssh-ed25519 AAAA!!! x\n", []string{"add", "bob"}, 1, "sshchat keys add: stdin: invalid base64 key data"},
		{"empty input", "", []string{"add", "bob"}, 1, "sshchat keys add: stdin: no public key found"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", []string{"add", "bob"}, 1, "stdin holds a private key; give the public key (the .pub file) instead"},
		{"invalid name", newPub, []string{"add", "bob@laptop"}, 1, `name "bob@laptop" contains '@'`},
		{"missing key file", "", []string{"add", "bob", "/nonexistent/id.pub"}, 1, "open /nonexistent/id.pub: no such file or directory"},
		{"unknown user", "", []string{"remove", "carol"}, 1, `sshchat keys remove: PATH: no such user: "carol"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			if _, err := keys.Add(path, "alice", alice); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runKeysWith(path, tt.stdin, tt.args...)
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
			if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
				t.Errorf("allowed keys file changed: %v\n%s", err, after)
			}
		})
	}
}

func TestKeysListMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	code, stdout, stderr := runKeysWith(path, "", "list")
	if code != 0 || stdout != "" {
		t.Errorf("keys list = %d, stdout %q; want 0 and nothing", code, stdout)
	}
	if want := "no allowed keys file at " + path; !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line containing %q", stderr, want)
	}
}

func TestKeysListInvalidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowed_keys")
	if err := os.WriteFile(path, []byte("ssh-foo AAAA x\n# ok\nssh-bar AAAA y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runKeysWith(path, "", "list")
	want := "sshchat keys list: " + path + `:1: unknown key type "ssh-foo"` + "\n" +
		"sshchat keys list: " + path + `:3: unknown key type "ssh-bar"` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("keys list = %d, stdout %q, stderr\n%q\nwant 1, nothing,\n%q", code, stdout, stderr, want)
	}
}
