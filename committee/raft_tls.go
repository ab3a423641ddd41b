package committee

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/api/wire"
)

// RaftTLS secures Raft's own traffic between voters: mutual TLS, and on
// top of the CA's signature a voter identity (wire.VoterURI) in the
// certificate, checked against the Raft configuration. The CA alone is not
// enough: it also signs storage nodes' and gateways' certificates, and
// whoever talks to the Raft port can append to the log.
// wire.TLSFiles.PeerConfigs makes both configurations.
type RaftTLS struct {
	Server *tls.Config // must require and verify client certificates
	Client *tls.Config // presents this voter's certificate
}

// tlsStreamLayer is raft.StreamLayer over TLS. Its handshakes check the
// peer's voter identity against the configuration of the Raft instance
// it serves, once that runs.
type tlsStreamLayer struct {
	net.Listener // a TLS listener
	advertise    net.Addr
	client       *tls.Config
	raft         atomic.Pointer[raft.Raft] // nil until Raft runs
	overrides    map[string]string         // dialed address → voter ID (NodeConfig.PeerRaftAddrs)
}

func newTLSStreamLayer(bind string, advertise net.Addr, cfg *RaftTLS, peers map[string]string) (*tlsStreamLayer, error) {
	if cfg.Server == nil || cfg.Client == nil || cfg.Server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("committee: Raft over TLS needs a server configuration that requires and verifies client certificates, and a client one")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	l := &tlsStreamLayer{advertise: advertise, client: cfg.Client, overrides: map[string]string{}}
	for id, addr := range peers {
		l.overrides[addr] = id
	}
	server := cfg.Server.Clone()
	// Runs inside the handshake, after the chain is verified: a refused
	// peer's connection fails on Raft's first read, before any of its
	// bytes reach Raft.
	server.VerifyConnection = l.verifyInbound
	l.Listener = tls.NewListener(ln, server)
	return l, nil
}

// serve starts checking handshakes against r's configuration.
func (l *tlsStreamLayer) serve(r *raft.Raft) { l.raft.Store(r) }

// Dial connects to another voter and completes the handshake within
// timeout, checking its certificate against its host and, when the
// configuration lists the address, the voter ID it belongs to.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg := l.client.Clone()
	cfg.ServerName = host
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return l.verifyOutbound(address, cs) }
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

// Addr is the address advertised to the other voters.
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// verifyInbound takes a connection from a voter of the local configuration
// — or, while that is empty, from any voter: a voter that has not joined
// yet learns its configuration from the leader's first AppendEntries, and
// must take it. (A voter the operator adds has an empty one until then.)
func (l *tlsStreamLayer) verifyInbound(cs tls.ConnectionState) error {
	id, err := peerVoter(cs)
	if err != nil {
		return err
	}
	r := l.raft.Load()
	if r == nil {
		return fmt.Errorf("committee: Raft connection from voter %s refused: Raft is not running yet", id)
	}
	servers, err := configuration(r)
	if err != nil || len(servers) == 0 {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			return nil
		}
	}
	return fmt.Errorf("committee: Raft connection from voter %s (certificate %q) refused: not a voter of this node's configuration %v",
		id, cs.PeerCertificates[0].Subject, voterIDs(servers))
}

// verifyOutbound checks that the voter dialed is the one the configuration
// puts at that address (any voter for an address it does not list).
func (l *tlsStreamLayer) verifyOutbound(address raft.ServerAddress, cs tls.ConnectionState) error {
	id, err := peerVoter(cs)
	if err != nil {
		return err
	}
	if want, ok := l.overrides[string(address)]; ok && want != id {
		return fmt.Errorf("committee: Raft peer at %s (the address given for voter %s) presented the certificate %q of voter %s",
			address, want, cs.PeerCertificates[0].Subject, id)
	}
	if want, ok := l.overrides[string(address)]; ok && want != id {
		return fmt.Errorf("committee: Raft peer at %s (the address given for voter %s) presented the certificate %q of voter %s",
			address, want, cs.PeerCertificates[0].Subject, id)
	}
	r := l.raft.Load()
	if r == nil {
		return nil
	}
	servers, err := configuration(r)
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.Address == address && string(s.ID) != id {
			return fmt.Errorf("committee: Raft peer at %s presented the certificate %q of voter %s, but the configuration has voter %s there",
				address, cs.PeerCertificates[0].Subject, id, s.ID)
		}
	}
	return nil
}

// peerVoter is the voter identity of the peer's verified certificate.
func peerVoter(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("committee: Raft connection without a certificate refused")
	}
	cert := cs.PeerCertificates[0]
	id, err := wire.VoterID(cert)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("committee: Raft connection refused: certificate %q (issuer %q) carries no voter identity (a URI SAN %s)",
			cert.Subject, cert.Issuer, wire.VoterURI("ID"))
	}
	return id, nil
}

// configuration is the latest configuration r knows (committed or not: a
// voter being added is in the leader's at once).
func configuration(r *raft.Raft) ([]raft.Server, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("committee: reading the Raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

func voterIDs(servers []raft.Server) []raft.ServerID {
	var ids []raft.ServerID
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, s.ID)
		}
	}
	return ids
}
