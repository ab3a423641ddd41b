package committee

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/epoch"
)

// logRecorder keeps the messages a scheduler logs.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// schedule gives a cluster voter a service (not served over gRPC: the
// scheduler needs none) and a scheduler; both stop before the cluster's
// nodes do.
func schedule(t *testing.T, c *cluster, id string, cfg SchedulerConfig) (*Scheduler, *logRecorder) {
	t.Helper()
	svc, err := NewService(c.nodes[id], ServiceConfig{OperatorToken: testToken, GRPCAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	cfg.Logger = slog.New(rec)
	s := StartScheduler(svc, cfg)
	t.Cleanup(func() { s.Stop(); svc.Close() })
	return s, rec
}

// waitUntil polls cond for up to timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}
}

// plannedEpoch is the leader's plan of the next epoch.
func plannedEpoch(t *testing.T, c *cluster) AdvanceEpoch {
	t.Helper()
	plan, err := c.leader().FSM().PlanEpoch(false, 0)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func epochOf(t *testing.T, n *Node) epoch.State {
	t.Helper()
	st, err := n.FSM().EpochState()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The epoch timer advances the epoch on its own while Stable, from the
// first epoch on.
func TestSchedulerEpochTimer(t *testing.T) {
	c := newCluster(t, "solo")
	c.registerNode("storage", 5)
	_, rec := schedule(t, c, "solo", SchedulerConfig{EpochDuration: 200 * time.Millisecond})
	n := c.leader()
	waitUntil(t, 10*time.Second, "two advances by the timer", func() bool { return rec.count("epoch timer: advanced") >= 2 })
	if e := epochOf(t, n).Epoch(); e < 2 {
		t.Fatalf("epoch %d after two advances", e)
	}
}

// Neither timer acts during a handover: the epoch is not cut short and no
// round opens; once the handover completes, both go on.
func TestSchedulerWaitsForStable(t *testing.T) {
	c := newCluster(t, "solo")
	c.registerNode("storage-a", 10)
	c.propose(KindAdvanceEpoch, plannedEpoch(t, c))
	c.registerNode("storage-b", 10)
	c.propose(KindAdvanceEpoch, plannedEpoch(t, c))
	n := c.leader()
	st := epochOf(t, n)
	if st.Epoch() != 2 || st.Phase() != epoch.Handover {
		t.Fatalf("epoch %d %s, want 2 in Handover", st.Epoch(), st.Phase())
	}
	_, rec := schedule(t, c, "solo", SchedulerConfig{EpochDuration: 100 * time.Millisecond, ChallengeWindow: 400 * time.Millisecond})
	time.Sleep(1200 * time.Millisecond)
	if e := epochOf(t, n).Epoch(); e != 2 {
		t.Fatalf("the epoch timer advanced to %d during a handover", e)
	}
	if _, found, _, _ := n.FSM().Challenge(0); found {
		t.Fatal("a challenge round opened during a handover")
	}
	for _, shard := range st.Pending() {
		c.propose(KindShardSynced, ShardSynced{Epoch: 2, Shard: shard, Node: "storage-b"})
	}
	waitUntil(t, 10*time.Second, "an advance once Stable", func() bool { return epochOf(t, n).Epoch() >= 3 })
	waitUntil(t, 10*time.Second, "a round once Stable", func() bool { return rec.count("challenge timer: round started") > 0 })
	if rec.count("epoch timer: advance refused")+rec.count("challenge timer: start refused") > 0 {
		t.Fatalf("a timer acted during the handover: %v", rec.msgs)
	}
}

// The challenge timer opens a round once the epoch is Stable and closes it
// when the window (from the round's recorded start) is over; one round per
// epoch.
func TestSchedulerChallengeTimer(t *testing.T) {
	const window = time.Second
	c := newCluster(t, "solo")
	c.registerNode("storage", 5)
	c.propose(KindAdvanceEpoch, plannedEpoch(t, c))
	_, rec := schedule(t, c, "solo", SchedulerConfig{ChallengeWindow: window})
	n := c.leader()
	var r ChallengeRound
	waitUntil(t, 15*time.Second, "a round opened and closed on its own", func() bool {
		var found bool
		r, found, _, _ = n.FSM().Challenge(0)
		// The log line follows the commit.
		return found && !r.Open && rec.count("challenge timer: round closed") > 0
	})
	if r.Round != 1 || r.Epoch != 1 || len(r.Nodes) != 1 || r.Nodes[0].Outcome != "missed" {
		t.Fatalf("round: %+v", r)
	}
	if open := time.Since(time.Unix(0, r.OpenedAt)); open < window {
		t.Fatalf("the round closed %s after it opened, before the window of %s", open, window)
	}
	if rec.count("challenge timer: round started") != 1 || rec.count("challenge timer: round closed") != 1 {
		t.Fatalf("logged: %v", rec.msgs)
	}
	// One round per epoch: none follows in the same epoch.
	time.Sleep(2500 * time.Millisecond)
	if r, _, _, _ := n.FSM().Challenge(0); r.Round != 1 {
		t.Fatalf("a second round in the same epoch: %+v", r)
	}
}

// Three voters, each with a scheduler: only the leader's timers run; they
// stop when it hands leadership over and the new leader's start, and a
// leader that shuts down stops its own.
func TestSchedulerFollowsLeadership(t *testing.T) {
	ids := []string{"v1", "v2", "v3"}
	c := newCluster(t, ids...)
	c.registerNode("storage", 5)
	scheds, recs := map[string]*Scheduler{}, map[string]*logRecorder{}
	for _, id := range ids {
		scheds[id], recs[id] = schedule(t, c, id, SchedulerConfig{EpochDuration: 150 * time.Millisecond})
	}
	running := func() []string {
		var on []string
		for id, s := range scheds {
			if s.running.Load() {
				on = append(on, id)
			}
		}
		slices.Sort(on)
		return on
	}
	onlyLeader := func(what string) string {
		t.Helper()
		var leader string
		waitUntil(t, 10*time.Second, what, func() bool {
			leader = string(leaderID(c.leader()))
			on := running()
			return len(on) == 1 && on[0] == leader
		})
		return leader
	}
	advanceBy := func(id string) {
		t.Helper()
		before := recs[id].count("epoch timer: advanced")
		waitUntil(t, 10*time.Second, id+"'s timer advancing", func() bool { return recs[id].count("epoch timer: advanced") >= before+2 })
	}

	first := onlyLeader("the first leader's timers alone")
	advanceBy(first)
	for _, id := range ids {
		if id != first && recs[id].count("epoch timer: advanced") > 0 {
			t.Fatalf("follower %s advanced the epoch", id)
		}
	}

	if err := c.nodes[first].Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	second := onlyLeader("the timers moving with leadership")
	if second == first {
		t.Fatalf("%s still leads after the transfer", first)
	}
	stoppedAt := recs[first].count("epoch timer: advanced")
	advanceBy(second)
	if got := recs[first].count("epoch timer: advanced"); got != stoppedAt {
		t.Fatalf("%s advanced the epoch %d times after losing leadership", first, got-stoppedAt)
	}

	c.stop(second)
	waitUntil(t, 10*time.Second, "the stopped voter's timers ending", func() bool { return !scheds[second].running.Load() })
	delete(scheds, second)
	third := onlyLeader("a leader elected after a shutdown")
	advanceBy(third)

	done := make(chan struct{})
	go func() {
		for _, s := range scheds {
			s.Stop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Stop did not return")
	}
	if on := running(); len(on) > 0 {
		t.Fatalf("timers still running after Stop: %v", on)
	}
}

// With no timers configured and no traffic, the leader still proposes
// compact commands while compaction is behind: nothing else would carry
// its steps. (A backlog is a flag in the state; it is set here directly,
// as a burst of expiries would leave it, on the one voter.)
func TestSchedulerCompactsAQuietNetwork(t *testing.T) {
	c := newCluster(t, "solo")
	c.registerNode("storage", 5)
	c.propose(KindAdvanceEpoch, plannedEpoch(t, c))
	n := c.leader()
	svc, err := NewService(n, ServiceConfig{OperatorToken: testToken, GRPCAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	// The service proposes its own address as a new leader: let it, so
	// that no command but the scheduler's comes after the flag.
	waitUntil(t, 10*time.Second, "the voter's address recorded", func() bool {
		_, found, err := n.FSM().PeerAddress("solo")
		return err == nil && found
	})
	if err := n.FSM().db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCompacting, present) }); err != nil {
		t.Fatal(err)
	}
	before, _ := n.FSM().AppliedIndex()
	time.Sleep(1500 * time.Millisecond)
	if pending, _ := n.FSM().CompactionPending(); !pending {
		t.Fatal("compaction caught up with no scheduler: the test sets no backlog")
	}
	s := StartScheduler(svc, SchedulerConfig{Logger: slog.New(&logRecorder{})})
	defer s.Stop()
	waitUntil(t, 10*time.Second, "compaction caught up", func() bool {
		pending, err := n.FSM().CompactionPending()
		return err == nil && !pending
	})
	if after, _ := n.FSM().AppliedIndex(); after <= before {
		t.Fatalf("applied index %d → %d: no compact command went through the log", before, after)
	}
}
