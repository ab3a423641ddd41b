package committee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/shardmap"
)

// testFSM drives a real FSM on a real bbolt file with log entries, as Raft
// would, numbering them itself.
type testFSM struct {
	t     testing.TB
	fsm   *FSM
	index uint64
	keys  map[shardmap.NodeID]*crypto.SecretKey
}

func newTestFSM(t testing.TB, cfg Config) *testFSM {
	f, err := OpenFSM(filepath.Join(t.TempDir(), "fsm.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &testFSM{t: t, fsm: f, keys: map[shardmap.NodeID]*crypto.SecretKey{}}
}

func (tf *testFSM) applyAt(index uint64, id string, kind Kind, body any) *Result {
	tf.t.Helper()
	cmd, err := NewCommand(id, kind, body)
	if err != nil {
		tf.t.Fatal(err)
	}
	data, _ := json.Marshal(cmd)
	res, _ := tf.fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*Result)
	return res
}

// applyCommand applies a prepared command at the current index.
func (tf *testFSM) applyCommand(cmd Command) *Result {
	tf.t.Helper()
	data, _ := json.Marshal(cmd)
	res, _ := tf.fsm.Apply(&raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data}).(*Result)
	return res
}

func (tf *testFSM) apply(kind Kind, body any) *Result {
	tf.t.Helper()
	tf.index++
	return tf.applyAt(tf.index, fmt.Sprintf("cmd-%d", tf.index), kind, body)
}

func (tf *testFSM) mustApply(kind Kind, body any) *Result {
	tf.t.Helper()
	res := tf.apply(kind, body)
	if err := res.Err(); err != nil {
		tf.t.Fatalf("%s: %v", kind, err)
	}
	return res
}

func (tf *testFSM) register(id shardmap.NodeID, stake uint64) {
	tf.t.Helper()
	seed := make([]byte, 32)
	copy(seed, id)
	sk, err := crypto.KeyGen(seed)
	if err != nil {
		tf.t.Fatal(err)
	}
	tf.keys[id] = sk
	tf.mustApply(KindRegisterNode, RegisterNode{Node: id, PublicKey: sk.PublicKey().Bytes(), Address: string(id) + ":7000"})
	tf.mustApply(KindSetStake, SetStake{Node: id, Stake: stake})
}

func (tf *testFSM) advance(force bool) *Result {
	tf.t.Helper()
	plan, err := tf.fsm.PlanEpoch(force, 0)
	if err != nil {
		tf.t.Fatal(err)
	}
	return tf.apply(KindAdvanceEpoch, plan)
}

func (tf *testFSM) state() epoch.State {
	s, err := tf.fsm.EpochState()
	if err != nil {
		tf.t.Fatal(err)
	}
	return s
}

func wantCode(t *testing.T, what string, res *Result, code Code) {
	t.Helper()
	if res == nil || res.Error == nil || res.Error.Code != code {
		t.Fatalf("%s: result %+v, want %s", what, res, code)
	}
	if !errors.Is(res.Err(), &CommandError{Code: code}) {
		t.Fatalf("%s: errors.Is does not match the code", what)
	}
}

