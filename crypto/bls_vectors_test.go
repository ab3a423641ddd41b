package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// blsVectorsDir is where the Ethereum BLS conformance vectors are: the
// directory in BLS_VECTORS_DIR, else the copy in testdata (see its README).
func blsVectorsDir(t *testing.T) string {
	if dir := os.Getenv("BLS_VECTORS_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("testdata", "bls12-381-tests")
}

// unhex decodes a vector's hex string; deserialization inputs have no 0x.
func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// vectorFile is one vector: {"input": …, "output": …}.
type vectorFile struct {
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output"`
}

// TestBLSConformance runs every vector file through the matching operation
// and fails on a handler it does not know.
func TestBLSConformance(t *testing.T) {
	dir := blsVectorsDir(t)
	handlers := map[string]func(t *testing.T, v vectorFile){
		"sign":                  vectorSign,
		"verify":                vectorVerify,
		"aggregate":             vectorAggregate,
		"fast_aggregate_verify": vectorFastAggregateVerify,
		"aggregate_verify":      vectorAggregateVerify,
		"batch_verify":          vectorBatchVerify,
		"hash_to_G2":            vectorHashToG2,
		"deserialization_G1":    vectorDeserializationG1,
		"deserialization_G2":    vectorDeserializationG2,
	}
	passed := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		handler := filepath.Base(filepath.Dir(path))
		run, ok := handlers[handler]
		if !ok {
			t.Errorf("%s: unknown handler %q", path, handler)
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var v vectorFile
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		name := handler + "/" + strings.TrimSuffix(d.Name(), ".json")
		if t.Run(name, func(t *testing.T) { run(t, v) }) {
			passed++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading vectors from %s: %v", dir, err)
	}
	if passed == 0 {
		t.Fatalf("no BLS vectors found in %s (set BLS_VECTORS_DIR)", dir)
	}
	t.Logf("bls vectors: %d passed", passed)
}

func wantBool(t *testing.T, out json.RawMessage) bool {
	var b bool
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("output %s is not a boolean", out)
	}
	return b
}

func decodePublicKeys(t *testing.T, hexKeys []string) ([]*PublicKey, bool) {
	var pks []*PublicKey
	for _, h := range hexKeys {
		pk, err := PublicKeyFromBytes(unhex(t, h))
		if err != nil {
			return nil, false
		}
		pks = append(pks, pk)
	}
	return pks, true
}

func vectorSign(t *testing.T, v vectorFile) {
	var in struct{ Privkey, Message string }
	_ = json.Unmarshal(v.Input, &in)
	sk, err := SecretKeyFromBytes(unhex(t, in.Privkey))
	if string(v.Output) == "null" {
		if err == nil {
			t.Fatal("secret key accepted, vector says signing must fail")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var want string
	_ = json.Unmarshal(v.Output, &want)
	if got := sk.Sign(unhex(t, in.Message)).Bytes(); !bytes.Equal(got, unhex(t, want)) {
		t.Fatalf("signature %x, want %s", got, want)
	}
}

func vectorVerify(t *testing.T, v vectorFile) {
	var in struct{ Pubkey, Message, Signature string }
	_ = json.Unmarshal(v.Input, &in)
	got := func() bool {
		pk, err := PublicKeyFromBytes(unhex(t, in.Pubkey))
		if err != nil {
			return false
		}
		sig, err := SignatureFromBytes(unhex(t, in.Signature))
		if err != nil {
			return false
		}
		return pk.Verify(unhex(t, in.Message), sig) == nil
	}()
	if want := wantBool(t, v.Output); got != want {
		t.Fatalf("verify = %v, want %v", got, want)
	}
}

func vectorAggregate(t *testing.T, v vectorFile) {
	var in []string
	_ = json.Unmarshal(v.Input, &in)
	var sigs []*Signature
	for _, h := range in {
		sig, err := SignatureFromBytes(unhex(t, h))
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	agg, err := Aggregate(sigs)
	if string(v.Output) == "null" {
		if err == nil {
			t.Fatal("aggregate succeeded, vector says it must fail")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var want string
	_ = json.Unmarshal(v.Output, &want)
	if !bytes.Equal(agg.Bytes(), unhex(t, want)) {
		t.Fatalf("aggregate %x, want %s", agg.Bytes(), want)
	}
}

func vectorFastAggregateVerify(t *testing.T, v vectorFile) {
	var in struct {
		Pubkeys            []string
		Message, Signature string
	}
	_ = json.Unmarshal(v.Input, &in)
	got := func() bool {
		pks, ok := decodePublicKeys(t, in.Pubkeys)
		if !ok {
			return false
		}
		sig, err := SignatureFromBytes(unhex(t, in.Signature))
		if err != nil {
			return false
		}
		return FastAggregateVerify(pks, unhex(t, in.Message), sig) == nil
	}()
	if want := wantBool(t, v.Output); got != want {
		t.Fatalf("fast aggregate verify = %v, want %v", got, want)
	}
}

func vectorAggregateVerify(t *testing.T, v vectorFile) {
	var in struct {
		Pubkeys, Messages []string
		Signature         string
	}
	_ = json.Unmarshal(v.Input, &in)
	got := func() bool {
		pks, ok := decodePublicKeys(t, in.Pubkeys)
		if !ok {
			return false
		}
		sig, err := SignatureFromBytes(unhex(t, in.Signature))
		if err != nil {
			return false
		}
		var msgs [][]byte
		for _, m := range in.Messages {
			msgs = append(msgs, unhex(t, m))
		}
		return AggregateVerify(pks, msgs, sig) == nil
	}()
	if want := wantBool(t, v.Output); got != want {
		t.Fatalf("aggregate verify = %v, want %v", got, want)
	}
}

func vectorBatchVerify(t *testing.T, v vectorFile) {
	var in struct{ Pubkeys, Messages, Signatures []string }
	_ = json.Unmarshal(v.Input, &in)
	got := func() bool {
		pks, ok := decodePublicKeys(t, in.Pubkeys)
		if !ok {
			return false
		}
		var msgs [][]byte
		var sigs []*Signature
		for i := range in.Messages {
			msgs = append(msgs, unhex(t, in.Messages[i]))
		}
		for _, h := range in.Signatures {
			sig, err := SignatureFromBytes(unhex(t, h))
			if err != nil {
				return false
			}
			sigs = append(sigs, sig)
		}
		return BatchVerify(pks, msgs, sigs) == nil
	}()
	if want := wantBool(t, v.Output); got != want {
		t.Fatalf("batch verify = %v, want %v", got, want)
	}
}

// vectorHashToG2 checks hash-to-curve with RFC 9380's test DST; the output
// is the affine point as "re,im" hex pairs, while the uncompressed encoding
// puts each coordinate's imaginary part first.
func vectorHashToG2(t *testing.T, v vectorFile) {
	var in struct{ Msg string }
	var out struct{ X, Y string }
	_ = json.Unmarshal(v.Input, &in)
	_ = json.Unmarshal(v.Output, &out)
	var p bls.G2
	p.Hash([]byte(in.Msg), []byte("QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"))
	var want []byte
	for _, coord := range []string{out.X, out.Y} {
		parts := strings.Split(coord, ",")
		want = append(want, unhex(t, parts[1])...)
		want = append(want, unhex(t, parts[0])...)
	}
	if got := p.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("hash_to_G2 = %x, want %x", got, want)
	}
}

func vectorDeserializationG1(t *testing.T, v vectorFile) {
	var in struct{ Pubkey string }
	_ = json.Unmarshal(v.Input, &in)
	_, err := PublicKeyFromBytes(unhex(t, in.Pubkey))
	if want := wantBool(t, v.Output); (err == nil) != want {
		t.Fatalf("deserialization ok = %v, want %v (%v)", err == nil, want, err)
	}
}

func vectorDeserializationG2(t *testing.T, v vectorFile) {
	var in struct{ Signature string }
	_ = json.Unmarshal(v.Input, &in)
	_, err := SignatureFromBytes(unhex(t, in.Signature))
	if want := wantBool(t, v.Output); (err == nil) != want {
		t.Fatalf("deserialization ok = %v, want %v (%v)", err == nil, want, err)
	}
}
