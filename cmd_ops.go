package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/sshchat-dev/sshchat/keys"
)

const opsUsage = `usage: sshchat ops SUBCOMMAND [flags] [ARGS]

Subcommands:
  add NAME      make NAME an operator
  remove NAME   make NAME an operator no more
  list          list the operators

Flags, before or after the arguments:
  -ops FILE    operators file (env SSHCHAT_OPS, default ` + defaultOpsFile + `)
  -keys FILE   allowed keys file, to check that NAME exists (env SSHCHAT_KEYS, default ` + defaultKeysFile + `)
  -data DIR    data directory (env SSHCHAT_DATA, default ` + defaultDataDir + `)

A running server picks up changes by itself.
Run "sshchat ops SUBCOMMAND -h" for details.
`

var opsCommands = []subcommand{
	{
		name: "add", args: "NAME", min: 1, max: 1, run: opsAdd,
		about: "Makes NAME, a user of the allowed keys file, an operator: they may kick, mute\n" +
			"and ban users from inside the chat. Warns if NAME has no allowed key yet.",
	},
	{
		name: "remove", args: "NAME", min: 1, max: 1, run: opsRemove,
		about: "Makes NAME (compared case-insensitively) an operator no more.",
	},
	{
		name: "list", min: 0, max: 0, run: opsList,
		about: "Prints the operators, one per line.",
	},
}

// runOps implements `sshchat ops SUBCOMMAND ...`. args excludes "ops". It
// returns the process exit code: 0 on success or -h, 1 if the subcommand
// failed, 2 for a usage error.
func runOps(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runSubcommand("ops", opsUsage, opsCommands, args, stdin, stdout, stderr, getenv)
}

func opsAdd(files accessFiles, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	name := args[0]
	if err := keys.AddOp(files.ops, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is now an operator\n", name)
	// An operator without a key is allowed (the key may come next), but
	// is more likely a typo.
	switch s, err := keys.Load(files.keys); {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stderr, "sshchat ops add: note: there is no allowed keys file at %s yet, so %s cannot log in\n", files.keys, name)
	case err == nil && !s.HasUser(name):
		fmt.Fprintf(stderr, "sshchat ops add: note: %s has no key in %s, so cannot log in; add one with: sshchat keys add %s PUBKEY_FILE\n", name, files.keys, name)
	}
	return nil
}

func opsRemove(files accessFiles, args []string, _ io.Reader, stdout, _ io.Writer) error {
	if err := keys.RemoveOp(files.ops, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is no longer an operator\n", args[0])
	return nil
}

func opsList(files accessFiles, _ []string, _ io.Reader, stdout, stderr io.Writer) error {
	if _, err := os.Stat(files.ops); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "sshchat ops list: no operators file at %s, so no operators; make one with: sshchat ops add NAME\n", files.ops)
		return nil
	}
	o, err := keys.LoadOps(files.ops)
	if err != nil {
		return err
	}
	for _, name := range o.Names() {
		fmt.Fprintln(stdout, name)
	}
	return nil
}