// The control-plane epoch change of issue 4's acceptance, on the FSM:
// 7 staked nodes → epoch 1; a new node → Handover until every moved shard
// is reported synced; the rejections; a forced advance keeps holders.
func TestFSMEpochChange(t *testing.T) {
	tf := newTestFSM(t, Config{Shards: 100})
	for i := range 7 {
		tf.register(shardmap.NodeID(fmt.Sprintf("node-%d", i)), 10)
	}
	if res := tf.advance(false); res.Err() != nil || res.Epoch != 1 {
		t.Fatalf("first advance: %+v", res)
	}
	s := tf.state()
	if s.Epoch() != 1 || s.Phase() != epoch.Stable {
		t.Fatalf("epoch %d phase %s", s.Epoch(), s.Phase())
	}
	committee, found, _ := tf.fsm.Committee(1)
	if !found || len(committee.Members) != 7 {
		t.Fatalf("committee of epoch 1: %+v", committee)
	}
	if _, err := committee.View(); err != nil {
		t.Fatal(err)
	}

	tf.register("node-7", 10)
	if res := tf.advance(false); res.Err() != nil || res.Epoch != 2 {
		t.Fatalf("advance after join: %+v", res)
	}
	s = tf.state()
	pending := s.Pending()
	if s.Phase() != epoch.Handover || len(pending) < 12 {
		t.Fatalf("phase %s with %d pending", s.Phase(), len(pending))
	}
	first := pending[0]
	wantCode(t, "plain advance during handover", tf.advance(false), CodeFailedPrecondition)
	wantCode(t, "synced by a non-owner", tf.apply(KindShardSynced, ShardSynced{Epoch: 2, Shard: first, Node: s.Holder(first)}), CodePermissionDenied)
	wantCode(t, "synced for another epoch", tf.apply(KindShardSynced, ShardSynced{Epoch: 1, Shard: first, Node: "node-7"}), CodeFailedPrecondition)
	tf.mustApply(KindShardSynced, ShardSynced{Epoch: 2, Shard: first, Node: "node-7"})
	wantCode(t, "duplicate synced", tf.apply(KindShardSynced, ShardSynced{Epoch: 2, Shard: first, Node: "node-7"}), CodeAlreadyExists)
	for _, shard := range pending[1:] {
		tf.mustApply(KindShardSynced, ShardSynced{Epoch: 2, Shard: shard, Node: "node-7"})
	}
	if tf.state().Phase() != epoch.Stable {
		t.Fatal("not Stable after every moved shard was synced")
	}

	// A node leaves: Handover again; forced on, its unsynced shards keep it as holder.
	tf.mustApply(KindSetStake, SetStake{Node: "node-0", Stake: 0})
	tf.advance(false)
	before := tf.state()
	if res := tf.advance(true); res.Err() != nil || res.Epoch != 4 {
		t.Fatalf("forced advance: %+v", res)
	}
	after := tf.state()
	for _, shard := range before.Pending() {
		if after.Holder(shard) != "node-0" {
			t.Fatalf("shard %d lost its holder node-0 in the forced advance", shard)
		}
	}
	wantCode(t, "removing a node that still holds shards", tf.apply(KindRemoveNode, RemoveNode{Node: "node-0"}), CodeFailedPrecondition)

	events, err := tf.fsm.Events(0, 1000)
	if err != nil || len(events) == 0 {
		t.Fatalf("events: %v", err)
	}
	for i := 1; i < len(events); i++ {
		if events[i].Index < events[i-1].Index {
			t.Fatal("events out of index order")
		}
	}
}

func TestFSMRegistryRejections(t *testing.T) {
	tf := newTestFSM(t, Config{Shards: 10})
	tf.register("a", 5)
	key := tf.keys["a"].PublicKey().Bytes()
	other, _ := crypto.KeyGen(bytes.Repeat([]byte{9}, 32))
	identity := append([]byte{0xc0}, make([]byte, 47)...)
	cases := []struct {
		what string
		body RegisterNode
		code Code
	}{
		{"duplicate node ID", RegisterNode{Node: "a", PublicKey: other.PublicKey().Bytes(), Address: "x"}, CodeAlreadyExists},
		{"duplicate key", RegisterNode{Node: "b", PublicKey: key, Address: "x"}, CodeAlreadyExists},
		{"identity key", RegisterNode{Node: "c", PublicKey: identity, Address: "x"}, CodeInvalidArgument},
		{"malformed key", RegisterNode{Node: "d", PublicKey: key[:47], Address: "x"}, CodeInvalidArgument},
		{"empty ID", RegisterNode{Node: "", PublicKey: other.PublicKey().Bytes(), Address: "x"}, CodeInvalidArgument},
		{"no address", RegisterNode{Node: "e", PublicKey: other.PublicKey().Bytes()}, CodeInvalidArgument},
	}
	for _, tc := range cases {
		wantCode(t, tc.what, tf.apply(KindRegisterNode, tc.body), tc.code)
	}
	wantCode(t, "stake of an unknown node", tf.apply(KindSetStake, SetStake{Node: "zz", Stake: 1}), CodeNotFound)
	wantCode(t, "unknown kind", tf.apply("teleport", struct{}{}), CodeInvalidArgument)
	wantCode(t, "unknown field", tf.apply(KindSetStake, map[string]any{"node": "a", "stake": 1, "extra": true}), CodeInvalidArgument)
	nodes, _ := tf.fsm.Nodes()
	if len(nodes) != 1 {
		t.Fatalf("rejections changed the registry: %d nodes", len(nodes))
	}
}

