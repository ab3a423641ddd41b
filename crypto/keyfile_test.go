package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
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

// A key file is one JSON object: anything after it (a second key pasted
// in, a truncated edit) is refused rather than ignored.
func TestKeyFileOneObject(t *testing.T) {
	good, err := encodeKeyFile(mustKey(t, 34))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeKeyFile(bytes.NewReader(append(bytes.Clone(good), "\n\n"...))); err != nil {
		t.Fatalf("trailing white space: %v", err)
	}
	other, _ := encodeKeyFile(mustKey(t, 35))
	for _, tail := range [][]byte{other, []byte("x"), []byte("{")} {
		if _, err := decodeKeyFile(bytes.NewReader(append(bytes.Clone(good), tail...))); err == nil {
			t.Fatalf("a key file followed by %q accepted", tail)
		}
	}
}

// FuzzDecodeKeyFile feeds arbitrary bytes to the key file decoder: it never
// panics; a key it accepts is the one the file names (the secret's
// canonical encoding, and the public key it derives) and survives being
// written again; and no error quotes the file's secret key.
func FuzzDecodeKeyFile(f *testing.F) {
	for _, seed := range []byte{30, 31, 32} {
		data, err := encodeKeyFile(mustKey(f, seed))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	good, _ := encodeKeyFile(mustKey(f, 33))
	f.Add(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1))
	f.Add(append(bytes.Clone(good), `{}`...))
	f.Add([]byte(`{"version":1,"scheme":"bls12381-g1-pop","secret_key":"00","public_key":""}`))
	f.Add([]byte(`{"secret_key":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fields struct {
			SecretKey any `json:"secret_key"`
			PublicKey any `json:"public_key"`
		}
		_ = json.Unmarshal(data, &fields)
		sk, err := decodeKeyFile(bytes.NewReader(data))
		if err != nil {
			if sk != nil {
				t.Fatal("a key returned with an error")
			}
			if secret, ok := fields.SecretKey.(string); ok && len(secret) >= 16 && strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the secret key: %v", err)
			}
			return
		}
		raw, err := hex.DecodeString(fields.SecretKey.(string))
		if err != nil || !bytes.Equal(raw, sk.Bytes()) {
			t.Fatalf("accepted secret key %q is not the key decoded", fields.SecretKey)
		}
		if fields.PublicKey != sk.PublicKey().String() {
			t.Fatalf("accepted public key %q, the secret derives %s", fields.PublicKey, sk.PublicKey())
		}
		again, err := encodeKeyFile(sk)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeKeyFile(bytes.NewReader(again))
		if err != nil || !bytes.Equal(back.Bytes(), sk.Bytes()) {
			t.Fatalf("the key written again reads back as another: %v", err)
		}
	})
}
