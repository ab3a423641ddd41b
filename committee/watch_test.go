package committee

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// watchAs asks fsm what a watcher holding the state at after gets, and
// turns it into the full state the watcher ends with.
func watchAs(t testing.TB, fsm *FSM, have control.State, after uint64) (control.State, *weftv1.WatchStateResponse) {
	t.Helper()
	resp := watchResponse(fsm, &weftv1.WatchStateRequest{AfterIndex: after, Delta: true})
	var st control.State
	var err error
	if resp.Delta {
		st, err = control.ApplyDelta(have, resp)
	} else {
		st, err = control.StateFromProto(resp)
	}
	if err != nil {
		t.Fatalf("watch after %d: %v", after, err)
	}
	return st, resp
}

// fullState is the state a watcher asking for no delta gets.
func fullState(t testing.TB, fsm *FSM) control.State {
	t.Helper()
	st, err := control.StateFromProto(watchResponse(fsm, &weftv1.WatchStateRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func sameState(a, b control.State) bool {
	return a.Index == b.Index && a.Epoch == b.Epoch && slices.Equal(a.Owners, b.Owners) && slices.Equal(a.Holders, b.Holders)
}

// deltaTwins applies one command sequence to two FSMs as two voters
// would: one entry per batch, and three entries per batch (a leader and
// a follower batch differently, so a watcher's index may fall inside the
// other's batch). Every index's full state is recorded from the first.
type deltaTwins struct {
	t       *testing.T
	single  *testFSM
	batched *FSM
	pending []*raft.Log
	states  map[uint64]control.State // the full state at every index
	deltas  int                      // answers that were deltas
}

func (d *deltaTwins) apply(kind Kind, body any) *Result {
	d.t.Helper()
	res := d.single.apply(kind, body)
	cmd, err := NewCommand(fmt.Sprintf("cmd-%d", d.single.index), kind, body)
	if err != nil {
		d.t.Fatal(err)
	}
	data, _ := json.Marshal(cmd)
	d.pending = append(d.pending, &raft.Log{Index: d.single.index, Type: raft.LogCommand, Data: data})
	if len(d.pending) == 3 {
		d.flush()
	}
	d.states[d.single.index] = fullState(d.t, d.single.fsm)
	d.check(d.single.fsm)
	return res
}

func (d *deltaTwins) mustApply(kind Kind, body any) {
	d.t.Helper()
	if err := d.apply(kind, body).Err(); err != nil {
		d.t.Fatalf("%s: %v", kind, err)
	}
}

func (d *deltaTwins) flush() {
	if len(d.pending) > 0 {
		d.batched.ApplyBatch(d.pending)
		d.pending = nil
		d.check(d.batched)
	}
}

func (d *deltaTwins) advance(force bool) *Result {
	d.t.Helper()
	plan, err := d.single.fsm.PlanEpoch(force, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.apply(KindAdvanceEpoch, plan)
}

// check holds every watcher, whatever index it holds the state of, to
// ending with exactly fsm's full state; the tracker's state is the file's.
func (d *deltaTwins) check(fsm *FSM) {
	d.t.Helper()
	want := fullState(d.t, fsm)
	if file, _ := fsm.EpochState(); !slices.Equal(file.Owners(), want.Owners) || !slices.Equal(file.Holders(), want.Holders) || file.Epoch() != want.Epoch {
		d.t.Fatalf("watchers see epoch %d, the state file has epoch %d", want.Epoch, file.Epoch())
	}
	for after, have := range d.states {
		if after > want.Index {
			continue
		}
		got, resp := watchAs(d.t, fsm, have, after)
		if !sameState(got, want) {
			d.t.Fatalf("a watcher at index %d (epoch %d) ends at %+v, want %+v (delta %v, %d changes)", after, have.Epoch, got, want, resp.Delta, len(resp.Changes))
		}
		if resp.Delta {
			d.deltas++
		}
	}
}

// A delta equals the full state it replaces, from every earlier index,
// across everything that changes owners or holders: the first committee,
// an epoch change with moves, each shard synced, a node leaving, a forced
// advance keeping unfinished holders, a node removed — on a voter applying
// one entry at a time and on one batching them.
func TestWatchDeltaEqualsFullState(t *testing.T) {
	cfg := Config{Shards: 40}
	d := &deltaTwins{t: t, single: newTestFSM(t, cfg), batched: newTestFSM(t, cfg).fsm, states: map[uint64]control.State{0: {}}}
	register := func(id shardmap.NodeID, stake uint64) {
		d.mustApply(KindRegisterNode, RegisterNode{Node: id, PublicKey: testKey(t, id), Address: string(id) + ":7000"})
		d.mustApply(KindSetStake, SetStake{Node: id, Stake: stake})
	}
	for i := range 5 {
		register(shardmap.NodeID(fmt.Sprintf("node-%d", i)), 10)
	}
	if res := d.advance(false); res.Err() != nil || res.Epoch != 1 {
		t.Fatalf("first advance: %+v", res)
	}
	// A join: Handover; each moved shard synced in turn.
	register("node-5", 10)
	d.advance(false)
	for _, shard := range d.single.state().Pending() {
		d.mustApply(KindShardSynced, ShardSynced{Epoch: 2, Shard: shard, Node: "node-5"})
	}
	// A leave, forced on half way: the unsynced shards keep node-0 as holder.
	d.mustApply(KindSetStake, SetStake{Node: "node-0", Stake: 0})
	d.advance(false)
	st := d.single.state()
	pending := st.Pending()
	for _, shard := range pending[:len(pending)/2] {
		d.mustApply(KindShardSynced, ShardSynced{Epoch: 3, Shard: shard, Node: st.Owner(shard)})
	}
	register("node-6", 5)
	if res := d.advance(true); res.Err() != nil || res.Epoch != 4 {
		t.Fatalf("forced advance: %+v", res)
	}
	st = d.single.state()
	for _, shard := range st.Pending() {
		d.mustApply(KindShardSynced, ShardSynced{Epoch: 4, Shard: shard, Node: st.Owner(shard)})
	}
	d.mustApply(KindRemoveNode, RemoveNode{Node: "node-0"})
	d.flush()
	d.check(d.batched)
	if d.deltas < 100 {
		t.Fatalf("only %d of the answers were deltas", d.deltas)
	}
}

// testKey is the public key testFSM.register gives id.
func testKey(t testing.TB, id shardmap.NodeID) []byte {
	t.Helper()
	seed := make([]byte, 32)
	copy(seed, id)
	sk, err := crypto.KeyGen(seed)
	if err != nil {
		t.Fatal(err)
	}
	return sk.PublicKey().Bytes()
}

// A watcher whose index this voter cannot vouch for gets the full state:
// no delta asked for, index 0, an index from before the state file was
// opened (a restart) or restored, an index ahead of the voter.
func TestWatchDeltaGapsGetFullState(t *testing.T) {
	cfg := Config{Shards: 20}
	tf := newTestFSM(t, cfg)
	for _, id := range []shardmap.NodeID{"a", "b", "c"} {
		tf.register(id, 10)
	}
	tf.advance(false)
	early := fullState(t, tf.fsm)
	tf.register("d", 10)
	tf.advance(false)
	mid := fullState(t, tf.fsm)

	wantKind := func(what string, fsm *FSM, req *weftv1.WatchStateRequest, delta bool) *weftv1.WatchStateResponse {
		t.Helper()
		resp := watchResponse(fsm, req)
		if resp.Delta != delta {
			t.Fatalf("%s: delta %v, want %v", what, resp.Delta, delta)
		}
		if !delta && len(resp.Owners) != cfg.Shards {
			t.Fatalf("%s: a full state with %d owners", what, len(resp.Owners))
		}
		return resp
	}
	wantKind("a delta from a known index", tf.fsm, &weftv1.WatchStateRequest{AfterIndex: early.Index, Delta: true}, true)
	wantKind("no delta asked for", tf.fsm, &weftv1.WatchStateRequest{AfterIndex: early.Index}, false)
	wantKind("index 0", tf.fsm, &weftv1.WatchStateRequest{Delta: true}, false)
	wantKind("an index ahead of the voter", tf.fsm, &weftv1.WatchStateRequest{AfterIndex: mid.Index + 1, Delta: true}, false)

	// Reopened: what changed before the open is not known, even though
	// the file has it; from the open on, deltas again.
	path := tf.fsm.path
	if err := tf.fsm.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenFSM(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reopened.Close() })
	tf.fsm = reopened
	wantKind("an index from before the restart", tf.fsm, &weftv1.WatchStateRequest{AfterIndex: early.Index, Delta: true}, false)
	if resp := wantKind("the index the restart opened at", tf.fsm, &weftv1.WatchStateRequest{AfterIndex: mid.Index, Delta: true}, true); len(resp.Changes) != 0 {
		t.Fatalf("nothing changed since the restart, the delta lists %d shards", len(resp.Changes))
	}
	st := tf.state()
	tf.mustApply(KindShardSynced, ShardSynced{Epoch: st.Epoch(), Shard: st.Pending()[0], Node: st.Owner(st.Pending()[0])})
	got, resp := watchAs(t, tf.fsm, mid, mid.Index)
	if !resp.Delta || len(resp.Changes) != 1 || !sameState(got, fullState(t, tf.fsm)) {
		t.Fatalf("one shard synced after the restart: delta %v with %d changes", resp.Delta, len(resp.Changes))
	}

	// Restored from a snapshot of another history (indices reused): no
	// index seen before it is trusted, even once new entries pass them.
	other := newTestFSM(t, cfg)
	for _, id := range []shardmap.NodeID{"x", "y", "z"} {
		other.register(id, 10)
	}
	other.advance(false)
	snap, err := other.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := tf.fsm.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	tf.index = max(tf.index, 100)
	tf.register("w", 10)
	tf.advance(false)
	for _, have := range []control.State{early, mid, got} {
		wantKind(fmt.Sprintf("index %d from before the restore", have.Index), tf.fsm, &weftv1.WatchStateRequest{AfterIndex: have.Index, Delta: true}, false)
	}
}

// At n = 1000 over 100 nodes, a node joining moves about 10 shards: the
// delta of the epoch change, and of each shard synced, is a few percent
// of the full state at most.
func TestWatchDeltaBytesFollowTheMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("registers 100 nodes")
	}
	tf := newTestFSM(t, Config{Shards: 1000})
	for i := range 100 {
		tf.register(shardmap.NodeID(fmt.Sprintf("storage-node-%03d", i)), 100)
	}
	tf.advance(false)
	stable := fullState(t, tf.fsm)
	tf.register("storage-node-100", 100)
	tf.advance(false)
	moved := tf.state().Pending()
	if len(moved) < 5 || len(moved) > 15 {
		t.Fatalf("%d shards moved, want about 10", len(moved))
	}
	full := proto.Size(watchResponse(tf.fsm, &weftv1.WatchStateRequest{}))
	got, resp := watchAs(t, tf.fsm, stable, stable.Index)
	if !resp.Delta || len(resp.Changes) != len(moved) || !sameState(got, fullState(t, tf.fsm)) {
		t.Fatalf("epoch change: delta %v with %d changes for %d moves", resp.Delta, len(resp.Changes), len(moved))
	}
	delta := proto.Size(resp)
	t.Logf("n = 1000, %d shards moved: full state %d bytes, delta %d bytes (%.2f%%)", len(moved), full, delta, 100*float64(delta)/float64(full))
	if delta*20 >= full {
		t.Fatalf("the delta of %d moves is %d bytes, the full state %d: not under 5%%", len(moved), delta, full)
	}
	have := got
	for _, shard := range moved {
		tf.mustApply(KindShardSynced, ShardSynced{Epoch: have.Epoch, Shard: shard, Node: "storage-node-100"})
		next, resp := watchAs(t, tf.fsm, have, have.Index)
		if !resp.Delta || len(resp.Changes) != 1 || proto.Size(resp)*100 >= full {
			t.Fatalf("shard %d synced: delta %v, %d changes, %d bytes", shard, resp.Delta, len(resp.Changes), proto.Size(resp))
		}
		have = next
	}
	if !sameState(have, fullState(t, tf.fsm)) {
		t.Fatal("the deltas of the handover do not add up to the full state")
	}
}

// watchBytes reads weft_control_watch_bytes_total by kind.
func watchBytes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "weft_control_watch_bytes_total" {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "kind" {
					out[l.GetValue()] = m.Counter.GetValue()
				}
			}
		}
	}
	return out
}

