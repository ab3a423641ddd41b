// Package faultnet is a loopback TCP proxy whose faults a test switches
// while traffic flows: a partition (connections cut, or held with nothing
// delivered), a slow link (every chunk delayed), a flapping one (every
// k-th connection dropped). A process reached through a Proxy's address
// sees the network the test makes; nothing in the process is changed.
//
// Faults apply per direction of each connection at the moment a chunk is
// forwarded, so switching one affects connections already open: a held
// (black-holed) link keeps what it read and delivers it once healed, as
// TCP would after a partition heals; a cut link resets every connection.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what a Proxy does with traffic.
type Mode int

const (
	// Pass forwards everything (after the configured delay, if any).
	Pass Mode = iota
	// Hold accepts connections and reads from them but delivers nothing
	// until the mode changes: packets dropped on the floor.
	Hold
	// Cut closes every open connection and every new one at once:
	// the peer sees connection resets and refusals.
	Cut
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Hold:
		return "hold"
	case Cut:
		return "cut"
	}
	return "unknown"
}

// Stats counts what a Proxy saw.
type Stats struct {
	Accepted int64 // connections accepted
	Dropped  int64 // connections closed by a fault (Cut or DropEvery)
	Bytes    int64 // bytes delivered, both directions
}

// Proxy forwards connections from its own loopback address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	every   int // drop every k-th new connection (0: none)
	changed chan struct{}
	conns   map[net.Conn]struct{}
	closed  bool

	accepted, dropped, bytes atomic.Int64
	wg                       sync.WaitGroup
}

// Listen starts a proxy to target on 127.0.0.1 at a free port.
func Listen(target string) (*Proxy, error) { return ListenOn("127.0.0.1:0", target) }

// ListenOn starts a proxy to target on addr.
func ListenOn(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the proxy's mode; Cut also closes every open
// connection.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	var doomed []net.Conn
	if m == Cut {
		for c := range p.conns {
			doomed = append(doomed, c)
		}
	}
	p.notifyLocked()
	p.mu.Unlock()
	for _, c := range doomed {
		p.dropped.Add(1)
		_ = c.Close()
	}
}

// Heal returns the proxy to Pass (the delay and DropEvery stay).
func (p *Proxy) Heal() { p.SetMode(Pass) }

// SetDelay delays every chunk forwarded, in each direction, by d: a slow
// link (a request and its answer each wait d per chunk).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.notifyLocked()
	p.mu.Unlock()
}

// DropEvery closes every k-th new connection at once (0: none): a
// flapping link.
func (p *Proxy) DropEvery(k int) {
	p.mu.Lock()
	p.every = max(k, 0)
	p.mu.Unlock()
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Dropped: p.dropped.Load(), Bytes: p.bytes.Load()}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.notifyLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
	return err
}

// notifyLocked wakes every forwarder waiting on a mode change.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for n := 1; ; n++ {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		refuse := p.closed || p.mode == Cut || (p.every > 0 && n%p.every == 0)
		p.mu.Unlock()
		if refuse {
			p.dropped.Add(1)
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for one accepted connection and forwards both
// ways until either side closes or a fault cuts it.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	defer p.untrack(client, server)
	done := make(chan struct{}, 2)
	go func() { p.forward(server, client); done <- struct{}{} }()
	go func() { p.forward(client, server); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = server.Close()
	<-done
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// forward copies src to dst chunk by chunk, each chunk delivered only in
// Pass mode and after the delay in force when it was read.
func (p *Proxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.deliver(dst, buf[:n]) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			// Half-close: the other direction may still flow.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				return
			}
			return
		}
	}
}

// deliver waits out Hold and the delay, then writes chunk; false when the
// connection is to end (Cut, Close, a write error).
func (p *Proxy) deliver(dst net.Conn, chunk []byte) bool {
	for {
		p.mu.Lock()
		mode, delay, closed, changed := p.mode, p.delay, p.closed, p.changed
		p.mu.Unlock()
		switch {
		case closed || mode == Cut:
			return false
		case mode == Hold:
			<-changed
			continue
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-changed:
				continue // a fault changed while waiting: decide again
			}
		}
		if _, err := dst.Write(chunk); err != nil {
			return false
		}
		p.bytes.Add(int64(len(chunk)))
		return true
	}
}
