package client

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/shardmap"
)

// Once a node's fetches stalled, the stand-ins (and every sliver queued
// after them) come from the other nodes first: taken in queue order, some
// would be the stalled node's again, and each would wait out another
// stall delay. Its slivers are taken only when nothing else is left.
func TestStandInsAvoidStalledNodes(t *testing.T) {
	params, err := coding.NewParams(21)
	if err != nil {
		t.Fatal(err)
	}
	lay := &layout{sources: make([][]source, params.Shards)}
	for shard := range params.Shards {
		n := fmt.Sprintf("node-%d", shard%7)
		lay.sources[shard] = []source{{node: n, addr: n}}
	}
	l := &fetchLoop{read: &read{params: params, lay: lay, stats: &ReadStats{}}, running: map[task]bool{}}
	for i := range params.Shards {
		l.queue = append(l.queue, task{index: uint32(i)})
	}
	// The first nP are in flight; node-0's stall.
	var slow []task
	for range params.NP {
		tk := l.pop()
		if l.sourceNode(tk) == "node-0" {
			l.running[tk] = true
			slow = append(slow, tk)
		}
	}
	if len(slow) == 0 {
		t.Fatal("node-0 holds none of the first nP slivers")
	}
	l.noteStalled()
	if len(l.stats.StalledNodes) != 1 || l.stats.StalledNodes[0] != "node-0" {
		t.Fatalf("stalled nodes %v, want [node-0]", l.stats.StalledNodes)
	}
	left := len(l.queue)
	others := 0
	for _, tk := range l.queue {
		if l.sourceNode(tk) != "node-0" {
			others++
		}
	}
	for k := range left {
		n := l.sourceNode(l.pop())
		if (k < others) != (n != "node-0") {
			t.Fatalf("stand-in %d of %d came from %s (%d from other nodes queued)", k, left, n, others)
		}
	}
}

// A store stops waiting for stragglers once every node that has not
// answered is still without the metadata; one that took it is waited for.
func TestFarBehind(t *testing.T) {
	job := func(node string, accepted bool) storeJob {
		j := storeJob{m: Member{Node: shardmap.NodeID(node)}, accepted: new(atomic.Bool)}
		j.accepted.Store(accepted)
		return j
	}
	jobs := []storeJob{job("a", true), job("b", true), job("slow", false)}
	if farBehind(jobs, map[shardmap.NodeID]bool{"a": true}) {
		t.Fatal("b took the metadata and has not answered: the store should wait for it")
	}
	if !farBehind(jobs, map[shardmap.NodeID]bool{"a": true, "b": true}) {
		t.Fatal("only the node without the metadata is left: the store should cut it off")
	}
}
