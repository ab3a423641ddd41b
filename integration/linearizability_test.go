package integration

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/internal/faultnet"
	"github.com/weftstore/weft/shardmap"
)

// TestLinearizability (issue #23) drives concurrent clients against three
// `weft control` processes — register, certify, extend and delete, blob
// status, quota and epoch reads — while it SIGKILLs the leader (and
// restarts it), SIGSTOPs a voter (and SIGCONTs it) and cuts a voter's Raft
// links off (faultnet proxies, one per direction of each pair of voters,
// dialed through `--raft-peer-addr`), and checks the recorded history
// with porcupine against the model in linz_model_test.go. See CHAOS.md.
//
// WEFT_CHAOS_OPS (default 300) operations at least, WEFT_CHAOS_FAULTS
// (default 1) faults of each kind at least, WEFT_CHAOS_SEED to replay a
// fault schedule and operation mix; `make chaos` runs 10,000 and 20.
func TestLinearizability(t *testing.T) {
	target := envInt(t, "WEFT_CHAOS_OPS", 300)
	minFaults := envInt(t, "WEFT_CHAOS_FAULTS", 1)
	if testing.Short() && os.Getenv("WEFT_CHAOS_OPS") == "" {
		t.Skip("real processes and faults for a minute: not under -short")
	}
	seed := int64(envInt(t, "WEFT_CHAOS_SEED", int(time.Now().UnixNano()%1e12)))
	t.Logf("seed %d (WEFT_CHAOS_SEED=%d replays the schedule), ≥ %d operations, ≥ %d faults of each kind", seed, seed, target, minFaults)
	artifacts, err := os.MkdirTemp("", "weft-linz-")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildWeft(t)
	c := startLinzCluster(t, bin, artifacts)
	started := time.Now()
	setup := c.setup(t, seed, target)
	t.Logf("cluster ready in %v: epoch %d, %d clients of quota %d", time.Since(started).Round(time.Millisecond), setup.epoch, len(setup.clients), setup.quota)

	run := &linzRun{c: c, s: setup, start: time.Now(), target: int64(target), localReads: os.Getenv("WEFT_CHAOS_READS") == "local"}
	if run.localReads {
		t.Log("WEFT_CHAOS_READS=local: reads answered from the asked voter's local state, without the read barrier (expected to fail)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	faultsDone := make(chan struct{})
	var faults linzFaults
	go func() {
		defer close(faultsDone)
		faults.run(ctx, t, c, rand.New(rand.NewSource(seed)), minFaults)
	}()
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.worker(ctx, w, rand.New(rand.NewSource(seed+int64(w)+1)), faultsDone)
		}()
	}
	wg.Wait()
	<-faultsDone
	c.healAll()
	elapsed := time.Since(run.start)

	history := run.history()
	counts := run.counts()
	t.Logf("%d operations in %v (%s); faults: %s", len(history), elapsed.Round(time.Second), counts, faults.String())
	checkStart := time.Now()
	model := linzModel(setup.epoch, setup.quota)
	res, info := porcupine.CheckOperationsVerbose(model, history, 10*time.Minute)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := filepath.Join(artifacts, "linearizability.html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			t.Errorf("visualisation: %v", err)
		}
		t.Fatalf("history is %s (seed %d): visualisation %s, voter logs in %s", res, seed, path, artifacts)
	}
	for kind, n := range faults.snapshot() {
		if n < minFaults {
			t.Errorf("%d %s faults injected, want ≥ %d", n, kind, minFaults)
		}
	}
	if len(history) < target {
		t.Errorf("%d operations, want ≥ %d", len(history), target)
	}
	if !t.Failed() {
		os.RemoveAll(artifacts)
	} else {
		t.Logf("voter logs kept in %s", artifacts)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, v)
	}
	return n
}

// --- the cluster: three voters, a faultnet proxy per Raft link direction ---

type linzVoter struct {
	id, dir, raft, grpc string
	peers               []string // --raft-peer-addr values
	log                 string
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	exited              chan struct{}
}

