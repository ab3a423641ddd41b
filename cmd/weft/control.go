package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/netview"
)

// tokenFlags is the operator credential, from a flag, a file (--token-file
// or $WEFT_TOKEN_FILE) or $WEFT_TOKEN.
type tokenFlags struct {
	token, file string
}

func (t *tokenFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&t.token, "token", "", "operator token (or --token-file, or $WEFT_TOKEN)")
	cmd.PersistentFlags().StringVar(&t.file, "token-file", os.Getenv("WEFT_TOKEN_FILE"),
		"file holding the operator token, e.g. made by `weft admin token init` ($WEFT_TOKEN_FILE; before $WEFT_TOKEN)")
}

func (t *tokenFlags) resolve() (string, error) {
	switch {
	case t.token != "":
		return t.token, nil
	case t.file != "":
		b, err := os.ReadFile(t.file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case os.Getenv("WEFT_TOKEN") != "":
		return os.Getenv("WEFT_TOKEN"), nil
	}
	return "", errors.New("an operator token is required: --token, --token-file or $WEFT_TOKEN")
}

type controlOptions struct {
	id, dataDir, raftAddr, grpcAddr string
	raftPeerAddrs                   map[string]string
	bootstrapExpect                 int
	join                            []string
	shards, perNodeCap              int
	epochDuration                   time.Duration
	challengeWindow                 time.Duration
	autoEvict                       int
	metrics                         metricsConfig
	tokens                          tokenFlags
	insecureRaft                    bool
	maxSnapshotSize                 int64
	registrationRate                float64
	raft                            raftTimeouts
	ui                              bool
}

// raftTimeouts are the voter's Raft timing (--raft-*): hashicorp/raft's
// defaults are tuned for idle machines, and a leader whose quorum contact
// is a few hundred milliseconds late under CPU load steps down with
// nothing wrong (issue #23's soak: contact 575 ms old against the 500 ms
// default lease). Longer timeouts make a dead leader's replacement slower
// by as much.
type raftTimeouts struct {
	heartbeat, election, lease time.Duration
}

func (r *raftTimeouts) addFlags(f *pflag.FlagSet) {
	f.DurationVar(&r.heartbeat, "raft-heartbeat-timeout", time.Second, "a follower without contact from the leader this long starts an election")
	f.DurationVar(&r.election, "raft-election-timeout", time.Second, "a candidate without a result this long starts another election")
	f.DurationVar(&r.lease, "raft-lease-timeout", time.Second, "a leader without contact from a quorum this long steps down (at most --raft-heartbeat-timeout)")
}

func (r raftTimeouts) check() error {
	if r.lease > 0 && r.heartbeat > 0 && r.lease > r.heartbeat {
		return fmt.Errorf("--raft-lease-timeout %v is longer than --raft-heartbeat-timeout %v", r.lease, r.heartbeat)
	}
	for _, d := range []time.Duration{r.heartbeat, r.election, r.lease} {
		if d < 0 || (d > 0 && d < 5*time.Millisecond) {
			return fmt.Errorf("raft timeout %v: use 0 (the default) or at least 5ms", d)
		}
	}
	return nil
}

func newControlCommand() *cobra.Command {
	var o controlOptions
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run a control-plane voter (Raft-replicated registry, epochs and blob registry)",
		Long: "Starts one voter. The same command starts a new cluster (--bootstrap-expect K with\n" +
			"--join listing the other voters' gRPC addresses), restarts a voter, or adds one to a\n" +
			"live cluster (--join alone); existing Raft state is never wiped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runControl(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", host, "this voter's ID")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for Raft log, snapshots and state (required)")
	f.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7000",
		"address for Raft traffic; mutual TLS between voter certificates (weft://voter/ID) with --tls-ca, --tls-cert and --tls-key")
	f.BoolVar(&o.insecureRaft, "insecure-raft", false,
		"run Raft without TLS on a --raft-addr off loopback (anyone who reaches it can append to the log): only on a network no one else can reach")
	f.StringToStringVar(&o.raftPeerAddrs, "raft-peer-addr", nil,
		"ID=HOST:PORT: dial that voter's Raft here instead of the address it advertises (split-horizon networks, tunnels, a proxy per link); repeatable")
	f.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:7001", "address for the gRPC API")
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster once this many voters are known")
	f.StringSliceVar(&o.join, "join", nil, "gRPC addresses of other voters")
	f.IntVar(&o.shards, "shards", 100, "number of shards n (fixed at genesis)")
	f.IntVar(&o.perNodeCap, "per-node-cap", 0, "most shards one storage node may own (0: no cap)")
	f.DurationVar(&o.epochDuration, "epoch-duration", 0, "advance the epoch this often when Stable (0: only by operator)")
	o.metrics.addFlags(f, "voter")
	f.DurationVar(&o.challengeWindow, "challenge-window", 2*time.Minute, "run a storage-challenge round once per epoch, open at most this long (0: only by operator)")
	f.Int64Var(&o.maxSnapshotSize, "max-snapshot-size", committee.DefaultMaxSnapshotBytes, "largest snapshot upload (weft admin snapshot restore) taken, in bytes (spooled to the data directory and checked before install)")
	f.Float64Var(&o.registrationRate, "registration-rate", 2, "storage-node registration attempts taken per second from one address (bursts of 50)")
	f.IntVar(&o.autoEvict, "auto-evict", 0, "at an epoch change, set the stake of nodes that failed or missed their last K challenge rounds to 0 (0: never)")
	o.raft.addFlags(f)
	f.BoolVar(&o.ui, "ui", false, "also serve the live status page at /ui/ and its JSON at GET /v1/network on --metrics-addr "+
		"(public, read-only; it asks this voter, then the --join voters, and every storage node)")
	o.tokens.add(cmd)
	return cmd
}

