package committee

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// --raft-peer-addr: an override names another voter and a host:port, and
// the transport dials it for that voter only.
func TestPeerRaftAddrs(t *testing.T) {
	for _, bad := range []map[string]string{
		{"v1": "127.0.0.1:7000"}, // itself
		{"": "127.0.0.1:7000"},
		{"v2": "no-port"},
	} {
		_, err := StartNode(NodeConfig{ID: "v1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", PeerRaftAddrs: bad})
		if err == nil || !strings.Contains(err.Error(), "eer Raft") {
			t.Errorf("overrides %v: got %v, want a refusal", bad, err)
		}
	}
	p := peerAddrs{overrides: map[string]string{"v2": "127.0.0.1:9002"}, node: &Node{cfg: NodeConfig{ID: "v1", RaftAddr: "127.0.0.1:9001"}}}
	if a, err := p.ServerAddr("v2"); err != nil || a != "127.0.0.1:9002" {
		t.Errorf("v2: %q %v", a, err)
	}
	if a, err := p.ServerAddr("v1"); err != nil || a != "127.0.0.1:9001" {
		t.Errorf("itself: %q %v", a, err)
	}
	if _, err := p.ServerAddr(raft.ServerID("v3")); err == nil {
		t.Error("v3 has no override and no Raft runs: raft must fall back to the address it has")
	}
}

// LeaderCaughtUp: a leader checks its state once per term (then the term
// is cached); a follower is refused.
func TestLeaderCaughtUp(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	leader := c.leader()
	if err := leader.LeaderCaughtUp(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := leader.caughtUpTerm.Load(), leader.raft.CurrentTerm(); got != want {
		t.Errorf("caught up in term %d, the term is %d", got, want)
	}
	if err := leader.LeaderCaughtUp(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if n != leader {
			if err := n.LeaderCaughtUp(context.Background(), time.Second); !errors.Is(err, ErrNotLeader) {
				t.Errorf("a follower: %v, want ErrNotLeader", err)
			}
		}
	}
}
