package committee

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/shardmap"
)

// Voters with certificates of one CA run Raft over mutual TLS: they elect
// a leader and replicate. Their Raft port completes no handshake with a
// client that has no certificate, or one another CA signed.
func TestRaftOverMutualTLS(t *testing.T) {
	ours, err := wire.WriteDevCertificates(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := wire.WriteDevCertificates(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	server, client, err := ours.PeerConfigs()
	if err != nil || server == nil || client == nil {
		t.Fatalf("PeerConfigs: %v", err)
	}
	c := newClusterWith(t, func(string) *RaftTLS { return &RaftTLS{Server: server, Client: client} }, "v1", "v2", "v3")
	c.registerNode("n1", 10)
	c.converge()
	for id, n := range c.nodes {
		if _, ok, err := n.FSM().Node(shardmap.NodeID("n1")); err != nil || !ok {
			t.Fatalf("%s did not replicate the registration", id)
		}
	}

	dial := func(cfg *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.addrs["v1"], cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	// A fellow voter's certificate completes the handshake (the port does
	// speak TLS).
	fellow := client.Clone()
	fellow.ServerName = "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.addrs["v1"], fellow)
	if err != nil {
		t.Fatalf("a voter's certificate: %v", err)
	}
	conn.Close()
	_, theirClient, err := theirs.PeerConfigs()
	if err != nil {
		t.Fatal(err)
	}
	trustingUs := theirClient.Clone()
	trustingUs.RootCAs = client.RootCAs
	trustingUs.ServerName = "127.0.0.1"
	if err := dial(trustingUs); err == nil || isTimeout(err) {
		t.Fatalf("a client with another CA's certificate: %v, want a refused handshake", err)
	}
	noCert := &tls.Config{RootCAs: client.RootCAs, ServerName: "127.0.0.1"}
	if err := dial(noCert); err == nil || isTimeout(err) {
		t.Fatalf("a client without a certificate: %v, want a refused handshake", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
