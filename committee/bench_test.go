package committee

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// benchCluster is a 3-voter cluster on loopback with gRPC, one epoch
// started and a client with an unlimited quota; timeout, when set, is its
// voters' heartbeat and election timeout (else the tests' 300 ms).
func benchCluster(b *testing.B, timeout time.Duration) (leaderAddr, followerAddr, clientToken string) {
	c := startCluster(&cluster{t: b, timeout: timeout}, "v1", "v2", "v3")
	leader := c.leader()
	for _, n := range c.nodes {
		addr, stop := serveGRPC(b, n)
		b.Cleanup(stop)
		if n == leader {
			leaderAddr = addr
		} else {
			followerAddr = addr
		}
	}
	conn := dial(b, followerAddr)
	admin, nodes := weftv1.NewAdminClient(conn), weftv1.NewNodeClient(conn)
	bg := context.Background()
	op := operator(bg, testToken)
	for i := range 4 {
		sn := newStorageNode(b, fmt.Sprintf("node-%d", i))
		if _, err := retry(b, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, sn.registration(b)) }); err != nil {
			b.Fatal(err)
		}
		if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: 5}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		b.Fatal(err)
	}
	added, err := admin.AddClient(op, &weftv1.AddClientRequest{Client: "bench", Quota: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let every voter apply the client
	return leaderAddr, followerAddr, added.Token
}

// BenchmarkRegistrations measures blob registrations committed per second
// through a 3-voter loopback cluster by many concurrent clients: each is a
// gRPC call to the leader, a Raft round to a quorum (log entries batched
// per disk sync) and an FSM transaction (batched by ApplyBatch).
//
// Beside it, in the same run, the same number of entries of a
// registration's size go through raw hashicorp/raft with the voters'
// configuration and an FSM that does nothing (rawRaftApplies): the ratio
// x-raw-raft = registrations/s ÷ raw-raft-entries/s is what weft's service
// and state machine keep of what Raft alone can commit here (#24: ≥ 0.8).
// A second baseline puts that raw Raft behind a minimal gRPC unary service
// (rawRaftGRPCApplies): x-raw-raft-grpc = registrations/s ÷
// raw-raft-grpc-entries/s is what weft keeps of what a gRPC call per
// registration allows (committee/DESIGN.md, Against raw Raft).
func BenchmarkRegistrations(b *testing.B) {
	raw, rawCPU := rawRaftApplies(b, max(b.N, 2000))
	rawGRPC, rawGRPCCPU := rawRaftGRPCApplies(b, max(b.N, 2000))
	leader, _, token := benchCluster(b, benchRaftTimeout)
	conn := dial(b, leader)
	client := weftv1.NewClientClient(conn)
	ctx := operator(context.Background(), token)
	var seq atomic.Uint64
	b.SetParallelism(benchParallelism)
	start, cpuStart := time.Now(), cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		root := make([]byte, 32)
		for pb.Next() {
			binary.BigEndian.PutUint64(root, seq.Add(1))
			if _, err := client.RegisterBlob(ctx, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 1000, Root: root, EndEpoch: 10}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	// After the run: ResetTimer drops the metrics reported before it.
	b.ReportMetric(float64(benchParallelism*runtime.GOMAXPROCS(0)), "writers")
	regs := float64(b.N) / time.Since(start).Seconds()
	cpu := (cpuTime() - cpuStart) / time.Duration(b.N)
	b.ReportMetric(regs, "registrations/s")
	b.ReportMetric(raw, "raw-raft-entries/s")
	b.ReportMetric(regs/raw, "x-raw-raft")
	b.ReportMetric(rawGRPC, "raw-raft-grpc-entries/s")
	b.ReportMetric(regs/rawGRPC, "x-raw-raft-grpc")
	// CPU time per entry (the process's, all voters and clients in it):
	// on two shared cores the rates above follow what each costs, and
	// these hardly move with the load of other processes.
	b.ReportMetric(float64(cpu)/1e3, "cpu-us/registration")
	b.ReportMetric(float64(rawCPU)/1e3, "cpu-us/raw-raft-entry")
	b.ReportMetric(float64(rawGRPCCPU)/1e3, "cpu-us/raw-raft-grpc-entry")
}

// BenchmarkIdleWatchers parks 1000 blocking watches on one follower and
// reports the CPU they add per watcher per second while nothing changes —
// the process's CPU over an idle interval with them, minus the same
// interval without them (Raft heartbeats of the three in-process voters);
// then one change must wake them all.
func BenchmarkIdleWatchers(b *testing.B) {
	_, follower, _ := benchCluster(b, 0)
	conn := dial(b, follower)
	watch := weftv1.NewWatchClient(conn)
	bg := context.Background()
	now, err := watch.WatchState(bg, &weftv1.WatchStateRequest{})
	if err != nil {
		b.Fatal(err)
	}
	const watchers = 1000
	const idle = 2 * time.Second
	before := cpuTime()
	time.Sleep(idle)
	baseline := cpuTime() - before
	for b.Loop() {
		var wg sync.WaitGroup
		var woken atomic.Int64
		for range watchers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := watch.WatchState(bg, &weftv1.WatchStateRequest{AfterIndex: now.Index, TimeoutMs: 60_000})
				if err == nil && resp.Index > now.Index {
					woken.Add(1)
				}
			}()
		}
		time.Sleep(500 * time.Millisecond) // all parked
		before := cpuTime()
		time.Sleep(idle)
		with := cpuTime() - before
		spent := with - baseline
		// Below the heartbeats' own noise the difference can come out
		// negative: 0 then means "not measurable", and the two raw figures
		// show by how much.
		b.ReportMetric(float64(max(spent, 0).Nanoseconds())/watchers/idle.Seconds(), "cpu-ns/watcher/s")
		b.ReportMetric(float64(baseline.Nanoseconds())/idle.Seconds()/1e9*100, "baseline-cpu-%")
		b.ReportMetric(float64(with.Nanoseconds())/idle.Seconds()/1e9*100, "with-watchers-cpu-%")
		// One change wakes every watcher.
		admin := weftv1.NewAdminClient(conn)
		if _, err := admin.SetStake(operator(bg, testToken), &weftv1.SetStakeRequest{Node: "node-0", Stake: 6}); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		if woken.Load() != watchers {
			b.Fatalf("%d of %d watchers woke", woken.Load(), watchers)
		}
		now, _ = watch.WatchState(bg, &weftv1.WatchStateRequest{})
	}
}

// cpuTime is the user + system CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRaftTimeout is the heartbeat and election timeout of
// BenchmarkRegistrations' voters and of its raw-Raft baselines alike:
// Raft's and weft control's default, 1 s (the leader lease half of it).
// With the tests' 300 ms (a 150 ms lease), three voters, 1024 gRPC
// goroutines and the writers on two cores shared with other processes
// lost their leader in most runs at a load average of 10, and the run
// failed with Unavailable instead of reporting a figure.
const benchRaftTimeout = time.Second

// benchParallelism × GOMAXPROCS writers: 512 on the 2-core development
// machine, where the three voters, the gRPC stack and the writers all share
// the two cores. Throughput grows with concurrency because Raft takes all
// waiting commands into one log append and the FSM applies each Raft batch
// in one transaction (measured: 64 writers ≈ 2.6k/s, 128 ≈ 3.9k/s,
// 256 ≈ 4.2k/s, 512 ≈ 5.2k/s).
var benchParallelism = 256
