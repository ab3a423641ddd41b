package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
	"github.com/weftstore/weft/storage"
)

type nodeOptions struct {
	id, dataDir, keyFile, listen, publicAddr, faults string
	metrics                                          metricsConfig
	control                                          []string
	recoveryWorkers                                  int
	recoveryDelay                                    time.Duration
	copyRetryWindow                                  time.Duration
	syncMemory                                       int64
	scrubInterval                                    time.Duration
	scrubRate                                        int64
	limits                                           storage.PeerLimits
	clockOffset                                      time.Duration
	capacity                                         byteSize
}

func newNodeCommand() *cobra.Command {
	var o nodeOptions
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a storage node (stores and serves slivers, signs confirmations, recovers what it missed)",
		Long: "Registers the node with the control plane (signed with its BLS key, with the proof of\n" +
			"possession) unless it is registered, follows the epoch state and the event stream, and\n" +
			"serves the storage API. The operator stakes it (weft admin node stake) to give it shards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runNode(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "node ID (default: derived from the public key)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for the node's store (required)")
	f.StringVar(&o.keyFile, "key-file", "", "the node's BLS key file, from `weft key generate` (required)")
	f.StringSliceVar(&o.control, "control", envList("WEFT_CONTROL", "127.0.0.1:7001"), "control-plane gRPC addresses (or $WEFT_CONTROL)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7101", "address to serve the storage API on")
	f.StringVar(&o.publicAddr, "public-addr", "", "address clients and peers reach the node at (default: --listen)")
	o.metrics.addFlags(f, "node")
	f.IntVar(&o.recoveryWorkers, "recovery-workers", 2, "blobs recovered at once")
	f.DurationVar(&o.recoveryDelay, "recovery-delay", 5*time.Second, "wait after certification before recovering missing slivers")
	f.DurationVar(&o.copyRetryWindow, "copy-retry-window", 30*time.Second, "how long a gained shard's sync waits for a holder it cannot reach (restarting, cut off) before rebuilding from symbols instead of copying (negative: rebuild at once)")
	f.Int64Var(&o.syncMemory, "sync-memory", storage.DefaultSyncMemory, "sliver bytes the handover of gained shards holds in memory at once, over all shards (pairs being copied or rebuilt); many shards sync at once while their pairs are small, a pair larger than this goes alone")
	f.DurationVar(&o.scrubInterval, "scrub-interval", storage.DefaultScrubInterval, "time between scrub passes, which read back and check every stored sliver and rebuild corrupt ones (0: no scrub)")
	f.Int64Var(&o.scrubRate, "scrub-rate", storage.DefaultScrubRate, "bytes a second a scrub pass reads")
	f.IntVar(&o.limits.MaxStreams, "max-streams-per-peer", storage.DefaultMaxStreamsPerPeer, "concurrent StorePairs streams one caller (an IP address) may have open")
	f.Int64Var(&o.limits.MaxInflightBytes, "max-inflight-bytes-per-peer", storage.DefaultMaxInflightBytesPerPeer, "sliver bytes one caller's streams may have sent that are not yet stored (its only stream is never refused)")
	f.IntVar(&o.limits.MaxReads, "max-reads-per-peer", storage.DefaultMaxReadsPerPeer, "concurrent sliver, recovery-symbol and shard-sync reads one caller (an IP address, or a node for shard sync) may have open")
	f.Int64Var(&o.limits.MaxReadBytes, "max-read-bytes-per-peer", storage.DefaultMaxReadBytesPerPeer, "bytes one caller's reads may hold on the node at once (its only read is never refused)")
	f.Var(&o.capacity, "capacity", "the most the node stores, its store as it counts it (bbolt and the value log), in bytes or with a unit (500GiB, 2TB); writes past it are refused with ResourceExhausted and clients store on the other nodes. 0: the disk's free space is the only limit")
	f.StringVar(&o.faults, "inject-faults", "", "TESTING ONLY: make this node lie ("+storage.FaultNames+")")
	_ = f.MarkHidden("inject-faults")
	f.DurationVar(&o.clockOffset, "clock-offset", 0, "TESTING ONLY: shift the node's wall clock by this much (-1h: a clock stepped back an hour)")
	_ = f.MarkHidden("clock-offset")
	return cmd
}

// shiftedClock is the wall clock shifted by offset (nil: unshifted). The
// shift keeps Go's monotonic reading, as a real step of the clock does.
func shiftedClock(offset time.Duration) func() time.Time {
	if offset == 0 {
		return nil
	}
	return func() time.Time { return time.Now().Add(offset) }
}

