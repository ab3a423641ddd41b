package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// killReady is the part of the ready file the kill test needs beyond
// fullReady: addresses, PIDs (they change on a restart) and log files.
type killReady struct {
	Gateway   string `json:"gateway"`
	Processes []struct {
		Role    string `json:"role"`
		ID      string `json:"id"`
		Address string `json:"address"`
		PID     int    `json:"pid"`
		Log     string `json:"log"`
	} `json:"processes"`
}

func readKillReady(t *testing.T, path string) killReady {
	t.Helper()
	var r killReady
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		t.Fatalf("ready file: %v", err)
	}
	return r
}

// certifiedBlob is a blob a store returned a certificate for: it must
// read back, byte for byte, until the end.
type certifiedBlob struct {
	id   crypto.BlobID
	cert *crypto.Certificate
	blob []byte
	via  string // sdk or gateway
}

// killLedger is what the traffic did, shared by its goroutines.
type killLedger struct {
	mu        sync.Mutex
	certified []certifiedBlob

	sdkStores, gatewayStores       atomic.Int64 // certified
	sdkFailed, gatewayFailed       atomic.Int64 // stores that failed
	sdkReads, gatewayReads         atomic.Int64 // reads with the right bytes
	sdkReadFails, gatewayReadFails atomic.Int64 // reads that failed (no bytes)
}

func (l *killLedger) add(b certifiedBlob) {
	l.mu.Lock()
	l.certified = append(l.certified, b)
	l.mu.Unlock()
}

// pick returns a random certified blob, if there is one.
func (l *killLedger) pick(rng *mrand.Rand) (certifiedBlob, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.certified) == 0 {
		return certifiedBlob{}, false
	}
	return l.certified[rng.IntN(len(l.certified))], true
}

func (l *killLedger) all() []certifiedBlob {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.certified)
}

// randomBlob is a blob of varied size: mostly small and medium, some
// large, a few of a handful of bytes.
func randomBlob(rng *mrand.Rand) []byte {
	var size int
	switch p := rng.IntN(100); {
	case p < 5:
		size = 1 + rng.IntN(16)
	case p < 35:
		size = 16 + rng.IntN(4_000)
	case p < 85:
		size = 4_000 + rng.IntN(100_000)
	default:
		size = 100_000 + rng.IntN(300_000)
	}
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// gatewayPut stores a blob through the gateway and decodes the
// certificate it answers with.
func gatewayPut(ctx context.Context, hc *http.Client, gateway, token string, blob []byte) (crypto.BlobID, *crypto.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, gateway+"/v1/blobs?epochs=1000", bytes.NewReader(blob))
	if err != nil {
		return crypto.BlobID{}, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token) // the store is charged to this client
	resp, err := hc.Do(req)
	if err != nil {
		return crypto.BlobID{}, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return crypto.BlobID{}, nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return crypto.BlobID{}, nil, fmt.Errorf("PUT: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var put struct {
		BlobID      string `json:"blob_id"`
		Certificate string `json:"certificate"`
		Epoch       uint64 `json:"epoch"`
		Size        uint64 `json:"size"`
	}
	if err := json.Unmarshal(body, &put); err != nil {
		return crypto.BlobID{}, nil, fmt.Errorf("PUT answer %q: %w", body, err)
	}
	id, err := crypto.ParseBlobID(put.BlobID)
	if err != nil {
		return crypto.BlobID{}, nil, fmt.Errorf("PUT answer %q: %w", body, err)
	}
	raw, err := base64.StdEncoding.DecodeString(put.Certificate)
	if err != nil {
		return id, nil, fmt.Errorf("PUT answer %q: %w", body, err)
	}
	var cert crypto.Certificate
	if err := cert.UnmarshalBinary(raw); err != nil {
		return id, nil, fmt.Errorf("PUT answer: certificate: %w", err)
	}
	if cert.BlobID != id || cert.Epoch != put.Epoch || put.Size != uint64(len(blob)) {
		return id, nil, fmt.Errorf("PUT answer %q: the certificate is for %s of epoch %d", body, cert.BlobID, cert.Epoch)
	}
	return id, &cert, nil
}

// gatewayGet reads a blob through the gateway: the bytes on a 200, an
// error otherwise.
func gatewayGet(ctx context.Context, hc *http.Client, gateway string, id crypto.BlobID) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gateway+"/v1/blobs/"+id.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// watchState is the control plane's state (owners and holders per shard),
// linearizable.
func watchState(ctx context.Context, control []string) (*weftv1.WatchStateResponse, error) {
	// Right after a voter was killed every voter may answer Unavailable
	// for a moment (no leader yet, or a forward to a leader just deposed):
	// try them all again until a leader answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := watchStateOnce(ctx, control)
		if err == nil || status.Code(err) != codes.Unavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return st, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// watchStateOnce asks each voter in turn, once.
func watchStateOnce(ctx context.Context, control []string) (*weftv1.WatchStateResponse, error) {
	var last error
	for _, addr := range control {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := weftv1.NewWatchClient(conn).WatchState(cctx, &weftv1.WatchStateRequest{Linearizable: true})
		cancel()
		conn.Close()
		if err == nil {
			return st, nil
		}
		last = err
	}
	return nil, last
}

// storageNodeStatus asks a storage node for its status.
func storageNodeStatus(ctx context.Context, addr string) (*weftv1.NodeStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return weftv1.NewStorageClient(conn).NodeStatus(cctx, &weftv1.NodeStatusRequest{})
}

// adminRetry is adminAt, tried again while the control plane answers
// Unavailable: a leader election (after a voter's kill, or a heartbeat
// missed on a loaded machine) refuses writes for a moment.
func adminRetry(t *testing.T, bin string, r fullReady, args ...string) (string, error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := adminAt(t, bin, r, args...)
		if err == nil || !strings.Contains(out, "Unavailable") || time.Now().After(deadline) {
			return out, err
		}
	}
}

// recollections counts the SDK's "epoch changed during the write" log
// records: stores that collected again from a new committee.
type recollections struct{ n atomic.Int64 }

func (r *recollections) Enabled(context.Context, slog.Level) bool { return true }
func (r *recollections) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recollections) WithGroup(string) slog.Handler            { return r }
func (r *recollections) Handle(_ context.Context, rec slog.Record) error {
	if strings.HasPrefix(rec.Message, "epoch changed during the write") {
		r.n.Add(1)
	}
	return nil
}

