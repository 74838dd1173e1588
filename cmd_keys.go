package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sshchat-dev/sshchat/keys"
)

// maxPubKeyInput bounds what keys add reads: a public key file is one line.
const maxPubKeyInput = 1 << 20

const keysUsage = `usage: sshchat keys SUBCOMMAND [flags] [ARGS]

Subcommands:
  add NAME [PUBKEY_FILE|-]   allow a public key under NAME, a new user or one
                             with other keys (default: read from stdin)
  list                       list allowed keys: bits, fingerprint, name, label, type
  remove NAME                remove every key of NAME
  remove SHA256:FINGERPRINT  remove that one key
  rename OLD NEW             rename a user in the allowed keys and operators files

Flags, before or after the arguments:
  -keys FILE   allowed keys file (env SSHCHAT_KEYS, default ` + defaultKeysFile + `)
  -ops FILE    operators file (env SSHCHAT_OPS, default ` + defaultOpsFile + `)
  -data DIR    data directory (env SSHCHAT_DATA, default ` + defaultDataDir + `)

A running server picks up changes by itself.
Run "sshchat keys SUBCOMMAND -h" for details.
`

var keysCommands = []subcommand{
	{
		name: "add", args: "NAME [PUBKEY_FILE|-]", min: 1, max: 2, run: keysAdd,
		about: "Allows the OpenSSH public key in PUBKEY_FILE (such as ~/.ssh/id_ed25519.pub),\n" +
			"or on stdin if it is - or missing, to log in as NAME. NAME may already have\n" +
			"other keys, such as one per device. The key file's own comment (such as\n" +
			"alice@laptop) is kept as the key's label. Prints the key as \"ssh-keygen -l\"\n" +
			"does. Refuses a key that is already allowed, under any name.",
	},
	{
		name: "list", min: 0, max: 0, run: keysList,
		about: "Prints each allowed key as \"ssh-keygen -l\" does: bits, fingerprint, the\n" +
			"user's name, the key's label if it has one, and the key type.",
	},
	{
		name: "remove", args: "NAME|SHA256:FINGERPRINT", min: 1, max: 1, run: keysRemove,
		about: "Removes every key of NAME (compared case-insensitively), or the one key with\n" +
			"that fingerprint, as keys list prints it.",
	},
	{
		name: "rename", args: "OLD NEW", min: 2, max: 2, run: keysRename,
		about: "Renames the user OLD to NEW in every file that names users. NEW must not be\n" +
			"another user's name. If any of the files has errors, nothing is renamed.",
	},
}

// runKeys implements `sshchat keys SUBCOMMAND ...`. args excludes "keys". It
// returns the process exit code: 0 on success or -h, 1 if the subcommand
// failed, 2 for a usage error.
func runKeys(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runSubcommand("keys", keysUsage, keysCommands, args, stdin, stdout, stderr, getenv)
}

func keysAdd(files accessFiles, args []string, stdin io.Reader, stdout, _ io.Writer) error {
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
	key, comment, err := keys.ParseKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	e, err := keys.Add(files.keys, keys.Entry{Name: name, Label: comment, Key: key})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, keys.Describe(e))
	return nil
}

func keysList(files accessFiles, _ []string, _ io.Reader, stdout, stderr io.Writer) error {
	s, err := keys.Load(files.keys)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "sshchat keys list: no allowed keys file at %s yet; add a user with: sshchat keys add NAME ~/.ssh/id_ed25519.pub\n", files.keys)
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

// keysRemove removes a user or, given a fingerprint, one key: a name
// cannot contain ':', so the two cannot be confused. A user left without a
// key is taken off the operators file too: whoever is given the name next
// must not inherit the role.
func keysRemove(files accessFiles, args []string, _ io.Reader, stdout, _ io.Writer) error {
	var name string
	if strings.HasPrefix(args[0], "SHA256:") {
		e, err := keys.RemoveFingerprint(files.keys, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", keys.Describe(e))
		name = e.Name
	} else {
		removed, err := keys.Remove(files.keys, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %d key(s) for %s\n", len(removed), removed[0].Name)
		name = removed[0].Name
	}
	if s, err := keys.Load(files.keys); err != nil || s.HasUser(name) {
		return err
	}
	switch err := keys.RemoveOp(files.ops, name); {
	case err == nil:
		fmt.Fprintf(stdout, "%s is no longer an operator: they have no key left\n", name)
	case !errors.Is(err, keys.ErrNoSuchUser):
		return fmt.Errorf("%s has no key left, but is still an operator: %w", name, err)
	}
	return nil
}

// renamer is a file that names users, which keys rename updates.
type renamer struct {
	file string // what the file is, for messages
	path func(accessFiles) string
	// check returns the file's errors, if it has any; a missing file has
	// none.
	check func(path string) error
	// rename renames old to newName and reports whether old was there.
	rename func(path, old, newName string) (bool, error)
}

// renamers are the files keys rename updates, in order. The allowed keys
// come first: it is there that a rename is refused because OLD has no key
// or NEW is taken, before any other file changes.
var renamers = []renamer{
	{"allowed keys", func(f accessFiles) string { return f.keys }, checkKeys, renameKeys},
	{"operators", func(f accessFiles) string { return f.ops }, checkOps, keys.RenameOp},
	{"moderation", func(f accessFiles) string { return filepath.Join(f.data, moderationFile) }, checkModeration, renameModeration},
}

func keysRename(files accessFiles, args []string, _ io.Reader, stdout, _ io.Writer) error {
	old, newName := args[0], args[1]
	if err := keys.CheckName(newName); err != nil {
		return err
	}
	// Check every file before changing any, so that a file with errors
	// does not leave the rename half done.
	for _, r := range renamers {
		if err := r.check(r.path(files)); err != nil {
			return fmt.Errorf("nothing renamed: the %s file has errors; fix or delete these lines with a text editor, then run the command again:\n%w", r.file, err)
		}
	}
	for i, r := range renamers {
		renamed, err := r.rename(r.path(files), old, newName)
		if err != nil && i > 0 {
			return fmt.Errorf("renamed %s to %s in the %s file only: %w", old, newName, renamers[0].file, err)
		}
		if err != nil {
			return err
		}
		if renamed {
			fmt.Fprintf(stdout, "renamed %s to %s in %s\n", old, newName, r.path(files))
		}
	}
	return nil
}

func checkKeys(path string) error {
	if _, err := keys.Load(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func checkOps(path string) error {
	_, err := keys.LoadOps(path)
	return err
}

func checkModeration(path string) error {
	_, err := keys.LoadModeration(path)
	return err
}

// renameModeration renames old in the bans, mutes and message of the day,
// reporting whether old was mentioned there.
func renameModeration(path, old, newName string) (bool, error) {
	m, err := keys.LoadModeration(path)
	if err != nil {
		return false, err
	}
	mentioned := strings.EqualFold(m.MOTD.By, old)
	for _, sanctions := range []map[string]keys.Sanction{m.Bans, m.Mutes} {
		for _, s := range sanctions {
			mentioned = mentioned || strings.EqualFold(s.Target, old) || strings.EqualFold(s.By, old)
		}
	}
	if !mentioned {
		return false, nil
	}
	_, err = keys.RenameModeration(path, old, newName)
	return err == nil, err
}

func renameKeys(path, old, newName string) (bool, error) {
	_, err := keys.Rename(path, old, newName)
	return err == nil, err
}
