package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "sshchat (devel) (" + runtime.Version() + ")"},
		{
			"go install of a tag",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}},
			true, "sshchat v1.2.0 (go1.26.8)",
		},
		{
			"clean checkout",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261126083800-434333d1a2b3"},
				Settings: vcs("-trimpath", "true", "vcs", "git", "vcs.revision", "434333d1a2b3c4", "vcs.time", "2026-11-26T08:38:00Z", "vcs.modified", "false")},
			true, "sshchat v0.0.0-20261126083800-434333d1a2b3 (revision 434333d1a2b3c4, committed 2026-11-26T08:38:00Z, go1.26.8)",
		},
		{
			"uncommitted changes",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
				Settings: vcs("vcs.revision", "434333d1a2b3c4", "vcs.modified", "true")},
			true, "sshchat (devel) (revision 434333d1a2b3c4, modified, go1.26.8)",
		},
	}
	for _, tt := range tests {
		if got := versionOf(tt.info, tt.ok).String(); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