// The SDK's watcher (control.Client.Watch) on a follower of a real
// 3-voter cluster over gRPC: after the first full state it gets deltas,
// and each state it returns is the voter's full state — across an epoch
// change with moves, every shard synced, the leader stopped, a forced
// advance. A watcher switching voters with its index gets a correct
// state; a restarted voter, which cannot know what changed before it
// opened its state file, sends it whole.
func TestWatchDeltasOverRaft(t *testing.T) {
	c := newCluster(t, "w1", "w2", "w3")
	addrs := serveAll(t, c)
	leader := c.leader()
	var watched, other string // two followers
	for _, id := range []string{"w1", "w2", "w3"} {
		switch {
		case c.nodes[id] == leader:
		case watched == "":
			watched = id
		default:
			other = id
		}
	}
	reg := prometheus.NewRegistry()
	if err := c.nodes[watched].RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	plane := control.NewClient(dial(t, addrs[watched]), "", nil)
	ctx := context.Background()
	var have control.State
	// follow watches until the voter has applied the last command, then
	// holds the watcher's state to the voter's.
	follow := func(what string) {
		t.Helper()
		c.converge()
		for {
			st, err := plane.Watch(ctx, have.Index, 5*time.Second)
			if err != nil {
				t.Fatalf("%s: watch: %v", what, err)
			}
			have = st
			if st.Index >= c.last {
				break
			}
		}
		if want := fullState(t, c.nodes[watched].FSM()); !sameState(have, want) {
			t.Fatalf("%s: the watcher holds %+v, the voter %+v", what, have, want)
		}
	}
	advance := func(force bool) {
		t.Helper()
		plan, err := c.leader().FSM().PlanEpoch(force, 0)
		if err != nil {
			t.Fatal(err)
		}
		c.propose(KindAdvanceEpoch, plan)
	}
	syncAll := func(what string) {
		t.Helper()
		st, _ := c.leader().FSM().EpochState()
		for _, shard := range st.Pending() {
			c.propose(KindShardSynced, ShardSynced{Epoch: st.Epoch(), Shard: shard, Node: st.Owner(shard)})
			follow(fmt.Sprintf("%s: shard %d synced", what, shard))
		}
	}

	for i := range 5 {
		c.registerNode(fmt.Sprintf("storage-%d", i), 10)
	}
	advance(false)
	follow("first committee")
	first := have
	if got := watchBytes(t, reg); got["full"] == 0 {
		t.Fatalf("the first state was not sent whole: %v", got)
	}
	c.registerNode("storage-5", 10)
	advance(false)
	follow("a join")
	syncAll("the join")
	if got := watchBytes(t, reg); got["delta"] == 0 || got["delta"] >= got["full"] {
		t.Fatalf("watch bytes after a handover of deltas: %v", got)
	}

	// The leader stops; a node leaves and the change is forced through.
	stopped := ""
	for id, n := range c.nodes {
		if n == c.leader() {
			stopped = id
		}
	}
	c.stop(stopped)
	c.propose(KindSetStake, SetStake{Node: "storage-0", Stake: 0})
	advance(false)
	follow("a leave under a new leader")
	st, _ := c.leader().FSM().EpochState()
	c.propose(KindShardSynced, ShardSynced{Epoch: st.Epoch(), Shard: st.Pending()[0], Node: st.Owner(st.Pending()[0])})
	c.registerNode("storage-6", 10)
	advance(true)
	follow("a forced advance")

	// The watcher moves to the other voter with the index it holds.
	moved := have
	c.propose(KindShardSynced, func() ShardSynced {
		st, _ := c.leader().FSM().EpochState()
		return ShardSynced{Epoch: st.Epoch(), Shard: st.Pending()[0], Node: st.Owner(st.Pending()[0])}
	}())
	c.converge()
	resp, err := weftv1.NewWatchClient(dial(t, addrs[other])).WatchState(ctx, &weftv1.WatchStateRequest{AfterIndex: moved.Index, Delta: true, TimeoutMs: 5000})
	if err != nil || !resp.Delta {
		t.Fatalf("another voter with the watcher's index: delta %v, %v", resp.GetDelta(), err)
	}
	if got, err := control.ApplyDelta(moved, resp); err != nil || !sameState(got, fullState(t, c.nodes[other].FSM())) {
		t.Fatalf("the other voter's delta: %+v, %v", got, err)
	}

	// The stopped voter comes back: an index from before it stopped is
	// older than what it can vouch for.
	c.start(stopped, true)
	c.converge()
	restarted, stop := serveGRPC(t, c.nodes[stopped])
	t.Cleanup(stop)
	resp, err = weftv1.NewWatchClient(dial(t, restarted)).WatchState(ctx, &weftv1.WatchStateRequest{AfterIndex: first.Index, Delta: true})
	if err != nil || resp.Delta {
		t.Fatalf("a restarted voter asked for changes since index %d: delta %v, %v", first.Index, resp.GetDelta(), err)
	}
	syncAll("after the forced advance")
}
