package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildVersion is what the binary knows of its own build: what the go
// command embeds, read with runtime/debug.ReadBuildInfo. The go command
// records no build time; Time is that of the commit.
type buildVersion struct {
	Version  string // module version: a tag, a pseudo-version, or (devel)
	Revision string // VCS commit, if built in a checkout
	Time     string // commit time, RFC 3339, if built in a checkout
	Modified bool   // built from a checkout with uncommitted changes
	Go       string // toolchain
}

func readBuildVersion() buildVersion {
	return versionOf(debug.ReadBuildInfo())
}

func versionOf(info *debug.BuildInfo, ok bool) buildVersion {
	v := buildVersion{Version: "(devel)", Go: runtime.Version()}
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the line "sshchat version" prints.
func (v buildVersion) String() string {
	var details []string
	if v.Revision != "" {
		details = append(details, "revision "+v.Revision)
	}
	if v.Modified {
		details = append(details, "modified")
	}
	if v.Time != "" {
		details = append(details, "committed "+v.Time)
	}
	details = append(details, v.Go)
	return fmt.Sprintf("sshchat %s (%s)", v.Version, strings.Join(details, ", "))
}

// logAttrs are the version's fields in the start-up log record.
func (v buildVersion) logAttrs() []any {
	return []any{"version", v.Version, "revision", v.Revision, "modified", v.Modified, "committed", v.Time, "go", v.Go}
}

// runVersion implements "sshchat version" and "sshchat --version". args
// excludes the command itself.
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "sshchat version: unexpected argument %q\n", args[0])
		return 2
	}
	fmt.Fprintln(stdout, readBuildVersion())
	return 0
}