type linzCluster struct {
	bin     string
	voters  []*linzVoter
	proxies map[[2]int]*faultnet.Proxy // [from, to]: what voter from dials to reach voter to
	clients []*faultnet.Proxy          // the test's clients reach voter i through clients[i]
	conns   []*grpc.ClientConn
}

const linzShards = 20

func startLinzCluster(t *testing.T, bin, artifacts string) *linzCluster {
	t.Helper()
	c := &linzCluster{bin: bin, proxies: map[[2]int]*faultnet.Proxy{}}
	for i := range 3 {
		id := fmt.Sprintf("v%d", i+1)
		c.voters = append(c.voters, &linzVoter{
			id: id, dir: filepath.Join(artifacts, id), raft: linzFreeAddr(t), grpc: linzFreeAddr(t),
			log: filepath.Join(artifacts, id+".log"),
		})
	}
	for i, from := range c.voters {
		for j, to := range c.voters {
			if i == j {
				continue
			}
			p, err := faultnet.Listen(to.raft)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			c.proxies[[2]int{i, j}] = p
			from.peers = append(from.peers, to.id+"="+p.Addr())
		}
	}
	for _, v := range c.voters {
		c.start(t, v)
		p, err := faultnet.Listen(v.grpc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		c.clients = append(c.clients, p)
		conn, err := grpc.NewClient(p.Addr(), wire.DialOptions(wire.WithCredentials(nil))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.conns = append(c.conns, conn)
	}
	t.Cleanup(func() {
		for _, v := range c.voters {
			c.kill(v)
		}
	})
	return c
}

// linzFreeAddr is a loopback address above the ephemeral port range
// (32768–60999 here), where neither outgoing connections nor other test
// processes' freeAddr (20000–32000) take ports: a SIGKILLed voter's ports
// are free while it is down, and one taken meanwhile would keep it from
// coming back (seen once: "bind: address already in use" on a restart).
func linzFreeAddr(t *testing.T) string {
	t.Helper()
	linzPortsMu.Lock()
	defer linzPortsMu.Unlock()
	for range 1000 {
		port := 61000 + rand.Intn(4500)
		if linzPorts[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		linzPorts[port] = true
		return l.Addr().String()
	}
	t.Fatal("no free loopback port in 61000–65499")
	return ""
}

var (
	linzPortsMu sync.Mutex
	linzPorts   = map[int]bool{}
)

func (c *linzCluster) start(t *testing.T, v *linzVoter) {
	var join []string
	for _, o := range c.voters {
		if o != v {
			join = append(join, o.grpc)
		}
	}
	args := []string{"control", "--id", v.id, "--data-dir", v.dir, "--raft-addr", v.raft, "--grpc-addr", v.grpc,
		"--bootstrap-expect", "3", "--join", strings.Join(join, ","), "--shards", strconv.Itoa(linzShards),
		"--challenge-window", "0", "--raft-heartbeat-timeout", "700ms", "--raft-election-timeout", "700ms", "--raft-lease-timeout", "350ms"}
	for _, p := range v.peers {
		args = append(args, "--raft-peer-addr", p)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "WEFT_TOKEN="+token)
	log, err := os.OpenFile(v.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	v.mu.Lock()
	v.cmd, v.exited = cmd, exited
	v.mu.Unlock()
}

func (c *linzCluster) kill(v *linzVoter) {
	v.mu.Lock()
	cmd, exited := v.cmd, v.exited
	v.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (c *linzCluster) signal(v *linzVoter, sig syscall.Signal) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cmd.Process.Signal(sig)
}

// isolate cuts every Raft link to and from voter i.
func (c *linzCluster) isolate(i int) {
	for k, p := range c.proxies {
		if k[0] == i || k[1] == i {
			p.SetMode(faultnet.Cut)
		}
	}
}

func (c *linzCluster) healAll() {
	for _, p := range c.proxies {
		p.Heal()
	}
	for _, p := range c.clients {
		p.Heal()
	}
}

func operatorContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// leader is the index of the voter that says it leads and that the others
// follow, or -1.
func (c *linzCluster) leader(ctx context.Context) (int, bool) {
	ids := map[string]int{}
	lead, agree := -1, true
	for i, conn := range c.conns {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := weftv1.NewAdminClient(conn).Status(operatorContext(cctx), &weftv1.StatusRequest{})
		cancel()
		if err != nil || st.LeaderId == "" {
			agree = false
			continue
		}
		ids[st.LeaderId]++
		if st.RaftState == "Leader" {
			lead = i
		}
	}
	return lead, agree && len(ids) == 1 && lead >= 0
}

// healthy waits until every voter answers and all follow one leader.
func (c *linzCluster) healthy(ctx context.Context, within time.Duration) (int, bool) {
	deadline := time.Now().Add(within)
	for {
		lead, ok := c.leader(ctx)
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			return lead, ok
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// retry runs a setup call until it succeeds or fails with something
// other than Unavailable.
func retry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f(operatorContext(ctx))
		cancel()
		if err == nil {
			return
		}
		if c := status.Code(err); (c != codes.Unavailable && c != codes.DeadlineExceeded) || time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// --- setup: a storage committee without storage processes, clients ---

type linzClient struct {
	idx   int
	token string
	blobs [linzBlobs]linzBlobSpec
	used  atomic.Int64 // operations drawn on it

	mu      sync.Mutex
	objects []linzKnownObject // objects its registrations were answered with
	certs   [linzBlobs][]byte // availability certificates, made on first use
}

type linzKnownObject struct {
	id   uint64
	slot int
}

type linzBlobSpec struct {
	length, stored uint64
	root           crypto.Digest
	id             crypto.BlobID
}

type linzSetup struct {
	epoch, quota uint64
	encoding     coding.Encoding
	members      []*weftv1.Member
	keys         map[string]*crypto.SecretKey
	clients      []*linzClient
}

// opsPerClient bounds a partition of the history: a client is retired
// after this many operations and a fresh one (new blobs, new quota) takes
// its place.
const opsPerClient = 40

func (c *linzCluster) setup(t *testing.T, seed int64, target int) *linzSetup {
	ctx := context.Background()
	if _, ok := c.healthy(ctx, 60*time.Second); !ok {
		t.Fatal("no leader within 60 s")
	}
	s := &linzSetup{keys: map[string]*crypto.SecretKey{}, encoding: coding.Encodings(linzShards)[0]}
	nodes := weftv1.NewNodeClient(c.conns[0])
	admin := weftv1.NewAdminClient(c.conns[0])
	for i := range 4 {
		id := fmt.Sprintf("sn%d", i)
		seedBytes := sha256.Sum256([]byte(fmt.Sprintf("linz-%d-%s", seed, id)))
		sk, err := crypto.KeyGen(seedBytes[:])
		if err != nil {
			t.Fatal(err)
		}
		s.keys[id] = sk
		req := &weftv1.RegisterNodeRequest{PublicKey: sk.PublicKey().Bytes(), ProofOfPossession: sk.ProvePossession().Bytes(), Address: id + ".invalid:7000"}
		if err := control.Sign(req, sk, shardmap.NodeID(id), 0, 1); err != nil {
			t.Fatal(err)
		}
		retry(t, "register "+id, func(ctx context.Context) error { _, err := nodes.RegisterNode(ctx, req); return err })
		retry(t, "stake "+id, func(ctx context.Context) error {
			_, err := admin.SetStake(ctx, &weftv1.SetStakeRequest{Node: id, Stake: 10})
			return err
		})
	}
	retry(t, "advance to epoch 1", func(ctx context.Context) error {
		adv, err := admin.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{})
		if err == nil {
			s.epoch = adv.Epoch
		}
		return err
	})
	retry(t, "committee", func(ctx context.Context) error {
		com, err := weftv1.NewClientClient(c.conns[0]).GetCommittee(ctx, &weftv1.GetCommitteeRequest{Epoch: s.epoch})
		if err == nil {
			s.members = com.Members
		}
		if c := status.Code(err); c == codes.NotFound || c == codes.FailedPrecondition {
			return status.Error(codes.Unavailable, err.Error()) // this voter has not applied the change yet
		}
		return err
	})
	params, err := coding.NewParams(linzShards, coding.WithEncoding(s.encoding))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	s.quota = 10 * mustStored(t, params, 1500)
	n := 2*target/opsPerClient + 12
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cl := &linzClient{idx: i}
				for b := range linzBlobs {
					mu.Lock()
					length := uint64(500 + rng.Intn(2000))
					mu.Unlock()
					root := crypto.Digest(sha256.Sum256(binary.BigEndian.AppendUint64([]byte(fmt.Sprintf("linz-%d-%d-", seed, i)), uint64(b))))
					cl.blobs[b] = linzBlobSpec{length: length, stored: mustStored(t, params, length), root: root,
						id: crypto.DeriveBlobID(uint8(s.encoding), linzShards, length, root)}
				}
				name := fmt.Sprintf("linz-%d", i)
				retry(t, "add client "+name, func(ctx context.Context) error {
					resp, err := admin.AddClient(ctx, &weftv1.AddClientRequest{Client: name, Quota: s.quota})
					if err == nil {
						cl.token = resp.Token
					}
					return err
				})
				mu.Lock()
				s.clients = append(s.clients, cl)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(s.clients, func(a, b *linzClient) int { return a.idx - b.idx })
	return s
}

func mustStored(t *testing.T, p coding.Params, length uint64) uint64 {
	n, err := p.EncodedSize(length)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// certificate is an availability certificate for blob b signed by every
// member of the epoch's committee (built once per blob).
func (s *linzSetup) certificate(cl *linzClient, slot int) ([]byte, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	b := &cl.blobs[slot]
	if cl.certs[slot] != nil {
		return cl.certs[slot], nil
	}
	cert := &crypto.Certificate{Type: crypto.MsgBlobStored, Epoch: s.epoch, BlobID: b.id, Signers: make([]byte, (len(s.members)+7)/8)}
	var parts []*crypto.Signature
	for i, m := range s.members {
		sig, err := s.keys[m.Node].SignMessage(s.epoch, crypto.BlobStored{BlobID: b.id})
		if err != nil {
			return nil, err
		}
		parts = append(parts, sig)
		cert.Signers[i/8] |= 1 << (i % 8)
	}
	sig, err := crypto.Aggregate(parts)
	if err != nil {
		return nil, err
	}
	cert.Signature = sig
	if cl.certs[slot], err = cert.MarshalBinary(); err != nil {
		return nil, err
	}
	return cl.certs[slot], nil
}

// --- the clients ---

type linzRun struct {
	c      *linzCluster
	s      *linzSetup
	start  time.Time
	target int64
	// localReads skips the read barrier: each voter answers from its own
	// state, as BlobStatus and GetClient do when asked directly — the
	// test then shows that the checker catches the stale reads.
	localReads bool

	done atomic.Int64 // operations recorded

	mu      sync.Mutex
	ops     []porcupine.Operation
	pending []int // indexes into ops of writes without a definite answer
	active  []*linzClient
	fresh   int // next unused client
	tally   map[string]int
}

func (r *linzRun) now() int64 { return time.Since(r.start).Nanoseconds() }

// pick returns a client to operate on: one of a few active ones, each
// replaced by a fresh client once it has had opsPerClient operations.
func (r *linzRun) pick(rng *rand.Rand) *linzClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	const active = 4
	for len(r.active) < active && r.fresh < len(r.s.clients) {
		r.active = append(r.active, r.s.clients[r.fresh])
		r.fresh++
	}
	i := rng.Intn(len(r.active))
	cl := r.active[i]
	if cl.used.Add(1) >= opsPerClient && r.fresh < len(r.s.clients) {
		r.active[i] = r.s.clients[r.fresh]
		r.fresh++
	}
	return cl
}

func (r *linzRun) note(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tally == nil {
		r.tally = map[string]int{}
	}
	r.tally[what]++
}

func (r *linzRun) record(op porcupine.Operation, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tally == nil {
		r.tally = map[string]int{}
	}
	r.tally[outcome]++
	if o := op.Output.(linzOutput); o.Unknown {
		r.pending = append(r.pending, len(r.ops))
	}
	r.ops = append(r.ops, op)
	r.done.Add(1)
}

// history is the recorded operations, those without an answer returning
// after everything else (they may have applied at any point after their
// invocation, or never).
func (r *linzRun) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := r.now() + int64(time.Hour)
	for _, i := range r.pending {
		r.ops[i].Return = end
	}
	return slices.Clone(r.ops)
}

func (r *linzRun) counts() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.tally))
	for k := range r.tally {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, r.tally[k])
	}
	return b.String()
}

