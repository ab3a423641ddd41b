package committee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftstore/weft/api/wire"
)

// NodeConfig configures one control-plane voter.
type NodeConfig struct {
	ID       string // this voter's Raft server ID
	DataDir  string // raft.db (log + stable store), snapshots/, fsm.db
	RaftAddr string // host:port to listen on and advertise for Raft
	// Bootstrap lists the initial voters (including this one). Starting
	// with it is safe to repeat: a node that already has Raft state
	// ignores it, so the same command starts a cluster and restarts it.
	Bootstrap []raft.Server
	State     Config // the genesis configuration of the FSM
	// Tuning; zero values take production defaults.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: a leader without contact from a quorum this
	// long steps down (0: half of HeartbeatTimeout when that is set, else
	// Raft's default).
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	LogOutput          io.Writer // Raft's own log (default: discarded)
	// DialCredentials secure the gRPC connections this voter makes to
	// the others (joining, bootstrapping, forwarding writes to the
	// leader); nil: plaintext.
	DialCredentials credentials.TransportCredentials
	// RaftTLS carries Raft's traffic over mutual TLS between certificates
	// that name voters of the configuration; nil: plaintext.
	RaftTLS *RaftTLS
	// PeerRaftAddrs, by voter ID, are addresses this voter dials for
	// those voters' Raft instead of the address the configuration
	// records (what each voter advertises): split-horizon networks,
	// tunnels, a proxy per link. Others' view of the cluster is unchanged.
	PeerRaftAddrs map[string]string
}

// peerAddrs is the ServerAddressProvider of PeerRaftAddrs: the override,
// else the configuration's address (raft also asks for its own ID when it
// names itself in a request).
type peerAddrs struct {
	overrides map[string]string
	node      *Node
}

func (p peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p.overrides[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	if string(id) == p.node.cfg.ID {
		return raft.ServerAddress(p.node.cfg.RaftAddr), nil
	}
	if r := p.node.raftRef.Load(); r != nil {
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.ID == id {
					return s.Address, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no address for voter %s", id)
}

// dialOptions are the options of a connection to another voter.
func (n *Node) dialOptions() []grpc.DialOption {
	return wire.DialOptions(wire.WithCredentials(n.cfg.DialCredentials))
}

// Node is one control-plane voter: Raft with raft-boltdb, a file snapshot
// store and the bbolt FSM.
type Node struct {
	cfg       NodeConfig
	raft      *raft.Raft
	fsm       *FSM
	logs      *raftboltdb.BoltStore
	recent    raft.LogStore // logs behind its in-memory cache of recent entries
	transport *raft.NetworkTransport
	hadState  bool // Raft state existed on disk when the node started
	// caughtUpTerm is the last term in which this node, leading, saw its
	// FSM apply everything logged before it checked (LeaderCaughtUp).
	caughtUpTerm atomic.Uint64
	// raftRef is raft for its transport's address provider, which runs
	// on Raft's goroutines (raft itself is set once NewRaft returns).
	raftRef atomic.Pointer[raft.Raft]
}

// StartNode opens the node's stores and joins (or bootstraps) the cluster.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return nil, errors.New("committee: node needs an ID, a data directory and a Raft address")
	}
	for id, addr := range cfg.PeerRaftAddrs {
		if id == "" || id == cfg.ID {
			return nil, fmt.Errorf("committee: a peer Raft address for voter %q: name another voter", id)
		}
		if err := checkAddress("peer Raft", addr); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: out, Level: hclog.Warn})

	rc := raftConfig(cfg, logger)

	fsm, err := OpenFSM(filepath.Join(cfg.DataDir, "fsm.db"), cfg.State)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, fsm: fsm}
	if err := n.open(rc, logger); err != nil {
		n.closeStores()
		return nil, err
	}
	return n, nil
}

// raftConfig is a voter's Raft configuration (BenchmarkRegistrations's
// raw-Raft baseline runs the same).
func raftConfig(cfg NodeConfig, logger hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	// The FSM's state is on disk and already reflects every entry it
	// applied: restoring the last snapshot at start would only roll it
	// back and replay.
	rc.NoSnapshotRestoreOnStart = true
	// Concurrent writers: let the leader take up to 512 waiting commands
	// into one log append (one disk sync) and one FSM batch.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	return rc
}

// transportConfig is Raft's transport: 3 pooled connections per peer,
// 10 s I/O timeout, the peer address overrides.
func (n *Node) transportConfig(stream raft.StreamLayer, logger hclog.Logger) *raft.NetworkTransportConfig {
	cfg := &raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: logger}
	if len(n.cfg.PeerRaftAddrs) > 0 {
		cfg.ServerAddressProvider = peerAddrs{overrides: n.cfg.PeerRaftAddrs, node: n}
	}
	return cfg
}

