//go:build soak && linux

package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
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

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// Issue #23's churn soak (`make soak`; build tag soak, so never part of
// `make test`). A `weft devnet` of processes (3 voters, SOAK_NODES storage
// nodes, a gateway; the voters advance the epoch on a timer) runs
// SOAK_EPOCHS epochs of churn: every epoch one storage node leaves (stake
// 0; once an epoch has moved its shards away and the handover is done it
// is stopped and removed) and a fresh one joins (`weft devnet add-node`);
// SIGKILLs of voters, storage nodes and the gateway, one process at a
// time, each restarted with `weft devnet restart`. Meanwhile blobs of 0 B
// to SOAK_MAX_BLOB are stored through the SDK and the gateway, each
// certificate verified against its epoch's committee, and every blob
// stored so far is read again and again through both, byte for byte. A
// read that fails is retried until it succeeds or soakReadBound passes
// (then it failed for good). At the end, once the network has settled,
// every blob is read through both and its certificate verified again. It
// writes SOAK_OUT (default SOAK.md at the repository's root). Everything
// random (the leavers, the kills, their moments, the sizes and contents of
// blobs) comes from SOAK_SEED: the same seed replays the same schedule.
func TestSoak(t *testing.T) {
	cfg := soakConfigFromEnv(t)
	t.Logf("seed %d (replay with SOAK_SEED=%d)", cfg.seed, cfg.seed)
	s := &soak{t: t, cfg: cfg, started: time.Now(), startLoad: soakLoad()}
	defer s.writeReport()
	s.run()
}

const (
	soakReadBound   = 2 * time.Minute // a read failing this long has failed for good
	soakStoreBound  = 5 * time.Minute
	soakStableBound = 5 * time.Minute // a handover longer than this is stuck
)

type soakConfig struct {
	seed                                       uint64
	epochs, nodes, shards, maxBlob, killsPerEp int
	epochDuration                              time.Duration
	out                                        string
}

func soakEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	c := soakConfig{
		seed:       uint64(time.Now().UnixNano()),
		epochs:     soakEnvInt(t, "SOAK_EPOCHS", 30),
		nodes:      soakEnvInt(t, "SOAK_NODES", 7),
		shards:     soakEnvInt(t, "SOAK_SHARDS", 100),
		maxBlob:    soakEnvInt(t, "SOAK_MAX_BLOB", 64<<20),
		killsPerEp: soakEnvInt(t, "SOAK_KILLS", 2),
		out:        "../SOAK.md",
	}
	if v := os.Getenv("SOAK_SEED"); v != "" {
		var err error
		if c.seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", v, err)
		}
	}
	c.epochDuration = 40 * time.Second
	if v := os.Getenv("SOAK_EPOCH_DURATION"); v != "" {
		var err error
		if c.epochDuration, err = time.ParseDuration(v); err != nil || c.epochDuration < 5*time.Second {
			t.Fatalf("SOAK_EPOCH_DURATION=%q: want a duration of at least 5s", v)
		}
	}
	if v := os.Getenv("SOAK_OUT"); v != "" {
		c.out = v
	}
	if c.nodes < 4 || c.shards < 4 || c.epochs < 1 {
		t.Fatalf("SOAK_NODES=%d SOAK_SHARDS=%d SOAK_EPOCHS=%d: want at least 4 nodes, 4 shards, 1 epoch", c.nodes, c.shards, c.epochs)
	}
	return c
}

// soakKill is one planned SIGKILL: at (after the epoch became Stable) the
// victim is killed, and restarted down later.
type soakKill struct {
	role, victim string
	at, down     time.Duration
	// handover: instead, killed 0–2 s after the step's epoch change,
	// in the handover.
	handover bool
}

// soakPlan is one epoch of the schedule, all drawn from the seed.
type soakPlan struct {
	leaver, joiner string
	kills          []soakKill
}

