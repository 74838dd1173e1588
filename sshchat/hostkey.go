package sshchat

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	gossh "golang.org/x/crypto/ssh"
)

// maxHostKeyFile bounds what is read of a host key file: an OpenSSH private
// key, even RSA 16384, is a few kilobytes.
const maxHostKeyFile = 64 << 10

// ErrHostKeyPermissions is wrapped by the error of LoadOrCreateHostKey for a
// key file that group or others may access.
var ErrHostKeyPermissions = errors.New("are too open")

// HostKeyOption changes how LoadOrCreateHostKey treats the key file.
type HostKeyOption func(*hostKeyOptions)

type hostKeyOptions struct {
	insecurePerms bool
}

// InsecureHostKeyPerms makes LoadOrCreateHostKey accept a key file that
// group or others may read or write.
func InsecureHostKeyPerms() HostKeyOption {
	return func(o *hostKeyOptions) { o.insecurePerms = true }
}

// LoadOrCreateHostKey reads the server's private host key from path
// (OpenSSH format). If there is none it generates an ed25519 key and writes
// it there with mode 0600, in a directory created 0700; created reports
// whether it did.
//
// Like sshd, it refuses a key file that group or others may access, with an
// error wrapping ErrHostKeyPermissions, unless given InsecureHostKeyPerms:
// whoever can read the key can impersonate the server.
func LoadOrCreateHostKey(path string, opts ...HostKeyOption) (signer gossh.Signer, created bool, err error) {
	var o hostKeyOptions
	for _, opt := range opts {
		opt(&o)
	}
	signer, err = loadHostKey(path, o)
	if errors.Is(err, fs.ErrNotExist) {
		return createHostKey(path, o)
	}
	return signer, false, err
}

func loadHostKey(path string, o hostKeyOptions) (gossh.Signer, error) {
	data, err := readHostKey(path, o)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, nil
}

// readHostKey reads the key file, checking the permissions of the file it
// opened rather than of the path, which could be replaced in between.
func readHostKey(path string, o hostKeyOptions) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	// Windows has no such permission bits: os reports 0666 for every file.
	if perm := info.Mode().Perm(); perm&0o077 != 0 && !o.insecurePerms && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("host key: permissions %04o for '%s' %w: it must not be accessible by group or others (chmod 600 %s)", perm, path, ErrHostKeyPermissions, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxHostKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("host key: read %s: %w", path, err)
	}
	if len(data) > maxHostKeyFile {
		return nil, fmt.Errorf("host key %s: larger than %d bytes; not a private key", path, maxHostKeyFile)
	}
	return data, nil
}

func createHostKey(path string, o hostKeyOptions) (gossh.Signer, bool, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("host key: generate: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "sshchat host key")
	if err != nil {
		return nil, false, fmt.Errorf("host key: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	// O_EXCL: if another process created the key meanwhile, keep theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		signer, err := loadHostKey(path, o)
		return signer, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("host key: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("host key: write %s: %w", path, err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	return signer, true, nil
}
