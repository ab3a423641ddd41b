package netview

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/shardmap"
	"github.com/weftstore/weft/storage"
)

// testNetwork is an in-process devnet (a Raft voter, real storage nodes on
// gRPC), closed when the test ends.
func testNetwork(t *testing.T, nodes, shards int) *devnet.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: nodes, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return nw
}

func newCollector(t *testing.T, cfg Config) *Collector {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fresh is a snapshot made after this call (the cache is dropped first).
func fresh(t *testing.T, c *Collector) *Snapshot {
	t.Helper()
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
	s, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// await takes fresh snapshots until cond holds.
func await(t *testing.T, c *Collector, d time.Duration, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	var s *Snapshot
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		s = fresh(t, c)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(s, "", " ")
			t.Fatalf("timed out waiting for %s; last snapshot:\n%s", what, b)
		}
	}
}

func nodeByID(s *Snapshot, id string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].ID == id {
			return &s.Nodes[i]
		}
	}
	return nil
}

func operator(ctx context.Context, nw *devnet.Network) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+nw.OperatorToken)
}

// pausedPlane is a storage node's real control-plane client whose watch
// can be held: a node that cannot learn of a new epoch, while it still
// answers NodeStatus (lagging).
type pausedPlane struct {
	control.Plane
	paused atomic.Bool
}

