package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func runWeft(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// The README's run command: encode a file, lose shards, decode from what is
// left; too much loss is a clear error.
func TestBlobEncodeDecodeCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	blob := make([]byte, 300_001)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range blob {
		blob[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(in, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "enc")
	out, err := runWeft(t, "blob", "encode", in, "--shards", "10", "--out", enc, "-o", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var rep encodeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err, out)
	}
	if _, err := crypto.ParseBlobID(rep.BlobID); err != nil || rep.Shards != 10 || rep.NP != 4 || rep.SymbolSize == 0 {
		t.Fatalf("report %+v", rep)
	}

	// Lose 6 of 10 shards (2f): the 4 primaries left still decode.
	for shard := 0; shard < 6; shard++ {
		for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
			if err := os.Remove(shardFile(enc, shard, axis)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// And corrupt one of the remaining secondaries: it is rejected, not used.
	corrupt := shardFile(enc, 9, crypto.Secondary)
	b, _ := os.ReadFile(corrupt)
	b[len(b)-1] ^= 1
	os.WriteFile(corrupt, b, 0o644)

	dec := filepath.Join(dir, "out.bin")
	out, err = runWeft(t, "blob", "decode", enc, "--out", dec, "--id", rep.BlobID)
	if err != nil {
		t.Fatal(err, out)
	}
	got, _ := os.ReadFile(dec)
	if !bytes.Equal(got, blob) {
		t.Fatal("decoded file differs")
	}
	if !strings.Contains(out, "4 primary slivers") || !strings.Contains(out, "rejected: shard-00009.secondary") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	// Secondaries only: 3 good ones left, nS = 7: not enough, and it says so.
	if out, err := runWeft(t, "blob", "decode", enc, "--out", dec, "--axis", "secondary"); err == nil ||
		!strings.Contains(err.Error(), "not enough slivers") {
		t.Fatalf("decode from 3 secondaries: %v\n%s", err, out)
	}
	// A wrong expected ID is refused.
	other := crypto.BlobID{}.String()
	if _, err := runWeft(t, "blob", "decode", enc, "--out", dec, "--id", other); err == nil {
		t.Fatal("metadata accepted for another blob ID")
	}
}
