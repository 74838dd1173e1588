package keys

import (
	"crypto/elliptic"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testdata/allowed_keys.lf is what "ssh-keygen -lf testdata/allowed_keys"
// (OpenSSH 9) printed, so this test holds where ssh-keygen is missing.
func TestDescribeMatchesRecordedSSHKeygen(t *testing.T) {
	s, err := Load("testdata/allowed_keys")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/allowed_keys.lf")
	if err != nil {
		t.Fatal(err)
	}
	assertDescriptions(t, s.Entries(), string(want))
}

func TestDescribeMatchesSSHKeygen(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("no ssh-keygen; TestDescribeMatchesRecordedSSHKeygen covers its output")
	}
	keys := []ssh.PublicKey{
		ed25519Key(t),
		ecdsaKey(t, elliptic.P256()),
		ecdsaKey(t, elliptic.P384()),
		ecdsaKey(t, elliptic.P521()),
		rsa2048Key(t),
		skKey(t, ssh.KeyAlgoSKED25519),
		skKey(t, ssh.KeyAlgoSKECDSA256),
	}
	var file strings.Builder
	for i, k := range keys {
		comment := "user" + string(rune('a'+i))
		if i%2 == 1 { // some keys have labels, which ssh-keygen prints as part of the comment
			comment += " device@host " + string(rune('0'+i))
		}
		file.WriteString(line(k, comment) + "\n")
	}
	path := filepath.Join(t.TempDir(), "allowed_keys")
	writeFile(t, path, file.String(), 0o600)
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-lf", path).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -lf: %v", err)
	}
	assertDescriptions(t, s.Entries(), string(out))
}

// assertDescriptions checks Describe and Fingerprint of each entry against
// the matching line of ssh-keygen -l output.
func assertDescriptions(t *testing.T, entries []Entry, keygenOutput string) {
	t.Helper()
	want := strings.Split(strings.TrimSuffix(keygenOutput, "\n"), "\n")
	if len(entries) != len(want) {
		t.Fatalf("%d entries but %d lines of ssh-keygen output:\n%s", len(entries), len(want), keygenOutput)
	}
	for i, e := range entries {
		if got := Describe(e); got != want[i] {
			t.Errorf("Describe(%s key) = %q\nssh-keygen -l printed %q", e.Key.Type(), got, want[i])
		}
		if got, want := ssh.FingerprintSHA256(e.Key), strings.Fields(want[i])[1]; got != want {
			t.Errorf("ssh.FingerprintSHA256(%s key) = %q, want %q", e.Key.Type(), got, want)
		}
	}
}
