package committee

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/shardmap"
)

// Voters run Raft over mutual TLS, each with its own certificate naming
// it (wire.VoterURI), all signed by the CA that also signs storage nodes'
// certificates. They elect a leader and replicate; a voter added later,
// with an empty configuration, takes the leader's connection and catches
// up. A storage node's certificate — same CA, no voter identity — and the
// certificate of a voter outside the configuration are refused in the
// handshake: Raft never reads their AppendEntries (a higher term, which
// would depose the leader). A listener at a voter's address presenting
// another voter's certificate is refused by the dialing leader.
func TestRaftOverMutualTLS(t *testing.T) {
	ca, err := wire.NewDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, voter string) (server, client *tls.Config) {
		t.Helper()
		files, err := ca.Issue(name, voter, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if server, client, err = files.PeerConfigs(); err != nil || server == nil || client == nil {
			t.Fatalf("PeerConfigs of %s: %v", name, err)
		}
		return server, client
	}
	c := newClusterWith(t, func(id string) *RaftTLS {
		server, client := issue(id, id)
		return &RaftTLS{Server: server, Client: client}
	}, "v1", "v2", "v3")
	c.registerNode("n1", 10)
	c.converge()
	for id, n := range c.nodes {
		if _, ok, err := n.FSM().Node(shardmap.NodeID("n1")); err != nil || !ok {
			t.Fatalf("%s did not replicate the registration", id)
		}
	}

	// A voter the leader adds starts with no configuration.
	c.start("v4", false)
	if err := c.leader().AddVoter("v4", c.addrs["v4"]); err != nil {
		t.Fatalf("adding v4 over TLS: %v", err)
	}
	c.registerNode("n2", 10)
	c.converge()

	leader := c.leader()
	term := leader.raft.CurrentTerm()
	target := raft.ServerAddress(c.addrs[string(leaderID(leader))])
	_, nodeClient := issue("node-0", "")
	err = appendEntries(t, nodeClient, target, term+100)
	if err == nil || !strings.Contains(err.Error(), "remote error") {
		t.Fatalf("AppendEntries from a storage node's certificate: %v, want a refused handshake", err)
	}
	_, outsider := issue("v9", "v9")
	if err := appendEntries(t, outsider, target, term+100); err == nil {
		t.Fatal("AppendEntries from a voter outside the configuration was taken")
	}
	if now := leader.raft.CurrentTerm(); now != term || !leader.IsLeader() {
		t.Fatalf("the refused AppendEntries reached Raft: term %d → %d, leader %v", term, now, leader.IsLeader())
	}

	// The leader dials v4's address and finds v9 there.
	c.stop("v4")
	impostorServer, _ := issue("impostor", "v9")
	ln, err := tls.Listen("tcp", c.addrs["v4"], impostorServer)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAndDrain(ln)
	// A connection the transport pooled to the old v4 may fail first.
	for try := 0; ; try++ {
		var resp raft.AppendEntriesResponse
		err = leader.transport.AppendEntries("v4", raft.ServerAddress(c.addrs["v4"]), &raft.AppendEntriesRequest{}, &resp)
		if err != nil && strings.Contains(err.Error(), "voter v9") && strings.Contains(err.Error(), "voter v4 there") {
			break
		}
		if try == 10 {
			t.Fatalf("dialing v4's address, answered by v9's certificate: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// appendEntries sends one AppendEntries of the given term to target over
// Raft's own transport, presenting cfg's certificate.
func appendEntries(t *testing.T, cfg *tls.Config, target raft.ServerAddress, term uint64) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the transport needs one; nothing dials it
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(&dialOnly{Listener: ln, cfg: cfg}, 1, 5*time.Second, io.Discard)
	defer trans.Close()
	var resp raft.AppendEntriesResponse
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("intruder"), Addr: []byte(ln.Addr().String())}, Term: term}
	return trans.AppendEntries("target", target, req, &resp)
}

// dialOnly is a raft.StreamLayer that dials over TLS with a fixed
// configuration.
type dialOnly struct {
	net.Listener
	cfg *tls.Config
}

func (d *dialOnly) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := d.cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(string(address))
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

func acceptAndDrain(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(io.Discard, conn); conn.Close() }()
	}
}

func leaderID(n *Node) raft.ServerID {
	_, id := n.raft.LeaderWithID()
	return id
}
