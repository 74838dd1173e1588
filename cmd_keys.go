package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/sshchat-dev/sshchat/keys"
)

// defaultKeysFile is the allowed keys file used when neither -keys nor
// SSHCHAT_KEYS names one.
const defaultKeysFile = "keys/allowed_keys"

// maxPubKeyInput bounds what keys add reads: a public key file is one line.
const maxPubKeyInput = 1 << 20

const keysUsage = `usage: sshchat keys SUBCOMMAND [-keys FILE] [ARGS]

Subcommands:
  add NAME [PUBKEY_FILE|-]   allow a public key under NAME (default: read from stdin)
  list                       list allowed keys as "ssh-keygen -l" prints them
  remove NAME                remove every key of NAME

The file is -keys FILE, else $SSHCHAT_KEYS, else ` + defaultKeysFile + `.
A running server picks up changes by itself.
Run "sshchat keys SUBCOMMAND -h" for details.
`

// keysCommand is one subcommand of "sshchat keys".
type keysCommand struct {
	name     string
	args     string // synopsis of the positional arguments
	about    string
	min, max int // number of positional arguments
	run      func(path string, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var keysCommands = []keysCommand{
	{
		name: "add", args: "NAME [PUBKEY_FILE|-]", min: 1, max: 2, run: keysAdd,
		about: "Allows the OpenSSH public key in PUBKEY_FILE (such as ~/.ssh/id_ed25519.pub),\n" +
			"or on stdin if it is - or missing, to log in as NAME. The key's own comment\n" +
			"is replaced by NAME. Prints the key as \"ssh-keygen -l\" does. Refuses a NAME\n" +
			"or a key that is already in the file.",
	},
	{
		name: "list", min: 0, max: 0, run: keysList,
		about: "Prints each allowed key as \"ssh-keygen -l\" does: bits, fingerprint, name, type.",
	},
	{
		name: "remove", args: "NAME", min: 1, max: 1, run: keysRemove,
		about: "Removes every key of NAME (compared case-insensitively).",
	},
}

// runKeys implements `sshchat keys SUBCOMMAND ...`. args excludes "keys". It
// returns the process exit code: 0 on success or -h, 1 if the subcommand
// failed, 2 for a usage error.
func runKeys(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	if slices.Contains([]string{"-h", "-help", "--help", "help"}, args[0]) {
		fmt.Fprint(stderr, keysUsage)
		return 0
	}
	i := slices.IndexFunc(keysCommands, func(c keysCommand) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "sshchat keys: unknown subcommand %q\n\n%s", args[0], keysUsage)
		return 2
	}
	cmd := keysCommands[i]
	prog := "sshchat keys " + cmd.name

	flags := flag.NewFlagSet(prog, flag.ContinueOnError)
	flags.SetOutput(stderr)
	path := flags.String("keys", envOr(getenv, "SSHCHAT_KEYS", defaultKeysFile), "allowed keys `FILE` (env SSHCHAT_KEYS)")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-keys FILE] %s\n\n%s\n\nFlags:\n", prog, cmd.args, cmd.about)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if n := flags.NArg(); n < cmd.min || n > cmd.max {
		fmt.Fprintf(stderr, "%s: wrong number of arguments\n", prog)
		flags.Usage()
		return 2
	}
	if err := cmd.run(*path, flags.Args(), stdin, stdout, stderr); err != nil {
		// Some errors, such as a file's invalid lines, span several lines.
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", prog, line)
		}
		return 1
	}
	return 0
}

func keysAdd(path string, args []string, stdin io.Reader, stdout, _ io.Writer) error {
	name, src, in := args[0], "stdin", stdin
	if len(args) == 2 && args[1] != "-" {
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		src, in = args[1], f
	}
	data, err := io.ReadAll(io.LimitReader(in, maxPubKeyInput))
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return fmt.Errorf("%s holds a private key; give the public key (the .pub file) instead", src)
	}
	key, err := keys.ParseKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	e, err := keys.Add(path, name, key)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, keys.Describe(e))
	return nil
}

func keysList(path string, _ []string, _ io.Reader, stdout, stderr io.Writer) error {
	s, err := keys.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "sshchat keys list: no allowed keys file at %s yet; add a user with: sshchat keys add NAME ~/.ssh/id_ed25519.pub\n", path)
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range s.Entries() {
		fmt.Fprintln(stdout, keys.Describe(e))
	}
	return nil
}

func keysRemove(path string, args []string, _ io.Reader, stdout, _ io.Writer) error {
	removed, err := keys.Remove(path, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %d key(s) for %s\n", len(removed), removed[0].Name)
	return nil
}
