package committee

import (
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// checkCounts compares the kept registry counts with a count of every
// record.
func (tf *testFSM) checkCounts(step string) RegistryCounts {
	tf.t.Helper()
	kept, err := tf.fsm.RegistryCounts()
	if err != nil {
		tf.t.Fatal(err)
	}
	var scanned RegistryCounts
	if err := tf.fsm.view(func(tx *bolt.Tx) (err error) {
		scanned, err = scanRegistry(tx)
		return err
	}); err != nil {
		tf.t.Fatal(err)
	}
	if kept != scanned {
		tf.t.Fatalf("%s: kept counts %+v, the registry holds %+v", step, kept, scanned)
	}
	return kept
}

// The registry's counts follow every way a blob changes state —
// registered, certified, invalid, expired, lapsed, deleted, compacted
// away — and objects created, deleted and ended; a state file without
// them is counted when opened.
func TestFSMRegistryCounts(t *testing.T) {
	tf := compactionFSM(t)
	c := tf.checkCounts("empty")
	if c != (RegistryCounts{}) {
		t.Fatalf("an empty registry counts %+v", c)
	}
	live := tf.registerBlob(1, 20)
	tf.certify(live)
	pending := tf.registerBlob(2, 20)
	c = tf.checkCounts("one certified, one registered")
	if c.Certified != 1 || c.Registered != 1 || c.CertifiedBytes != 500 || c.RegisteredBytes != 500 || c.Objects != 2 {
		t.Fatalf("counts %+v", c)
	}
	// Another object of the same bytes: one blob, two objects.
	tf.registerBlob(1, 20)
	if c = tf.checkCounts("shared"); c.Certified != 1 || c.Objects != 3 {
		t.Fatalf("shared blob: counts %+v", c)
	}
	del := tf.registerBlob(3, 20)
	tf.certify(del)
	obj := tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: crypto.Digest{'3'}, EndEpoch: 20, Deletable: true}).Object
	tf.mustApply(KindDeleteObject, DeleteObject{Client: "app", Object: obj})
	tf.checkCounts("an object deleted")
	for range 2*MinRetainEpochs + 2 {
		tf.churn(4) // expiries, lapses, compaction
		tf.checkCounts("churn")
	}
	c = tf.checkCounts("after churn")
	if c.Certified != 2 || c.Registered != 0 {
		t.Fatalf("after churn: %+v (the pending blob lapsed, two certified stay)", c)
	}
	_ = pending

	// A state file from before the counts: counted at open.
	want := c
	if err := tf.fsm.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyRegistryCounts) }); err != nil {
		t.Fatal(err)
	}
	if err := tf.fsm.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFSM(tf.fsm.path, tf.fsm.cfg)
	if err != nil {
		t.Fatal(err)
	}
	tf.fsm = f
	if got := tf.checkCounts("reopened"); got != want {
		t.Fatalf("reopened without counts: %+v, want %+v", got, want)
	}
}

// The handover record is the epoch change's: every move with its
// source, and after a forced change the shards left unsynced.
func TestFSMHandoverRecord(t *testing.T) {
	tf := compactionFSM(t)
	o, err := tf.fsm.Overview()
	if err != nil {
		t.Fatal(err)
	}
	if o.Handover.Epoch != 1 || len(o.Handover.Moves) != 0 || len(o.Nodes) != 5 {
		t.Fatalf("genesis overview: %+v", o)
	}
	tf.register("f", 40)
	tf.advance(false).Err()
	started := tf.eventsAt(tf.index)[0]
	o, _ = tf.fsm.Overview()
	if o.Handover.Epoch != 2 || o.Handover.Index != tf.index || o.Handover.Forced || len(o.Handover.Moves) == 0 ||
		!slices.Equal(o.Handover.Moves, started.Moves) {
		t.Fatalf("handover %+v, the epoch change's moves %v", o.Handover, started.Moves)
	}
	// Sync one, then force: the rest are carried.
	first := o.Handover.Moves[0]
	tf.mustApply(KindShardSynced, ShardSynced{Epoch: 2, Shard: first.Shard, Node: first.To})
	unsynced := tf.state().Pending()
	tf.mustApply(KindSetStake, SetStake{Node: "a", Stake: 30})
	if err := tf.advance(true).Err(); err != nil {
		t.Fatal(err)
	}
	o, _ = tf.fsm.Overview()
	if !o.Handover.Forced || !slices.Equal(o.Handover.Carried, unsynced) || o.Handover.Epoch != 3 {
		t.Fatalf("forced handover %+v, unsynced before %v", o.Handover, unsynced)
	}
	for _, m := range o.Handover.Moves {
		if o.State.Holder(m.Shard) != m.From || o.State.Owner(m.Shard) != m.To {
			t.Fatalf("move %+v: holder %s, owner %s", m, o.State.Holder(m.Shard), o.State.Owner(m.Shard))
		}
	}
	_ = shardmap.NodeID("")
}
