package committee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// compactionFSM is five nodes at epoch 1 with a client, retaining
// MinRetainEpochs epochs.
func compactionFSM(t *testing.T) *testFSM {
	tf := newTestFSM(t, Config{Shards: 10, RetainEpochs: MinRetainEpochs})
	for _, id := range []shardmap.NodeID{"a", "b", "c", "d", "e"} {
		tf.register(id, 10)
	}
	tf.advance(false)
	tf.mustApply(KindAddClient, AddClient{Client: "app", TokenHash: crypto.Digest{1}, Quota: 1 << 50})
	return tf
}

func (tf *testFSM) registerBlob(root uint64, end uint64) crypto.BlobID {
	tf.t.Helper()
	var d crypto.Digest
	copy(d[:], fmt.Sprint(root))
	return tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: d, EndEpoch: end}).BlobID
}

func (tf *testFSM) certify(id crypto.BlobID) {
	tf.t.Helper()
	tf.mustApply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: tf.certificateFor(crypto.BlobStored{BlobID: id}, 4)})
}

// churn registers and certifies blobs that end in the next epoch, and
// leaves as many uncertified to lapse, then advances: every epoch leaves
// history behind.
func (tf *testFSM) churn(blobs int) (ended []crypto.BlobID) {
	tf.t.Helper()
	e := tf.state().Epoch()
	for i := range blobs {
		id := tf.registerBlob(e*1_000_000+uint64(i), e+1)
		if i%2 == 0 {
			tf.certify(id)
		}
		ended = append(ended, id)
	}
	tf.mustApply(KindStartChallenge, StartChallenge{Fresh: [32]byte{byte(e)}})
	tf.advance(false)
	return ended
}

func (tf *testFSM) count(bucket []byte) (n int) {
	tf.t.Helper()
	_ = tf.fsm.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n
}

// Compaction keeps every live blob readable and its certificate
// verifiable against its epoch's committee, drops ended blobs' records,
// old events, challenge rounds and command records, and refuses events
// below the horizon.
func TestCompactionKeepsLiveStateAndDropsHistory(t *testing.T) {
	tf := compactionFSM(t)
	tf.fsm.commandRetention = 200
	live := tf.registerBlob(1, 1000)
	tf.certify(live)
	later := tf.registerBlob(2, 1000) // certified in another epoch
	var ended []crypto.BlobID
	ended = append(ended, tf.churn(20)...)
	tf.certify(later)
	for range 11 {
		ended = append(ended, tf.churn(20)...)
	}
	for range 70 { // more rounds than are kept
		tf.mustApply(KindStartChallenge, StartChallenge{})
	}
	for range 3 * MinRetainEpochs {
		tf.churn(0) // the compaction of the last churn catches up over these commands
	}

	for _, id := range []crypto.BlobID{live, later} {
		rec, found, err := tf.fsm.Blob(id)
		if err != nil || !found || !rec.Live() {
			t.Fatalf("live blob %s: found %v, %+v, %v", id, found, rec, err)
		}
		com, found, _ := tf.fsm.Committee(rec.CertifiedEpoch)
		view, err := com.View()
		if !found || err != nil {
			t.Fatalf("committee of epoch %d: %v", rec.CertifiedEpoch, err)
		}
		var cert crypto.Certificate
		if err := cert.UnmarshalBinary(rec.Certificate); err != nil {
			t.Fatal(err)
		}
		if err := cert.VerifyAvailability(view); err != nil {
			t.Fatalf("certificate of live blob %s no longer verifies: %v", id, err)
		}
	}
	for _, id := range ended {
		if _, found, _ := tf.fsm.Blob(id); found {
			t.Fatalf("the record of blob %s, ended %d epochs ago, is still there", id, MinRetainEpochs)
		}
	}
	if n := tf.count(bucketEnded); n != 0 {
		t.Fatalf("%d ended-blob entries left", n)
	}
	if n := tf.count(bucketBlobs); n != 2 {
		t.Fatalf("%d blob records, want the 2 live ones", n)
	}
	if n := tf.count(bucketChallenges); n != retainRounds {
		t.Fatalf("%d challenge rounds kept, want %d", n, retainRounds)
	}
	if n := tf.count(bucketCommands); n > 200+1 {
		t.Fatalf("%d command records kept with a retention of 200 indices", n)
	}
	if n, i := tf.count(bucketCommandIndex), tf.count(bucketCommands); n != i {
		t.Fatalf("%d command index entries for %d records", n, i)
	}

	h, _ := tf.fsm.EventHorizon()
	if h == 0 {
		t.Fatal("no event horizon after 15 epochs")
	}
	var compacted *ErrCompacted
	if _, err := tf.fsm.Events(0, 10); !errors.As(err, &compacted) || compacted.Horizon != h {
		t.Fatalf("events after 0: %v, want compacted below %d", err, h)
	}
	events, err := tf.fsm.Events(h-1, 1000)
	if err != nil || len(events) == 0 || events[0].Index < h {
		t.Fatalf("events from the horizon %d: %d, %v", h, len(events), err)
	}
	if n := tf.count(bucketEvents); n != len(events) {
		t.Fatalf("%d events stored, %d after the horizon", n, len(events))
	}
	started := 0
	for _, e := range events {
		if e.Kind == "epoch-started" {
			started++
		}
	}
	if started != MinRetainEpochs {
		t.Fatalf("the retained events start %d epochs, want the last %d", started, MinRetainEpochs)
	}
}