func (p *pausedPlane) Watch(ctx context.Context, after uint64, timeout time.Duration) (control.State, error) {
	for p.paused.Load() {
		select {
		case <-ctx.Done():
			return control.State{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p.Plane.Watch(ctx, after, timeout)
}

// startPausableNode starts one more real storage node (registered, not
// staked) whose control-plane watch the test can hold.
func startPausableNode(t *testing.T, nw *devnet.Network, id string) (*pausedPlane, string) {
	t.Helper()
	key, err := crypto.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(nw.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	addr, err := devnet.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	plane := &pausedPlane{Plane: control.NewClient(conn, shardmap.NodeID(id), key)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := storage.Start(ctx, storage.Config{
		ID: shardmap.NodeID(id), Key: key, DataDir: filepath.Join(t.TempDir(), id), PublicAddr: addr, Plane: plane,
		WatchTimeout: time.Second, RecoveryDelay: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(run.ServerOptions()...)
	run.Register(srv)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Stop(); run.Close() })
	return plane, addr
}

// The collector against a real network: health (up, lagging, down), the
// handover of a joining node that is down (stuck), forced over (forced),
// then back (synced), the registry's counts and the challenge round.
func TestCollectorNetwork(t *testing.T) {
	nw := testNetwork(t, 4, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newCollector(t, Config{Control: []string{nw.ControlAddr}, Interval: time.Hour})
	admin := weftv1.NewAdminClient(mustDial(t, nw.ControlAddr))

	s := fresh(t, c)
	if s.Epoch != 1 || s.Phase != "stable" || s.Shards != 16 || len(s.Nodes) != 4 || s.Voter != "control" || s.Leader != "control" {
		t.Fatalf("snapshot: epoch %d phase %s shards %d nodes %d voter %q leader %q", s.Epoch, s.Phase, s.Shards, len(s.Nodes), s.Voter, s.Leader)
	}
	for _, n := range s.Nodes {
		if n.Health != HealthUp || n.Epoch != 1 || !n.Registered || n.Stake != 100 || n.Shards != 4 {
			t.Fatalf("node %+v: want up in epoch 1 with 4 shards", n)
		}
	}
	if s.Health != (HealthCounts{Up: 4}) {
		t.Fatalf("health %+v", s.Health)
	}
	for shard := range s.Shards {
		if o := s.Owners[shard]; o < 0 || s.Holders[shard] != o {
			t.Fatalf("shard %d: owner %d holder %d", shard, o, s.Holders[shard])
		}
	}
	if s.Handover.InProgress || s.Handover.Epoch != 1 || s.Handover.Counts.Synced != s.Handover.Moved {
		t.Fatalf("epoch 1's handover: %+v", s.Handover)
	}

	// The registry's counts.
	cl, err := client.New(client.Config{Control: []string{nw.ControlAddr}, Token: nw.ClientToken, MaxBlobLength: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	blob := bytes.Repeat([]byte("status page "), 1000)
	if _, _, err := cl.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 5}); err != nil {
		t.Fatal(err)
	}
	s = fresh(t, c)
	if s.Blobs.Certified != 1 || s.Blobs.CertifiedBytes != uint64(len(blob)) || s.Blobs.Objects != 1 {
		t.Fatalf("blobs after one store: %+v", s.Blobs)
	}

	// A challenge round: the latest one's verdicts, by node index.
	if _, err := admin.StartChallenge(operator(ctx, nw), &weftv1.StartChallengeRequest{}); err != nil {
		t.Fatal(err)
	}
	s = fresh(t, c)
	if s.Challenge == nil || s.Challenge.Round != 1 || !s.Challenge.Open || len(s.Challenge.Verdicts) != 4 || s.Challenge.Counts.Open != 4 {
		t.Fatalf("challenge: %+v (%s)", s.Challenge, s.ChallengeError)
	}
	for _, v := range s.Challenge.Verdicts {
		if v.Node < 0 || v.Node >= len(s.Nodes) {
			t.Fatalf("verdict %+v names no node", v)
		}
	}
	if _, err := admin.CloseChallenge(operator(ctx, nw), &weftv1.CloseChallengeRequest{}); err != nil {
		t.Fatal(err)
	}

	// Lagging: a node that answers but cannot learn the new epoch.
	plane, _ := startPausableNode(t, nw, "lagger")
	await(t, c, 30*time.Second, "the new node up", func(s *Snapshot) bool {
		n := nodeByID(s, "lagger")
		return n != nil && n.Health == HealthUp
	})
	plane.paused.Store(true)

	// A joining node that is down: every shard it gains is stuck.
	i, err := nw.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joiner := string(nw.NodeID(i))
	if err := nw.SetStake(ctx, i, 200); err != nil {
		t.Fatal(err)
	}
	if err := nw.StopNode(i); err != nil {
		t.Fatal(err)
	}
	if _, err := nw.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	s = await(t, c, 30*time.Second, "the lagging node", func(s *Snapshot) bool {
		n := nodeByID(s, "lagger")
		return n != nil && n.Health == HealthLagging
	})
	if s.Epoch != 2 || s.Phase != "handover" || !s.Handover.InProgress || s.Handover.Moved == 0 {
		t.Fatalf("after the join: epoch %d phase %s handover %+v", s.Epoch, s.Phase, s.Handover)
	}
	if n := nodeByID(s, joiner); n == nil || n.Health != HealthDown || n.Error == "" || n.Shards == 0 {
		t.Fatalf("the stopped joiner: %+v", n)
	}
	if s.Health != (HealthCounts{Up: 4, Lagging: 1, Down: 1}) {
		t.Fatalf("health %+v", s.Health)
	}
	joinerIdx := s.Owners[s.Handover.Shards[0]]
	for k, shard := range s.Handover.Shards {
		if s.Nodes[s.Owners[shard]].ID != joiner || s.Handover.States[k] != StateStuck || s.Handover.From[k] < 0 || s.Holders[shard] != s.Handover.From[k] {
			t.Fatalf("moved shard %d (from %d, holder %d, owner %d): %s, want stuck on its way to %s", shard, s.Handover.From[k], s.Holders[shard], s.Owners[shard], s.Handover.States[k], joiner)
		}
	}
	if s.Handover.Counts != (StateCounts{Stuck: s.Handover.Moved}) {
		t.Fatalf("counts %+v", s.Handover.Counts)
	}
	t.Logf("epoch 2: %d shards moving to %s (index %d), all stuck", s.Handover.Moved, joiner, joinerIdx)

	// Forced over: the unsynced shards are carried into epoch 3.
	plane.paused.Store(false)
	if _, err := admin.AdvanceEpoch(operator(ctx, nw), &weftv1.AdvanceEpochRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	s = await(t, c, 30*time.Second, "epoch 3, forced", func(s *Snapshot) bool { return s.Epoch == 3 })
	if !s.Handover.Forced || len(s.Handover.Carried) == 0 {
		t.Fatalf("the forced change: %+v", s.Handover)
	}
	for k, shard := range s.Handover.Shards {
		carried := false
		for _, cs := range s.Handover.Carried {
			carried = carried || cs == shard
		}
		if carried && s.Handover.States[k] != StateForced {
			t.Fatalf("carried shard %d: %s, want forced", shard, s.Handover.States[k])
		}
	}
	if s.Handover.Counts.Forced != len(s.Handover.Carried) {
		t.Fatalf("counts %+v, %d carried", s.Handover.Counts, len(s.Handover.Carried))
	}

	// The joiner comes back: it syncs, and every moved shard is synced.
	if err := nw.StartNode(ctx, i); err != nil {
		t.Fatal(err)
	}
	s = await(t, c, 60*time.Second, "the handover done", func(s *Snapshot) bool {
		return s.Phase == "stable" && nodeByID(s, joiner).Health == HealthUp && nodeByID(s, "lagger").Health == HealthUp
	})
	if s.Handover.InProgress || s.Handover.Counts != (StateCounts{Synced: s.Handover.Moved}) {
		t.Fatalf("done: %+v", s.Handover)
	}
	if s.Health != (HealthCounts{Up: 6}) {
		t.Fatalf("health %+v", s.Health)
	}
}

func mustDial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// The rules, every state at once, on a status a real network would send
// (build is the one place they live; TestCollectorNetwork sees the ones a
// test network can be put in for sure).
func TestHandoverRules(t *testing.T) {
	ns := &weftv1.NetworkStatusResponse{
		Index: 9, Epoch: 5, Phase: "handover", Shards: 6,
		Nodes: []*weftv1.NetworkNode{
			{Id: "a", Address: "a:1", Stake: 1, Shards: 2},
			{Id: "b", Address: "b:1", Stake: 1, Shards: 2},
			{Id: "c", Address: "c:1", Stake: 1, Shards: 1},
			{Id: "d", Address: "d:1", Stake: 1, Shards: 1},
		},
		//        0    1    2    3    4    5
		Owners:  []string{"a", "a", "b", "b", "c", "d"},
		Holders: []string{"a", "c", "d", "c", "d", "gone"},
		Handover: &weftv1.NetworkHandover{Epoch: 5, Forced: true,
			Shards: []uint32{0, 1, 2, 3, 4, 5}, From: []string{"c", "c", "d", "c", "d", "gone"}, Carried: []uint32{3}},
	}
	answers := map[string]nodeAnswer{
		"a": {resp: &weftv1.NodeStatusResponse{Node: "a", Epoch: 5, ShardsSyncing: []uint32{1}}},
		"b": {resp: &weftv1.NodeStatusResponse{Node: "b", Epoch: 4}}, // lagging
		"c": {err: "Unavailable: connection refused"},                // down
		"d": {resp: &weftv1.NodeStatusResponse{Node: "d", Epoch: 5}},
	}
	s := build(ns, nil, "", answers)
	want := []string{
		StateSynced,  // 0: holder == owner
		StateSyncing, // 1: a lists it
		StateStuck,   // 2: b lags, not syncing; its source d is up — but see below
		StateForced,  // 3: carried
		StateStuck,   // 4: owner c is down
		StateStuck,   // 5: its source is gone from the registry
	}
	// Shard 2: owner b lags (not down), source d up: waiting.
	want[2] = StateWaiting
	for k := range want {
		if s.Handover.States[k] != want[k] {
			t.Errorf("shard %d: %s, want %s", s.Handover.Shards[k], s.Handover.States[k], want[k])
		}
	}
	if s.Handover.Counts != (StateCounts{Synced: 1, Syncing: 1, Waiting: 1, Forced: 1, Stuck: 2}) {
		t.Errorf("counts %+v", s.Handover.Counts)
	}
	if got := []string{s.Nodes[0].Health, s.Nodes[1].Health, s.Nodes[2].Health, s.Nodes[3].Health}; strings.Join(got, ",") != "up,lagging,down,up" {
		t.Errorf("health %v", got)
	}
	if len(s.Nodes) != 5 || s.Nodes[4].ID != "gone" || s.Nodes[4].Registered || s.Holders[5] != 4 || s.Handover.From[5] != 4 {
		t.Errorf("the unregistered holder: %+v, holders %v, from %v", s.Nodes[4:], s.Holders, s.Handover.From)
	}
	if s.Nodes[2].Error != "Unavailable: connection refused" {
		t.Errorf("down node's error %q", s.Nodes[2].Error)
	}
}

// GET /v1/network: the JSON and its headers, 304 for an unchanged network
// whatever the time, gzip, HEAD, 405.
func TestJSONEndpoint(t *testing.T) {
	nw := testNetwork(t, 3, 12)
	c := newCollector(t, Config{Control: []string{nw.ControlAddr}, Interval: 100 * time.Millisecond})
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// Fresh nodes set their shards up for a moment: once they are done,
	// nothing changes until the test changes it.
	await(t, c, 30*time.Second, "the nodes settled", func(s *Snapshot) bool {
		for _, n := range s.Nodes {
			if len(n.Syncing) > 0 {
				return false
			}
		}
		return true
	})

	resp, body := get(t, srv.URL+JSONPath, "Accept-Encoding", "identity")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-cache" ||
		resp.Header.Get("ETag") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET: %s %v", resp.Status, resp.Header)
	}
	// The schema as scripts see it (DESIGN.md): every documented key.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"generated_at", "refresh_ms", "interval_ms", "index", "epoch", "phase", "shards", "voter", "leader",
		"nodes", "health", "owners", "holders", "handover", "challenge", "blobs"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q in %s", k, body)
		}
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 3 || len(s.Owners) != 12 || s.IntervalMS != 100 || s.GeneratedAt.IsZero() {
		t.Fatalf("snapshot %+v", s)
	}
	etag := resp.Header.Get("ETag")
	first := body

	// Later (a new snapshot, a new generated_at), nothing changed: 304.
	time.Sleep(150 * time.Millisecond)
	resp, body = get(t, srv.URL+JSONPath, "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: %s\n%s\nwas\n%s", resp.Status, body, first)
	}
	resp, _ = get(t, srv.URL+JSONPath, "If-None-Match", `"something else"`)
	if resp.StatusCode != 200 {
		t.Fatalf("another ETag: %s", resp.Status)
	}

	// Something changes (a stake): a new ETag, a poll or two later (a
	// poll may get the last snapshot while the next is made).
	admin := weftv1.NewAdminClient(mustDial(t, nw.ControlAddr))
	if _, err := admin.SetStake(operator(context.Background(), nw), &weftv1.SetStakeRequest{Node: "node-0", Stake: 300}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, _ = get(t, srv.URL+JSONPath, "If-None-Match", etag)
		if resp.StatusCode == 200 && resp.Header.Get("ETag") != etag {
			break
		}
		if resp.StatusCode != http.StatusNotModified || time.Now().After(deadline) {
			t.Fatalf("after a stake change: %s, ETag %s", resp.Status, resp.Header.Get("ETag"))
		}
	}

	// gzip, when asked for.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+JSONPath, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	tr := &http.Transport{DisableCompression: true}
	gz, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil || gz.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip: %v %v", err, gz.Header)
	}
	unzipped, _ := io.ReadAll(zr)
	gz.Body.Close()
	if !json.Valid(unzipped) {
		t.Fatalf("gunzipped body is not JSON: %q", unzipped)
	}

	resp, body = do(t, http.MethodHead, srv.URL+JSONPath)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %s %d bytes", resp.Status, len(body))
	}
	resp, body = do(t, http.MethodPost, srv.URL+JSONPath)
	wantError(t, resp, body, http.StatusMethodNotAllowed, "UNIMPLEMENTED")
	if resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("405 Allow %q", resp.Header.Get("Allow"))
	}
}

// With the control plane gone: 503 with the JSON error and Retry-After;
// the nodes are not asked.
func TestControlPlaneDown(t *testing.T) {
	nw, err := devnet.Start(context.Background(), devnet.Config{Dir: t.TempDir(), Nodes: 2, Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, Config{Control: []string{nw.ControlAddr}, Interval: 50 * time.Millisecond, ControlTimeout: time.Second})
	h := c.JSONHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, JSONPath, nil))
	if rec.Code != 200 {
		t.Fatalf("up: %d %s", rec.Code, rec.Body)
	}
	nw.Close()
	// Past the last snapshot's maxStale intervals: no stale answer.
	time.Sleep(maxStale*50*time.Millisecond + 50*time.Millisecond)
	start := time.Now()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, JSONPath, nil))
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	wantError(t, resp, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	t.Logf("503 after %v: %s", time.Since(start).Round(time.Millisecond), bytes.TrimSpace(body))
	if _, err := c.Snapshot(context.Background()); err == nil || !strings.Contains(err.Error(), ErrUnavailable.Error()) {
		t.Fatalf("Snapshot: %v", err)
	}
}

