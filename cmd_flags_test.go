package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args     []string
		wantKeys string
		wantPos  []string
		wantErr  bool
	}{
		{nil, "default", nil, false},
		{[]string{"alice", "f.pub"}, "default", []string{"alice", "f.pub"}, false},
		{[]string{"-keys", "k", "alice", "f.pub"}, "k", []string{"alice", "f.pub"}, false},
		{[]string{"alice", "-keys", "k", "f.pub"}, "k", []string{"alice", "f.pub"}, false},
		{[]string{"alice", "f.pub", "-keys", "k"}, "k", []string{"alice", "f.pub"}, false},
		{[]string{"alice", "f.pub", "--keys=k"}, "k", []string{"alice", "f.pub"}, false},
		{[]string{"alice", "-", "-keys", "k"}, "k", []string{"alice", "-"}, false},
		{[]string{"-keys", "a", "x", "-keys", "b"}, "b", []string{"x"}, false},
		{[]string{"alice", "--", "-keys", "k"}, "default", []string{"alice", "-keys", "k"}, false},
		{[]string{"--", "-x"}, "default", []string{"-x"}, false},
		{[]string{"alice", "-nope"}, "", nil, true},
		{[]string{"alice", "-keys"}, "", nil, true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		keys := fs.String("keys", "default", "")
		pos, err := parseInterspersed(fs, tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseInterspersed(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if err == nil && (*keys != tt.wantKeys || !slices.Equal(pos, tt.wantPos)) {
			t.Errorf("parseInterspersed(%q) = %q with -keys %q; want %q with -keys %q", tt.args, pos, *keys, tt.wantPos, tt.wantKeys)
		}
	}
}