// A command record is honoured for commandRetention indices, then the ID
// applies afresh — decided by the index, however far deletion has got.
func TestCommandRecordsExpire(t *testing.T) {
	tf := compactionFSM(t)
	tf.fsm.commandRetention = 50
	first := tf.applyAt(tf.index+1, "retried", KindSetQuota, SetQuota{Client: "app", Quota: 5})
	tf.index++
	tf.mustApply(KindSetQuota, SetQuota{Client: "app", Quota: 7})
	tf.index++
	if again := tf.applyAt(tf.index, "retried", KindSetQuota, SetQuota{Client: "app", Quota: 5}); again.Index != first.Index {
		t.Fatalf("a retry within the retention applied again: %+v", again)
	}
	if rec, _, _ := tf.fsm.Client("app"); rec.Quota != 7 {
		t.Fatalf("quota %d: the retry was applied", rec.Quota)
	}
	for range 60 {
		tf.mustApply(KindSetQuota, SetQuota{Client: "app", Quota: 7})
	}
	tf.index++
	if late := tf.applyAt(tf.index, "retried", KindSetQuota, SetQuota{Client: "app", Quota: 5}); late.Index != tf.index {
		t.Fatalf("a record past its retention still answered: %+v", late)
	}
	if rec, _, _ := tf.fsm.Client("app"); rec.Quota != 5 {
		t.Fatalf("quota %d: the expired ID did not apply afresh", rec.Quota)
	}
}

// A state file written before compaction (no horizon, no ended-blobs
// index, ended records without their index, no retain_epochs in the
// config) opens, and compaction catches up in bounded steps.
func TestOlderStateFileCompactsAfterUpgrade(t *testing.T) {
	tf := compactionFSM(t)
	var ended []crypto.BlobID
	for range 3 {
		ended = append(ended, tf.churn(100)...)
	}
	path := tf.fsm.path
	downgrade(t, tf.fsm)
	if err := tf.fsm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFSM(path, Config{Shards: 10, RetainEpochs: MinRetainEpochs}); err == nil {
		t.Fatal("an older file (the default retention) opened with another retention")
	}
	f, err := OpenFSM(path, Config{Shards: 10})
	if err != nil {
		t.Fatalf("an older state file does not open: %v", err)
	}
	tf.fsm = f
	if _, err := f.Events(0, 1); err != nil {
		t.Fatalf("events of an uncompacted older file: %v", err)
	}
	for range 2*DefaultRetainEpochs + 2 {
		tf.churn(0)
	}
	for range 20 { // each command sweeps compactBudget records
		tf.mustApply(KindSetQuota, SetQuota{Client: "app", Quota: 1 << 50})
	}
	for _, id := range ended {
		if _, found, _ := tf.fsm.Blob(id); found {
			t.Fatalf("the older file's ended blob %s was never compacted", id)
		}
	}
	if h, _ := tf.fsm.EventHorizon(); h == 0 {
		t.Fatal("no horizon after the upgrade's retained epochs")
	}
}

