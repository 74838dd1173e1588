package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshchat-dev/sshchat/keys"
)

func TestOpsCommands(t *testing.T) {
	alice, _ := keysTestKey(t, "")
	const header = "# sshchat operators. One user name per line; the names are those of the allowed keys file.\n"
	tests := []struct {
		name     string
		ops      string // the operators file before; "" means none
		args     []string
		env      bool // set SSHCHAT_KEYS and SSHCHAT_OPS rather than pass flags
		wantCode int
		wantOut  string
		wantErr  string // in stderr; "KEYS" and "OPS" stand for the files' paths
		wantOps  string // the operators file after
	}{
		{"add creates the file", "", []string{"add", "alice"}, true, 0, "alice is now an operator\n", "", header + "alice\n"},
		{"add with flags before", "bob\n", []string{"-ops", "OPS", "-keys", "KEYS", "add", "alice"}, false, 0, "alice is now an operator\n", "", "bob\nalice\n"},
		{
			"a flag value that names a subcommand", "", []string{"-keys", "list", "add", "alice", "-ops", "OPS"}, false, 0, "alice is now an operator\n",
			"sshchat ops add: note: there is no allowed keys file at list yet, so alice cannot log in\n", header + "alice\n",
		},
		{"add with flags after", "bob\n", []string{"add", "alice", "-ops", "OPS", "-keys=KEYS"}, false, 0, "alice is now an operator\n", "", "bob\nalice\n"},
		{"add with flags between", "bob\n", []string{"add", "-ops", "OPS", "alice", "-keys", "KEYS"}, false, 0, "alice is now an operator\n", "", "bob\nalice\n"},
		{
			"add a user without a key", "", []string{"add", "zed"}, true, 0, "zed is now an operator\n",
			"sshchat ops add: note: zed has no key in KEYS, so cannot log in; add one with: sshchat keys add zed PUBKEY_FILE\n", header + "zed\n",
		},
		{"add twice", "Alice\n", []string{"add", "alice"}, true, 1, "", `sshchat ops add: OPS: duplicate name: "alice" is already an operator (line 1)`, "Alice\n"},
		{"add an invalid name", "", []string{"add", "al ice"}, true, 1, "", `sshchat ops add: OPS: names may not contain spaces: "al ice"`, ""},
		{
			"add to a broken file", "alice\nbob@home\n", []string{"add", "carol"}, true, 1, "",
			"sshchat ops add: OPS: refusing to edit: the file has errors, so a running server does not load it either; fix or delete these lines with a text editor, then run the command again:\n" +
				`sshchat ops add: OPS:2: name "bob@home" contains '@'`,
			"alice\nbob@home\n",
		},
		{"remove", "# ops\nalice\nbob\n", []string{"remove", "ALICE"}, true, 0, "ALICE is no longer an operator\n", "", "# ops\nbob\n"},
		{"remove, flags after", "alice\n", []string{"remove", "alice", "-ops", "OPS"}, false, 0, "alice is no longer an operator\n", "", ""},
		{"remove unlisted", "alice\n", []string{"remove", "bob"}, true, 1, "", `sshchat ops remove: OPS: no such user: "bob" is not an operator`, "alice\n"},
		{"remove without a file", "", []string{"remove", "bob"}, true, 1, "", `"bob" is not an operator (there is no operators file)`, ""},
		{"remove from a broken file", "alice\nx y\n", []string{"remove", "alice"}, true, 1, "", "OPS:2: 2 words on one line", "alice\nx y\n"},
		{"list", "# ops\r\nalice\r\n\r\n  Bob\n", []string{"list"}, true, 0, "alice\nBob\n", "", "# ops\r\nalice\r\n\r\n  Bob\n"},
		{"list, flags after", "alice\n", []string{"list", "-ops", "OPS"}, false, 0, "alice\n", "", "alice\n"},
		{"list without a file", "", []string{"list"}, true, 0, "", "sshchat ops list: no operators file at OPS, so no operators; make one with: sshchat ops add NAME\n", ""},
		{"list a broken file", "alice\n-bob\n", []string{"list"}, true, 1, "", `sshchat ops list: OPS:2: name "-bob" must start with a letter or a digit`, "alice\n-bob\n"},
		{"no subcommand", "", nil, true, 2, "", "usage: sshchat ops SUBCOMMAND", ""},
		{"help", "", []string{"help"}, true, 0, "", "usage: sshchat ops SUBCOMMAND", ""},
		{"add -h", "", []string{"add", "-h"}, true, 0, "", "usage: sshchat ops add [flags] NAME", ""},
		{"unknown subcommand", "", []string{"promote"}, true, 2, "", `sshchat ops: unknown subcommand "promote"`, ""},
		{"add without a name", "", []string{"add"}, true, 2, "", "sshchat ops add: wrong number of arguments", ""},
		{"list with an argument", "", []string{"list", "x"}, true, 2, "", "sshchat ops list: wrong number of arguments", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, ops := filepath.Join(dir, "allowed_keys"), filepath.Join(dir, "keys", "ops")
			if _, err := keys.Add(path, keys.Entry{Name: "alice", Key: alice}); err != nil {
				t.Fatal(err)
			}
			if tt.ops != "" {
				if err := keys.AddOp(ops, "x"); err != nil { // creates the directory
					t.Fatal(err)
				}
				writeTestFile(t, ops, tt.ops)
			}
			paths := strings.NewReplacer("KEYS", path, "OPS", ops)
			args := []string{"ops"}
			for _, a := range tt.args {
				args = append(args, paths.Replace(a))
			}
			var env map[string]string
			if tt.env {
				env = map[string]string{"SSHCHAT_KEYS": path, "SSHCHAT_OPS": ops}
			}
			code, stdout, stderr := runCLI(env, "", args...)
			if code != tt.wantCode || stdout != tt.wantOut || !strings.Contains(stderr, paths.Replace(tt.wantErr)) {
				t.Errorf("ops %q = %d\nstdout %q\nstderr %q\nwant %d\nstdout %q\nstderr %q", tt.args, code, stdout, stderr, tt.wantCode, tt.wantOut, paths.Replace(tt.wantErr))
			}
			if tt.wantErr == "" && stderr != "" {
				t.Errorf("stderr %q, want nothing", stderr)
			}
			if got := readTestFile(t, ops); got != tt.wantOps {
				t.Errorf("operators file is %q, want %q", got, tt.wantOps)
			}
		})
	}
}
