package committee

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/crypto"
)

// nopFSM applies nothing: what Raft costs without weft's state machine.
type nopFSM struct{ applied atomic.Uint64 }

func (f *nopFSM) Apply(*raft.Log) any { f.applied.Add(1); return nil }

func (f *nopFSM) ApplyBatch(logs []*raft.Log) []any {
	f.applied.Add(uint64(len(logs)))
	return make([]any, len(logs))
}

func (f *nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

// rawRaftCluster runs hashicorp/raft as weft's voters do — the same Raft
// configuration (raftConfig of the test cluster's NodeConfig), the same
// raft-boltdb log store (openLogStore), log cache and TCP transport on
// loopback — with nopFSM, and returns its leader and how to stop it.
func rawRaftCluster(b *testing.B, ids ...string) (*raft.Raft, func()) {
	b.Helper()
	c := &cluster{t: b, dirs: map[string]string{}, addrs: map[string]string{}, timeout: benchRaftTimeout}
	var servers []raft.Server
	for _, id := range ids {
		c.dirs[id], c.addrs[id] = filepath.Join(b.TempDir(), id), freeAddr(b)
		if err := os.MkdirAll(c.dirs[id], 0o700); err != nil {
			b.Fatal(err)
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(c.addrs[id])})
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: io.Discard, Level: hclog.Warn})
	var rafts []*raft.Raft
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
		stops = nil
	}
	b.Cleanup(stop)
	for _, id := range ids {
		cfg := c.nodeConfig(id)
		rc := raftConfig(cfg, logger)
		logs, err := openLogStore(cfg.DataDir)
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, logger)
		if err != nil {
			b.Fatal(err)
		}
		trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, 3, 10*time.Second, logger)
		if err != nil {
			b.Fatal(err)
		}
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			b.Fatal(err)
		}
		cache, err := raft.NewLogCache(logCacheEntries, logs)
		if err != nil {
			b.Fatal(err)
		}
		r, err := raft.NewRaft(rc, &nopFSM{}, cache, logs, snaps, trans)
		if err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() {
			r.Shutdown().Error()
			trans.Close()
			logs.Close()
		})
		rafts = append(rafts, r)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				return r, stop
			}
		}
	}
	b.Fatal("raw Raft: no leader within 10 s")
	return nil, nil
}

// registrationEntry is the Raft log entry of one blob registration as the
// benchmark's clients make them (the service's command, JSON-encoded as
// Node.Propose does), for a raw-Raft baseline of the same entry size.
func registrationEntry(b *testing.B) []byte {
	cmd, err := NewCommand("client/bench/"+randomID(), KindRegisterBlob, RegisterBlob{
		Client: "bench", Encoding: 1, Shards: 20, Length: 1000, Root: crypto.Digest{1}, EndEpoch: 10,
	})
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// rawRaftApplies is entries committed per second by the same number of
// concurrent writers as BenchmarkRegistrations, each applying entries of a
// registration's size on the leader directly: n entries in all; and the
// process's CPU time per entry.
func rawRaftApplies(b *testing.B, n int) (perSecond float64, cpu time.Duration) {
	leader, stop := rawRaftCluster(b, "r1", "r2", "r3")
	defer stop()
	entry := registrationEntry(b)
	return runWriters(b, n, func([]byte, int64) error { return leader.Apply(entry, 10*time.Second).Error() })
}

// runWriters runs BenchmarkRegistrations' number of concurrent writers,
// each calling write (with its own 32-byte buffer and the entry's number)
// until n entries are written, and returns entries per second and the
// process's CPU time per entry.
func runWriters(b *testing.B, n int, write func(buf []byte, i int64) error) (perSecond float64, cpu time.Duration) {
	writers := benchParallelism * runtime.GOMAXPROCS(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	start, cpuStart := time.Now(), cpuTime()
	for range writers {
		wg.Go(func() {
			buf := make([]byte, 32)
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := write(buf, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), (cpuTime() - cpuStart) / time.Duration(n)
}

// rawRaftGRPCApplies is rawRaftApplies behind a minimal gRPC unary service
// on loopback: the same writers each send what a registration sends (a
// RegisterBlobRequest and a client's bearer token, over one connection to
// a server with the voters' transport options, wire.ServerOptions), and
// the handler applies an entry of a registration's size on the raw-Raft
// leader and answers with its index. No weft logic runs: what gRPC adds
// to Raft on this machine, the floor of a registration's cost. Like
// rawRaftApplies, it returns entries per second and CPU time per entry.
func rawRaftGRPCApplies(b *testing.B, n int) (perSecond float64, cpu time.Duration) {
	leader, stop := rawRaftCluster(b, "g1", "g2", "g3")
	defer stop()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(wire.ServerOptions()...)
	g.RegisterService(&rawRaftService, rawRaftHandler{leader: leader, entry: registrationEntry(b)})
	go g.Serve(l)
	defer g.Stop()
	conn := dial(b, l.Addr().String())
	var token [32]byte
	ctx := operator(context.Background(), base64.RawURLEncoding.EncodeToString(token[:]))
	return runWriters(b, n, func(root []byte, i int64) error {
		binary.BigEndian.PutUint64(root, uint64(i))
		req := &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 1000, Root: root, EndEpoch: 10}
		return conn.Invoke(ctx, rawRaftApply, req, new(weftv1.RegisterBlobResponse))
	})
}

// rawRaftApply is the one method of the raw-Raft gRPC service.
const rawRaftApply = "/weft.bench.RawRaft/Apply"

// rawRaftHandler applies a fixed entry per call.
type rawRaftHandler struct {
	leader *raft.Raft
	entry  []byte
}

// rawRaftService is the raw-Raft gRPC service, declared by hand: a unary
// method taking a RegisterBlobRequest and answering a
// RegisterBlobResponse, as RegisterBlob does.
var rawRaftService = grpc.ServiceDesc{
	ServiceName: "weft.bench.RawRaft",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Apply",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req weftv1.RegisterBlobRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			h := srv.(rawRaftHandler)
			f := h.leader.Apply(h.entry, 10*time.Second)
			if err := f.Error(); err != nil {
				return nil, err
			}
			return &weftv1.RegisterBlobResponse{Index: f.Index()}, nil
		},
	}},
}
