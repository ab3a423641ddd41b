package committee

import (
	"strings"
	"testing"

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
	p := peerAddrs{"v2": "127.0.0.1:9002"}
	if a, err := p.ServerAddr("v2"); err != nil || a != "127.0.0.1:9002" {
		t.Errorf("v2: %q %v", a, err)
	}
	if _, err := p.ServerAddr(raft.ServerID("v3")); err == nil {
		t.Error("v3 has no override: raft must fall back to the configuration's address")
	}
}