// statusVoters are the voters the status page of `weft control --ui` asks:
// this one first (on loopback when it listens on every interface), then
// the others it was told of.
func statusVoters(o controlOptions) []string {
	own := o.grpcAddr
	if host, port, err := net.SplitHostPort(own); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			own = net.JoinHostPort("127.0.0.1", port)
		}
	}
	out := []string{own}
	for _, a := range o.join {
		if a = strings.TrimSpace(a); a != "" && a != own && a != o.grpcAddr && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func runControl(ctx context.Context, o controlOptions) error {
	if o.dataDir == "" {
		return errors.New("--data-dir is required")
	}
	if err := o.raft.check(); err != nil {
		return err
	}
	token, err := o.tokens.resolve()
	if err != nil {
		return err
	}
	log := slog.Default().With("voter", o.id)
	dialCreds, serverCreds, err := serverTLS(ctx)
	if err != nil {
		return err
	}
	raftTLS, err := raftSecurity(ctx, o, log)
	if err != nil {
		return err
	}
	node, err := committee.StartNode(committee.NodeConfig{
		ID: o.id, DataDir: o.dataDir, RaftAddr: o.raftAddr,
		State:     committee.Config{Shards: o.shards, PerNodeCap: o.perNodeCap},
		LogOutput: os.Stderr, DialCredentials: dialCreds, RaftTLS: raftTLS,
		HeartbeatTimeout: o.raft.heartbeat, ElectionTimeout: o.raft.election, LeaderLeaseTimeout: o.raft.lease,
		PeerRaftAddrs: o.raftPeerAddrs,
	})
	if err != nil {
		return err
	}
	defer node.Shutdown()
	svc, err := committee.NewService(node, committee.ServiceConfig{
		OperatorToken: token, GRPCAddr: o.grpcAddr, AutoEvict: o.autoEvict,
		MaxSnapshotBytes: o.maxSnapshotSize, RegistrationRate: o.registrationRate,
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	lis, err := net.Listen("tcp", o.grpcAddr)
	if err != nil {
		return err
	}
	server := grpc.NewServer(append(svc.ServerOptions(), serverCreds)...)
	svc.Register(server)
	go server.Serve(lis)
	defer server.GracefulStop()
	log.Info("control-plane voter started", "raft", o.raftAddr, "grpc", o.grpcAddr, "existing_state", node.HasState())
	if o.ui {
		if o.metrics.addr == "" {
			return errors.New("--ui serves the status page on the metrics listener: give --metrics-addr too")
		}
		view, err := netview.New(netview.Config{Control: statusVoters(o), DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(dialCreds)}, Logger: log})
		if err != nil {
			return err
		}
		defer view.Close()
		o.metrics.mount = view.Register
	}
	if o.metrics.addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if err := node.RegisterMetrics(reg); err != nil {
			return err
		}
		metrics, err := startMetrics(ctx, o.metrics, reg, log)
		if err != nil {
			return err
		}
		defer metrics.Close()
		if o.ui {
			log.Info("serving the status page", "page", metrics.Addr().String()+netview.UIPrefix, "json", metrics.Addr().String()+netview.JSONPath)
		}
	}

	switch {
	case o.bootstrapExpect > 0:
		if err := node.DiscoverAndBootstrap(ctx, o.join, o.bootstrapExpect, token); err != nil {
			return err
		}
	case len(o.join) > 0:
		if err := node.JoinCluster(ctx, o.join, token); err != nil {
			return err
		}
	case !node.HasState():
		log.Warn("no Raft state, no --bootstrap-expect and no --join: waiting to be added by an operator")
	}
	sched := committee.StartScheduler(svc, committee.SchedulerConfig{
		EpochDuration: o.epochDuration, ChallengeWindow: o.challengeWindow, Logger: log,
	})
	defer sched.Stop()
	<-ctx.Done()
	log.Info("control-plane voter stopping")
	return nil
}

// raftSecurity is how Raft's port is secured. With a certificate and a
// CA it speaks mutual TLS, and the certificate must name this voter:
// only voters of the configuration may send or take log entries. Without,
// Raft takes AppendEntries from anyone who connects, which is refused off
// loopback unless the operator insists (--insecure-raft).
func raftSecurity(ctx context.Context, o controlOptions, log *slog.Logger) (*committee.RaftTLS, error) {
	files := tlsOf(ctx)
	server, client, err := files.PeerConfigs()
	if err != nil {
		return nil, err
	}
	if server != nil {
		return &committee.RaftTLS{Server: server, Client: client}, checkVoterCertificate(files, o.id)
	}
	if onLoopback(o.raftAddr) {
		return nil, nil
	}
	if !o.insecureRaft {
		return nil, fmt.Errorf("--raft-addr %s is off loopback and Raft would run without TLS, taking log entries from anyone who reaches it: "+
			"give the voter --tls-ca, --tls-cert and --tls-key (a certificate naming it, weft://voter/%s), or pass --insecure-raft "+
			"if no one else can reach that network", o.raftAddr, o.id)
	}
	log.Warn("Raft runs without TLS off loopback (--insecure-raft): anyone who reaches this address can append to the log", "raft", o.raftAddr)
	return nil, nil
}

// checkVoterCertificate fails at start, rather than at every Raft
// handshake, when the voter's certificate does not name it.
func checkVoterCertificate(files *wire.TLSFiles, id string) error {
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return err
	}
	named, err := wire.VoterID(pair.Leaf)
	if err != nil {
		return err
	}
	if named == "" {
		return fmt.Errorf("the certificate %s (%q) names no voter: Raft over TLS needs a URI SAN %s", files.Cert, pair.Leaf.Subject, wire.VoterURI(id))
	}
	if named != id {
		return fmt.Errorf("the certificate %s (%q) names voter %q, not this voter %q: Raft over TLS needs a URI SAN %s",
			files.Cert, pair.Leaf.Subject, named, id, wire.VoterURI(id))
	}
	return nil
}

// onLoopback reports whether a host:port is on the loopback interface
// only (a name other than localhost may resolve to anything).
func onLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
