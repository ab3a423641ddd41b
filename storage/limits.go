package storage

import (
	"context"
	"net"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// PeerLimits bound what one peer can make the node hold at once. A peer
// is the caller's IP address, or the node ID a verified signature names
// (SyncShard). Writes (StorePairs) and reads (GetSliver,
// GetRecoverySymbols, SyncShard) are counted apart: a writer's buffered
// slivers do not starve its reads, nor the other way round. Past a cap the
// call is refused with ResourceExhausted before anything is allocated
// for it.
type PeerLimits struct {
	// MaxStreams bounds a peer's concurrent StorePairs streams.
	MaxStreams int
	// MaxInflightBytes bounds the sliver bytes a peer's streams have sent
	// and the node has not yet stored (being assembled, verified or
	// batched).
	MaxInflightBytes int64
	// MaxReads bounds a peer's concurrent GetSliver, GetRecoverySymbols
	// and SyncShard calls.
	MaxReads int
	// MaxReadBytes bounds the bytes those calls hold at once: slivers read
	// to be sent, lines extended for symbols.
	MaxReadBytes int64
}

// Defaults. Every test and the devnet run every client and node on
// 127.0.0.1, so one "peer" there is the whole network: a client writing
// with 4 streams per node (several blobs at once through a gateway) and
// every other node's recovery and handover reads (8 pairs at once, each
// asking every peer). The stream and read caps leave room for all of that
// many times over; the byte caps are a maximum blob's worth (4 GiB) —
// and a peer's only stream or read is never refused for bytes, so a blob
// whose pair alone passes the cap (a 4 GiB blob at n = 4) can still be
// written and read. What the caps stop is one caller opening thousands
// of streams, or holding many blobs' worth of half-sent pairs.
const (
	DefaultMaxStreamsPerPeer       = 256
	DefaultMaxInflightBytesPerPeer = 4 << 30
	DefaultMaxReadsPerPeer         = 256
	DefaultMaxReadBytesPerPeer     = 4 << 30
)

func (l *PeerLimits) setDefaults() {
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultMaxStreamsPerPeer
	}
	if l.MaxInflightBytes <= 0 {
		l.MaxInflightBytes = DefaultMaxInflightBytesPerPeer
	}
	if l.MaxReads <= 0 {
		l.MaxReads = DefaultMaxReadsPerPeer
	}
	if l.MaxReadBytes <= 0 {
		l.MaxReadBytes = DefaultMaxReadBytesPerPeer
	}
}

// peerOf names the caller of a call by its IP address (its port changes
// with every connection).
func peerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// peerLedger counts one kind of call (writes or reads) and the bytes they
// hold, per peer.
type peerLedger struct {
	kind              string // "write" or "read", for messages and metrics
	callCap, bytesCap string // the caps' names (flags), for messages
	maxCalls          int
	maxBytes          int64
	onBytes           func(delta int64) // the node-wide gauge
	onRefused         func(cap string)

	mu    sync.Mutex
	peers map[string]*peerUse // only peers with a call open
}

type peerUse struct {
	calls int
	bytes int64
}

// peerCall is one open call's share of its peer's use.
type peerCall struct {
	ledger *peerLedger
	peer   string
	bytes  int64 // held by this call
}

// open counts a call of the peer, or refuses it past the call cap.
func (l *peerLedger) open(peer string) (*peerCall, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.peers[peer]
	if u == nil {
		u = &peerUse{}
		l.peers[peer] = u
	}
	if u.calls >= l.maxCalls {
		l.onRefused(l.callCap)
		return nil, status.Errorf(codes.ResourceExhausted, "peer %s has %d %s calls open on this node, the cap (%s) is %d: retry when one ends",
			peer, u.calls, l.kind, l.callCap, l.maxCalls)
	}
	u.calls++
	return &peerCall{ledger: l, peer: peer}, nil
}

// reserve counts n more bytes held by the call, or refuses them if the
// peer would pass the byte cap. A call holding all its peer's bytes is
// never refused: one stream or read must always go through, whatever the
// blob's size (each is bounded on its own: by the blob's size, and the
// half-sent pairs a stream may leave).
func (c *peerCall) reserve(n int64) error {
	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.peers[c.peer]
	if u.bytes+n > l.maxBytes && u.bytes > c.bytes {
		l.onRefused(l.bytesCap)
		return status.Errorf(codes.ResourceExhausted, "peer %s holds %d bytes of %s calls in flight on this node (this call %d); %d more would pass the cap (%s) of %d: retry when some are done",
			c.peer, u.bytes, l.kind, c.bytes, n, l.bytesCap, l.maxBytes)
	}
	u.bytes += n
	c.bytes += n
	l.onBytes(n)
	return nil
}

// release gives back n of the call's bytes (stored, sent or dropped).
func (c *peerCall) release(n int64) {
	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, c.bytes)
	l.peers[c.peer].bytes -= n
	c.bytes -= n
	l.onBytes(-n)
}

// close ends the call and gives back whatever it still holds.
func (c *peerCall) close() {
	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.peers[c.peer]
	u.bytes -= c.bytes
	l.onBytes(-c.bytes)
	c.bytes = 0
	if u.calls--; u.calls == 0 {
		delete(l.peers, c.peer)
	}
}

func newPeerLedger(kind, callCap, bytesCap string, maxCalls int, maxBytes int64, m *Metrics) *peerLedger {
	// On /metrics from the start, at zero (newMetrics says why).
	m.buffered.WithLabelValues(kind)
	m.peerRefused.WithLabelValues(callCap)
	m.peerRefused.WithLabelValues(bytesCap)
	return &peerLedger{kind: kind, callCap: callCap, bytesCap: bytesCap, maxCalls: maxCalls, maxBytes: maxBytes,
		onBytes:   func(d int64) { m.buffered.WithLabelValues(kind).Add(float64(d)) },
		onRefused: func(cap string) { m.peerRefused.WithLabelValues(cap).Inc() },
		peers:     map[string]*peerUse{}}
}