// worker runs operations until the target is reached and the fault
// schedule is done; past the target it slows down to a trickle.
func (r *linzRun) worker(ctx context.Context, w int, rng *rand.Rand, faultsDone <-chan struct{}) {
	for seq := 0; ; seq++ {
		select {
		case <-faultsDone:
			if r.done.Load() >= r.target {
				return
			}
		default:
		}
		if r.done.Load() >= r.target {
			time.Sleep(250 * time.Millisecond)
		}
		r.one(ctx, w, seq, rng)
	}
}

func (r *linzRun) one(ctx context.Context, w, seq int, rng *rand.Rand) {
	cl := r.pick(rng)
	in := linzInput{Client: cl.idx, Slot: rng.Intn(linzBlobs)}
	in.Stored = cl.blobs[in.Slot].stored
	e := r.s.epoch
	switch p := rng.Intn(100); {
	case p < 22:
		in.Kind, in.EndEpoch, in.Deletable = opRegister, e+1+uint64(rng.Intn(4)), rng.Intn(10) < 7
	case p < 32:
		in.Kind = opCertify
	case p < 47:
		in.Kind, in.EndEpoch = opExtend, e+2+uint64(rng.Intn(6))
	case p < 62:
		in.Kind = opDelete
	case p < 80:
		in.Kind = opStatus
	case p < 93:
		in.Kind = opQuota
	default:
		in.Kind, in.Client, in.Slot, in.Stored = opEpoch, -1, 0, 0
	}
	if in.Kind == opExtend || in.Kind == opDelete {
		cl.mu.Lock()
		if len(cl.objects) == 0 {
			cl.mu.Unlock()
			in.Kind = opStatus
		} else {
			o := cl.objects[rng.Intn(len(cl.objects))]
			cl.mu.Unlock()
			in.Object, in.Slot = o.id, o.slot
			in.Stored = cl.blobs[o.slot].stored
		}
	}
	call := r.now()
	var out linzOutput
	var outcome string
	if in.Kind == opStatus || in.Kind == opQuota || in.Kind == opEpoch {
		var ok bool
		out, ok = r.read(ctx, rng, cl, in)
		if !ok {
			r.note("read without answer (dropped)")
			return
		}
		outcome = in.Kind.String() + " read"
	} else {
		out = r.write(ctx, rng, cl, in, fmt.Sprintf("linz-%d-%d", w, seq))
		switch {
		case out.Unknown:
			outcome = in.Kind.String() + " unknown"
		case out.Code != "":
			outcome = in.Kind.String() + " " + out.Code
		default:
			outcome = in.Kind.String() + " ok"
		}
		if in.Kind == opRegister && !out.Unknown && out.Code == "" {
			cl.mu.Lock()
			cl.objects = append(cl.objects, linzKnownObject{id: out.Object, slot: in.Slot})
			cl.mu.Unlock()
		}
	}
	r.record(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: out, Return: r.now()}, outcome)
}

