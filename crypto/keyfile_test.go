package crypto

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	sk := mustKey(t, 30)
	if err := WriteKeyFile(path, sk); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file created with mode %#o", info.Mode().Perm())
	}
	got, err := ReadKeyFile(path)
	if err != nil || !got.PublicKey().Equal(sk.PublicKey()) {
		t.Fatalf("read back: %v", err)
	}
	if err := WriteKeyFile(path, mustKey(t, 31)); err == nil {
		t.Fatal("existing key file replaced")
	}
	if again, _ := ReadKeyFile(path); !again.PublicKey().Equal(sk.PublicKey()) {
		t.Fatal("failed overwrite changed the key")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(path, mode)
		if _, err := ReadKeyFile(path); !errors.Is(err, ErrKeyFileExposed) {
			t.Fatalf("mode %#o: err = %v", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	// A file whose public key does not match its secret is refused.
	data, _ := os.ReadFile(path)
	other := mustKey(t, 32).PublicKey().String()
	swapped := filepath.Join(dir, "swapped.key")
	os.WriteFile(swapped, []byte(strings.Replace(string(data), sk.PublicKey().String(), other, 1)), 0o600)
	if _, err := ReadKeyFile(swapped); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched public key: err = %v", err)
	}
}
