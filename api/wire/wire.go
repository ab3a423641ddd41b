// Package wire holds the gRPC transport settings every weft endpoint
// shares — the client SDK, storage nodes, and their servers — so that both
// ends of a connection agree: flow-control windows and socket buffers
// sized for megabyte slivers, keepalive pings that find a peer gone
// without a reset, and a reconnect backoff short enough that a restarted
// peer is reachable again within seconds.
package wire

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

const (
	// StreamWindow lets a stream have a whole sliver in flight: gRPC's
	// 64 KiB starting window stalls a megabyte message until its
	// bandwidth estimate grows. ConnWindow is the connection's share.
	StreamWindow = 16 << 20
	ConnWindow   = 64 << 20
	// SocketBuffer is gRPC's read and write buffer: large ones take
	// fewer system calls per byte.
	SocketBuffer = 256 << 10

	// KeepaliveTime is how long a connection with calls open may stay
	// silent before it is pinged, KeepaliveTimeout how long the ping may
	// go unanswered before the connection is closed and its calls fail
	// (Unavailable). Without them a peer that lost power or was cut off
	// by the network holds a call until its deadline — and a cached
	// connection keeps taking new calls into the void — for as long as
	// TCP retransmits, many minutes.
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
	// MinPingInterval is the most often a server lets a client ping it
	// (below KeepaliveTime, or the server would answer with GOAWAY
	// "too many pings" and cut long streams).
	MinPingInterval = 5 * time.Second
	// MaxBackoff caps gRPC's reconnect backoff (its default grows to two
	// minutes, through which a restarted peer stays unreachable).
	MaxBackoff = 2 * time.Second
)

type settings struct {
	keepaliveTime, keepaliveTimeout, maxBackoff time.Duration
	creds                                       credentials.TransportCredentials
	withCreds                                   bool
}

// Option changes a setting of DialOptions.
type Option func(*settings)

// WithKeepalive sets the keepalive time and timeout (gRPC raises a time
// below 10 s to 10 s).
func WithKeepalive(time, timeout time.Duration) Option {
	return func(s *settings) { s.keepaliveTime, s.keepaliveTimeout = time, timeout }
}

// WithMaxBackoff sets the cap of the reconnect backoff.
func WithMaxBackoff(d time.Duration) Option {
	return func(s *settings) {
		if d > 0 {
			s.maxBackoff = d
		}
	}
}

// WithCredentials adds the connection's transport credentials: these, or
// plaintext when nil.
func WithCredentials(creds credentials.TransportCredentials) Option {
	return func(s *settings) {
		s.creds, s.withCreds = creds, true
		if creds == nil {
			s.creds = insecure.NewCredentials()
		}
	}
}

// DialOptions are the transport options of a connection to a weft
// endpoint (credentials too with WithCredentials; otherwise the caller's).
func DialOptions(opts ...Option) []grpc.DialOption {
	s := settings{keepaliveTime: KeepaliveTime, keepaliveTimeout: KeepaliveTimeout, maxBackoff: MaxBackoff}
	for _, o := range opts {
		o(&s)
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = s.maxBackoff
	dial := []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}),
		// Pings only while calls are open: an idle cached connection to
		// every peer costs nothing.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: s.keepaliveTime, Timeout: s.keepaliveTimeout}),
		grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithWriteBufferSize(SocketBuffer), grpc.WithReadBufferSize(SocketBuffer),
	}
	if s.withCreds {
		dial = append(dial, grpc.WithTransportCredentials(s.creds))
	}
	return dial
}

// ServerOptions are the transport options of a weft server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinPingInterval, PermitWithoutStream: true}),
		// The server pings silent connections too, and drops a client
		// that vanished: its calls' resources are freed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow),
		grpc.WriteBufferSize(SocketBuffer), grpc.ReadBufferSize(SocketBuffer),
	}
}
