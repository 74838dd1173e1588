package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Default places of the access files, for serve and for the keys and ops
// commands alike.
const (
	defaultKeysFile = "keys/allowed_keys"
	defaultOpsFile  = "keys/ops"
	defaultDataDir  = "data"
)

// accessFiles says where the files that decide who may do what are. The
// keys and ops commands take all three, so that each finds every file a
// change of theirs touches (keys rename renames a user in all of them).
type accessFiles struct {
	keys string // allowed keys file
	ops  string // operators file
	data string // data directory, which holds bans and mutes
}

// register defines -keys, -ops and -data on fs, defaulting to their
// environment variables, then to the built-in defaults.
func (f *accessFiles) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.keys, "keys", envOr(getenv, "SSHCHAT_KEYS", defaultKeysFile), "allowed keys `FILE` (env SSHCHAT_KEYS)")
	fs.StringVar(&f.ops, "ops", envOr(getenv, "SSHCHAT_OPS", defaultOpsFile), "operators `FILE` (env SSHCHAT_OPS)")
	fs.StringVar(&f.data, "data", envOr(getenv, "SSHCHAT_DATA", defaultDataDir), "data `DIR`, which holds bans and mutes (env SSHCHAT_DATA)")
}

// parseInterspersed parses the flags in args wherever they are among the
// positional arguments, which it returns in order: Go's flag package stops
// at the first positional argument, so "keys add NAME FILE -keys X" would
// otherwise take "-keys" and "X" as positional. "--" ends the flags; what
// follows it is positional, even if it starts with "-". A lone "-" is
// positional (it means stdin).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// subcommand is one subcommand of a command group such as "sshchat keys".
type subcommand struct {
	name     string
	args     string // synopsis of the positional arguments
	about    string
	min, max int // number of positional arguments
	run      func(files accessFiles, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// runSubcommand implements "sshchat GROUP SUBCOMMAND ...", where args
// excludes GROUP and usage describes the group. Flags may come anywhere:
// before the subcommand, between its arguments, or after them. It returns
// the process exit code: 0 on success or -h, 1 if the subcommand failed, 2
// for a usage error.
func runSubcommand(group, usage string, cmds []subcommand, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if slices.Contains([]string{"-h", "-help", "--help", "help"}, args[0]) {
		fmt.Fprint(stderr, usage)
		return 0
	}
	find := func(name string) (subcommand, bool) {
		i := slices.IndexFunc(cmds, func(c subcommand) bool { return c.name == name })
		if i < 0 {
			return subcommand{}, false
		}
		return cmds[i], true
	}
	// Until the flags are parsed, the subcommand is taken to be the first
	// argument that names one, for -h to describe.
	var cmd subcommand
	for _, a := range args {
		if c, ok := find(a); ok {
			cmd = c
			break
		}
	}
	prog := "sshchat " + group
	if cmd.name != "" {
		prog += " " + cmd.name
	}
	flags := flag.NewFlagSet(prog, flag.ContinueOnError)
	flags.SetOutput(stderr)
	var files accessFiles
	files.register(flags, getenv)
	flags.Usage = func() {
		if cmd.name == "" {
			fmt.Fprint(stderr, usage)
			return
		}
		fmt.Fprintf(stderr, "usage: %s [flags] %s\n\n%s\n\nFlags, before or after the arguments:\n", prog, cmd.args, cmd.about)
		flags.PrintDefaults()
	}
	positional, err := parseInterspersed(flags, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(positional) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, ok := find(positional[0])
	if !ok {
		fmt.Fprintf(stderr, "sshchat %s: unknown subcommand %q\n\n%s", group, positional[0], usage)
		return 2
	}
	prog = "sshchat " + group + " " + cmd.name
	if n := len(positional) - 1; n < cmd.min || n > cmd.max {
		fmt.Fprintf(stderr, "%s: wrong number of arguments\n", prog)
		flags.Usage()
		return 2
	}
	if err := cmd.run(files, positional[1:], stdin, stdout, stderr); err != nil {
		// Some errors, such as a file's invalid lines, span several lines.
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", prog, line)
		}
		return 1
	}
	return 0
}
