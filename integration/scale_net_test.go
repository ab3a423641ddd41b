//go:build scale && linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// scaleProc is one process of the network under measurement.
type scaleProc struct {
	Role    string `json:"role"`
	ID      string `json:"id"`
	Address string `json:"address"`
	PID     int    `json:"pid"`
	Metrics string `json:"metrics"`
	dataDir string
}

// scaleReady is the part of `weft devnet --metrics`'s ready file the
// harness uses.
type scaleReady struct {
	Control       []string    `json:"control"`
	OperatorToken string      `json:"operator_token"`
	ClientToken   string      `json:"client_token"`
	DataDir       string      `json:"data_dir"`
	Processes     []scaleProc `json:"processes"`
}

// scaleNet is a running `weft devnet` plus the nodes the harness starts
// itself (joiners), and connections to the voters.
type scaleNet struct {
	t       *testing.T
	bin     string
	dir     string
	ready   scaleReady
	voters  []scaleProc
	nodes   []scaleProc // the devnet's nodes, then the harness's
	extra   []*process  // the harness's own node processes
	conns   []*grpc.ClientConn
	startup time.Duration
}

// launchScaleDevnet runs `weft devnet` with a metrics endpoint per voter
// and node and unequal stakes, and waits up to timeout for its ready file
// (the network Stable, every node in the epoch).
func launchScaleDevnet(t *testing.T, bin string, nodes, shards int, timeout time.Duration) *scaleNet {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	dn := exec.Command(bin, "devnet", "--data-dir", filepath.Join(dir, "data"), "--ready-file", ready,
		"--nodes", fmt.Sprint(nodes), "--shards", fmt.Sprint(shards), "--metrics", "--unequal-stakes",
		// A round closes early once every node is decided; the window
		// only bounds one that cannot finish (a hundred nodes on two
		// cores judge for minutes, and 10 s left most undecided).
		"--start-timeout", timeout.String(), "--challenge-window", "10m")
	log, err := os.Create(filepath.Join(dir, "devnet.log"))
	if err != nil {
		t.Fatal(err)
	}
	dn.Stdout, dn.Stderr = log, log
	// The devnet, and with it every voter and node it started (they die
	// with it), goes when the harness dies however it dies: a harness
	// killed by the OOM killer once left 109 processes holding 24 GiB.
	dn.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := dn.Start(); err != nil {
		t.Fatal(err)
	}
	n := &scaleNet{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		for _, p := range n.extra {
			p.stop(syscall.SIGTERM)
		}
		dn.Process.Signal(syscall.SIGTERM)
		dn.Wait()
		for _, c := range n.conns {
			c.Close()
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- dn.Wait() }()
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "devnet.log"))
			t.Fatalf("weft devnet exited before it was ready (%v):\n%s", err, tail(string(b), 4000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(start) > timeout+30*time.Second {
			t.Fatalf("no ready file after %v", time.Since(start))
		}
	}
	n.startup = time.Since(start)
	b, err := os.ReadFile(ready)
	if err != nil || json.Unmarshal(b, &n.ready) != nil {
		t.Fatalf("ready file: %v\n%s", err, b)
	}
	for _, p := range n.ready.Processes {
		p.dataDir = filepath.Join(n.ready.DataDir, p.ID)
		switch p.Role {
		case "control":
			n.voters = append(n.voters, p)
		case "node":
			n.nodes = append(n.nodes, p)
		}
	}
	for _, addr := range n.ready.Control {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			t.Fatal(err)
		}
		n.conns = append(n.conns, c)
	}
	return n
}

// operator is ctx with the operator token.
func (n *scaleNet) operator(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+n.ready.OperatorToken)
}

// control calls f against each voter in turn until one succeeds (a
// follower may refuse a write; an election may be under way), for up to
// a minute.
func (n *scaleNet) control(what string, f func(ctx context.Context, conn *grpc.ClientConn) error) {
	n.t.Helper()
	n.controlWithin(what, 30*time.Second, time.Minute, f)
}

// controlWithin is control with its own bounds: each attempt may take
// perAttempt, all of them total.
func (n *scaleNet) controlWithin(what string, perAttempt, total time.Duration, f func(ctx context.Context, conn *grpc.ClientConn) error) {
	n.t.Helper()
	deadline := time.Now().Add(total)
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		ctx, cancel := context.WithTimeout(n.operator(context.Background()), perAttempt)
		last = f(ctx, n.conns[attempt%len(n.conns)])
		cancel()
		if last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	n.t.Fatalf("%s: %v", what, last)
}