func clientContext(ctx context.Context, cl *linzClient, requestID string) context.Context {
	md := []string{"authorization", "Bearer " + cl.token}
	if requestID != "" {
		md = append(md, "weft-request-id", requestID)
	}
	return metadata.AppendToOutgoingContext(ctx, md...)
}

// definite reports whether a write's error is the registry's answer (the
// FSM's rejection codes, mapped by the service) rather than a lost one.
func definite(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition,
		codes.ResourceExhausted, codes.PermissionDenied, codes.AlreadyExists:
		return true
	}
	return false
}

// write sends a write to a random voter, retrying with the same request
// ID (the control plane applies it once and answers a retry with the
// first outcome) until a definite answer or 15 s have passed.
func (r *linzRun) write(ctx context.Context, rng *rand.Rand, cl *linzClient, in linzInput, requestID string) linzOutput {
	b := cl.blobs[in.Slot]
	// A quarter of the writes give up after their first attempt that
	// goes unanswered, so that the history has writes whose outcome the
	// checker must find out from later reads.
	deadline := time.Now().Add(15 * time.Second)
	if rng.Intn(4) == 0 {
		deadline = time.Now()
	}
	for attempt := 0; ; attempt++ {
		conn := r.c.conns[rng.Intn(len(r.c.conns))]
		actx, cancel := context.WithTimeout(clientContext(ctx, cl, requestID), 3*time.Second)
		var out linzOutput
		var err error
		client := weftv1.NewClientClient(conn)
		switch in.Kind {
		case opRegister:
			var resp *weftv1.RegisterBlobResponse
			resp, err = client.RegisterBlob(actx, &weftv1.RegisterBlobRequest{Encoding: uint32(r.s.encoding), Shards: linzShards,
				Length: b.length, Root: b.root[:], EndEpoch: in.EndEpoch, Deletable: in.Deletable})
			if err == nil {
				out.Object = resp.ObjectId
				if crypto.BlobID(resp.BlobId) != b.id {
					out.Code = "wrong blob ID"
				}
			}
		case opCertify:
			var cert []byte
			if cert, err = r.s.certificate(cl, in.Slot); err != nil {
				panic(err)
			}
			var resp *weftv1.CertifyBlobResponse
			if resp, err = client.CertifyBlob(actx, &weftv1.CertifyBlobRequest{BlobId: b.id[:], Certificate: cert}); err == nil {
				out.CertifiedEpoch = resp.CertifiedEpoch
			}
		case opExtend:
			var resp *weftv1.ExtendBlobResponse
			if resp, err = client.ExtendBlob(actx, &weftv1.ExtendBlobRequest{BlobId: b.id[:], EndEpoch: in.EndEpoch, ObjectId: in.Object}); err == nil {
				out.Object = resp.ObjectId
			}
		case opDelete:
			var resp *weftv1.DeleteObjectResponse
			if resp, err = client.DeleteObject(actx, &weftv1.DeleteObjectRequest{ObjectId: in.Object}); err == nil {
				out.Refund, out.BlobEndsEpoch = resp.Refund, resp.BlobEndsEpoch
			}
		}
		cancel()
		if definite(err) {
			if err != nil {
				out = linzOutput{Code: status.Code(err).String()}
			}
			if attempt > 0 {
				r.note("writes answered on a retry")
			}
			return out
		}
		if attempt == 0 {
			r.note("writes whose first attempt got " + status.Code(err).String())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return linzOutput{Unknown: true}
		}
		time.Sleep(time.Duration(50+rng.Intn(250)) * time.Millisecond)
	}
}

