// Command sshchat is a chat server reached with a plain ssh client.
//
//	sshchat [serve] [flags]   run the server (the default)
//	sshchat keys ...          manage the allowed keys file
//	sshchat ops ...           manage the operators file
//	sshchat version           print the version
//	sshchat help              describe the commands
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

const usage = `sshchat: a chat server for plain ssh clients.

Usage:
  sshchat [serve] [flags]             run the server (see sshchat serve -h)
  sshchat keys add NAME [FILE|-]      allow a (further) public key under NAME
  sshchat keys list                   list allowed keys with fingerprints and labels
  sshchat keys remove NAME|SHA256:FP  remove NAME's keys, or one key
  sshchat keys rename OLD NEW         rename a user everywhere
  sshchat ops add|remove NAME         make NAME an operator, or no more
  sshchat ops list                    list operators
  sshchat version                     print the version and the commit it was built from
  sshchat help                        this text

Users connect with: ssh -p 2222 HOST
`

// run runs the command line args and returns the process exit code: 0 on
// success or when help was asked for, 1 on failure, 2 for a usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 {
		switch args[0] {
		case "keys":
			return runKeys(args[1:], stdin, stdout, stderr, getenv)
		case "ops":
			return runOps(args[1:], stdin, stdout, stderr, getenv)
		case "version", "-version", "--version":
			return runVersion(args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		case "serve":
			args = args[1:]
		}
	}
	return runServe(args, stdout, stderr, getenv)
}

// envOr returns the environment variable name if set, else def.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