func (n *scaleNet) listNodes() []*weftv1.NodeInfo {
	var out []*weftv1.NodeInfo
	n.control("listing nodes", func(ctx context.Context, c *grpc.ClientConn) error {
		resp, err := weftv1.NewAdminClient(c).ListNodes(ctx, &weftv1.ListNodesRequest{})
		if err == nil {
			out = resp.Nodes
		}
		return err
	})
	return out
}

func (n *scaleNet) setStake(node string, stake uint64) {
	n.control("staking "+node, func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := weftv1.NewAdminClient(c).SetStake(ctx, &weftv1.SetStakeRequest{Node: node, Stake: stake})
		return err
	})
}

func (n *scaleNet) state() *weftv1.WatchStateResponse {
	var out *weftv1.WatchStateResponse
	n.control("reading the state", func(ctx context.Context, c *grpc.ClientConn) error {
		resp, err := weftv1.NewWatchClient(c).WatchState(ctx, &weftv1.WatchStateRequest{Linearizable: true})
		out = resp
		return err
	})
	return out
}

// advanceToStable starts the next epoch and returns how long it took to
// become Stable.
func (n *scaleNet) advanceToStable(limit time.Duration) time.Duration {
	n.t.Helper()
	before := n.state().Epoch
	start := time.Now()
	n.control("advancing the epoch", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := weftv1.NewAdminClient(c).AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{})
		return err
	})
	for {
		st := n.state()
		if st.Epoch > before && st.Phase == "stable" {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			n.t.Fatalf("epoch %d still %s after %v", st.Epoch, st.Phase, limit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// snapshotBytes saves the control plane's state through the admin RPC
// (what `weft admin snapshot save` writes) and returns its size.
func (n *scaleNet) snapshotBytes() float64 {
	var total float64
	// With 100,000 registrations live, the voters are also serving their
	// events to 110 followers on two cores: a snapshot took over 30 s.
	n.controlWithin("saving a snapshot", 5*time.Minute, 10*time.Minute, func(ctx context.Context, c *grpc.ClientConn) error {
		total = 0
		stream, err := weftv1.NewAdminClient(c).SaveSnapshot(ctx, &weftv1.SaveSnapshotRequest{})
		if err != nil {
			return err
		}
		for {
			chunk, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			total += float64(len(chunk.Data))
		}
	})
	return total
}

// startNode starts a storage node process of the harness's own (a key,
// a data directory, a metrics endpoint), unstaked.
func (n *scaleNet) startNode(id string) scaleProc {
	n.t.Helper()
	key := filepath.Join(n.dir, id+".key")
	run(n.t, n.bin, "key", "generate", "--out", key)
	addr, metrics := freeAddr(n.t), freeAddr(n.t)
	p := &process{name: id, log: filepath.Join(n.dir, id+".log"), args: []string{"node", "--id", id,
		"--data-dir", filepath.Join(n.dir, id), "--key-file", key, "--control", strings.Join(n.ready.Control, ","),
		"--listen", addr, "--metrics-addr", metrics, "--recovery-delay", "1s"},
		attr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}} // like the devnet's: gone with the harness
	p.start(n.t, n.bin)
	n.extra = append(n.extra, p)
	sp := scaleProc{Role: "node", ID: id, Address: addr, PID: p.cmd.Process.Pid, Metrics: metrics, dataDir: filepath.Join(n.dir, id)}
	n.nodes = append(n.nodes, sp)
	return sp
}

// nodeStatus asks a storage node for its status.
func nodeStatusAt(ctx context.Context, addr string) (*weftv1.NodeStatusResponse, error) {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return weftv1.NewStorageClient(c).NodeStatus(ctx, &weftv1.NodeStatusRequest{})
}

func pidsOf(ps []scaleProc) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

func metricsOf(ps []scaleProc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Metrics)
	}
	return out
}

// cpuOf is the CPU seconds a set of processes used so far.
func cpuOf(t *testing.T, pids []int) float64 {
	var total float64
	for _, pid := range pids {
		v, err := cpuSeconds(pid)
		if err != nil {
			t.Fatalf("cpu of pid %d: %v", pid, err)
		}
		total += v
	}
	return total
}