// SIGKILL and restart of every role at random points; nothing certified
// is lost. A devnet (3 voters, 7 nodes, a gateway) first shows that a blob
// stored through the gateway reads at once through the SDK pinned to any
// voter. Then it takes writes and reads through the SDK and the gateway
// the whole time, while each round kills one process — a voter (often the
// leader), a storage node or the gateway — at a random moment, sometimes
// around a stake change and epoch advance so that the kill lands in a
// handover, and restarts it with `weft devnet restart`. At most one
// process is down at a time (so a voter quorum and all but ≤ f shards stay
// up). A read never returns other bytes; once the epoch is Stable and
// recovery has settled, every blob that was certified reads back through
// both the SDK and the gateway and its certificate verifies.
// WEFT_KILL_SEED=N replays a schedule.
func TestRandomKillsOfEveryRole(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WEFT_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("WEFT_KILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with WEFT_KILL_SEED=%d)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))

	const (
		nodes  = 7
		shards = 19 // 3f+1 with f = 6
		f      = (shards - 1) / 3
		rounds = 14
	)
	start := time.Now()
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, nodes, shards)
	ready := readKillReady(t, readyPath)
	gw := ready.Gateway
	addrOf := map[string]string{}
	for _, p := range ready.Processes {
		addrOf[p.ID] = p.Address
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range readKillReady(t, readyPath).Processes {
			b, _ := os.ReadFile(p.Log)
			t.Logf("--- %s log (tail) ---\n%s", p.ID, tail(string(b), 3000))
		}
	})
	t.Logf("devnet up in %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var recollected recollections
	c, err := client.New(client.Config{Control: r.Control, Token: r.ClientToken, NodeTimeout: 10 * time.Second, Logger: slog.New(&recollected)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hc := &http.Client{Timeout: 60 * time.Second}

	// A blob certified through the gateway reads at once through the SDK
	// from any voter: one that has not applied the certification yet
	// catches up before it answers (a follower used to say "not
	// certified" for a heartbeat).
	var ledger killLedger
	prng := mrand.New(mrand.NewPCG(seed, 1))
	for i, addr := range r.Control {
		pinned, err := client.New(client.Config{Control: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			blob := randomBlob(prng)
			var id crypto.BlobID
			var cert *crypto.Certificate
			waitFor(t, time.Minute, "a store through the gateway", func() bool {
				// A leader election on a loaded machine can refuse one.
				id, cert, err = gatewayPut(ctx, hc, gw, r.ClientToken, blob)
				return err == nil
			})
			if got, err := pinned.Read(ctx, id, client.ReadOptions{}); err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("%s stored through the gateway, read at once through voter %d: %v", id, i+1, err)
			}
			ledger.add(certifiedBlob{id, cert, blob, "gateway"})
			ledger.gatewayStores.Add(1)
		}
		pinned.Close()
	}

	// Traffic: two SDK writers, a gateway writer, an SDK reader and a
	// gateway reader, until stopTraffic. A mismatch ends the test at once
	// (mismatch is closed and the chaos loop stops).
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	mismatch := make(chan struct{})
	var mismatchOnce sync.Once
	wrongBytes := func(format string, args ...any) {
		t.Errorf(format, args...)
		mismatchOnce.Do(func() { close(mismatch) })
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wrng := mrand.New(mrand.NewPCG(seed, uint64(10+w)))
		wg.Go(func() {
			for trafficCtx.Err() == nil {
				blob := randomBlob(wrng)
				sctx, done := context.WithTimeout(trafficCtx, time.Minute)
				id, cert, err := c.Store(sctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 1000})
				done()
				if err != nil {
					if trafficCtx.Err() == nil {
						ledger.sdkFailed.Add(1)
						t.Logf("%s sdk store of %d bytes failed (tolerated): %v", time.Now().Format("15:04:05.000"), len(blob), err)
					}
					continue
				}
				if cert == nil || cert.BlobID != id {
					wrongBytes("sdk store of %s returned a certificate for another blob: %+v", id, cert)
					return
				}
				ledger.sdkStores.Add(1)
				ledger.add(certifiedBlob{id, cert, blob, "sdk"})
			}
		})
	}
	lastGatewayPut := atomic.Int64{} // unix nanoseconds of the last certified gateway store
	wg.Go(func() {
		wrng := mrand.New(mrand.NewPCG(seed, 20))
		for trafficCtx.Err() == nil {
			blob := randomBlob(wrng)
			id, cert, err := gatewayPut(trafficCtx, hc, gw, r.ClientToken, blob)
			if err != nil {
				if trafficCtx.Err() == nil {
					ledger.gatewayFailed.Add(1)
					t.Logf("%s gateway store of %d bytes failed (tolerated): %v", time.Now().Format("15:04:05.000"), len(blob), err)
					time.Sleep(200 * time.Millisecond) // the gateway may be down
				}
				continue
			}
			ledger.gatewayStores.Add(1)
			lastGatewayPut.Store(time.Now().UnixNano())
			ledger.add(certifiedBlob{id, cert, blob, "gateway"})
		}
	})
	for i, via := range []string{"sdk", "gateway"} {
		rrng := mrand.New(mrand.NewPCG(seed, uint64(30+i)))
		wg.Go(func() {
			for trafficCtx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
				b, ok := ledger.pick(rrng)
				if !ok {
					continue
				}
				rctx, done := context.WithTimeout(trafficCtx, time.Minute)
				var got []byte
				var err error
				if via == "sdk" {
					got, err = c.Read(rctx, b.id, client.ReadOptions{})
				} else {
					got, err = gatewayGet(rctx, hc, gw, b.id)
				}
				done()
				switch {
				case trafficCtx.Err() != nil:
				case err != nil:
					if via == "sdk" {
						ledger.sdkReadFails.Add(1)
					} else {
						ledger.gatewayReadFails.Add(1)
						time.Sleep(200 * time.Millisecond) // the gateway may be down
					}
					t.Logf("%s %s read of certified %s (stored via %s) failed (tolerated): %v", time.Now().Format("15:04:05.000"), via, b.id, b.via, err)
				case !bytes.Equal(got, b.blob):
					wrongBytes("%s read of certified %s (stored via %s) returned %d other bytes, want %d", via, b.id, b.via, len(got), len(b.blob))
				case via == "sdk":
					ledger.sdkReads.Add(1)
				default:
					ledger.gatewayReads.Add(1)
				}
			}
		})
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			stopTraffic()
			wg.Wait()
		}
	}
	defer stopAll()
	waitFor(t, 60*time.Second, "the first certified blobs", func() bool {
		return ledger.sdkStores.Load() > 0 && ledger.gatewayStores.Load() > 0
	})

	// The chaos.
	var voters, storage []string
	for _, p := range ready.Processes {
		switch p.Role {
		case "control":
			voters = append(voters, p.ID)
		case "node":
			storage = append(storage, p.ID)
		}
	}
	stakes := map[string]int{}
	for _, id := range storage {
		stakes[id] = 100
	}
	pause := func(min, max time.Duration) {
		select {
		case <-time.After(min + time.Duration(rng.Int64N(int64(max-min)))):
		case <-mismatch:
		}
	}
	// changeStake sets a random node's stake to 0, 100 or 200 (never more
	// than two nodes at 0) and advances the epoch; an advance refused
	// because a handover is still going on is skipped.
	advances := 0
	changeStake := func(not string) {
		t.Helper()
		var node string
		for node == "" || node == not {
			node = storage[rng.IntN(len(storage))]
		}
		zero := 0
		for _, s := range stakes {
			if s == 0 {
				zero++
			}
		}
		var choices []int
		for _, s := range []int{0, 100, 200} {
			if s != stakes[node] && (s != 0 || zero < 2) {
				choices = append(choices, s)
			}
		}
		stake := choices[rng.IntN(len(choices))]
		if out, err := adminRetry(t, bin, r, "node", "stake", node, strconv.Itoa(stake)); err != nil {
			t.Fatalf("stake %s %d: %v\n%s", node, stake, err, out)
		}
		stakes[node] = stake
		for try := 0; ; try++ {
			out, err := adminRetry(t, bin, r, "epoch", "advance")
			if err == nil {
				advances++
				t.Logf("stake of %s set to %d; %s", node, stake, strings.TrimSpace(out))
				return
			}
			if try == 2 {
				t.Logf("stake of %s set to %d; epoch advance refused, skipped: %s", node, stake, strings.TrimSpace(out))
				return
			}
			time.Sleep(time.Second)
		}
	}
	// touching counts the shards a node owns or holds: what its loss
	// costs while it is down.
	touching := func(node string) int {
		st, err := watchState(ctx, r.Control)
		if err != nil {
			t.Fatalf("watch state: %v", err)
		}
		n := 0
		for i := range st.Owners {
			if st.Owners[i] == node || st.Holders[i] == node {
				n++
			}
		}
		return n
	}
	leader := func() string {
		var status struct {
			LeaderID string `json:"leaderId"`
		}
		var out string
		var err error
		waitFor(t, 30*time.Second, "a leader", func() bool {
			out, err = adminAt(t, bin, r, "status", "-o", "json")
			return err == nil && json.Unmarshal([]byte(out), &status) == nil && status.LeaderID != ""
		})
		return status.LeaderID
	}
	pickVictim := func(role string) string {
		switch role {
		case "control":
			if rng.IntN(2) == 0 {
				return leader()
			}
			return voters[rng.IntN(len(voters))]
		case "gateway":
			return "gateway"
		}
		order := rng.Perm(len(storage))
		for _, i := range order {
			if n := touching(storage[i]); n <= f {
				return storage[i]
			}
		}
		t.Fatalf("every storage node owns or holds more than f = %d shards", f)
		return ""
	}
	// awaitBack waits until a restarted process serves again: a voter is
	// a caught-up peer, a node answers in the current epoch, the gateway
	// certifies a store again.
	awaitBack := func(role, id string, restarted time.Time) {
		t.Helper()
		switch role {
		case "control":
			waitFor(t, 60*time.Second, id+" back and caught up", func() bool {
				peers, ok := listPeers(t, bin, r)
				if !ok || len(peers) != len(voters) {
					return false
				}
				for _, p := range peers {
					if !p.caughtUp() {
						return false
					}
				}
				return true
			})
		case "node":
			waitFor(t, 60*time.Second, id+" serving the current epoch", func() bool {
				st, err := watchState(ctx, r.Control)
				if err != nil {
					return false
				}
				ns, err := storageNodeStatus(ctx, addrOf[id])
				return err == nil && ns.Epoch == st.Epoch
			})
		case "gateway":
			waitFor(t, 2*time.Minute, "a store through the restarted gateway", func() bool {
				return lastGatewayPut.Load() > restarted.UnixNano()
			})
		}
	}

	roles := []string{"control", "node", "gateway"}
	rng.Shuffle(len(roles), func(i, j int) { roles[i], roles[j] = roles[j], roles[i] })
	firstMode := rng.IntN(2)
	kills := map[string]int{}
	for round := range rounds {
		select {
		case <-mismatch:
			t.FailNow()
		default:
		}
		// handover 0: no epoch change; 1: a stake change and an advance,
		// then the kill, in the handover; 2: the kill, then a stake change
		// and an advance while the victim is down.
		role, handover := "", 0
		if rng.IntN(2) == 0 {
			handover = 1 + rng.IntN(2)
		}
		switch {
		case round < len(roles):
			role = roles[round] // every role at least once
		case round < len(roles)+2:
			// A storage node killed in a handover, both ways.
			role, handover = "node", 1+(round-len(roles)+firstMode)%2
		default:
			switch p := rng.IntN(10); {
			case p < 3:
				role = "control"
			case p < 8:
				role = "node"
			default:
				role = "gateway"
			}
		}
		pause(300*time.Millisecond, 3*time.Second)
		if handover == 1 {
			changeStake("")
			pause(10*time.Millisecond, time.Second)
		}
		victim := pickVictim(role)
		pid := 0
		for _, p := range readKillReady(t, readyPath).Processes {
			if p.ID == victim {
				pid = p.PID
			}
		}
		if pid == 0 {
			t.Fatalf("%s is not in the ready file", victim)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill %s (pid %d): %v", round+1, victim, pid, err)
		}
		kills[role]++
		down := time.Now()
		if handover == 2 {
			pause(10*time.Millisecond, time.Second)
			changeStake(victim)
		}
		pause(500*time.Millisecond, 4*time.Second)
		restarted := time.Now()
		devnetRestart(t, bin, readyPath, victim)
		awaitBack(role, victim, restarted)
		t.Logf("round %d: %s (%s) down %v, back after %v; %s; %d certified so far",
			round+1, victim, role, restarted.Sub(down).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond),
			[]string{"no epoch change", "killed in a handover", "epoch advanced while it was down"}[handover], len(ledger.all()))
	}
	time.Sleep(time.Second) // traffic with everything up
	stopAll()
	select {
	case <-mismatch:
		t.FailNow()
	default:
	}

	// Everything settles; every certified blob reads back, both ways.
	var st struct {
		Epoch uint64 `json:"epoch"`
		Phase string `json:"phase"`
	}
	waitFor(t, 2*time.Minute, "a Stable epoch", func() bool {
		out, err := adminAt(t, bin, r, "epoch", "status", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Phase == "stable"
	})
	waitFor(t, 90*time.Second, "recovery to settle", func() bool {
		for _, id := range storage {
			ns, err := storageNodeStatus(ctx, addrOf[id])
			if err != nil || ns.RecoveryBacklog != 0 {
				return false
			}
		}
		return true
	})
	settled := time.Now()
	blobs := ledger.all()
	if ledger.sdkStores.Load() == 0 || ledger.gatewayStores.Load() == 0 {
		t.Fatalf("certified %d through the SDK and %d through the gateway", ledger.sdkStores.Load(), ledger.gatewayStores.Load())
	}
	var verified atomic.Int64
	var rwg sync.WaitGroup
	next := atomic.Int64{}
	for range 3 {
		rwg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(blobs) && !t.Failed(); i = int(next.Add(1) - 1) {
				b := blobs[i]
				if err := c.VerifyCertificate(ctx, b.cert); err != nil {
					t.Errorf("certificate of %s (via %s): %v", b.id, b.via, err)
					continue
				}
				got, err := c.Read(ctx, b.id, client.ReadOptions{})
				if err != nil || !bytes.Equal(got, b.blob) {
					t.Errorf("certified blob %s (%d bytes via %s, epoch %d) lost through the SDK: %v (%d bytes)", b.id, len(b.blob), b.via, b.cert.Epoch, err, len(got))
					continue
				}
				got, err = gatewayGet(ctx, hc, gw, b.id)
				if err != nil || !bytes.Equal(got, b.blob) {
					t.Errorf("certified blob %s (%d bytes via %s, epoch %d) lost through the gateway: %v (%d bytes)", b.id, len(b.blob), b.via, b.cert.Epoch, err, len(got))
					continue
				}
				verified.Add(1)
			}
		})
	}
	rwg.Wait()
	t.Logf("kills: %v; %d epoch advances; final epoch %d", kills, advances, st.Epoch)
	t.Logf("certified %d (%d via the SDK, %d via the gateway; %d SDK stores collected again after an epoch change); failed stores %d SDK, %d gateway",
		len(blobs), ledger.sdkStores.Load(), ledger.gatewayStores.Load(), recollected.n.Load(), ledger.sdkFailed.Load(), ledger.gatewayFailed.Load())
	t.Logf("reads during the chaos: %d SDK, %d gateway with the right bytes; %d SDK, %d gateway failed",
		ledger.sdkReads.Load(), ledger.gatewayReads.Load(), ledger.sdkReadFails.Load(), ledger.gatewayReadFails.Load())
	t.Logf("final check: %d/%d blobs verified and read back through both in %v; total %v",
		verified.Load(), len(blobs), time.Since(settled).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, role := range []string{"control", "node", "gateway"} {
		if kills[role] == 0 {
			t.Errorf("no %s was killed", role)
		}
	}
}
