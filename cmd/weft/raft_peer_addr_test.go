package main

import (
	"context"
	"strings"
	"testing"
)

// --raft-peer-addr names another voter and a host:port; it is refused
// before anything starts otherwise, and documented in --help.
func TestControlRaftPeerAddrFlag(t *testing.T) {
	for _, peers := range []map[string]string{{"v": "127.0.0.1:7000"}, {"v2": "nowhere"}} {
		o := controlOptions{id: "v", dataDir: t.TempDir(), raftAddr: "127.0.0.1:0", grpcAddr: "127.0.0.1:0", raftPeerAddrs: peers, tokens: tokenFlags{token: "t"}}
		if err := runControl(context.Background(), o); err == nil || !strings.Contains(err.Error(), "peer Raft") {
			t.Fatalf("--raft-peer-addr %v: %v", peers, err)
		}
	}
	if out, err := runWeft(t, "control", "--help"); err != nil || !strings.Contains(out, "--raft-peer-addr") {
		t.Fatalf("control --help: %v\n%s", err, out)
	}
}