// However many ask at once, one refresh runs; within the interval the
// cached snapshot serves everyone.
func TestOneRefreshPerInterval(t *testing.T) {
	nw := testNetwork(t, 3, 6)
	c := newCollector(t, Config{Control: []string{nw.ControlAddr}, Interval: 500 * time.Millisecond})
	srv := httptest.NewServer(c.JSONHandler())
	defer srv.Close()

	const askers = 50
	var wg sync.WaitGroup
	etags := make([]string, askers)
	for i := range askers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("asker %d: %s", i, resp.Status)
			}
			etags[i] = resp.Header.Get("ETag")
		}()
	}
	wg.Wait()
	if n := c.refreshes.Load(); n != 1 {
		t.Fatalf("%d concurrent requests ran %d refreshes, want 1", askers, n)
	}
	for _, e := range etags {
		if e != etags[0] {
			t.Fatalf("askers got different snapshots: %q, %q", e, etags[0])
		}
	}
	for range 10 {
		if _, err := c.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.refreshes.Load(); n != 1 {
		t.Fatalf("within the interval: %d refreshes", n)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := c.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.refreshes.Load(); n != 2 {
		t.Fatalf("after the interval: %d refreshes, want 2", n)
	}
	awaitIdle(t, c)

	// Older than the interval but younger than maxStale intervals: served
	// at once, while the next refresh runs.
	time.Sleep(600 * time.Millisecond)
	c.mu.Lock()
	before := c.last
	c.mu.Unlock()
	if s, err := c.Snapshot(context.Background()); err != nil || s != before.snap {
		t.Fatalf("a stale caller: %v, or not the cached snapshot", err)
	}
	if n := c.refreshes.Load(); n != 3 {
		t.Fatalf("the stale caller started %d refreshes in all, want 3", n)
	}
	awaitIdle(t, c)

	// A caller that gives up does not cancel the refresh for the others
	// (nothing cached: both wait).
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Snapshot(gone); err == nil {
		t.Fatal("a cancelled caller got a snapshot")
	}
	if _, err := c.Snapshot(context.Background()); err != nil {
		t.Fatalf("the next caller: %v", err)
	}
	if n := c.refreshes.Load(); n != 4 {
		t.Fatalf("%d refreshes, want 4", n)
	}
}

// awaitIdle waits until no refresh runs.
func awaitIdle(t *testing.T, c *Collector) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		idle := c.inflight == nil
		c.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a refresh never ended")
		}
	}
}