// read answers a read linearizably through any voter: a linearizable watch
// (the leader confirms its leadership and applies everything it has
// logged) gives an index at or past every write acknowledged before the
// read began; the voter waits until it has applied it, and its local
// state then answers. Without an answer, the read is dropped: a read
// changes nothing.
func (r *linzRun) read(ctx context.Context, rng *rand.Rand, cl *linzClient, in linzInput) (linzOutput, bool) {
	conn := r.c.conns[rng.Intn(len(r.c.conns))]
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	watch := weftv1.NewWatchClient(conn)
	now, err := watch.WatchState(ctx, &weftv1.WatchStateRequest{Linearizable: !r.localReads})
	if err != nil {
		return linzOutput{}, false
	}
	if in.Kind == opEpoch {
		return linzOutput{Epoch: now.Epoch}, true
	}
	if now.Index > 0 && !r.localReads {
		st, err := watch.WatchState(ctx, &weftv1.WatchStateRequest{AfterIndex: now.Index - 1, TimeoutMs: 3000})
		if err != nil || st.Index < now.Index {
			return linzOutput{}, false
		}
	}
	client := weftv1.NewClientClient(conn)
	if in.Kind == opQuota {
		resp, err := client.GetClient(clientContext(ctx, cl, ""), &weftv1.GetClientRequest{})
		if err != nil {
			return linzOutput{}, false
		}
		return linzOutput{Used: resp.Client.Used}, true
	}
	b := cl.blobs[in.Slot]
	st, err := client.BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: b.id[:]})
	if status.Code(err) == codes.NotFound {
		return linzOutput{Code: "NotFound"}, true
	}
	if err != nil {
		return linzOutput{}, false
	}
	return linzOutput{Status: st.Status, EndEpoch: st.EndEpoch, CertifiedEpoch: st.CertifiedEpoch, Objects: int(st.Objects),
		PermanentEndEpoch: st.PermanentEndEpoch, Deleting: st.Deleting}, true
}