// A command proposed twice (a lost leadership left its outcome unknown)
// and a log replayed after a restart both leave the first outcome.
func TestFSMIdempotentAndReplaySafe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fsm.db")
	f, err := OpenFSM(path, Config{Shards: 10})
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFSM{t: t, fsm: f, keys: map[shardmap.NodeID]*crypto.SecretKey{}}
	tf.register("a", 5)
	first := tf.applyAt(10, "stake-once", KindSetStake, SetStake{Node: "a", Stake: 7})
	again := tf.applyAt(11, "stake-once", KindSetStake, SetStake{Node: "a", Stake: 99})
	if first.Err() != nil || again.Index != first.Index {
		t.Fatalf("second proposal: %+v vs %+v", again, first)
	}
	if rec, _, _ := tf.fsm.Node("a"); rec.Stake != 7 {
		t.Fatalf("stake %d after a repeated command", rec.Stake)
	}
	f.Close()

	// Reopen and replay the log from the start, as Raft does after a restart.
	f, err = OpenFSM(path, Config{Shards: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tf.fsm = f
	tf.applyAt(1, "cmd-1", KindRegisterNode, RegisterNode{Node: "a", PublicKey: tf.keys["a"].PublicKey().Bytes(), Address: "a:7000"})
	tf.applyAt(2, "cmd-2", KindSetStake, SetStake{Node: "a", Stake: 5})
	if rec, _, _ := f.Node("a"); rec.Stake != 7 {
		t.Fatalf("replay rolled the stake back to %d", rec.Stake)
	}
	if idx, _ := f.AppliedIndex(); idx != 11 {
		t.Fatalf("applied index %d after replay", idx)
	}
	if _, err := OpenFSM(filepath.Join(dir, "other.db"), Config{Shards: 10}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := OpenFSM(path, Config{Shards: 20}); err == nil {
		t.Fatal("state file reopened with another shard count")
	}
}

// Register and certify: the FSM derives the ID; certificates are taken for
// the current epoch only and before the end epoch; rejections change
// nothing.
func TestFSMBlobs(t *testing.T) {
	tf := newTestFSM(t, Config{Shards: 10})
	for _, id := range []shardmap.NodeID{"a", "b", "c", "d"} {
		tf.register(id, 10)
	}
	tf.mustApply(KindAddClient, AddClient{Client: "app", TokenHash: crypto.Digest{1}, Quota: 1 << 40})
	register := RegisterBlob{Client: "app", Encoding: uint8(coding.RS8), Shards: 10, Length: 1234, Root: crypto.Digest{5}, EndEpoch: 3}
	wantCode(t, "registration before epoch 1", tf.apply(KindRegisterBlob, register), CodeFailedPrecondition)
	tf.advance(false)
	res := tf.mustApply(KindRegisterBlob, register)
	if res.BlobID != crypto.DeriveBlobID(register.Encoding, 10, 1234, register.Root) {
		t.Fatal("the FSM did not derive the blob ID from the registered fields")
	}
	id := res.BlobID
	for what, bad := range map[string]RegisterBlob{
		"wrong shard count": {Client: "app", Encoding: 1, Shards: 11, Length: 1, EndEpoch: 3},
		"unknown encoding":  {Client: "app", Encoding: 9, Shards: 10, Length: 1, EndEpoch: 3},
		// lanes16 is stored above 256 shards only; leopard16 is not this
		// network's (rs8 covers any symbol size up to 256 shards).
		"lanes16 at 10 shards":   {Client: "app", Encoding: uint8(coding.Lanes16), Shards: 10, Length: 1, EndEpoch: 3},
		"leopard16 at 10 shards": {Client: "app", Encoding: uint8(coding.Leopard16), Shards: 10, Length: 1, EndEpoch: 3},
		"too large":              {Client: "app", Encoding: 1, Shards: 10, Length: coding.DefaultMaxBlobLength + 1, EndEpoch: 3},
		"end epoch passed":       {Client: "app", Encoding: 1, Shards: 10, Length: 1, EndEpoch: 1},
	} {
		wantCode(t, what, tf.apply(KindRegisterBlob, bad), CodeInvalidArgument)
	}

	certify := func(epochOf uint64) []byte {
		rec, _, _ := tf.fsm.Committee(epochOf)
		view, err := rec.View()
		if err != nil {
			t.Fatal(err)
		}
		var sigs []crypto.MemberSignature
		for _, m := range rec.Members {
			sig, _ := tf.keys[m.Node].SignMessage(epochOf, crypto.BlobStored{BlobID: id})
			pk, _ := crypto.PublicKeyFromBytes(m.PublicKey)
			sigs = append(sigs, crypto.MemberSignature{Key: pk, Signature: sig})
		}
		cert, err := crypto.BuildCertificate(view, crypto.BlobStored{BlobID: id}, sigs)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := cert.MarshalBinary()
		return b
	}
	old := certify(1)
	wantCode(t, "garbage certificate", tf.apply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: old[:20]}), CodeInvalidArgument)
	wantCode(t, "unknown blob", tf.apply(KindCertifyBlob, CertifyBlob{BlobID: crypto.BlobID{1}, Certificate: old}), CodeInvalidArgument)
	tf.advance(false) // epoch 2: the epoch-1 certificate is stale now
	wantCode(t, "previous epoch's certificate", tf.apply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: old}), CodeFailedPrecondition)
	if rec, _, _ := tf.fsm.Blob(id); rec.CertifiedEpoch != 0 {
		t.Fatal("a rejected certificate certified the blob")
	}
	current := certify(2)
	if res := tf.mustApply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: current}); res.Epoch != 2 {
		t.Fatalf("certified in epoch %d", res.Epoch)
	}
	// Past its end epoch a registration cannot be certified.
	late := tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 9, EndEpoch: 3})
	tf.advance(false) // epoch 3 = the end epoch
	id = late.BlobID
	wantCode(t, "certificate past the end epoch", tf.apply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: certify(3)}), CodeFailedPrecondition)
}