// downgrade rewrites a state file as the version before compaction wrote
// it.
func downgrade(t *testing.T, f *FSM) {
	t.Helper()
	err := f.db.Update(func(tx *bolt.Tx) error {
		for _, b := range laterBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyHorizon, keyCompacting, keyLegacySweep} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		if err := putJSON(meta, keyConfig, map[string]any{"shards": 10, "per_node_cap": 0, "lapse_epochs": DefaultLapseEpochs}); err != nil {
			return err
		}
		blobs := tx.Bucket(bucketBlobs)
		var recs []BlobRecord
		c := blobs.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			var rec BlobRecord
			if _, err := getBlob(blobs, k, &rec); err != nil {
				return err
			}
			rec.EndedIndex = 0
			recs = append(recs, rec)
		}
		for _, rec := range recs {
			if err := putJSON(blobs, rec.ID[:], rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ListCertified's order is certification order (so, epoch order): a page
// starts after the cursor blob's place and stops at the first blob
// certified in the asked epoch, whatever the registry holds.
func TestCertifiedBeforePagesInEpochOrder(t *testing.T) {
	tf := compactionFSM(t)
	var want []crypto.BlobID
	for e := range uint64(3) {
		for i := range 5 {
			id := tf.registerBlob(100*e+uint64(i), 1000)
			tf.certify(id)
			want = append(want, id)
		}
		tf.registerBlob(100*e+50, 1000) // uncertified: never listed
		tf.advance(false)
	}
	first := want[0]
	ended := tf.registerBlob(999, tf.state().Epoch()+1)
	tf.certify(ended)
	tf.advance(false) // `ended` expires; blobs certified in epochs 1–3 stay
	var got []crypto.BlobID
	var cursor crypto.BlobID
	for {
		page, more, err := tf.fsm.CertifiedInOrder(3, cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range page {
			got = append(got, rec.ID)
		}
		if !more {
			break
		}
		cursor = page[len(page)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(want[:10]) {
		t.Fatalf("certified before epoch 3:\n%v\nwant (epochs 1 and 2, in certification order)\n%v", got, want[:10])
	}
	if page, _, err := tf.fsm.CertifiedInOrder(100, first, 1000); err != nil || len(page) != 14 {
		t.Fatalf("after the first blob, before epoch 100: %d blobs (%v), want the 14 other live ones", len(page), err)
	}
	if _, _, err := tf.fsm.CertifiedInOrder(100, crypto.BlobID{7}, 10); !errors.Is(err, errCursorGone) {
		t.Fatalf("an unknown cursor: %v", err)
	}
}

// applyBatch applies commands as one Raft batch (one transaction).
func (tf *testFSM) applyBatch(kind Kind, bodies []any) {
	tf.t.Helper()
	var logs []*raft.Log
	for _, body := range bodies {
		tf.index++
		cmd, err := NewCommand(fmt.Sprintf("cmd-%d", tf.index), kind, body)
		if err != nil {
			tf.t.Fatal(err)
		}
		data, _ := json.Marshal(cmd)
		logs = append(logs, &raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data})
	}
	for i, out := range tf.fsm.ApplyBatch(logs) {
		if res, _ := out.(*Result); res == nil || res.Err() != nil {
			tf.t.Fatalf("%s at index %d: %+v", kind, logs[i].Index, res)
		}
	}
}

func (tf *testFSM) snapshotSize() int {
	tf.t.Helper()
	var buf bytes.Buffer
	if _, err := tf.fsm.WriteSnapshot(&buf); err != nil {
		tf.t.Fatal(err)
	}
	return buf.Len()
}

// After 5,000 blobs registered and expired or lapsed across epochs, and
// their history compacted, a snapshot is about the size of one of a state
// that never had them (the file keeps its high-water mark; the snapshot
// is written compacted), and it restores.
func TestSnapshotSizeBoundedByLiveState(t *testing.T) {
	const blobs = 5000
	run := func(withBlobs bool) (*testFSM, int, int64) {
		tf := compactionFSM(t) // the default commandRetention: the horizon ends the records
		for e := range uint64(5) {
			var bodies []any
			for i := range blobs / 5 {
				var root crypto.Digest
				copy(root[:], fmt.Sprint(e, "-", i))
				bodies = append(bodies, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 5000, Root: root, EndEpoch: tf.state().Epoch() + 1 + uint64(i%3)})
			}
			if withBlobs {
				tf.applyBatch(KindRegisterBlob, bodies)
			}
			tf.advance(false)
		}
		for range 2 * MinRetainEpochs {
			tf.advance(false)
		}
		// Enough commands for the compaction steps to catch up, alike in both runs.
		quota := make([]any, 600)
		for i := range quota {
			quota[i] = SetQuota{Client: "app", Quota: 1 << 50}
		}
		tf.applyBatch(KindSetQuota, quota)
		info, err := os.Stat(tf.fsm.path)
		if err != nil {
			t.Fatal(err)
		}
		return tf, tf.snapshotSize(), info.Size()
	}
	_, empty, _ := run(false)
	tf, full, file := run(true)
	if n := tf.count(bucketBlobs); n != 0 {
		t.Fatalf("%d blob records left after every blob ended %d epochs ago", n, 2*MinRetainEpochs)
	}
	t.Logf("snapshot: %d bytes with no blobs, %d after %d registered and ended (state file %d bytes)", empty, full, blobs, file)
	if full > 2*empty {
		t.Fatalf("snapshot of %d bytes after %d ended blobs, %d without: not bounded by live state", full, blobs, empty)
	}
	// The compacted snapshot is a state file that restores.
	var buf bytes.Buffer
	if _, err := tf.fsm.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	other := newTestFSM(t, Config{Shards: 10, RetainEpochs: MinRetainEpochs})
	if err := other.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if a, b := fingerprint(t, other.fsm), fingerprint(t, tf.fsm); a != b {
		t.Fatalf("restored %s, want %s", a, b)
	}
}

// A compact command catches up with catchUpBudget deletions, where any
// other command carries compactBudget: a quiet network still compacts.
func TestCompactCommandCatchesUp(t *testing.T) {
	tf := compactionFSM(t)
	for range MinRetainEpochs + 1 {
		tf.churn(200)
	}
	// The horizon moved at the last advance; its own step took only
	// compactBudget of the backlog.
	pending, err := tf.fsm.CompactionPending()
	if err != nil || !pending {
		t.Fatalf("compaction pending %v (%v) after the horizon moved over %d blobs", pending, err, 200)
	}
	before := tf.count(bucketEvents) + tf.count(bucketBlobs)
	tf.mustApply(KindCompact, Compact{})
	deleted := before - (tf.count(bucketEvents) + tf.count(bucketBlobs))
	if deleted <= compactBudget {
		t.Fatalf("a compact command deleted %d events and blob records, no more than another command's %d", deleted, compactBudget)
	}
	for i := 0; ; i++ {
		if pending, _ := tf.fsm.CompactionPending(); !pending {
			break
		}
		if i == 10 {
			t.Fatal("10 compact commands did not catch up")
		}
		tf.mustApply(KindCompact, Compact{})
	}
}
