// Package netview is weft's live status page (issue #22): a Collector that
// builds a snapshot of the network — the control plane's NetworkStatus and
// latest challenge round, and every registered storage node's NodeStatus —
// and the HTTP handlers that serve it as JSON (GET /v1/network) and as a
// page (GET /ui/, every asset embedded in the binary). The gateway mounts
// them (gateway/ui.go); so does `weft control --ui` on its metrics
// listener. DESIGN.md has the rules (node health, handover states) and the
// JSON schema.
//
//	c, err := netview.New(netview.Config{Control: voters})
//	if err != nil { … }
//	defer c.Close()
//	mux.Handle("GET /v1/network", c.JSONHandler())
//	mux.Handle("GET /ui/", netview.UIHandler())
package netview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// The defaults of Config.
const (
	// DefaultInterval is the least time between two refreshes: however
	// many pages and scripts poll, the network is asked at most this
	// often.
	DefaultInterval = 2 * time.Second
	// DefaultNodeTimeout bounds each node's NodeStatus: a node that does
	// not answer within it is shown down.
	DefaultNodeTimeout = 2 * time.Second
	// DefaultControlTimeout bounds each control-plane call (per voter).
	DefaultControlTimeout = 5 * time.Second
	// DefaultConcurrency is how many nodes are asked at once.
	DefaultConcurrency = 16
)

// Config configures a Collector.
type Config struct {
	// Control lists the gRPC addresses of control-plane voters; they are
	// tried in turn, the last one that answered first. Required.
	Control []string
	// DialOptions are added to every connection (the transport
	// credentials; plaintext when none is given).
	DialOptions []grpc.DialOption
	// Interval is the least time between refreshes (0: DefaultInterval).
	Interval time.Duration
	// NodeTimeout bounds each node's answer (0: DefaultNodeTimeout).
	NodeTimeout time.Duration
	// ControlTimeout bounds each control-plane call (0:
	// DefaultControlTimeout).
	ControlTimeout time.Duration
	// Concurrency is how many nodes are asked at once (0:
	// DefaultConcurrency).
	Concurrency int
	// Logger receives a line per failed refresh (nil: none).
	Logger *slog.Logger
}

// ErrUnavailable is wrapped by the error of a refresh no control-plane
// voter answered.
var ErrUnavailable = errors.New("netview: no control-plane voter answered")

// Collector builds and caches the network's snapshot. Every caller shares
// it: at most one refresh runs at a time, at most one per Interval, and
// callers that ask while one runs wait for that one.
type Collector struct {
	cfg  Config
	log  *slog.Logger
	dial []grpc.DialOption

	ctx    context.Context // the collector's lifetime: refreshes run under it
	cancel context.CancelFunc

	mu       sync.Mutex
	last     *view         // the latest refresh's outcome (nil before the first)
	inflight chan struct{} // closed when the running refresh ends; nil if none runs
	closed   bool

	connMu    sync.Mutex
	control   []*grpc.ClientConn          // parallel to cfg.Control
	nodes     map[string]*grpc.ClientConn // by address; closed when no node has it any more
	preferred atomic.Int32                // the voter that answered last

	refreshes atomic.Int64 // refreshes started (tests count them)
}

// New makes a Collector of cfg. It dials nothing until the first
// snapshot is asked for.
func New(cfg Config) (*Collector, error) {
	var control []string
	for _, a := range cfg.Control {
		if a = strings.TrimSpace(a); a != "" {
			control = append(control, a)
		}
	}
	if len(control) == 0 {
		return nil, errors.New("netview: at least one control-plane address is required")
	}
	cfg.Control = control
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = DefaultNodeTimeout
	}
	if cfg.ControlTimeout <= 0 {
		cfg.ControlTimeout = DefaultControlTimeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{cfg: cfg, log: cfg.Logger, nodes: map[string]*grpc.ClientConn{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// A status poll is small: gRPC's default windows and buffers, not the
	// data path's (api/wire), so a hundred idle node connections cost
	// little. The reconnect backoff is capped near the refresh interval,
	// so a node that comes back shows up within a refresh or two.
	bc := backoff.DefaultConfig
	bc.MaxDelay = 2 * time.Second
	c.dial = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}, cfg.DialOptions...)
	for _, addr := range control {
		cc, err := grpc.NewClient(addr, c.dial...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("netview: control plane %s: %w", addr, err)
		}
		c.control = append(c.control, cc)
	}
	return c, nil
}

// Interval is the least time between two refreshes.
func (c *Collector) Interval() time.Duration { return c.cfg.Interval }

// Close closes every connection; refreshes in flight end.
func (c *Collector) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	c.connMu.Lock()
	defer c.connMu.Unlock()
	var errs []error
	for _, cc := range c.control {
		errs = append(errs, cc.Close())
	}
	for addr, cc := range c.nodes {
		errs = append(errs, cc.Close())
		delete(c.nodes, addr)
	}
	c.control = nil
	return errors.Join(errs...)
}

// view is one refresh's outcome, encoded once for every caller.
type view struct {
	snap *Snapshot
	body []byte // the JSON
	gz   []byte // body gzipped
	etag string // of the content, generated_at and refresh_ms left out
	err  error
	at   time.Time // when the refresh ended
}

// maxStale is how many intervals old a snapshot may still be served while
// its successor is being made: a refresh waits out the node timeout for a
// node that hangs, and a page should not wait with it.
const maxStale = 3

// Snapshot returns the network's snapshot: the cached one if it is younger
// than Interval; else a new one, shared with every concurrent caller — or,
// while that one is being made, the cached one if it is younger than
// maxStale intervals. The error is the refresh's (wrapping ErrUnavailable
// when no voter answered), or ctx's when it ends first.
func (c *Collector) Snapshot(ctx context.Context) (*Snapshot, error) {
	v, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	return v.snap, v.err
}

// current returns the cached view if it is younger than Interval. An
// older one starts a refresh (unless one is running already); the caller
// gets the cached view at once if it is a snapshot younger than maxStale
// intervals, and otherwise waits for the refresh.
func (c *Collector) current(ctx context.Context) (*view, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("netview: collector closed")
	}
	v := c.last
	if v != nil && time.Since(v.at) < c.cfg.Interval {
		c.mu.Unlock()
		return v, nil
	}
	if c.inflight == nil {
		c.refreshes.Add(1)
		done := make(chan struct{})
		c.inflight = done
		// The refresh runs under the collector's context, not the
		// caller's: a caller that goes away does not fail the others.
		go func() {
			v := c.refresh()
			c.mu.Lock()
			c.last, c.inflight = v, nil
			c.mu.Unlock()
			close(done)
		}()
	}
	done := c.inflight
	c.mu.Unlock()
	if v != nil && v.err == nil && time.Since(v.at) < maxStale*c.cfg.Interval {
		return v, nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, nil
}

// refresh asks the control plane, then every registered node, and builds
// the snapshot.
func (c *Collector) refresh() *view {
	start := time.Now()
	v := &view{}
	ns, ch, chErr, err := c.askControl(c.ctx)
	if err != nil {
		v.err = err
		v.at = time.Now()
		c.log.Warn("status page: refresh failed", "err", err)
		return v
	}
	answers := c.askNodes(c.ctx, ns.Nodes)
	v.snap = build(ns, ch, chErr, answers)
	v.snap.GeneratedAt = time.Now().UTC()
	v.snap.RefreshMS = time.Since(start).Milliseconds()
	v.snap.IntervalMS = c.cfg.Interval.Milliseconds()
	v.body, v.gz, v.etag, v.err = encode(v.snap)
	v.at = time.Now()
	return v
}

