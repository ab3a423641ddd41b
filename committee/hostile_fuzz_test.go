package committee

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/shardmap"
)

// A snapshot upload is checked before it may replace the state: whatever
// the bytes, the check answers (an error or the applied index) and never
// crashes the voter; what it accepts opens as a state file.
func FuzzSnapshotCheck(f *testing.F) {
	cfg := Config{Shards: 10}
	valid := validSnapshot(f, cfg)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("not a bbolt file"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "upload")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		applied, err := checkSnapshotFile(path, cfg)
		if err != nil {
			return
		}
		fsm, err := OpenFSM(path, cfg)
		if err != nil {
			t.Fatalf("checked (applied index %d) but does not open: %v", applied, err)
		}
		fsm.Close()
	})
}

// validSnapshot is a real FSM's snapshot with nodes and an epoch.
func validSnapshot(f *testing.F, cfg Config) []byte {
	tf := newTestFSM(f, cfg)
	for _, id := range []string{"a", "b", "c", "d"} {
		tf.register(shardmap.NodeID(id), 10)
	}
	tf.advance(false)
	snap, err := tf.fsm.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	defer snap.Release()
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		f.Fatal(err)
	}
	return sink.Bytes()
}

// Whatever a command's ID, kind and body — the log holds what a leader
// proposed, possibly an older version's — applying it never panics, and
// two replicas applying the same entries end in the same state.
func FuzzFSMApply(f *testing.F) {
	for _, seed := range []struct{ kind, body string }{
		{string(KindSetStake), `{"node":"a","stake":5}`},
		{string(KindAdvanceEpoch), `{"force":true,"owners":["a","b"]}`},
		{string(KindRegisterBlob), `{"client":"c","encoding":1,"shards":10,"length":1000,"end_epoch":5}`},
		{string(KindShardSynced), `{"epoch":1,"shard":3,"node":"a"}`},
		{string(KindSetPeer), `{"id":"v1","address":"x:1"}`},
		{string(KindAddClient), `{"client":"c","quota":100}`},
		{string(KindCloseChallenge), `{"round":0}`},
		{string(KindRegisterBlob), `{"client":"c","encoding":1,"shards":10,"length":9,"end_epoch":5,"deletable":true,"attributes":{"content-type":"a/b"}}`},
		{string(KindDeleteObject), `{"client":"c","object":7}`},
		{string(KindTransferObject), `{"client":"c","object":7,"to":"d"}`},
		{string(KindSetAttributes), `{"client":"c","object":7,"set":{"k":"v"},"remove":["x"]}`},
		{string(KindExtendBlob), `{"client":"c","blob_id":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","end_epoch":9,"object":7}`},
		{"no-such-kind", `[]`},
	} {
		f.Add("cmd-1", seed.kind, []byte(seed.body), "", uint64(0))
	}
	f.Fuzz(func(t *testing.T, id, kind string, body []byte, node string, nonce uint64) {
		var states []string
		for range 2 {
			tf := newTestFSM(t, Config{Shards: 10})
			for _, n := range []string{"a", "b", "c", "d"} {
				tf.register(shardmap.NodeID(n), 10)
			}
			tf.advance(false)
			cmd := Command{ID: id, Kind: Kind(kind), Body: json.RawMessage(body), Node: shardmap.NodeID(node), Nonce: nonce}
			if !json.Valid(body) {
				cmd.Body = nil
			}
			data, err := json.Marshal(cmd)
			if err != nil {
				return
			}
			tf.index++
			tf.fsm.ApplyBatch([]*raft.Log{
				{Index: tf.index, Type: raft.LogCommand, Data: data},
				{Index: tf.index + 1, Type: raft.LogCommand, Data: data}, // the same again: its first outcome
			})
			tf.index++
			tf.register("after", 1) // the FSM goes on
			states = append(states, fingerprint(t, tf.fsm))
		}
		if !bytes.Equal([]byte(states[0]), []byte(states[1])) {
			t.Fatalf("two replicas diverged:\n%s\nvs\n%s", states[0], states[1])
		}
	})
}
