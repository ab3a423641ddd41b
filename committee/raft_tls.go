package committee

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTLS secures Raft's own traffic between voters: mutual TLS, so that
// only a voter with a certificate the others' CA signed can send or take
// log entries (wire.TLSFiles.PeerConfigs makes both configurations).
type RaftTLS struct {
	Server *tls.Config // must require and verify client certificates
	Client *tls.Config // presents this voter's certificate
}

// tlsStreamLayer is raft.StreamLayer over TLS.
type tlsStreamLayer struct {
	net.Listener // a TLS listener
	advertise    net.Addr
	client       *tls.Config
}

func newTLSStreamLayer(bind string, advertise net.Addr, cfg *RaftTLS) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tlsStreamLayer{Listener: tls.NewListener(ln, cfg.Server), advertise: advertise, client: cfg.Client}, nil
}

// Dial connects to another voter and completes the handshake within
// timeout, checking its certificate against its host.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg := l.client.Clone()
	cfg.ServerName = host
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

// Addr is the address advertised to the other voters.
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }
