package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Config configures a storage node.
type Config struct {
	ID         shardmap.NodeID
	Key        *crypto.SecretKey
	DataDir    string
	PublicAddr string           // where other nodes and clients reach its gRPC service
	Control    *grpc.ClientConn // the control plane (any voter)
	// Plane, when set, is used instead of Control: whatever implements the
	// control-plane contract (requests it reports are signed with Key).
	Plane control.Plane

	// RecoveryWorkers bounds the blobs recovered at once (default 2);
	// RecoveryDelay is how long after certification a blob's missing
	// slivers are left to arrive from the writer before recovering them
	// (default 5 s).
	RecoveryWorkers int
	RecoveryDelay   time.Duration
	// PeerTimeout bounds each call to another node (default 10 s).
	PeerTimeout time.Duration
	// CopyRetryWindow is how long a gained shard's sync keeps trying to
	// copy from a holder it cannot reach before rebuilding the rest from
	// symbols (default 30 s; negative: rebuild at the first failure). A
	// holder restarting or cut off for a few seconds costs a wait; a
	// rebuild costs a round of symbol requests to every peer per blob.
	CopyRetryWindow time.Duration
	// SyncMemory bounds the sliver bytes the node's handover holds in
	// memory at once, over every shard it syncs: pairs being copied and
	// pairs being rebuilt (default DefaultSyncMemory, 256 MiB; a pair
	// larger than this goes alone). See syncbudget.go.
	SyncMemory int64
	// WatchTimeout is how long a blocking watch waits (default 30 s).
	WatchTimeout time.Duration
	// ScrubInterval is the time from the end of one scrub pass (reading
	// back and checking every stored sliver, scrub.go) to the start of
	// the next (0: DefaultScrubInterval; negative: no scrub); ScrubRate
	// paces a pass, in bytes a second (default DefaultScrubRate).
	ScrubInterval time.Duration
	ScrubRate     int64

	// Limits bound what one peer can make the node hold (zero fields:
	// the defaults).
	Limits PeerLimits
	// Capacity is the most the node's store keeps, in bytes (bbolt and
	// the value log as the store counts them, capacity.go); 0: the disk's
	// free space is the only limit. Writes past it are refused.
	Capacity int64

	// DialCredentials secure the connections the node makes to its peers
	// (the control plane's connection is the caller's); nil: plaintext.
	DialCredentials credentials.TransportCredentials

	// Clock is the node's wall clock (default time.Now): the nonces of its
	// signed requests start from it. Tests shift it to play a clock
	// stepped back.
	Clock func() time.Time

	Faults Faults // fault injection for tests of the other nodes; zero in production
	Logger *slog.Logger
}

// nonceFile, in the data directory, holds the ceiling of the node's
// signed requests' nonces (control.OpenNonces).
const nonceFile = "nonce-ceiling"

// Scrub defaults: a pass a week, at 32 MiB/s (a 4 TB node reads itself
// back in about 36 hours).
const (
	DefaultScrubInterval = 7 * 24 * time.Hour
	DefaultScrubRate     = 32 << 20
)

// registeredCacheSize bounds Node.registered: blobs being written now,
// with room to spare (an entry is about a hundred bytes).
const registeredCacheSize = 1 << 14

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.RecoveryWorkers <= 0 {
		c.RecoveryWorkers = 2
	}
	if c.RecoveryDelay <= 0 {
		c.RecoveryDelay = 5 * time.Second
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 10 * time.Second
	}
	if c.CopyRetryWindow == 0 {
		c.CopyRetryWindow = 30 * time.Second
	}
	if c.SyncMemory <= 0 {
		c.SyncMemory = DefaultSyncMemory
	}
	if c.WatchTimeout <= 0 {
		c.WatchTimeout = 30 * time.Second
	}
	if c.ScrubInterval == 0 {
		c.ScrubInterval = DefaultScrubInterval
	}
	if c.ScrubRate <= 0 {
		c.ScrubRate = DefaultScrubRate
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Limits.setDefaults()
}

// Node is a storage node: it registers with the control plane, follows its
// epoch state and event stream, stores and serves slivers, and recovers
// what it missed (DESIGN §7).
type Node struct {
	cfg      Config
	log      *slog.Logger
	follower *Follower
	store    *Store
	// codecs code each blob with the encoding its metadata names; their
	// Params give the shard mapping (every encoding's).
	codecs  *coding.Codecs
	metrics *Metrics
	// publicKey is cfg.Key's public key, encoded once: deriving it is a
	// scalar multiplication, which every confirmation would repeat.
	publicKey []byte

	peers    *peerSet
	writes   *peerLedger // StorePairs streams and their buffered bytes, per peer
	reads    *peerLedger // sliver, symbol and sync reads, per peer
	recovery *recoverer
	lines    *lineCache // extended lines recently served symbols from
	chal     *challenges

	// registered holds blobs the control plane confirmed registered, so
	// that every stream of a write does not ask again; bounded (the most
	// recent), and an ended blob leaves it when its event is applied.
	registered *lru.Cache[crypto.BlobID, struct{}]
	appliedMu  sync.Mutex
	applied    chan struct{} // closed and replaced whenever a page of events is applied

	syncMu     sync.Mutex
	syncNonces map[syncNonceKey]uint64 // per requesting node and shard: the last sync nonce served
	nonces     *control.Nonces         // this node's own signed requests' (durable: node data dir)
	reportMu   sync.Mutex              // one signed "shard synced" at a time, nonces in order
	syncedMu   sync.Mutex
	synced     map[uint64]map[uint32]bool // epoch → shards this node synced in it (a shard synced twice counts once)
	moved      map[uint64]*handoverBytes  // epoch → bytes its handover copied and rebuilt (this epoch and the last)
	// holderDown: since when each shard holder has failed to answer a
	// copy (handover.go); its shards' syncs share the one retry window.
	holderDown holderOutages
	// syncLim bounds what the handover does at once (syncbudget.go).
	syncLim *syncLimits

	// symbolVersionCap, when set, is the highest recovery-symbol version
	// the node answers in, whatever is asked: tests make a node answer as
	// one of an earlier release does (a rolling upgrade).
	symbolVersionCap atomic.Uint32

	ready  chan struct{} // closed when store, codec and workers are up
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// Start registers the node with the control plane and returns; the node
// then waits for the first committee (the number of shards fixes the
// codec), opens its store and starts its workers — Ready is closed then,
// and until then its RPCs answer Unavailable. Serve its gRPC service with
// Register.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.Key == nil || cfg.ID == "" || (cfg.Plane == nil && cfg.Control == nil) {
		return nil, errors.New("storage: a node needs an ID, a key and a control-plane connection")
	}
	if cfg.Capacity < 0 {
		return nil, fmt.Errorf("storage: capacity %d bytes: want 0 (the disk's free space) or more", cfg.Capacity)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	// Signed requests' nonces grow across restarts even if the clock went
	// back meanwhile: the control plane and the peers refuse a nonce below
	// one they took.
	nonces, err := control.OpenNonces(filepath.Join(cfg.DataDir, nonceFile), cfg.Clock)
	if err != nil {
		return nil, err
	}
	if cfg.Plane == nil {
		cfg.Plane = control.NewClient(cfg.Control, cfg.ID, cfg.Key, control.WithNonces(nonces))
	}
	if cfg.Faults.Any() {
		cfg.Logger.Warn("storage: FAULT INJECTION ENABLED — this node lies on purpose", "node", cfg.ID, "faults", cfg.Faults.String())
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), ready: make(chan struct{}), syncNonces: map[syncNonceKey]uint64{}, synced: map[uint64]map[uint32]bool{},
		applied: make(chan struct{}), nonces: nonces, publicKey: cfg.Key.PublicKey().Bytes()}
	if n.registered, err = lru.New[crypto.BlobID, struct{}](registeredCacheSize); err != nil {
		return nil, err
	}
	n.follower = NewFollower(cfg.Plane, cfg.ID, cfg.Key, cfg.PublicAddr)
	if err := retry(ctx, n.log, "registering with the control plane", func() error { return n.follower.Register(ctx) }); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.peers = newPeerSet(cfg.Plane, cfg.DialCredentials, n.log)
	n.metrics = newMetrics()
	lim := cfg.Limits
	n.writes = newPeerLedger("write", "--max-streams-per-peer", "--max-inflight-bytes-per-peer", lim.MaxStreams, lim.MaxInflightBytes, n.metrics)
	n.reads = newPeerLedger("read", "--max-reads-per-peer", "--max-read-bytes-per-peer", lim.MaxReads, lim.MaxReadBytes, n.metrics)
	n.chal = newChallenges(n)
	n.syncLim = newSyncLimits(cfg.SyncMemory, n.cfg.Limits.MaxReads, n.metrics.handoverHeld)
	n.goRun(func() { _ = n.follower.Run(runCtx, cfg.WatchTimeout) })
	n.goRun(func() {
		if err := n.open(runCtx); err != nil {
			if runCtx.Err() == nil {
				n.log.Error("storage: the node cannot start", "err", err)
			}
			return
		}
		// A restarted node re-applies an open round's embargo before it
		// serves anything.
		if err := n.chal.load(runCtx); err != nil {
			return
		}
		close(n.ready)
		n.goRun(func() { n.chal.run(runCtx) })
		n.goRun(func() { n.followEvents(runCtx) })
		n.goRun(func() { n.recovery.run(runCtx) })
		n.goRun(func() { n.scrub(runCtx) })
		n.goRun(func() { n.trackShardStates(runCtx) })
		n.goRun(func() { n.watchSpace(runCtx) })
	})
	return n, nil
}

// open waits for the number of shards and opens the store.
func (n *Node) open(ctx context.Context) error {
	shards, err := n.awaitShardCount(ctx)
	if err != nil {
		return err
	}
	if n.codecs, err = coding.NewCodecs(shards); err != nil {
		return err
	}
	if n.store, err = Open(filepath.Join(n.cfg.DataDir, "storage.db"), n.codecs); err != nil {
		return err
	}
	if err := n.store.SetCapacity(string(n.cfg.ID), n.cfg.Capacity); err != nil {
		return err
	}
	n.registerSpaceMetrics()
	if drop := n.cfg.Faults.dropper(n.cfg.ID); drop != nil {
		n.store.drop = drop
		dropped, err := n.store.dropPairs()
		if err != nil {
			return err
		}
		n.log.Warn("storage: FAULT drop-pairs: deleted stored sliver pairs and will not store its share of new ones",
			"percent", n.cfg.Faults.DropPairs, "deleted", dropped)
	}
	n.recovery = newRecoverer(n)
	n.lines = newLineCache(64<<20, 30*time.Second)
	return nil
}

// Ready is closed once the node serves.
func (n *Node) Ready() <-chan struct{} { return n.ready }

func (n *Node) isReady() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

func (n *Node) goRun(f func()) {
	n.done.Add(1)
	go func() { defer n.done.Done(); f() }()
}

// awaitShardCount waits for the first epoch state that has shards.
func (n *Node) awaitShardCount(ctx context.Context) (int, error) {
	for {
		changed := n.follower.Changed()
		if a := n.follower.Current(); len(a.Owners) > 0 {
			return len(a.Owners), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("storage: waiting for the control plane's epoch state: %w", ctx.Err())
		case <-changed:
		}
	}
}

// Close stops the workers and closes the store; in-flight RPCs should be
// stopped first (grpc.Server.Stop).
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.done.Wait()
	if n.peers != nil {
		n.peers.close()
	}
	// The store may be open without the node having become ready (stopped
	// while it loaded the challenge round): close it whenever it is open,
	// or its file lock outlives the node.
	if n.store != nil {
		return n.store.Close()
	}
	return nil
}

// ID is the node's ID.
func (n *Node) ID() shardmap.NodeID { return n.cfg.ID }

// Store exposes the node's store (read-only use: tests and tools).
func (n *Node) Store() *Store { return n.store }

// Assignment is the epoch state the node follows.
func (n *Node) Assignment() Assignment { return n.follower.Current() }

// Metrics is the node's Prometheus registry.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.registry }

// Stats are the node's byte counters.
func (n *Node) Stats() Stats { return n.metrics.snapshot() }

// Register adds the Storage service to a gRPC server.
func (n *Node) Register(g *grpc.Server) {
	weftv1.RegisterStorageServer(g, &service{n: n})
}

// ServerOptions are the options the node's gRPC server needs
// (interceptors, message sizes). Interceptors run in this order: metrics
// first, so refused calls are counted with their codes; then the
// authorization table, which refuses a method it does not list and a
// SyncShard without a signature before anything else looks at the call;
// then readiness.
func (n *Node) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(n.metrics.unaryInterceptor),
		grpc.ChainStreamInterceptor(n.metrics.streamInterceptor),
	}
	opts = append(opts, Authorization.ServerOptions(authorize)...)
	opts = append(opts,
		grpc.ChainUnaryInterceptor(n.readyUnary),
		grpc.ChainStreamInterceptor(n.readyStream),
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.MaxSendMsgSize(maxMessage),
		// Slivers are sent without copying them into gRPC's buffers
		// (GetSliver): each is read from the value log into memory of its
		// own, which nothing changes or reuses once it is sent.
		grpc.ForceServerCodecV2(wire.NewChunkCodec(wire.WithChunkBuffers(recordBuffer), wire.WithZeroCopySend(64<<10))),
	)
	// Windows and buffers for megabyte slivers, keepalive (wire).
	return append(opts, wire.ServerOptions()...)
}

var errNotReady = status.Error(codes.Unavailable, "storage node is waiting for the control plane's first committee")

func (n *Node) readyUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !n.isReady() {
		return nil, errNotReady
	}
	return handler(ctx, req)
}

func (n *Node) readyStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !n.isReady() {
		return errNotReady
	}
	return handler(srv, ss)
}

// retry calls f until it succeeds or ctx ends, with capped exponential
// backoff (the control plane may still be electing a leader).
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil || errors.Is(err, ErrKeyMismatch) {
			return err // done, or nothing a retry could change
		}
		log.Warn("storage: "+what, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// peerSet keeps one connection per peer address and the committee's
// addresses per epoch.
type peerSet struct {
	control control.Plane
	creds   credentials.TransportCredentials // of connections to peers; nil: plaintext
	log     *slog.Logger

	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
	epoch     uint64
	committee *control.Committee
	past      map[uint64]*control.Committee // earlier epochs, for holders that left
	pastAt    map[uint64]time.Time
}

func newPeerSet(control control.Plane, creds credentials.TransportCredentials, log *slog.Logger) *peerSet {
	return &peerSet{control: control, creds: creds, log: log, conns: map[string]*grpc.ClientConn{}}
}

// committeeOf returns the committee of an epoch (cached for the latest).
func (p *peerSet) committeeOf(ctx context.Context, epoch uint64) (*control.Committee, error) {
	p.mu.Lock()
	if p.committee != nil && p.epoch == epoch {
		c := p.committee
		p.mu.Unlock()
		return c, nil
	}
	// A past committee never changes, but its members' addresses may: keep
	// it for a minute.
	if c, ok := p.past[epoch]; ok && epoch < p.epoch && time.Since(p.pastAt[epoch]) < time.Minute {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	resp, err := p.control.Committee(ctx, epoch)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch >= p.epoch {
		p.epoch, p.committee = epoch, resp
	}
	if p.past == nil {
		p.past = map[uint64]*control.Committee{}
	}
	if p.pastAt == nil {
		p.pastAt = map[uint64]time.Time{}
	}
	p.past[resp.Epoch], p.pastAt[resp.Epoch] = resp, time.Now()
	// Only the lookback's epochs are ever searched: older ones go, so the
	// cache does not grow with the years.
	for e := range p.past {
		if e+lookback <= p.epoch {
			delete(p.past, e)
			delete(p.pastAt, e)
		}
	}
	return resp, nil
}

// peer returns the storage service of a node that is a member of the
// epoch's committee or, failing that, of an earlier one: a shard's holder
// may have left the committee and still serve its handover. Connections
// are kept, one per address.
func (p *peerSet) peer(ctx context.Context, epoch uint64, node shardmap.NodeID) (weftv1.StorageClient, error) {
	cc, err := p.conn(ctx, epoch, node)
	if err != nil {
		return nil, err
	}
	return weftv1.NewStorageClient(cc), nil
}

func (p *peerSet) conn(ctx context.Context, epoch uint64, node shardmap.NodeID) (*grpc.ClientConn, error) {
	addr, err := p.address(ctx, epoch, node)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	opts := append(wire.DialOptions(wire.WithCredentials(p.creds)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

// lookback is how many earlier committees are searched for a node's
// address.
const lookback = 8

func (p *peerSet) address(ctx context.Context, epoch uint64, node shardmap.NodeID) (string, error) {
	for e := epoch; e >= 1 && e+lookback > epoch; e-- {
		c, err := p.committeeOf(ctx, e)
		if err != nil {
			return "", err
		}
		if m, ok := c.Member(node); ok && m.Address != "" {
			return m.Address, nil
		}
	}
	return "", fmt.Errorf("storage: node %s is in none of the committees of epochs %d and the %d before", node, epoch, lookback)
}

func (p *peerSet) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// syncedIn is the number of shards the node synced in an epoch.
func (n *Node) syncedIn(epoch uint64) uint32 {
	n.syncedMu.Lock()
	defer n.syncedMu.Unlock()
	return uint32(len(n.synced[epoch]))
}

// markSynced records that every pair of a gained shard is on disk.
func (n *Node) markSynced(epoch uint64, shard uint32) {
	n.syncedMu.Lock()
	defer n.syncedMu.Unlock()
	if n.synced[epoch] == nil {
		n.synced[epoch] = map[uint32]bool{}
	}
	n.synced[epoch][shard] = true
}

// handoverBytes is what one epoch's handover brought in.
type handoverBytes struct{ copied, rebuilt int64 }

// countHandover adds to an epoch's handover bytes; epochs before the
// previous one are forgotten.
func (n *Node) countHandover(epoch uint64, copied, rebuilt int64) {
	n.syncedMu.Lock()
	defer n.syncedMu.Unlock()
	if n.moved == nil {
		n.moved = map[uint64]*handoverBytes{}
	}
	b := n.moved[epoch]
	if b == nil {
		b = &handoverBytes{}
		n.moved[epoch] = b
		for e := range n.moved {
			if e+1 < epoch {
				delete(n.moved, e)
			}
		}
	}
	b.copied += copied
	b.rebuilt += rebuilt
}

// handoverIn returns an epoch's handover bytes.
func (n *Node) handoverIn(epoch uint64) handoverBytes {
	n.syncedMu.Lock()
	defer n.syncedMu.Unlock()
	if b := n.moved[epoch]; b != nil {
		return *b
	}
	return handoverBytes{}
}

// isSynced: whether a gained shard's pairs are all on disk this epoch
// (its state turns Owned once the control plane has the report).
func (n *Node) isSynced(epoch uint64, shard uint32) bool {
	n.syncedMu.Lock()
	defer n.syncedMu.Unlock()
	return n.synced[epoch][shard]
}

// appliedChanged returns a channel closed when the next page of events has
// been applied.
func (n *Node) appliedChanged() <-chan struct{} {
	n.appliedMu.Lock()
	defer n.appliedMu.Unlock()
	return n.applied
}

func (n *Node) appliedEvents() {
	n.appliedMu.Lock()
	close(n.applied)
	n.applied = make(chan struct{})
	n.appliedMu.Unlock()
}