// soakSchedule draws the leavers, joiners and kills of every epoch. The
// joiner of epoch e is node-(nodes+e-1): `weft devnet add-node` names a
// node after the highest number so far. A leaver is any running node but
// the last joiner; a storage node killed is any running node, the leaver
// and the joiner included. The first kills are one of each role.
func soakSchedule(cfg soakConfig) []soakPlan {
	rng := mrand.New(mrand.NewPCG(cfg.seed, 100))
	var running []string
	for i := range cfg.nodes {
		running = append(running, fmt.Sprintf("node-%d", i))
	}
	roles := []string{"control", "node", "gateway"}
	rng.Shuffle(len(roles), func(i, j int) { roles[i], roles[j] = roles[j], roles[i] })
	plans := make([]soakPlan, cfg.epochs)
	lastJoiner, prevLeaver, killed := "", "", 0
	for e := range plans {
		if prevLeaver != "" {
			running = slices.DeleteFunc(running, func(id string) bool { return id == prevLeaver })
		}
		var candidates []string
		for _, id := range running {
			if id != lastJoiner {
				candidates = append(candidates, id)
			}
		}
		p := soakPlan{leaver: candidates[rng.IntN(len(candidates))], joiner: fmt.Sprintf("node-%d", cfg.nodes+e)}
		running = append(running, p.joiner)
		for range cfg.killsPerEp {
			role := ""
			if killed < len(roles) {
				role = roles[killed]
			} else {
				switch x := rng.IntN(10); {
				case x < 3:
					role = "control"
				case x < 8:
					role = "node"
				default:
					role = "gateway"
				}
			}
			killed++
			k := soakKill{role: role, victim: role,
				at:   time.Duration(rng.Int64N(int64(cfg.epochDuration))),
				down: 500*time.Millisecond + time.Duration(rng.Int64N(int64(3500*time.Millisecond)))}
			switch role {
			case "control":
				k.victim = fmt.Sprintf("control-%d", 1+rng.IntN(3))
			case "node":
				k.victim = running[rng.IntN(len(running))]
			}
			p.kills = append(p.kills, k)
		}
		slices.SortFunc(p.kills, func(a, b soakKill) int { return int(a.at - b.at) })
		if n := len(p.kills); n > 0 && rng.IntN(2) == 0 {
			p.kills[n-1].handover = true
		}
		plans[e] = p
		lastJoiner, prevLeaver = p.joiner, p.leaver
	}
	return plans
}