// --- faults ---

type linzFaults struct {
	mu     sync.Mutex
	counts map[string]int
	log    []string
}

const (
	faultKillLeader = "leader SIGKILL"
	faultStop       = "SIGSTOP/SIGCONT"
	faultPartition  = "partition"
)

func (f *linzFaults) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{faultKillLeader: 0, faultStop: 0, faultPartition: 0}
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

func (f *linzFaults) String() string {
	s := f.snapshot()
	return fmt.Sprintf("%d %s, %d %s, %d %s", s[faultKillLeader], faultKillLeader, s[faultStop], faultStop, s[faultPartition], faultPartition)
}

func (f *linzFaults) note(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	f.counts[kind]++
}

// run injects faults, one at a time on a healthy cluster, until each kind
// has happened min times: a kind still short of it is drawn at random.
func (f *linzFaults) run(ctx context.Context, t *testing.T, c *linzCluster, rng *rand.Rand, minimum int) {
	pause := func(lo, hi int) { time.Sleep(time.Duration(lo+rng.Intn(hi-lo)) * time.Millisecond) }
	for ctx.Err() == nil {
		var short []string
		for _, k := range []string{faultKillLeader, faultStop, faultPartition} {
			if f.snapshot()[k] < minimum {
				short = append(short, k)
			}
		}
		if len(short) == 0 {
			return
		}
		lead, ok := c.healthy(ctx, 60*time.Second)
		if !ok {
			t.Errorf("cluster not healthy 60 s after the last fault (faults so far: %s)", f.String())
			return
		}
		pause(300, 1500)
		kind := short[rng.Intn(len(short))]
		victim := lead // the leader always for a kill, else half the time
		if kind != faultKillLeader && rng.Intn(2) == 0 {
			victim = rng.Intn(len(c.voters))
		}
		v := c.voters[victim]
		switch kind {
		case faultKillLeader:
			c.kill(v)
			pause(200, 2000)
			c.start(t, v)
		case faultStop:
			c.signal(v, syscall.SIGSTOP)
			pause(500, 3000)
			c.signal(v, syscall.SIGCONT)
		case faultPartition:
			c.isolate(victim)
			if rng.Intn(2) == 0 {
				// The clients lose it too: calls in flight through it
				// (forwarded to the leader, perhaps applied) lose their
				// answers and are retried elsewhere under their IDs.
				c.clients[victim].SetMode(faultnet.Cut)
				kind += " (clients cut too)"
			}
			pause(500, 3000)
			c.healAll()
		}
		f.note(strings.TrimSuffix(kind, " (clients cut too)"))
		role := "follower"
		if victim == lead {
			role = "leader"
		}
		after, ok := c.healthy(ctx, 60*time.Second)
		now := "none"
		if ok {
			now = c.voters[after].id
		}
		t.Logf("fault %s on %s (the %s) done; leader %s → %s", kind, v.id, role, c.voters[lead].id, now)
	}
}
