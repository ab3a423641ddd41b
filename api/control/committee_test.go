package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// fuzzCommitteeFile builds a real committee (keys from a fixed seed) and
// returns its file encoding, as 'weft committee -o json' writes it.
func fuzzCommitteeFile(tb testing.TB, seed uint64, epoch uint64, withOwners bool, weights ...uint32) []byte {
	tb.Helper()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	var members []Member
	var owners []shardmap.NodeID
	for i, w := range weights {
		sk, err := crypto.GenerateKey(r)
		if err != nil {
			tb.Fatal(err)
		}
		node := shardmap.NodeID(fmt.Sprintf("n%d", i))
		members = append(members, Member{Node: node, Address: fmt.Sprintf("10.0.0.%d:9000", i+1), PublicKey: sk.PublicKey(), Weight: w})
		for j := uint32(0); withOwners && j < w; j++ {
			owners = append(owners, node)
		}
	}
	com, err := NewCommittee(epoch, members, owners)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := com.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// FuzzParseCommittee feeds arbitrary bytes to the decoder of a committee
// file ('weft verify --committee'): it never panics, and a committee it
// accepts is self-consistent — members and view agree, keys decoded and
// valid, weights positive and summing to the view's shards, quorums that
// mean what they say, a shard map (when given) matching the weights — and
// it survives re-encoding unchanged.
func FuzzParseCommittee(f *testing.F) {
	f.Add(fuzzCommitteeFile(f, 1, 3, true, 2, 1, 1, 3))
	f.Add(fuzzCommitteeFile(f, 2, 9, false, 1, 1, 1, 1, 1, 1, 1))
	f.Add(fuzzCommitteeFile(f, 3, 1, true, 10))
	f.Add(fuzzCommitteeFile(f, 4, 1<<40, false, 1<<31, 1<<31-1))
	f.Add([]byte(`{"epoch":1,"members":[]}`))
	f.Add([]byte(`{"epoch":1,"members":[{"node":"a","public_key":"zz","weight":1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		com, err := ParseCommittee(data)
		if err != nil {
			if com != nil {
				t.Fatal("a committee returned with an error")
			}
			return
		}
		checkCommittee(t, com)
		again, err := com.MarshalJSON()
		if err != nil {
			t.Fatalf("an accepted committee does not re-encode: %v", err)
		}
		back, err := ParseCommittee(again)
		if err != nil {
			t.Fatalf("the re-encoding of an accepted committee is refused: %v\n%s", err, again)
		}
		if !sameCommittee(com, back) {
			t.Fatalf("the re-encoding decodes to another committee:\n%s", again)
		}
		if third, _ := back.MarshalJSON(); !bytes.Equal(third, again) {
			t.Fatalf("re-encoding is not stable:\n%s\n%s", again, third)
		}
	})
}

func checkCommittee(t *testing.T, com *Committee) {
	t.Helper()
	view := com.View()
	if view == nil || len(com.Members) == 0 || view.Size() != len(com.Members) || view.Epoch() != com.Epoch {
		t.Fatalf("committee of %d members, view %+v", len(com.Members), view)
	}
	var sum uint64
	for i, m := range com.Members {
		if m.PublicKey == nil || m.PublicKey.Validate() != nil {
			t.Fatalf("member %d: key %v not valid", i, m.PublicKey)
		}
		if _, err := crypto.PublicKeyFromBytes(m.PublicKey.Bytes()); err != nil {
			t.Fatalf("member %d: key does not round-trip: %v", i, err)
		}
		pk, w := view.Member(i)
		if !bytes.Equal(pk.Bytes(), m.PublicKey.Bytes()) || w != m.Weight || w == 0 {
			t.Fatalf("member %d: view has weight %d, member %d", i, w, m.Weight)
		}
		if j, ok := com.Index(m.Node); !ok || j != i {
			t.Fatalf("member %d (%q) indexed at %d, %v", i, m.Node, j, ok)
		}
		if j, ok := view.IndexOf(m.PublicKey); !ok || j != i {
			t.Fatalf("member %d's key indexed at %d, %v", i, j, ok)
		}
		sum += uint64(m.Weight)
	}
	n := view.Shards()
	if n != sum {
		t.Fatalf("view counts %d shards, weights sum to %d", n, sum)
	}
	wq, vt := view.WriteQuorum(), view.ValidityThreshold()
	if wq < 1 || wq > n || 3*wq < 2*n+1 || 3*(wq-1) >= 2*n+1 || vt < 1 || vt > wq {
		t.Fatalf("n = %d: write quorum %d, validity threshold %d", n, wq, vt)
	}
	if com.Owners != nil {
		if uint64(len(com.Owners)) != n {
			t.Fatalf("shard map of %d shards, weights sum to %d", len(com.Owners), n)
		}
		for _, m := range com.Members {
			if got := len(com.OwnedBy(m.Node)); uint64(got) != uint64(m.Weight) {
				t.Fatalf("node %q owns %d shards, has weight %d", m.Node, got, m.Weight)
			}
		}
	}
}

func sameCommittee(a, b *Committee) bool {
	if a.Epoch != b.Epoch || len(a.Members) != len(b.Members) || len(a.Owners) != len(b.Owners) || (a.Owners == nil) != (b.Owners == nil) {
		return false
	}
	for i, m := range a.Members {
		o := b.Members[i]
		if m.Node != o.Node || m.Address != o.Address || m.Weight != o.Weight || !bytes.Equal(m.PublicKey.Bytes(), o.PublicKey.Bytes()) {
			return false
		}
	}
	for i := range a.Owners {
		if a.Owners[i] != b.Owners[i] {
			return false
		}
	}
	return true
}

// committeeOfWeights makes a committee of real BLS keys: member i owns
// weights[i] shards, laid out in order.
func committeeOfWeights(t *testing.T, epoch uint64, weights ...uint32) *Committee {
	t.Helper()
	com, err := ParseCommittee(fuzzCommitteeFile(t, 7, epoch, true, weights...))
	if err != nil {
		t.Fatal(err)
	}
	return com
}

// A committee survives its file format, and malformed files are refused

// A committee survives its file format, and malformed files are refused
// with a reason.
func TestCommitteeFile(t *testing.T) {
	com := committeeOfWeights(t, 4, 1, 2, 1)
	data, err := json.Marshal(com)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCommittee(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch != 4 || len(back.Members) != 3 || !back.Members[1].PublicKey.Equal(com.Members[1].PublicKey) ||
		back.Members[1].Weight != 2 || !slices.Equal(back.Owners, []shardmap.NodeID{"n0", "n1", "n1", "n2"}) || back.View().Shards() != 4 {
		t.Fatalf("parsed %+v", back)
	}
	for name, mutate := range map[string]func(*committeeJSON){
		"bad key":          func(c *committeeJSON) { c.Members[0].PublicKey = "00" },
		"duplicate member": func(c *committeeJSON) { c.Members[2] = c.Members[0] },
		"zero weight":      func(c *committeeJSON) { c.Members[0].Weight = 0; c.Owners = nil },
		"owners disagree":  func(c *committeeJSON) { c.Owners[0] = "n1" },
		"owner not member": func(c *committeeJSON) { c.Owners[0] = "x" },
		"no members":       func(c *committeeJSON) { c.Members = nil },
	} {
		var in committeeJSON
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatal(err)
		}
		mutate(&in)
		bad, _ := json.Marshal(in)
		if _, err := ParseCommittee(bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
