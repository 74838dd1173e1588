package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshKey converts a crypto public key to an ssh.PublicKey.
func sshKey(t testing.TB, pub crypto.PublicKey) ssh.PublicKey {
	t.Helper()
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func ed25519Key(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey(t, pub)
}

func ecdsaKey(t testing.TB, c elliptic.Curve) ssh.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey(t, &k.PublicKey)
}

// rsaKeys are generated once per test binary: RSA key generation is slow.
var rsaKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	mustGenerate := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	return mustGenerate(2048), mustGenerate(1024)
})

func rsa2048Key(t testing.TB) ssh.PublicKey {
	k, _ := rsaKeys()
	return sshKey(t, &k.PublicKey)
}

func rsa1024Key(t testing.TB) ssh.PublicKey {
	_, k := rsaKeys()
	return sshKey(t, &k.PublicKey)
}

// skKey builds a security-key public key of typ from the wire fields that
// follow the type name; crypto/... has no such keys to convert.
func skKey(t testing.TB, typ string) ssh.PublicKey {
	t.Helper()
	var blob []byte
	switch typ {
	case ssh.KeyAlgoSKED25519:
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		blob = ssh.Marshal(struct {
			Type string
			Key  []byte
			App  string
		}{typ, pub, "ssh:"})
	case ssh.KeyAlgoSKECDSA256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, err := k.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		blob = ssh.Marshal(struct {
			Type, Curve string
			Key         []byte
			App         string
		}{typ, "nistp256", point, "ssh:"})
	default:
		t.Fatalf("no security-key type %q", typ)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// certKey returns a certificate for a fresh ed25519 key.
func certKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: ed25519Key(t), CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// dssLine returns an ssh-dss key line, which x/crypto/ssh can no longer
// make or parse.
func dssLine(name string) string {
	one := big.NewInt(1)
	blob := ssh.Marshal(struct {
		Type       string
		P, Q, G, Y *big.Int
	}{keyAlgoDSA, one, one, one, one})
	return keyAlgoDSA + " " + b64(blob) + " " + name
}

// line formats key as an allowed keys line with the given comment.
func line(key ssh.PublicKey, comment string) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n") + " " + comment
}

// lines joins ls into file content, one per line.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
