// Package devnet runs a whole weft network in one process on loopback: a
// one-voter control plane and N storage nodes, each with its own data
// directory and gRPC server, all real (Raft, bbolt, TCP). `weft devnet`
// runs it for newcomers; the client, gateway and CLI tests run against it.
package devnet

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
	"github.com/weftstore/weft/storage"
)

// Config shapes a devnet; zero values take the defaults.
type Config struct {
	Dir    string // data root; empty: a temporary directory removed by Close
	Nodes  int    // storage nodes (default 7)
	Shards int    // n (default 3 per node)
	// Faults makes node i lie (storage.Faults): for fault-injection tests.
	Faults map[int]storage.Faults
	// RecoveryDelay is the nodes' wait before recovering a certified blob's
	// missing slivers (default 500 ms: a devnet is impatient).
	RecoveryDelay time.Duration
	// ScrubInterval is the nodes' time between scrub passes (default:
	// storage.DefaultScrubInterval).
	ScrubInterval time.Duration
	// Limits are the nodes' per-peer caps (zero: storage's defaults).
	Limits storage.PeerLimits
	// CopyRetryWindow is how long the nodes keep trying to copy a gained
	// shard from a holder they cannot reach (zero: storage's default;
	// negative: rebuild at once).
	CopyRetryWindow time.Duration
	// SyncMemory bounds the bytes each node's handover holds at once
	// (zero: storage's default).
	SyncMemory int64
	Logger     *slog.Logger // default: discard
	// ControlAddr and NodeAddrs fix the listening addresses (default: free
	// loopback ports).
	ControlAddr string
	NodeAddrs   []string
}

// Network is a running devnet.
type Network struct {
	cfg           Config
	ControlAddr   string // the control plane's gRPC address
	OperatorToken string
	ClientToken   string // a client credential with a large quota

	removeDir bool
	voter     *committee.Node
	service   *committee.Service
	server    *grpc.Server
	conn      *grpc.ClientConn // to the control plane

	mu    sync.Mutex
	nodes []*node
}

type node struct {
	id     shardmap.NodeID
	key    *crypto.SecretKey
	dir    string
	addr   string
	faults storage.Faults
	run    *storage.Node
	server *grpc.Server
}

// Start starts the control plane and the nodes, stakes every node equally
// and advances to epoch 1, and returns once every node serves it.
func Start(ctx context.Context, cfg Config) (_ *Network, err error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 7
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 3 * cfg.Nodes
	}
	if cfg.RecoveryDelay <= 0 {
		cfg.RecoveryDelay = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// A random operator token: a devnet's voters listen on loopback, where
	// any local process could otherwise guess a fixed one.
	token := make([]byte, 24)
	_, _ = crand.Read(token)
	d := &Network{cfg: cfg, OperatorToken: hex.EncodeToString(token)}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "weft-devnet-"); err != nil {
			return nil, err
		}
		d.removeDir = true
		d.cfg.Dir = cfg.Dir
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := d.startControl(ctx); err != nil {
		return nil, err
	}
	if err := d.createClient(ctx); err != nil {
		return nil, err
	}
	for i := range cfg.Nodes {
		key, err := crypto.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		addr := ""
		if i < len(cfg.NodeAddrs) {
			addr = cfg.NodeAddrs[i]
		}
		if addr == "" {
			if addr, err = FreeAddr(); err != nil {
				return nil, err
			}
		}
		n := &node{id: shardmap.NodeID(fmt.Sprintf("node-%d", i)), key: key, addr: addr,
			dir: filepath.Join(cfg.Dir, fmt.Sprintf("node-%d", i)), faults: cfg.Faults[i]}
		d.nodes = append(d.nodes, n)
		if err := d.startNode(ctx, n); err != nil {
			return nil, err
		}
	}
	admin := weftv1.NewAdminClient(d.conn)
	actx := d.operator(ctx)
	for _, n := range d.nodes {
		if _, err := admin.SetStake(actx, &weftv1.SetStakeRequest{Node: string(n.id), Stake: 100}); err != nil {
			return nil, fmt.Errorf("devnet: staking %s: %w", n.id, err)
		}
	}
	if _, err := d.AdvanceEpoch(ctx, false); err != nil {
		return nil, err
	}
	return d, nil
}

// asRole runs f with the pprof label role=role on this goroutine and on
// every goroutine f starts — a voter's Raft and gRPC goroutines, a node's
// server, handlers and background work inherit it — so a CPU profile of
// the one process splits by role (the client's benchmarks label theirs
// role=client).
func asRole(ctx context.Context, role string, f func() error) (err error) {
	pprof.Do(ctx, pprof.Labels("role", role), func(context.Context) { err = f() })
	return err
}

