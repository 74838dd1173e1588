package keys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestReloadKeepsPreviousSet(t *testing.T) {
	key := ed25519Key(t)
	tests := []struct {
		name  string
		spoil func(path string) error
		want  func(error) bool
	}{
		{
			"invalid line",
			func(path string) error {
				return os.WriteFile(path, []byte(lines(line(key, "alice"), "ssh-foo AAAA bob")), 0o600)
			},
			func(err error) bool { le, ok := errors.AsType[*LineError](err); return ok && le.Line == 2 },
		},
		{
			"missing file",
			os.Remove,
			func(err error) bool { return errors.Is(err, fs.ErrNotExist) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowed_keys")
			st := NewStore(path, nil)
			if st.Path() != path {
				t.Errorf("Path() = %q, want %q", st.Path(), path)
			}
			writeFile(t, path, lines(line(key, "alice")), 0o600)
			if err := st.Reload(); err != nil {
				t.Fatal(err)
			}
			good := st.Set()
			if err := tt.spoil(path); err != nil {
				t.Fatal(err)
			}
			if err := st.Reload(); !tt.want(err) {
				t.Errorf("Reload error = %v", err)
			}
			if st.Set() != good {
				t.Error("Reload replaced the set after an error")
			}
			if name, ok := st.Lookup(key); !ok || name != "alice" {
				t.Errorf("Lookup = %q, %v; want alice, true", name, ok)
			}
		})
	}
}

func TestNewStoreIsEmpty(t *testing.T) {
	st := NewStore(filepath.Join(t.TempDir(), "missing"), nil)
	if err := st.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reload error = %v, want fs.ErrNotExist", err)
	}
	if st.Set().Len() != 0 {
		t.Errorf("Set has %d keys", st.Set().Len())
	}
	if _, ok := st.Lookup(ed25519Key(t)); ok {
		t.Error("Lookup found a key in an empty store")
	}
}