// askControl reads NetworkStatus and the latest challenge round from the
// first voter that answers, starting with the one that answered last. A
// round that cannot be read (none yet: NotFound) is no error of the
// refresh: chErr says why it is missing.
func (c *Collector) askControl(ctx context.Context) (ns *weftv1.NetworkStatusResponse, ch *weftv1.GetChallengeResponse, chErr string, err error) {
	c.connMu.Lock()
	conns := c.control
	c.connMu.Unlock()
	if len(conns) == 0 {
		return nil, nil, "", errors.New("netview: collector closed")
	}
	var errs []error
	start := int(c.preferred.Load())
	for k := range conns {
		i := (start + k) % len(conns)
		cc := conns[i]
		redial(ctx, cc, c.cfg.ControlTimeout)
		cctx, cancel := context.WithTimeout(ctx, c.cfg.ControlTimeout)
		ns, err = weftv1.NewClientClient(cc).NetworkStatus(cctx, &weftv1.NetworkStatusRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", c.cfg.Control[i], errorText(err)))
			continue
		}
		c.preferred.Store(int32(i))
		cctx, cancel = context.WithTimeout(ctx, c.cfg.ControlTimeout)
		ch, err = weftv1.NewClientClient(cc).GetChallenge(cctx, &weftv1.GetChallengeRequest{})
		cancel()
		switch {
		case status.Code(err) == codes.NotFound:
			ch, chErr = nil, ""
		case err != nil:
			ch, chErr = nil, fmt.Sprintf("%s: %s", c.cfg.Control[i], errorText(err))
		}
		return ns, ch, chErr, nil
	}
	return nil, nil, "", fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// nodeAnswer is one node's NodeStatus, or why there is none.
type nodeAnswer struct {
	resp *weftv1.NodeStatusResponse
	err  string
}

// askNodes asks every node for its NodeStatus, Concurrency at a time,
// each within NodeTimeout, over connections kept from one refresh to the
// next; the connections of addresses no node has any more are closed.
func (c *Collector) askNodes(ctx context.Context, nodes []*weftv1.NetworkNode) map[string]nodeAnswer {
	answers := make(map[string]nodeAnswer, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.cfg.Concurrency)
	wanted := map[string]bool{}
	for _, n := range nodes {
		if n.Address == "" {
			answers[n.Id] = nodeAnswer{err: "no address registered"}
			continue
		}
		wanted[n.Address] = true
		cc, err := c.nodeConn(n.Address)
		if err != nil {
			answers[n.Id] = nodeAnswer{err: err.Error()}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a := c.askNode(ctx, cc, n.Id)
			mu.Lock()
			answers[n.Id] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	c.connMu.Lock()
	for addr, cc := range c.nodes {
		if !wanted[addr] {
			cc.Close()
			delete(c.nodes, addr)
		}
	}
	c.connMu.Unlock()
	return answers
}

func (c *Collector) askNode(ctx context.Context, cc *grpc.ClientConn, id string) nodeAnswer {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.NodeTimeout)
	defer cancel()
	redial(ctx, cc, c.cfg.NodeTimeout/2)
	resp, err := weftv1.NewStorageClient(cc).NodeStatus(ctx, &weftv1.NodeStatusRequest{})
	if err != nil {
		return nodeAnswer{err: errorText(err)}
	}
	if resp.Node != id {
		// The address was taken over by another node (a re-registration
		// elsewhere): its answer is not this node's.
		return nodeAnswer{err: fmt.Sprintf("its address answers as node %q", resp.Node)}
	}
	return nodeAnswer{resp: resp}
}

// nodeConn returns the kept connection to a node's address, dialing it
// (lazily: grpc.NewClient connects on the first call) the first time.
func (c *Collector) nodeConn(addr string) (*grpc.ClientConn, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.control == nil {
		return nil, errors.New("netview: collector closed")
	}
	if cc, ok := c.nodes[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.dial...)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	c.nodes[addr] = cc
	return cc, nil
}

// redial makes a connection that failed try again now rather than after
// its reconnect backoff, and waits (at most wait) for the outcome: a node
// that came back is shown up on the next refresh, not a backoff later.
func redial(ctx context.Context, cc *grpc.ClientConn, wait time.Duration) {
	s := cc.GetState()
	if s != connectivity.TransientFailure && s != connectivity.Idle {
		return
	}
	cc.ResetConnectBackoff()
	cc.Connect()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tried := false
	for s = cc.GetState(); s != connectivity.Ready && !(tried && s == connectivity.TransientFailure); s = cc.GetState() {
		tried = tried || s == connectivity.Connecting
		if !cc.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// errorText is a gRPC error as a page shows it: its code and message,
// without gRPC's wrapping of a failed dial.
func errorText(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return clip(err.Error(), maxText)
	}
	msg := s.Message()
	if _, dial, found := strings.Cut(msg, "Error while dialing: "); found {
		msg = strings.TrimSuffix(dial, `"`)
	}
	return s.Code().String() + ": " + clip(msg, maxText)
}
