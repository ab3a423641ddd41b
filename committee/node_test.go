package committee

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type cluster struct {
	t       testing.TB
	dirs    map[string]string
	addrs   map[string]string
	nodes   map[string]*Node
	servers []raft.Server
	state   Config
	seq     int
	last    uint64 // index of the last acknowledged command
	// raftTLS, when set, gives each voter its Raft TLS configuration.
	raftTLS func(id string) *RaftTLS
	// timeout, when set, is the voters' heartbeat and election timeout
	// instead of the tests' 300 ms.
	timeout time.Duration
}

func newCluster(t testing.TB, ids ...string) *cluster {
	return newClusterWith(t, nil, ids...)
}

func newClusterWith(t testing.TB, raftTLS func(id string) *RaftTLS, ids ...string) *cluster {
	return startCluster(&cluster{t: t, raftTLS: raftTLS}, ids...)
}

// startCluster bootstraps c (its test, Raft TLS and timeout set) with the
// voters ids.
func startCluster(c *cluster, ids ...string) *cluster {
	t := c.t
	c.dirs, c.addrs, c.nodes, c.state = map[string]string{}, map[string]string{}, map[string]*Node{}, Config{Shards: 20}
	for _, id := range ids {
		c.dirs[id] = filepath.Join(t.TempDir(), id)
		c.addrs[id] = freeAddr(t)
		c.servers = append(c.servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(c.addrs[id])})
	}
	for _, id := range ids {
		c.start(id, true)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Shutdown()
		}
	})
	return c
}

func (c *cluster) start(id string, bootstrap bool) {
	c.t.Helper()
	if _, ok := c.dirs[id]; !ok {
		c.dirs[id] = filepath.Join(c.t.TempDir(), id)
		c.addrs[id] = freeAddr(c.t)
	}
	cfg := c.nodeConfig(id)
	if bootstrap {
		cfg.Bootstrap = c.servers
	}
	if c.raftTLS != nil {
		cfg.RaftTLS = c.raftTLS(id)
	}
	n, err := StartNode(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[id] = n
}

// nodeConfig is the configuration the cluster's voter id runs with.
func (c *cluster) nodeConfig(id string) NodeConfig {
	timeout := 300 * time.Millisecond
	if c.timeout > 0 {
		timeout = c.timeout
	}
	return NodeConfig{
		ID: id, DataDir: c.dirs[id], RaftAddr: c.addrs[id], State: c.state,
		HeartbeatTimeout: timeout, ElectionTimeout: timeout,
		SnapshotThreshold: 16, TrailingLogs: 4,
	}
}

func (c *cluster) stop(id string) {
	c.t.Helper()
	if err := c.nodes[id].Shutdown(); err != nil {
		c.t.Fatalf("shutdown %s: %v", id, err)
	}
	delete(c.nodes, id)
}

func (c *cluster) leader() *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.IsLeader() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return nil
}

