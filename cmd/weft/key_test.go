package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func TestKeyGenerateCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	out, err := runWeft(t, "key", "generate", "--out", path, "-o", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var rep keyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err, out)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", info.Mode(), err)
	}
	raw, _ := hex.DecodeString(rep.PublicKey)
	pk, err := crypto.PublicKeyFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	rawPoP, _ := hex.DecodeString(rep.PoP)
	pop, err := crypto.SignatureFromBytes(rawPoP)
	if err != nil || pk.VerifyPossession(pop) != nil {
		t.Fatalf("printed PoP does not verify: %v", err)
	}
	// The secret never reaches the output, and the file is not replaced.
	sk, err := crypto.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, hex.EncodeToString(sk.Bytes())) {
		t.Fatal("secret key printed")
	}
	if _, err := runWeft(t, "key", "generate", "--out", path); err == nil {
		t.Fatal("existing key file overwritten")
	}
	shown, err := runWeft(t, "key", "show", path)
	if err != nil || !strings.Contains(shown, rep.PublicKey) {
		t.Fatalf("key show: %v\n%s", err, shown)
	}
}