// soakSize draws the size of a writer's i-th blob: a few empty blobs,
// most up to 256 KiB and some up to max, each range log-uniform; every
// 250th (from the 10th) is exactly max.
func soakSize(rng *mrand.Rand, i, max int) int {
	logUniform := func(lo, hi int) int {
		if hi <= lo {
			return hi
		}
		return int(math.Exp(math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
	}
	small := min(256<<10, max)
	p := rng.IntN(1000)
	switch {
	case i%250 == 10:
		return max
	case p < 30:
		return 0
	case p < 950:
		return logUniform(1, small)
	default:
		return logUniform(small, max)
	}
}

// soakBytes is the content of a blob: a function of its seed and size,
// so the ledger keeps seeds rather than bytes and regenerates them to
// compare.
func soakBytes(seed uint64, size int) []byte {
	rng := mrand.New(mrand.NewPCG(seed, uint64(size)))
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// soakBlob is a certified blob: it must read back until the end.
type soakBlob struct {
	id    crypto.BlobID
	cert  *crypto.Certificate
	size  int
	seed  uint64
	via   string // sdk or gateway
	epoch uint64 // the epoch it was certified in
}

// soakReadFailure is a failed read attempt (or a read failed for good).
type soakReadFailure struct {
	at    time.Time
	epoch uint64
	via   string
	blob  soakBlob
	err   string
	waits time.Duration // how long the read had been failing
}

// soakEpoch is what one epoch of the schedule did.
type soakEpoch struct {
	epoch              uint64 // the epoch the leaver's shards left in
	leaver, joiner     string
	advanced, stable   time.Time
	epochsPassed       int
	handover           time.Duration   // of the epoch the leaver left in
	handovers          []time.Duration // of every epoch change in this step
	kills              []string
	certified, blobsGB float64
	note               string
	samples            []soakSample
}

type soak struct {
	t         *testing.T
	cfg       soakConfig
	started   time.Time
	startLoad string
	bin       string
	readyPath string
	dataDir   string
	ready     soakReady
	c         *client.Client
	hc        *http.Client
	plans     []soakPlan

	mu         sync.Mutex
	ledger     []soakBlob
	epochs     []soakEpoch
	startEpoch uint64
	curEpoch   atomic.Uint64
	seenAt     map[uint64]time.Time // when the poller first saw each epoch
	stableAt   map[uint64]time.Time // and first saw it Stable
	phase      string               // the latest phase the poller saw

	storeFails    map[string]int // per path
	storeErrors   []string       // the first few
	reads         map[string]int // right bytes, per path
	attemptFails  map[string]int // failed attempts, per path
	attemptErrs   []soakReadFailure
	failedForGood []soakReadFailure
	wrongBytes    []string
	badCerts      []string
	longestWait   soakReadFailure // waits: its wait
	longestRead   time.Duration
	retriedReads  int
	sweeps        map[string][]time.Duration
	kills         map[string]int
	restartWaits  map[string]time.Duration // longest back-after per role
	problems      []string                 // anything else that failed the soak

	samplesStart, samplesWarm, samplesEnd []soakSample
	lost                                  []string
	lostIDs                               map[crypto.BlobID]bool
	finalReads                            int
	finalTook, settleTook                 time.Duration
	finished                              time.Time
	dataBytes                             float64
	reportDone                            bool
}

func (s *soak) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// fail records a problem that fails the soak (the report lists it).
func (s *soak) fail(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.problems = append(s.problems, msg)
	s.mu.Unlock()
	s.t.Error(msg)
}

func (s *soak) fatal(format string, args ...any) {
	s.t.Helper()
	s.fail(format, args...)
	s.t.FailNow()
}

func (s *soak) run() {
	t := s.t
	s.storeFails, s.reads, s.attemptFails = map[string]int{}, map[string]int{}, map[string]int{}
	s.lostIDs = map[crypto.BlobID]bool{}
	s.sweeps, s.kills, s.restartWaits = map[string][]time.Duration{}, map[string]int{}, map[string]time.Duration{}
	s.plans = soakSchedule(s.cfg)
	s.bin = buildWeft(t)
	dir := t.TempDir()
	s.dataDir = filepath.Join(dir, "data")
	_, s.readyPath = launchDevnetWithin(t, 3*time.Minute, s.bin, dir, "--nodes", itoa(s.cfg.nodes), "--shards", itoa(s.cfg.shards),
		"--metrics", "--epoch-duration", s.cfg.epochDuration.String())
	var err error
	if s.ready, err = readSoakReady(s.readyPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		r, _ := readSoakReady(s.readyPath)
		for _, p := range r.Processes {
			b, _ := os.ReadFile(p.Log)
			t.Logf("--- %s log (tail) ---\n%s", p.ID, tail(string(b), 2000))
		}
	})
	s.c, err = client.New(client.Config{Control: s.ready.Control, Token: s.ready.ClientToken, NodeTimeout: 30 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.c.Close()
	s.hc = &http.Client{Timeout: soakStoreBound}
	ctx := context.Background()
	st, err := watchState(ctx, s.ready.Control)
	if err != nil {
		t.Fatal(err)
	}
	s.startEpoch = st.Epoch
	s.curEpoch.Store(st.Epoch)
	s.samplesStart = sampleProcs(s.ready)
	s.seenAt, s.stableAt = map[uint64]time.Time{st.Epoch: time.Now()}, map[uint64]time.Time{}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go s.pollState(pollCtx)
	s.logf("devnet up: %d nodes, %d shards, epoch %d, epoch timer %v", s.cfg.nodes, s.cfg.shards, st.Epoch, s.cfg.epochDuration)

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			stopTraffic()
			wg.Wait()
		}
	}
	defer stopAll()
	for i, via := range []string{"sdk", "gateway"} {
		wg.Go(func() { s.writer(trafficCtx, via, mrand.New(mrand.NewPCG(s.cfg.seed, uint64(200+i)))) })
		wg.Go(func() { s.reader(trafficCtx, via, i) })
	}

	for e, plan := range s.plans {
		s.epoch(ctx, e, plan)
		if t.Failed() {
			break
		}
	}
	stopAll()
	if t.Failed() {
		return
	}
	last := s.plans[len(s.plans)-1].leaver
	if err := s.stopNode(ctx, last); err != nil {
		s.fatal("stopping %s, which left in the last epoch: %v", last, err)
	}
	s.finalCheck(ctx)
}

// epoch runs one epoch of the schedule: the previous leaver stopped and
// removed, this epoch's leaver unstaked and a node added, the kills; then
// it waits for the epoch change that moves the leaver's shards away and
// for its handover to end.
func (s *soak) epoch(ctx context.Context, e int, plan soakPlan) {
	t := s.t
	stableAt := time.Now()
	rec := soakEpoch{leaver: plan.leaver, joiner: plan.joiner}
	if e > 0 {
		prev := s.plans[e-1].leaver
		if err := s.stopNode(ctx, prev); err != nil {
			s.fatal("epoch %d: stopping %s, which left: %v", e+1, prev, err)
		}
	}
	if out, err := adminRetry(t, s.bin, s.fullReady(), "node", "stake", plan.leaver, "0"); err != nil {
		s.fatal("epoch %d: stake %s 0: %v\n%s", e+1, plan.leaver, err, out)
	}
	out, err := exec.Command(s.bin, "devnet", "add-node", "--ready-file", s.readyPath).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), plan.joiner+" ") {
		s.fatal("epoch %d: add-node (want %s): %v\n%s", e+1, plan.joiner, err, out)
	}
	from := s.curEpoch.Load()
	s.logf("epoch %d of %d (network epoch %d): %s leaves, %s joins; %d blobs certified so far", e+1, s.cfg.epochs, from, plan.leaver, plan.joiner, len(s.all()))
	for _, k := range plan.kills {
		if k.handover {
			waitFor(t, s.cfg.epochDuration+soakStableBound, "the epoch change", func() bool { return s.curEpoch.Load() > from })
			time.Sleep(k.at % (2 * time.Second))
		} else if d := time.Until(stableAt.Add(k.at)); d > 0 {
			time.Sleep(d)
		}
		rec.kills = append(rec.kills, s.killAndRestart(ctx, k))
		if t.Failed() {
			return
		}
	}
	// The epoch changes on the timer; the leaver must be gone from the
	// shard map (owner and holder) in a Stable epoch.
	deadline := time.Now().Add(s.cfg.epochDuration + 2*soakStableBound)
	var last *weftv1.WatchStateResponse
	for {
		st, err := watchState(ctx, s.ready.Control)
		if err == nil {
			last = st
			if st.Epoch > from && st.Phase == "stable" && !slices.Contains(st.Owners, plan.leaver) && !slices.Contains(st.Holders, plan.leaver) {
				break
			}
		}
		if time.Now().After(deadline) {
			phase := "?"
			if last != nil {
				phase = fmt.Sprintf("epoch %d %s", last.Epoch, last.Phase)
			}
			es, _ := adminAt(t, s.bin, s.fullReady(), "epoch", "status")
			s.fatal("epoch %d: %s still owns or holds shards, or the handover is stuck, after %v (%s)\n%s", e+1, plan.leaver, time.Since(stableAt).Round(time.Second), phase, es)
		}
		time.Sleep(250 * time.Millisecond)
	}
	rec.epoch = last.Epoch
	rec.epochsPassed = int(last.Epoch - from)
	s.mu.Lock()
	if _, ok := s.stableAt[last.Epoch]; !ok {
		s.stableAt[last.Epoch] = time.Now()
	}
	for ep := from + 1; ep <= last.Epoch; ep++ {
		if seen, ok := s.seenAt[ep]; ok && !s.stableAt[ep].IsZero() {
			rec.handovers = append(rec.handovers, s.stableAt[ep].Sub(seen))
		}
	}
	rec.advanced, rec.stable = s.seenAt[last.Epoch], s.stableAt[last.Epoch]
	s.mu.Unlock()
	rec.handover = -1 // unknown: the poller never saw the epoch begin
	if !rec.advanced.IsZero() {
		rec.handover = rec.stable.Sub(rec.advanced)
	}
	if rec.epochsPassed > 1 {
		rec.note = fmt.Sprintf("%d epoch changes: the timer fired before the stake change landed", rec.epochsPassed)
	}
	rec.samples = sampleProcs(s.mustReady())
	all := s.all()
	rec.certified = float64(len(all))
	for _, b := range all {
		rec.blobsGB += float64(b.size) / (1 << 30)
	}
	s.mu.Lock()
	s.epochs = append(s.epochs, rec)
	if e == 0 {
		s.samplesWarm = rec.samples
	}
	s.mu.Unlock()
	s.logf("epoch %d done: network epoch %d, handover %v, kills %v", e+1, last.Epoch, rec.handover.Round(100*time.Millisecond), rec.kills)
}