// propose sends a command to the current leader, retrying the same ID if
// leadership moves (the FSM keeps the first outcome).
func (c *cluster) propose(kind Kind, body any) *Result {
	c.t.Helper()
	c.seq++
	cmd, err := NewCommand(fmt.Sprintf("c%d", c.seq), kind, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for range 5 {
		res, err := c.leader().Propose(context.Background(), cmd)
		if err == nil {
			if res.Err() != nil {
				c.t.Fatalf("%s: %v", kind, res.Err())
			}
			c.last = max(c.last, res.Index)
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s: no leader took the command", kind)
	return nil
}

// converge waits until every running node's FSM applied the last
// acknowledged command, then checks they all have the same registry and
// epoch state.
func (c *cluster) converge() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.nodes {
		for {
			// The FSM's own index: Raft's AppliedIndex moves when entries
			// are handed to the FSM, before it has applied them.
			idx, _ := n.FSM().AppliedIndex()
			if idx >= c.last {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("a node stuck at index %d of %d", idx, c.last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var want string
	for id, n := range c.nodes {
		got := fingerprint(c.t, n.FSM())
		if want == "" {
			want = got
		} else if got != want {
			c.t.Fatalf("node %s diverged:\n%s\nvs\n%s", id, got, want)
		}
	}
}

func fingerprint(t testing.TB, f *FSM) string {
	nodes, err := f.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.EpochState()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range nodes {
		ids = append(ids, fmt.Sprintf("%s/%d", n.ID, n.Stake))
	}
	return fmt.Sprintf("epoch %d owners %v holders %v nodes %v", s.Epoch(), s.Owners(), s.Holders(), ids)
}

func (c *cluster) registerNode(id string, stake uint64) {
	c.t.Helper()
	seed := make([]byte, 32)
	copy(seed, id)
	sk, _ := crypto.KeyGen(seed)
	c.propose(KindRegisterNode, RegisterNode{Node: shardmap.NodeID(id), PublicKey: sk.PublicKey().Bytes(), Address: id + ":7000"})
	c.propose(KindSetStake, SetStake{Node: shardmap.NodeID(id), Stake: stake})
}

// Three voters on real TCP and real bbolt files: the leader is killed and
// writes go on; nothing acknowledged is lost; all three restart from disk
// with their state; a new voter catches up by snapshot install; a voter is
// removed; re-running the bootstrap on a live cluster changes nothing.
func TestThreeVoterCluster(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	for i := range 5 {
		c.registerNode(fmt.Sprintf("storage-%d", i), 10)
	}
	plan, err := c.leader().FSM().PlanEpoch(false, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.propose(KindAdvanceEpoch, plan)
	c.converge()

	// Kill the leader: a new one is elected and takes writes.
	old := c.leader()
	var oldID string
	for id, n := range c.nodes {
		if n == old {
			oldID = id
		}
	}
	c.stop(oldID)
	for i := 5; i < 8; i++ {
		c.registerNode(fmt.Sprintf("storage-%d", i), 10)
	}
	if c.leader() == old {
		t.Fatal("the stopped leader is still leader")
	}
	// It comes back with the same bootstrap flags: nothing is re-bootstrapped.
	c.start(oldID, true)
	c.converge()
	nodes, _ := c.leader().FSM().Nodes()
	if len(nodes) != 8 {
		t.Fatalf("%d nodes registered, want all 8 acknowledged ones", len(nodes))
	}

	// All three restarted from disk keep their state.
	before := fingerprint(t, c.leader().FSM())
	for _, id := range []string{"v1", "v2", "v3"} {
		c.stop(id)
	}
	for _, id := range []string{"v1", "v2", "v3"} {
		c.start(id, true)
	}
	c.converge()
	if after := fingerprint(t, c.leader().FSM()); after != before {
		t.Fatalf("state after a full restart:\n%s\nwant\n%s", after, before)
	}

	// Enough writes to snapshot and compact the log, then a new voter: it
	// cannot replay from index 1, so it must install the snapshot.
	for i := 8; i < 20; i++ {
		c.registerNode(fmt.Sprintf("storage-%d", i), uint64(i))
	}
	leader := c.leader()
	if err := leader.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if first, _ := leader.logs.FirstIndex(); first <= 1 {
		t.Fatalf("log not compacted (first index %d)", first)
	}
	c.start("v4", false)
	if err := leader.AddVoter("v4", c.addrs["v4"]); err != nil {
		t.Fatal(err)
	}
	c.converge()
	if got := fingerprint(t, c.nodes["v4"].FSM()); got != fingerprint(t, leader.FSM()) {
		t.Fatal("the new voter did not catch up")
	}

	// Remove a voter.
	if err := c.leader().RemoveServer("v4"); err != nil {
		t.Fatal(err)
	}
	cfg := c.leader().Raft().GetConfiguration()
	if err := cfg.Error(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range cfg.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"v1", "v2", "v3"}) {
		t.Fatalf("configuration after removal: %v", ids)
	}
}

// The voter's metrics follow its state.
func TestNodeMetrics(t *testing.T) {
	c := newCluster(t, "m1")
	c.registerNode("storage-0", 10)
	plan, err := c.leader().FSM().PlanEpoch(false, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.propose(KindAdvanceEpoch, plan)
	reg := prometheus.NewRegistry()
	if err := c.nodes["m1"].RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			switch {
			case m.Gauge != nil:
				got[f.GetName()] = m.Gauge.GetValue()
			case m.Counter != nil:
				got[f.GetName()] += m.Counter.GetValue()
			case m.Histogram != nil:
				got[f.GetName()] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	if got["weft_control_epoch"] != 1 || got["weft_control_raft_leader"] != 1 || got["weft_control_commands_total"] != 3 ||
		got["weft_control_apply_seconds"] == 0 || got["weft_control_raft_term"] < 1 || got["weft_control_state_index"] == 0 {
		t.Fatalf("metrics: %v", got)
	}
	if v, ok := got["weft_control_compaction_pending"]; !ok || v != 0 {
		t.Fatalf("weft_control_compaction_pending %v (exported: %v) on a new network with nothing to compact", v, ok)
	}
}