// Snapshot streams a read transaction; Restore replaces another replica's
// file with it.
func TestFSMSnapshotRestore(t *testing.T) {
	src := newTestFSM(t, Config{Shards: 10})
	for _, id := range []shardmap.NodeID{"a", "b", "c"} {
		src.register(id, 10)
	}
	src.advance(false)
	snap, err := src.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply goes on while the snapshot is open; the snapshot keeps its view.
	src.register("d", 10)
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := newTestFSM(t, Config{Shards: 10})
	dst.register("zz", 1)
	if err := dst.fsm.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	nodes, _ := dst.fsm.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("restored %d nodes, want the 3 of the snapshot", len(nodes))
	}
	if s, _ := dst.fsm.EpochState(); s.Epoch() != 1 {
		t.Fatalf("restored epoch %d", s.Epoch())
	}
	srcIdx, _ := src.fsm.AppliedIndex()
	dstIdx, _ := dst.fsm.AppliedIndex()
	if dstIdx >= srcIdx || dstIdx == 0 {
		t.Fatalf("restored applied index %d, source now at %d", dstIdx, srcIdx)
	}
}

type memorySink struct{ bytes.Buffer }

func (s *memorySink) ID() string    { return "test" }
func (s *memorySink) Cancel() error { return nil }
func (s *memorySink) Close() error  { return nil }
func (s *memorySink) reader() *readCloser {
	return &readCloser{Reader: bytes.NewReader(s.Bytes())}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