func (n *Node) open(rc *raft.Config, logger hclog.Logger) error {
	var err error
	if n.logs, err = openLogStore(n.cfg.DataDir); err != nil {
		return err
	}
	snapshots, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, logger)
	if err != nil {
		return err
	}
	addr, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAddr)
	if err != nil {
		return err
	}
	var layer *tlsStreamLayer
	if n.cfg.RaftTLS != nil {
		if layer, err = newTLSStreamLayer(n.cfg.RaftAddr, addr, n.cfg.RaftTLS, n.cfg.PeerRaftAddrs); err != nil {
			return err
		}
		n.transport = raft.NewNetworkTransportWithConfig(n.transportConfig(layer, logger))
	} else if n.transport, err = raft.NewTCPTransportWithConfig(n.cfg.RaftAddr, addr, n.transportConfig(nil, logger)); err != nil {
		return err
	}
	n.hadState, err = raft.HasExistingState(n.logs, n.logs, snapshots)
	if err != nil {
		return err
	}
	if len(n.cfg.Bootstrap) > 0 {
		err := raft.BootstrapCluster(rc, n.logs, n.logs, snapshots, n.transport, raft.Configuration{Servers: n.cfg.Bootstrap})
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return err
		}
	}
	// Recent entries stay in memory: replication to followers and their
	// FSM batches would otherwise read each entry back from bbolt and
	// decode it again (a tenth of the CPU of a registration burst).
	logs, err := raft.NewLogCache(logCacheEntries, n.logs)
	if err != nil {
		return err
	}
	n.recent = logs
	if n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.logs, snapshots, n.transport); err != nil {
		return err
	}
	n.raftRef.Store(n.raft)
	if layer != nil {
		layer.serve(n.raft)
	}
	return nil
}

// openLogStore opens a voter's Raft log and stable store, raft.db in dir.
// The freelist is rebuilt on open instead of written with every commit:
// one page less per log append, the hot path of every write.
func openLogStore(dir string) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
}

// logCacheEntries is how many recent log entries each voter keeps in
// memory: several of the largest batches (MaxAppendEntries).
const logCacheEntries = 4096

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	if n.logs != nil {
		n.logs.Close()
	}
	n.fsm.Close()
}

// Shutdown stops Raft and closes the stores.
func (n *Node) Shutdown() error {
	err := n.raft.Shutdown().Error()
	n.closeStores()
	return err
}

// FSM exposes the node's local state for reads.
func (n *Node) FSM() *FSM { return n.fsm }

// Raft exposes the Raft instance (membership, stats).
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// ErrNotLeader is returned when a write reaches a follower; the service
// layer forwards writes to the leader.
var ErrNotLeader = errors.New("committee: not the leader")

// Propose commits a command through Raft and returns its result once this
// node has applied it. Only the leader proposes.
func (n *Node) Propose(ctx context.Context, cmd Command) (*Result, error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, err
	}
	res, ok := f.Response().(*Result)
	if !ok || res == nil {
		return nil, fmt.Errorf("committee: no result for command %s", cmd.ID)
	}
	return res, nil
}

// LinearizableRead returns once this node's state reflects every write
// acknowledged before the call, or an error (ErrNotLeader, a lost
// leadership, the timeout). It writes nothing to the log — a read must not
// grow it: it takes the leader's last log index (by leader completeness,
// at or above every acknowledged write, even for a leader elected a moment
// ago whose commit index still lags), confirms leadership with a round of
// heartbeats, and waits until the FSM has applied every command up to that
// index.
func (n *Node) LinearizableRead(ctx context.Context, timeout time.Duration) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	index := n.raft.LastIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		applied, err := n.fsm.AppliedIndex()
		if err != nil {
			return err
		}
		// The FSM's index counts commands only: entries after it that
		// are not (Raft's no-ops, configurations) need no waiting for.
		if applied >= index || !n.commandsIn(applied+1, index) {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return fmt.Errorf("committee: state at index %d, waiting for %d: %w", applied, index, context.DeadlineExceeded)
		}
		n.fsm.WaitApplied(ctx, applied, left)
	}
}

// LeaderCaughtUp returns once this leader's FSM reflects every entry
// committed before its term: checked once per term (a LinearizableRead),
// then free. A voter elected a moment ago reports IsLeader at once, while
// its FSM may still lack entries of the previous term that were committed
// (and acknowledged) but that it has not learned are committed: until its
// first entry of the term commits, its local state is behind. The service
// checks some requests on the leader against that state before proposing
// (a certificate's committee, a node request's epoch and signer): without
// this, a leader elected after an acknowledged epoch change refused a
// certificate of the new epoch, "no committee for epoch e" (reproduced by
// integration's TestNewLeaderPreCheck).
func (n *Node) LeaderCaughtUp(ctx context.Context, timeout time.Duration) error {
	term := n.raft.CurrentTerm()
	if n.caughtUpTerm.Load() == term {
		return nil
	}
	if err := n.LinearizableRead(ctx, timeout); err != nil {
		return err
	}
	// A later term (leadership lost and won again meanwhile) is checked
	// again on its first call: term is the one read before the check.
	n.caughtUpTerm.Store(term)
	return nil
}

// commandsIn reports whether the log has a command entry in [from, to]
// (true when it cannot tell).
func (n *Node) commandsIn(from, to uint64) bool {
	for i := to; i >= from && i > 0; i-- {
		var l raft.Log
		if err := n.recent.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return true
		}
	}
	return false
}

// AddVoter adds a voter (on the leader).
func (n *Node) AddVoter(id, addr string) error {
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// RemoveServer removes a voter (on the leader).
func (n *Node) RemoveServer(id string) error {
	return n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}