// pollState watches the epoch and its phase every 250 ms: when each epoch
// was first seen, and first seen Stable (its handover done).
func (s *soak) pollState(ctx context.Context) {
	for ctx.Err() == nil {
		if st, err := watchState(ctx, s.ready.Control); err == nil {
			now := time.Now()
			s.mu.Lock()
			if _, ok := s.seenAt[st.Epoch]; !ok {
				s.seenAt[st.Epoch] = now
			}
			if _, ok := s.stableAt[st.Epoch]; !ok && st.Phase == "stable" {
				s.stableAt[st.Epoch] = now
			}
			s.phase = st.Phase
			if st.Epoch > s.curEpoch.Load() {
				s.curEpoch.Store(st.Epoch)
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *soak) fullReady() fullReady {
	return fullReady{Control: s.ready.Control, OperatorToken: s.ready.OperatorToken, ClientToken: s.ready.ClientToken}
}

func (s *soak) mustReady() soakReady {
	r, err := readSoakReady(s.readyPath)
	if err != nil {
		s.fatal("ready file: %v", err)
	}
	return r
}

func (s *soak) proc(id string) soakProc {
	for _, p := range s.mustReady().Processes {
		if p.ID == id {
			return p
		}
	}
	s.fatal("%s is not in the ready file", id)
	return soakProc{}
}

// stopNode stops a node that left (SIGTERM, SIGKILL after 30 s) and
// removes it from the registry.
func (s *soak) stopNode(ctx context.Context, id string) error {
	st, err := watchState(ctx, s.ready.Control)
	if err != nil {
		return err
	}
	if slices.Contains(st.Owners, id) || slices.Contains(st.Holders, id) {
		return fmt.Errorf("%s still owns or holds shards in epoch %d (%s)", id, st.Epoch, st.Phase)
	}
	p := s.proc(id)
	if soakRunning(p.PID) {
		syscall.Kill(p.PID, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for soakRunning(p.PID) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if soakRunning(p.PID) {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if out, err := adminRetry(s.t, s.bin, s.fullReady(), "node", "remove", id); err != nil {
		return fmt.Errorf("node remove: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// killAndRestart SIGKILLs a process, restarts it after k.down and waits
// until it serves again.
func (s *soak) killAndRestart(ctx context.Context, k soakKill) string {
	p := s.proc(k.victim)
	if !soakRunning(p.PID) {
		s.fatal("%s (pid %d) should be running but is not", k.victim, p.PID)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		s.fatal("kill %s (pid %d): %v", k.victim, p.PID, err)
	}
	for soakRunning(p.PID) {
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	epoch, phase := s.curEpoch.Load(), s.phase
	s.kills[k.role]++
	s.mu.Unlock()
	time.Sleep(k.down)
	restarted := time.Now()
	if out, err := exec.Command(s.bin, "devnet", "restart", k.victim, "--ready-file", s.readyPath).CombinedOutput(); err != nil {
		s.fatal("restart %s: %v\n%s", k.victim, err, out)
	}
	s.awaitBack(ctx, k.role, p)
	back := time.Since(restarted)
	s.mu.Lock()
	s.restartWaits[k.role] = max(s.restartWaits[k.role], back)
	s.mu.Unlock()
	return fmt.Sprintf("%s (epoch %d %s, down %.1f s, back %.1f s)", k.victim, epoch, phase, k.down.Seconds(), back.Seconds())
}

// awaitBack waits until a restarted process serves: a voter caught up
// with the leader, a node in the current epoch, the gateway answering.
func (s *soak) awaitBack(ctx context.Context, role string, p soakProc) {
	what := p.ID + " back"
	ok := func() bool { return false }
	switch role {
	case "control":
		what += " and caught up"
		ok = func() bool {
			peers, ok := listPeers(s.t, s.bin, s.fullReady())
			if !ok || len(peers) != 3 {
				return false
			}
			for _, p := range peers {
				if !p.caughtUp() {
					return false
				}
			}
			return true
		}
	case "node":
		what += " and serving the current epoch"
		ok = func() bool {
			st, err := watchState(ctx, s.ready.Control)
			if err != nil {
				return false
			}
			ns, err := storageNodeStatus(ctx, p.Address)
			return err == nil && ns.Epoch == st.Epoch
		}
	case "gateway":
		what += " and answering"
		hc := http.Client{Timeout: 5 * time.Second}
		ok = func() bool {
			resp, err := hc.Get(s.ready.Gateway + "/v1/blobs/not-an-id/status")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}
	}
	for deadline := time.Now().Add(3 * time.Minute); !ok(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.fatal("timed out waiting for %s", what)
		}
	}
}

func (s *soak) all() []soakBlob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ledger)
}

// writer stores blobs through one path until ctx ends, a pause of 1–3 s
// after each, and verifies each certificate.
func (s *soak) writer(ctx context.Context, via string, rng *mrand.Rand) {
	for i := 0; ctx.Err() == nil; i++ {
		size := soakSize(rng, i, s.cfg.maxBlob)
		seed := rng.Uint64()
		pause := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		blob := soakBytes(seed, size)
		sctx, done := context.WithTimeout(ctx, soakStoreBound)
		var id crypto.BlobID
		var cert *crypto.Certificate
		var err error
		if via == "sdk" {
			id, cert, err = s.c.Store(sctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 1000})
		} else {
			id, cert, err = gatewayPut(sctx, s.hc, s.ready.Gateway, s.ready.ClientToken, blob)
		}
		done()
		blob = nil
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.mu.Lock()
			s.storeFails[via]++
			if len(s.storeErrors) < 20 {
				s.storeErrors = append(s.storeErrors, fmt.Sprintf("%s epoch %d, %s, %d bytes: %v", time.Now().UTC().Format("15:04:05"), s.curEpoch.Load(), via, size, err))
			}
			s.mu.Unlock()
		case cert == nil || cert.BlobID != id:
			s.fail("%s store of %s returned a certificate for another blob: %+v", via, id, cert)
		default:
			if err := s.verifyCert(ctx, cert); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.mu.Lock()
				s.badCerts = append(s.badCerts, fmt.Sprintf("%s (%s, %d bytes): %v", id, via, size, err))
				s.mu.Unlock()
				s.fail("certificate of %s stored through the %s: %v", id, via, err)
			}
			s.mu.Lock()
			s.ledger = append(s.ledger, soakBlob{id: id, cert: cert, size: size, seed: seed, via: via, epoch: cert.Epoch})
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// verifyCert checks a certificate with the SDK's verification against
// its epoch's committee; only fetching the committee is retried.
func (s *soak) verifyCert(ctx context.Context, cert *crypto.Certificate) error {
	var view *crypto.CommitteeView
	var err error
	for deadline := time.Now().Add(soakReadBound); ; time.Sleep(time.Second) {
		if view, err = s.c.Committee(ctx, cert.Epoch); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the committee of epoch %d: %w", cert.Epoch, err)
		}
	}
	return client.Verify(cert, view)
}

// reader reads every blob stored so far through one path, sweep after
// sweep, each read retried until it succeeds or soakReadBound passes.
func (s *soak) reader(ctx context.Context, via string, offset int) {
	for ctx.Err() == nil {
		blobs := s.all()
		if len(blobs) == 0 {
			time.Sleep(time.Second)
			continue
		}
		start := time.Now()
		for j := range blobs {
			b := blobs[(j+offset*len(blobs)/2)%len(blobs)]
			if !s.readRetrying(ctx, via, b, false) {
				return
			}
		}
		s.mu.Lock()
		s.sweeps[via] = append(s.sweeps[via], time.Since(start))
		s.mu.Unlock()
	}
}

// readOnce reads a blob through one path and compares it with what was
// stored.
func (s *soak) readOnce(ctx context.Context, via string, b soakBlob) (wrong bool, err error) {
	rctx, done := context.WithTimeout(ctx, soakReadBound)
	defer done()
	var got []byte
	if via == "sdk" {
		got, err = s.c.Read(rctx, b.id, client.ReadOptions{})
	} else {
		got, err = gatewayGet(rctx, s.hc, s.ready.Gateway, b.id)
	}
	if err != nil {
		return false, err
	}
	if !bytes.Equal(got, soakBytes(b.seed, b.size)) {
		return true, fmt.Errorf("%d other bytes, want %d", len(got), b.size)
	}
	return false, nil
}

// readRetrying reads a blob until it reads or soakReadBound has passed;
// false when ctx ended. final: the end's check (counted as lost).
func (s *soak) readRetrying(ctx context.Context, via string, b soakBlob, final bool) bool {
	start := time.Now()
	var failures []soakReadFailure
	for {
		wrong, err := s.readOnce(ctx, via, b)
		if ctx.Err() != nil {
			return false
		}
		took := time.Since(start)
		if wrong {
			s.mu.Lock()
			s.wrongBytes = append(s.wrongBytes, fmt.Sprintf("%s read of %s (%d bytes via %s, epoch %d): %v", via, b.id, b.size, b.via, b.epoch, err))
			s.mu.Unlock()
			s.fail("%s read of certified %s (stored via %s) returned wrong bytes: %v", via, b.id, b.via, err)
			return true
		}
		if err == nil {
			s.mu.Lock()
			s.reads[via]++
			if final {
				s.finalReads++
			}
			s.longestRead = max(s.longestRead, took)
			if len(failures) > 0 {
				s.retriedReads++
				if took > s.longestWait.waits {
					last := failures[len(failures)-1]
					last.waits = took
					s.longestWait = last
				}
			}
			s.mu.Unlock()
			return true
		}
		f := soakReadFailure{at: time.Now(), epoch: s.curEpoch.Load(), via: via, blob: b, err: err.Error(), waits: took}
		failures = append(failures, f)
		s.mu.Lock()
		s.attemptFails[via]++
		if len(s.attemptErrs) < 40 {
			s.attemptErrs = append(s.attemptErrs, f)
		}
		s.mu.Unlock()
		if took >= soakReadBound {
			s.mu.Lock()
			s.failedForGood = append(s.failedForGood, f)
			if final {
				s.lostIDs[b.id] = true
				s.lost = append(s.lost, fmt.Sprintf("%s (%d bytes via %s, epoch %d) through the %s: %v", b.id, b.size, b.via, b.epoch, via, err))
			}
			s.mu.Unlock()
			s.fail("%s read of certified %s (%d bytes via %s, epoch %d) failed for %v: %v", via, b.id, b.size, b.via, b.epoch, took.Round(time.Second), err)
			return true
		}
		time.Sleep(time.Second)
	}
}

// finalCheck waits for the network to settle, then reads every certified
// blob through both paths and verifies its certificate again.
func (s *soak) finalCheck(ctx context.Context) {
	t := s.t
	start := time.Now()
	waitFor(t, soakStableBound, "a Stable epoch", func() bool {
		st, err := watchState(ctx, s.ready.Control)
		return err == nil && st.Phase == "stable"
	})
	settled := false
	for deadline := time.Now().Add(3 * time.Minute); !settled && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		settled = true
		for _, p := range s.mustReady().Processes {
			if p.Role != "node" || !soakRunning(p.PID) {
				continue
			}
			ns, err := storageNodeStatus(ctx, p.Address)
			if err != nil || ns.RecoveryBacklog != 0 {
				settled = false
				break
			}
		}
	}
	if !settled {
		s.logf("recovery has not settled after 3 minutes; reading anyway")
	}
	s.settleTook = time.Since(start)
	blobs := s.all()
	s.logf("final check of %d blobs", len(blobs))
	start = time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(blobs); i = int(next.Add(1) - 1) {
				b := blobs[i]
				if err := s.c.VerifyCertificate(ctx, b.cert); err != nil {
					s.mu.Lock()
					s.badCerts = append(s.badCerts, fmt.Sprintf("final: %s (%s, %d bytes): %v", b.id, b.via, b.size, err))
					s.mu.Unlock()
					s.fail("final: certificate of %s: %v", b.id, err)
				}
				for _, via := range []string{"sdk", "gateway"} {
					s.readRetrying(ctx, via, b, true)
				}
			}
		})
	}
	wg.Wait()
	s.finalTook = time.Since(start)
	time.Sleep(10 * time.Second) // idle, as at the start
	s.samplesEnd = sampleProcs(s.mustReady())
	s.dataBytes = soakDirBytes(s.dataDir)
	s.finished = time.Now()
	s.logf("done: %d blobs, final check in %v", len(blobs), s.finalTook.Round(time.Second))
}

// soakDirBytes is the bytes of the files under dir.
func soakDirBytes(dir string) float64 {
	var n float64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += float64(info.Size())
		}
		return nil
	})
	return n
}