// scrubInterval maps the flag to the config: 0 on the command line turns
// the scrub off, which the config spells as negative.
func scrubInterval(flag time.Duration) time.Duration {
	if flag <= 0 {
		return -1
	}
	return flag
}

func envList(name, def string) []string {
	if v := os.Getenv(name); v != "" {
		return strings.Split(v, ",")
	}
	return []string{def}
}

// NodeIDFromKey names a node after its public key when no ID is given, so
// that several nodes on one host do not collide.
func nodeIDFromKey(pk *crypto.PublicKey) shardmap.NodeID {
	return shardmap.NodeID("node-" + hex.EncodeToString(pk.Bytes()[:6]))
}

// dialControl connects to the control plane through any of its voters:
// every voter answers reads and forwards writes to the leader, so the
// connection only needs one that is up. Keepalive pings find a voter that
// stopped answering (cut off by the network: no reset ever comes, and a
// long-poll would wait on it for as long as TCP does, many minutes): the
// connection is closed and the next call goes to another voter.
func dialControl(ctx context.Context, addrs []string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("--control is required")
	}
	r := manual.NewBuilderWithScheme("weft-control")
	var state resolver.State
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		// TLS checks each voter's certificate against its own host, not
		// the resolver's made-up target.
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("control-plane address %q: %w", a, err)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
	}
	r.InitialState(state)
	// wire's options cap the reconnect backoff (a node whose voters
	// restart follows them within seconds); the keepalive here pings idle
	// connections too, and sooner, since the node's watch waits on it.
	creds, err := dialCredentials(ctx)
	if err != nil {
		return nil, err
	}
	opts := append(wire.DialOptions(), grpc.WithResolvers(r), creds,
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	opts = append(opts, extra...)
	return grpc.NewClient(r.Scheme()+":///control", opts...)
}

func runNode(ctx context.Context, o nodeOptions) error {
	if o.dataDir == "" || o.keyFile == "" {
		return errors.New("--data-dir and --key-file are required")
	}
	key, err := crypto.ReadKeyFile(o.keyFile)
	if err != nil {
		return err
	}
	faults, err := storage.ParseFaults(o.faults)
	if err != nil {
		return err
	}
	id := shardmap.NodeID(o.id)
	if id == "" {
		id = nodeIDFromKey(key.PublicKey())
	}
	if o.publicAddr == "" {
		o.publicAddr = o.listen
	}
	dialCreds, serverCreds, err := serverTLS(ctx)
	if err != nil {
		return err
	}
	conn, err := dialControl(ctx, o.control)
	if err != nil {
		return err
	}
	defer conn.Close()
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	log := slog.Default().With("node", id)
	node, err := storage.Start(ctx, storage.Config{
		ID: id, Key: key, DataDir: o.dataDir, PublicAddr: o.publicAddr, Control: conn,
		RecoveryWorkers: o.recoveryWorkers, RecoveryDelay: o.recoveryDelay, CopyRetryWindow: o.copyRetryWindow, SyncMemory: o.syncMemory, Faults: faults, Logger: slog.Default(),
		ScrubInterval: scrubInterval(o.scrubInterval), ScrubRate: o.scrubRate, DialCredentials: dialCreds,
		Limits: o.limits, Clock: shiftedClock(o.clockOffset), Capacity: int64(o.capacity),
	})
	if err != nil {
		lis.Close()
		if errors.Is(err, storage.ErrKeyMismatch) {
			// Name the flags the operator can change.
			return fmt.Errorf("%w (--id %s, --key-file %s)", err, id, o.keyFile)
		}
		return err
	}
	defer node.Close()
	server := grpc.NewServer(append(node.ServerOptions(), serverCreds)...)
	node.Register(server)
	go server.Serve(lis)
	defer server.Stop()
	if o.metrics.addr != "" {
		metrics, err := startMetrics(ctx, o.metrics, node.Metrics(), log)
		if err != nil {
			return err
		}
		defer metrics.Close()
	}
	log.Info("storage node started", "listen", o.listen, "public", o.publicAddr, "public_key", fmt.Sprintf("%x", key.PublicKey().Bytes()),
		"key_fingerprint", key.PublicKey().Fingerprint())
	select {
	case <-node.Ready():
		log.Info("storage node serving", "epoch", node.Assignment().Epoch, "shards", len(node.Assignment().Owned(id)))
	case <-ctx.Done():
	}
	<-ctx.Done()
	log.Info("storage node stopping")
	return nil
}
