package sshchat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostKeyPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_ed25519")
	if _, _, err := LoadOrCreateHostKey(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode     os.FileMode
		insecure bool
		refused  bool
	}{
		{0o600, false, false},
		{0o400, false, false},
		{0o640, false, true},
		{0o604, false, true},
		{0o620, false, true},
		{0o644, false, true},
		{0o644, true, false},
		{0o666, true, false},
	}
	for _, tt := range tests {
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		var opts []HostKeyOption
		if tt.insecure {
			opts = append(opts, InsecureHostKeyPerms())
		}
		signer, created, err := LoadOrCreateHostKey(path, opts...)
		if created {
			t.Errorf("mode %04o: created a new key over the existing one", tt.mode)
		}
		if !tt.refused {
			if err != nil || signer == nil {
				t.Errorf("mode %04o insecure=%v: %v", tt.mode, tt.insecure, err)
			}
			continue
		}
		want := fmt.Sprintf("permissions %04o for '%s' are too open", tt.mode, path)
		if !errors.Is(err, ErrHostKeyPermissions) || !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: err = %v, want ErrHostKeyPermissions saying %q", tt.mode, err, want)
		}
	}
}

func TestHostKeyRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_ed25519")
	if err := os.WriteFile(path, make([]byte, maxHostKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a size error", err)
	}
}
