package committee

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// slowCommand decodes an entry as the FSM did before decodeFastCommand:
// the command, then its register-blob body strictly.
func slowCommand(data []byte) (Command, RegisterBlob, bool) {
	var cmd Command
	if json.Unmarshal(data, &cmd) != nil || cmd.Kind != KindRegisterBlob {
		return cmd, RegisterBlob{}, false
	}
	var body RegisterBlob
	dec := json.NewDecoder(bytes.NewReader(cmd.Body))
	dec.DisallowUnknownFields()
	if dec.Decode(&body) != nil {
		return cmd, body, false
	}
	return cmd, body, true
}

// checkFastCommand: whatever decodeFastCommand accepts, encoding/json
// accepts and decodes to the same command and body.
func checkFastCommand(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	fast, fastBody, ok := decodeFastCommand(data)
	if !ok {
		return false
	}
	slow, slowBody, slowOK := slowCommand(data)
	if !slowOK {
		t.Fatalf("%s: the fast path accepted what encoding/json refuses", data)
	}
	if fast.ID != slow.ID || fast.Kind != slow.Kind || fast.Node != slow.Node || fast.Nonce != slow.Nonce || !bytes.Equal(fast.Body, slow.Body) {
		t.Fatalf("%s: fast command %+v, encoding/json %+v", data, fast, slow)
	}
	if !reflect.DeepEqual(fastBody, slowBody) {
		t.Fatalf("%s: fast body %+v, encoding/json %+v", data, fastBody, slowBody)
	}
	return true
}

func fastEntry(id string, body RegisterBlob) []byte {
	cmd, err := NewCommand(id, KindRegisterBlob, body)
	if err != nil {
		panic(err)
	}
	data, _ := json.Marshal(cmd)
	return data
}

// The fast path takes what the service proposes for a registration, and
// hands everything else to encoding/json: it never decodes otherwise.
func TestFastCommandMatchesJSON(t *testing.T) {
	root := crypto.Digest{0xab, 0x01, 0xff}
	plain := RegisterBlob{Client: "bench", Encoding: 1, Shards: 1000, Length: 1 << 40, Root: root, EndEpoch: 10}
	deletable := plain
	deletable.Deletable = true
	extremes := RegisterBlob{Client: "", Encoding: 255, Shards: 1<<32 - 1, Length: 1<<64 - 1, EndEpoch: 1<<64 - 1}
	for _, body := range []RegisterBlob{plain, deletable, extremes, {}} {
		if !checkFastCommand(t, fastEntry("client/bench/"+randomID(), body)) {
			t.Fatalf("%+v: not taken by the fast path", body)
		}
	}
	good := string(fastEntry("client/app/req-1", plain))
	// Each must go to encoding/json (which may accept or refuse it).
	others := []string{
		string(fastEntry("client/app/req-1", RegisterBlob{Client: "app", Root: root, Attributes: map[string]string{"a": "b"}})),
		string(fastEntry("client/a<b>&/x", plain)),          // json.Marshal escapes <, >, &
		string(fastEntry("client/é/x", plain)),              // not ASCII
		strings.Replace(good, `"bench"`, `"b\u0065nch"`, 1), // an escape
		strings.Replace(good, `{"id"`, `{ "id"`, 1),         // whitespace
		strings.Replace(good, `"shards":1000`, `"shards":01000`, 1),
		strings.Replace(good, `"shards":1000`, `"shards":1000.0`, 1),
		strings.Replace(good, `"shards":1000`, `"shards":1e3`, 1),
		strings.Replace(good, `"shards":1000`, `"shards":-1000`, 1),
		strings.Replace(good, `"shards":1000`, `"shards":4294967296`, 1),
		strings.Replace(good, `"encoding":1`, `"encoding":256`, 1),
		strings.Replace(good, `"length":1099511627776`, `"length":18446744073709551616`, 1),
		strings.Replace(good, `"root":"ab01ff`, `"root":"AB01FF`, 1),
		strings.Replace(good, `"root":"ab01ff`, `"root":"ab01f`, 1),
		strings.Replace(good, `"end_epoch":10}`, `"end_epoch":10,"deletable":false}`, 1),
		strings.Replace(good, `"end_epoch":10}`, `"end_epoch":10,"extra":1}`, 1),
		strings.Replace(good, `"end_epoch":10}`, `"end_epoch":10,"client":"other"}`, 1),
		strings.Replace(good, `"kind":"register-blob"`, `"kind":"register-node"`, 1),
		strings.Replace(good, `"kind":"register-blob"`, `"Kind":"register-blob"`, 1),
		good + " ",
		good + "{}",
		strings.TrimSuffix(good, "}") + `,"node":"n1","nonce":3}`,
		strings.TrimSuffix(good, "}") + `,"id":"again"}`,
		good[:len(good)-1],
	}
	for _, s := range others {
		if s == good {
			t.Fatalf("a variant is the good entry itself")
		}
		if _, _, ok := decodeFastCommand([]byte(s)); ok {
			t.Errorf("%s: taken by the fast path", s)
		}
	}
	// Random registrations: all taken when plain, always alike.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		body := RegisterBlob{Client: randomASCII(rng), Encoding: uint8(rng.Uint32()), Shards: rng.Uint32(), Length: rng.Uint64() >> rng.IntN(64), EndEpoch: rng.Uint64() >> rng.IntN(64), Deletable: rng.IntN(2) == 0}
		for i := range body.Root {
			body.Root[i] = byte(rng.Uint32())
		}
		data := fastEntry("client/"+randomASCII(rng)+"/"+randomID(), body)
		plainASCII := !strings.ContainsAny(body.Client, `<>&"\`) && !strings.ContainsAny(string(data[:bytes.Index(data, []byte(`,"kind"`))]), `<>&\`)
		if !checkFastCommand(t, data) && plainASCII {
			t.Fatalf("%s: a plain registration not taken by the fast path", data)
		}
	}
}

func randomASCII(rng *rand.Rand) string {
	b := make([]byte, rng.IntN(12))
	for i := range b {
		b[i] = byte(0x20 + rng.IntN(0x7f-0x20))
	}
	return string(b)
}

// FuzzFastCommand: whatever the fast path accepts decodes alike with
// encoding/json.
func FuzzFastCommand(f *testing.F) {
	f.Add(fastEntry("client/bench/x", RegisterBlob{Client: "bench", Encoding: 1, Shards: 20, Length: 1000, EndEpoch: 10}))
	f.Add(fastEntry("client/bench/y", RegisterBlob{Client: "b", Deletable: true, Root: crypto.Digest{1}}))
	f.Fuzz(func(t *testing.T, data []byte) { checkFastCommand(t, data) })
}
