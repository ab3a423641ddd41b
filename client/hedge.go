package client

import (
	"slices"
	"time"

	"github.com/weftstore/weft/shardmap"
)

// Hedging a read (DESIGN.md, Hedging and deadlines). A node that answers
// far slower than the others, or accepts calls and never answers, must
// not hold a read for its timeouts: when no sliver has arrived for the
// stall delay, every fetch in flight gets a stand-in from another node.

const (
	// firstStall is the stall delay before any sliver has arrived: there
	// is nothing yet to compare with (dialling, a cold node).
	firstStall = time.Second
	// minStall is the least stall delay once slivers arrive: below it,
	// gaps between arrivals are scheduling noise, not a slow node.
	minStall = 100 * time.Millisecond
)

// hedgeDelay is how long the loop waits without an arrival before it
// fetches stand-ins: as long as the slowest fetch that completed took
// (at least minStall). By then every fetch that runs at the others' pace
// has arrived, so a read with one slow node takes about twice what the
// others need, not the slow node's time. A range read (covering set)
// keeps the longer max(1 s, 4× the slowest): its stall widens it into a
// whole read, ≈ nP× the bytes, not a few stand-ins.
func (l *fetchLoop) hedgeDelay() time.Duration {
	if l.covering != nil {
		return max(time.Second, 4*l.slowest)
	}
	if l.slowest == 0 {
		return firstStall
	}
	return max(minStall, l.slowest)
}

// sourceNode names the node a task fetches from.
func (l *fetchLoop) sourceNode(t task) string {
	srcs := l.lay.sources[l.shardOf(t.index)]
	if t.src < len(srcs) {
		return srcs[t.src].node
	}
	return ""
}

// noteStalled records the nodes of every fetch in flight: their stand-ins
// and the slivers queued after them are taken from other nodes first.
func (l *fetchLoop) noteStalled() {
	if l.stalledNodes == nil {
		l.stalledNodes = make(map[string]bool)
	}
	for t := range l.running {
		n := l.sourceNode(t)
		l.stalledNodes[n] = true
		if !slices.Contains(l.stats.StalledNodes, n) {
			l.stats.StalledNodes = append(l.stats.StalledNodes, n)
		}
	}
}

// pop takes the first queued task whose node has not stalled in this
// read, or the first one if every queued task's has.
func (l *fetchLoop) pop() task {
	i := 0
	if len(l.stalledNodes) > 0 {
		if j := slices.IndexFunc(l.queue, func(t task) bool { return !l.stalledNodes[l.sourceNode(t)] }); j >= 0 {
			i = j
		}
	}
	t := l.queue[i]
	l.queue = slices.Delete(l.queue, i, i+1)
	return t
}

// DefaultStragglerWait is Config.StragglerWait's default: the least grace
// a store gives the nodes still working once a write quorum has signed.
const DefaultStragglerWait = 100 * time.Millisecond

// stragglerGrace is how long a store waits for the remaining nodes once
// owners of a write quorum have signed, quorumTook after it began: half
// that, at least floor. Relative to what the others needed, so a node 10×
// slower (or gone) delays a store by half of it at most — not by a fixed
// second, which was 2–3× a small store. The nodes' confirmations arrive
// within a few milliseconds of each other when none is slow, so the
// grace still lets ordinary stragglers in (a node cut off must rebuild
// its pairs from its peers).
func stragglerGrace(floor, quorumTook time.Duration) time.Duration {
	return max(floor, quorumTook/2)
}

// farBehind says whether every node that has not answered yet is still
// without the blob's metadata: when owners of a write quorum have stored
// their pairs and signed while the rest have not even taken the metadata
// (a call of a few hundred bytes), those are many times slower than the
// others, or gone, and no grace would see them finish. The store cuts
// them off at once rather than wait half its time again.
func farBehind(jobs []storeJob, answered map[shardmap.NodeID]bool) bool {
	for _, j := range jobs {
		if !answered[j.m.Node] && j.accepted.Load() {
			return false
		}
	}
	return true
}