func (d *Network) startControl(ctx context.Context) error {
	return asRole(ctx, "voter", d.startVoter)
}

func (d *Network) startVoter() error {
	addr := d.cfg.ControlAddr
	var err error
	if addr == "" {
		if addr, err = FreeAddr(); err != nil {
			return err
		}
	}
	raftAddr, err := FreeAddr()
	if err != nil {
		return err
	}
	d.voter, err = committee.StartNode(committee.NodeConfig{
		ID: "control", DataDir: filepath.Join(d.cfg.Dir, "control"), RaftAddr: raftAddr,
		Bootstrap:        []raft.Server{{ID: "control", Address: raft.ServerAddress(raftAddr)}},
		State:            committee.Config{Shards: d.cfg.Shards},
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	l, err := d.listen(addr)
	if err != nil {
		return err
	}
	d.ControlAddr = l.Addr().String()
	if d.service, err = committee.NewService(d.voter, committee.ServiceConfig{OperatorToken: d.OperatorToken, GRPCAddr: d.ControlAddr}); err != nil {
		return err
	}
	d.server = grpc.NewServer(d.service.ServerOptions()...)
	d.service.Register(d.server)
	go d.server.Serve(l)
	// The nodes reach the control plane over this connection: its
	// goroutines work for them.
	return asRole(context.Background(), "node", func() (err error) {
		d.conn, err = grpc.NewClient(d.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		return err
	})
}

func (d *Network) operator(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.OperatorToken)
}

// createClient adds the devnet's client credential, retrying while the
// voter elects itself.
func (d *Network) createClient(ctx context.Context) error {
	admin := weftv1.NewAdminClient(d.conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := admin.AddClient(d.operator(ctx), &weftv1.AddClientRequest{Client: "devnet", Quota: 1 << 62})
		if err == nil {
			d.ClientToken = resp.Token
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("devnet: adding the client credential: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listen listens on addr, retrying briefly (a restarted node takes back
// its port).
func (d *Network) listen(addr string) (l net.Listener, err error) {
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// FreeAddr returns a loopback address free now, for a server to listen
// on a moment later. Ports come from below Linux's ephemeral range (32768
// up), where the kernel picks both ":0" listeners' ports and every
// outgoing connection's — either could take the port before the server
// binds it (a node dials the control plane before it listens) — and none
// is handed out twice by one process. Tests of other packages use it too.
func FreeAddr() (string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return l.Addr().String(), nil
	}
	return "", errors.New("devnet: no free loopback port below the ephemeral range")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func (d *Network) startNode(ctx context.Context, n *node) error {
	return asRole(ctx, "node", func() error { return d.runNode(ctx, n) })
}

func (d *Network) runNode(ctx context.Context, n *node) error {
	run, err := storage.Start(ctx, storage.Config{
		ID: n.id, Key: n.key, DataDir: n.dir, PublicAddr: n.addr, Control: d.conn,
		RecoveryDelay: d.cfg.RecoveryDelay, PeerTimeout: 5 * time.Second, WatchTimeout: 5 * time.Second,
		ScrubInterval: d.cfg.ScrubInterval, Limits: d.cfg.Limits, CopyRetryWindow: d.cfg.CopyRetryWindow, SyncMemory: d.cfg.SyncMemory,
		Faults: n.faults, Logger: d.cfg.Logger,
	})
	if err != nil {
		return err
	}
	l, err := d.listen(n.addr)
	if err != nil {
		run.Close()
		return err
	}
	n.run = run
	n.server = grpc.NewServer(run.ServerOptions()...)
	run.Register(n.server)
	go n.server.Serve(l)
	return nil
}

// AddNode starts one more storage node (registered, not staked) and
// returns its index.
func (d *Network) AddNode(ctx context.Context) (int, error) {
	key, err := crypto.GenerateKey(nil)
	if err != nil {
		return 0, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	i := len(d.nodes)
	n := &node{id: shardmap.NodeID(fmt.Sprintf("node-%d", i)), key: key, addr: addr,
		dir: filepath.Join(d.cfg.Dir, fmt.Sprintf("node-%d", i)), faults: d.cfg.Faults[i]}
	d.nodes = append(d.nodes, n)
	d.mu.Unlock()
	return i, d.startNode(ctx, n)
}

// SetStake sets node i's stake (it takes effect at the next epoch).
func (d *Network) SetStake(ctx context.Context, i int, stake uint64) error {
	_, err := weftv1.NewAdminClient(d.conn).SetStake(d.operator(ctx), &weftv1.SetStakeRequest{Node: string(d.NodeID(i)), Stake: stake})
	return err
}

// Phase is the control plane's epoch and phase (Stable or Handover).
func (d *Network) Phase(ctx context.Context) (uint64, string, error) {
	st, err := weftv1.NewWatchClient(d.conn).WatchState(ctx, &weftv1.WatchStateRequest{})
	if err != nil {
		return 0, "", err
	}
	return st.Epoch, st.Phase, nil
}

// AdvanceEpoch advances the control plane's epoch and waits until every
// running node follows it.
func (d *Network) AdvanceEpoch(ctx context.Context, force bool) (uint64, error) {
	resp, err := weftv1.NewAdminClient(d.conn).AdvanceEpoch(d.operator(ctx), &weftv1.AdvanceEpochRequest{Force: force})
	if err != nil {
		return 0, fmt.Errorf("devnet: advancing the epoch: %w", err)
	}
	return resp.Epoch, d.awaitEpoch(ctx, resp.Epoch)
}

func (d *Network) awaitEpoch(ctx context.Context, epoch uint64) error {
	d.mu.Lock()
	nodes := slices.Clone(d.nodes)
	d.mu.Unlock()
	for _, n := range nodes {
		if n.run == nil {
			continue
		}
		for n.run.Assignment().Epoch < epoch {
			select {
			case <-ctx.Done():
				return fmt.Errorf("devnet: %s did not reach epoch %d: %w", n.id, epoch, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
		select {
		case <-n.run.Ready():
		case <-ctx.Done():
			return fmt.Errorf("devnet: %s did not get ready: %w", n.id, ctx.Err())
		}
	}
	return nil
}

// Nodes is the number of storage nodes.
func (d *Network) Nodes() int { return len(d.nodes) }

// NodeID is node i's ID.
func (d *Network) NodeID(i int) shardmap.NodeID { return d.nodes[i].id }

// Key is node i's BLS key (a devnet is for development and tests: the
// keys are in memory anyway).
func (d *Network) Key(i int) *crypto.SecretKey { return d.nodes[i].key }

// NodeAddr is node i's gRPC address.
func (d *Network) NodeAddr(i int) string { return d.nodes[i].addr }

// Node is node i while it runs (nil when stopped).
func (d *Network) Node(i int) *storage.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[i].run
}

// NodeDir is node i's data directory: its store's bbolt file
// (storage.db) and value log (storage.values/) are in it.
func (d *Network) NodeDir(i int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[i].dir
}

// Owned lists the shards node i owns in the current epoch.
// (nil if the control plane does not answer within 10 s).
func (d *Network) Owned(i int) []uint32 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := weftv1.NewWatchClient(d.conn).WatchState(ctx, &weftv1.WatchStateRequest{})
	if err != nil {
		return nil
	}
	return shardmap.OwnedBy(control.NodeIDs(st.Owners), d.nodes[i].id)
}

// StopNode stops node i: its server closes its connections and its store
// is closed (its data stays).
func (d *Network) StopNode(i int) error {
	d.mu.Lock()
	n := d.nodes[i]
	run, server := n.run, n.server
	n.run, n.server = nil, nil
	d.mu.Unlock()
	if run == nil {
		return fmt.Errorf("devnet: node %d is not running", i)
	}
	server.Stop()
	return run.Close()
}

// StartNode restarts a stopped node i with the same key, data and address,
// and waits until it serves.
func (d *Network) StartNode(ctx context.Context, i int) error {
	d.mu.Lock()
	n := d.nodes[i]
	running := n.run != nil
	d.mu.Unlock()
	if running {
		return fmt.Errorf("devnet: node %d is running", i)
	}
	if err := d.startNode(ctx, n); err != nil {
		return err
	}
	select {
	case <-n.run.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops everything and removes a temporary data directory.
func (d *Network) Close() error {
	var errs []error
	for i := range d.nodes {
		if d.Node(i) != nil {
			errs = append(errs, d.StopNode(i))
		}
	}
	if d.server != nil {
		d.server.Stop()
	}
	if d.service != nil {
		d.service.Close()
	}
	if d.voter != nil {
		errs = append(errs, d.voter.Shutdown())
	}
	if d.conn != nil {
		d.conn.Close()
	}
	if d.removeDir {
		errs = append(errs, os.RemoveAll(d.cfg.Dir))
	}
	return errors.Join(errs...)
}