// Connections are kept from one refresh to the next, and closed once no
// registered node has the address.
func TestNodeConnections(t *testing.T) {
	nw := testNetwork(t, 3, 6)
	c := newCollector(t, Config{Control: []string{nw.ControlAddr}, Interval: time.Hour})
	fresh(t, c)
	c.connMu.Lock()
	first := map[string]*grpc.ClientConn{}
	for a, cc := range c.nodes {
		first[a] = cc
	}
	c.connMu.Unlock()
	if len(first) != 3 {
		t.Fatalf("%d node connections, want 3", len(first))
	}
	fresh(t, c)
	c.connMu.Lock()
	for a, cc := range c.nodes {
		if first[a] != cc {
			t.Errorf("the connection to %s was not reused", a)
		}
	}
	c.connMu.Unlock()
	admin := weftv1.NewAdminClient(mustDial(t, nw.ControlAddr))
	ctx := operator(context.Background(), nw)
	if _, err := admin.SetStake(ctx, &weftv1.SetStakeRequest{Node: "node-2", Stake: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := nw.AdvanceEpoch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	await(t, c, 30*time.Second, "a stable epoch without node-2", func(s *Snapshot) bool { return s.Phase == "stable" && s.Epoch == 2 })
	if _, err := admin.RemoveNode(ctx, &weftv1.RemoveNodeRequest{Node: "node-2"}); err != nil {
		t.Fatal(err)
	}
	s := fresh(t, c)
	// Listed still as the source of the shards it handed over, but not
	// registered, and not asked.
	if n := nodeByID(s, "node-2"); n != nil && (n.Registered || n.Address != "" || n.Health != HealthDown) {
		t.Fatalf("node-2 after its removal: %+v", n)
	}
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if _, ok := c.nodes[nw.NodeAddr(2)]; ok || len(c.nodes) != 2 {
		t.Fatalf("connections after node-2 left: %d (node-2's kept: %v)", len(c.nodes), ok)
	}
}

// The page and its assets: embedded, with the security headers; /ui
// redirects to /ui/; anything else is a JSON 404.
func TestUIHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(UIPath, UIHandler())
	mux.Handle(UIPrefix, UIHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "ui/" {
		t.Fatalf("/ui: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
	for path, ct := range map[string]string{
		"/ui/": "text/html; charset=utf-8", "/ui/index.html": "text/html; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8",
		"/ui/style.css": "text/css; charset=utf-8", "/ui/favicon.svg": "image/svg+xml",
	} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ct || len(body) == 0 {
			t.Fatalf("%s: %s %q (%d bytes)", path, resp.Status, resp.Header.Get("Content-Type"), len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff", path)
		}
		again, _ := get(t, srv.URL+path, "If-None-Match", resp.Header.Get("ETag"))
		if again.StatusCode != http.StatusNotModified {
			t.Fatalf("%s with its ETag: %s", path, again.Status)
		}
	}
	// Nothing from elsewhere: no http(s) URL in the page or its assets
	// but the spec links, and no innerHTML in the script.
	for name, a := range assets {
		if bytes.Contains(a.body, []byte("http://")) || bytes.Contains(a.body, []byte("https://")) {
			if !strings.HasSuffix(name, ".svg") {
				t.Errorf("%s names an outside URL", name)
			}
		}
	}
	if bytes.Contains(assets["app.js"].body, []byte("innerHTML")) {
		t.Error("app.js uses innerHTML")
	}
	resp, body := get(t, srv.URL+"/ui/nope.js")
	wantError(t, resp, body, http.StatusNotFound, "NOT_FOUND")
	resp, body = do(t, http.MethodPost, srv.URL+"/ui/")
	wantError(t, resp, body, http.StatusMethodNotAllowed, "UNIMPLEMENTED")
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return send(t, req)
}

func do(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// wantError checks an error answer: the status, and the JSON
// {"error": {"code", "status", "message"}}.
func wantError(t *testing.T, resp *http.Response, body []byte, code int, status string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != code || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s (%s), want %d: %s", resp.Status, resp.Header.Get("Content-Type"), code, body)
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Status != status || e.Error.Message == "" {
		t.Fatalf("error body %s (%v), want code %d status %s", body, err, code, status)
	}
}
