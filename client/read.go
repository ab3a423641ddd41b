package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ReadOptions configures one read.
type ReadOptions struct {
	// Progress, if set, is called as sliver bytes arrive: done of total
	// (the total grows when a sliver has to be fetched again).
	Progress func(done, total int64)
	// Stats, if set, receives the read's per-stage timings.
	Stats *ReadStats
	// NoChallengeWait: when an open storage-challenge round samples the
	// blob (no node serves it until the round closes), fail at once with
	// ErrUnderChallenge instead of waiting for the round to close.
	NoChallengeWait bool

	// decodeGate, if set, is held while decoding: a file's chunks are
	// fetched ReadAhead at once but decoded (and re-encoded for the
	// consistent-read check, ≈ 3× the chunk in fresh memory) one at a
	// time, which bounds a file read's memory at little cost in speed
	// (the codec already uses every core).
	decodeGate chan struct{}
}

// ErrUnderChallenge is wrapped by a read refused because an open
// storage-challenge round samples the blob (ReadOptions.NoChallengeWait).
var ErrUnderChallenge = errors.New("client: the blob is sampled by an open storage-challenge round; it reads again when the round closes")

// Read returns a certified blob's bytes (DESIGN §8): blob status and the
// shard layout from the control plane, metadata from any node that sends
// one matching the ID, then primary slivers from the shards' owners (or
// holders, during a handover) until nP of them decode, and the bytes only
// once they re-encode to the blob ID. Up to 2f shards may be missing or
// lying. The whole blob is held in memory: no byte can be handed out
// before the consistent-read check has passed on all of them.
//
// Slivers are decoded optimistically, unverified: the consistent-read
// check re-encodes the result anyway, and only if it fails are slivers
// checked one by one, the bad ones dropped and replaced by verified ones.
//
// A blob sampled by an open storage-challenge round is served by no node
// until the round closes (no one may rebuild a challenged sliver on
// demand): Read then waits for the round to close and reads again.
func (c *Client) Read(ctx context.Context, id crypto.BlobID, opts ReadOptions) ([]byte, error) {
	return c.waitOutChallenges(ctx, id, opts, func() ([]byte, error) { return c.readOnce(ctx, id, opts) })
}

// waitOutChallenges runs a read, and again each time it failed because an
// open storage-challenge round samples the blob, once the round has closed
// (or fails with ErrUnderChallenge at once, opts.NoChallengeWait).
func (c *Client) waitOutChallenges(ctx context.Context, id crypto.BlobID, opts ReadOptions, read func() ([]byte, error)) ([]byte, error) {
	for {
		blob, err := read()
		if err == nil || !underChallenge(err) {
			return blob, err
		}
		if opts.NoChallengeWait {
			return nil, fmt.Errorf("%w: %v", ErrUnderChallenge, err)
		}
		c.cfg.Logger.Info("read: the blob is under a storage challenge; waiting for the round to close", "blob", id)
		if werr := c.awaitChallengeClosed(ctx); werr != nil {
			return nil, fmt.Errorf("%w (waiting for the challenge round to close: %v)", err, werr)
		}
	}
}

// underChallenge reports whether a read failed because nodes refused the
// blob's slivers while a challenge round samples it.
func underChallenge(err error) bool {
	var ne *NotEnoughSliversError
	if !errors.As(err, &ne) {
		return false
	}
	return slices.ContainsFunc(ne.Failures, func(f *SliverError) bool { return embargoed(f.Err) })
}

// awaitChallengeClosed polls the latest challenge round until it is closed.
func (c *Client) awaitChallengeClosed(ctx context.Context) error {
	for {
		var open bool
		err := c.controlCall(ctx, "GetChallenge", func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := weftv1.NewClientClient(conn).GetChallenge(ctx, &weftv1.GetChallengeRequest{})
			if err == nil {
				open = resp.Open
			}
			return err
		})
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if !open {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Client) readOnce(ctx context.Context, id crypto.BlobID, opts ReadOptions) ([]byte, error) {
	start := time.Now()
	var stats ReadStats
	defer reportStats(opts, &stats, start)
	st, err := c.readableStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := c.openRead(ctx, st, opts, &stats, start)
	if err != nil {
		return nil, err
	}
	blob, _, err := r.run(ctx, nil)
	stats.ReceivedBytes = r.prog.bytes()
	return blob, err
}

// reportStats hands a read's stats to the caller who asked for them.
func reportStats(opts ReadOptions, stats *ReadStats, start time.Time) {
	stats.Total = time.Since(start)
	if opts.Stats != nil {
		*opts.Stats = *stats
	}
}

// readableStatus is the blob's registry entry if the blob may be read:
// otherwise the typed error (not found, invalid, expired, not certified).
func (c *Client) readableStatus(ctx context.Context, id crypto.BlobID) (*BlobStatus, error) {
	st, err := c.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := st.Err(); err != nil {
		return nil, err
	}
	return st, nil
}

// openRead prepares a read of a readable blob: where its shards are, its
// codec, and metadata that hashes to its ID.
func (c *Client) openRead(ctx context.Context, st *BlobStatus, opts ReadOptions, stats *ReadStats, start time.Time) (*read, error) {
	id := st.ID
	lay, err := c.layout(ctx, st)
	if err != nil {
		return nil, err
	}
	stats.Lookup = time.Since(start)

	codec, err := c.codec(int(st.Shards), st.Encoding)
	if err != nil {
		return nil, err
	}
	if st.Length > codec.Params().MaxBlobLength {
		return nil, fmt.Errorf("%w: blob %s has %d bytes, this client reads at most %d", ErrBlobTooLarge, id, st.Length, codec.Params().MaxBlobLength)
	}
	t := time.Now()
	meta, err := c.fetchMetadata(ctx, id, lay)
	stats.Metadata = time.Since(t)
	if err != nil {
		return nil, err
	}
	stats.Length = meta.Length
	symbolSize, err := codec.Params().SymbolSize(meta.Length)
	if err != nil {
		return nil, err
	}
	return &read{
		c: c, id: id, meta: meta, codec: codec, params: codec.Params(), symbolSize: symbolSize,
		lay: lay, prog: newProgress(opts.Progress), stats: stats, decodeGate: opts.decodeGate,
	}, nil
}

// source is a node to ask for a shard's data.
type source struct {
	node, addr string
}

// layout says where each shard's data is during a read.
type layout struct {
	epoch   uint64
	sources [][]source // per shard, in the order to ask
	nodes   []source   // every distinct node, for metadata
}

// layout reads the current epoch's owners and holders and the nodes'
// addresses. A blob certified before a shard changed hands is read first
// from the shard's holder, anything newer first from its owner; the other
// is the fallback (DESIGN §5).
func (c *Client) layout(ctx context.Context, st *BlobStatus) (*layout, error) {
	var ws *weftv1.WatchStateResponse
	var com *Committee
	// The two reads are separate calls: if an epoch change falls between
	// them, read both again.
	for attempt := 0; ; attempt++ {
		err := c.controlCall(ctx, "WatchState", func(ctx context.Context, conn *grpc.ClientConn) error {
			var err error
			ws, err = weftv1.NewWatchClient(conn).WatchState(ctx, &weftv1.WatchStateRequest{})
			return err
		})
		if err != nil {
			return nil, err
		}
		if com, err = c.CommitteeInfo(ctx, 0); err != nil {
			return nil, err
		}
		if com.Epoch == ws.Epoch || attempt == 2 {
			break
		}
	}
	if com.Epoch != ws.Epoch {
		return nil, fmt.Errorf("client: the epoch kept changing while reading the shard layout (state %d, committee %d)", ws.Epoch, com.Epoch)
	}
	n := len(ws.Owners)
	if n != int(st.Shards) || len(ws.Holders) != n {
		return nil, fmt.Errorf("client: blob %s is encoded for %d shards, the control plane lists %d owners and %d holders", st.ID, st.Shards, n, len(ws.Holders))
	}
	addrs := make(map[string]string)
	for _, m := range com.Members {
		addrs[string(m.Node)] = m.Address
	}
	// Holders that left the committee serve until their successors are
	// done; their addresses are in the committees they were members of.
	for e := com.Epoch - 1; e >= 1 && e+3 >= com.Epoch; e-- {
		if !slices.ContainsFunc(ws.Holders, func(h string) bool { _, ok := addrs[h]; return h != "" && !ok }) {
			break
		}
		old, err := c.CommitteeInfo(ctx, e)
		if err != nil {
			c.log.Warn("looking up a past committee for holders' addresses", "epoch", e, "err", err)
			break
		}
		for _, m := range old.Members {
			if _, ok := addrs[string(m.Node)]; !ok {
				addrs[string(m.Node)] = m.Address
			}
		}
	}
	lay := &layout{epoch: ws.Epoch, sources: make([][]source, n)}
	seen := make(map[string]bool)
	add := func(shard int, node string) {
		if node == "" || addrs[node] == "" || slices.ContainsFunc(lay.sources[shard], func(s source) bool { return s.node == node }) {
			return
		}
		s := source{node: node, addr: addrs[node]}
		lay.sources[shard] = append(lay.sources[shard], s)
		if !seen[node] {
			seen[node] = true
			lay.nodes = append(lay.nodes, s)
		}
	}
	for shard := range n {
		owner, holder := ws.Owners[shard], ws.Holders[shard]
		if holder != owner && st.CertifiedEpoch < ws.Epoch {
			add(shard, holder)
		}
		add(shard, owner)
		add(shard, holder)
	}
	return lay, nil
}

// fetchMetadata asks nodes, a few at once and in random order (to spread
// the load, and so that one node that stalls does not hold the read),
// until one sends metadata that hashes to the blob ID.
func (c *Client) fetchMetadata(ctx context.Context, id crypto.BlobID, lay *layout) (*crypto.Metadata, error) {
	const batch = 3
	nodes := slices.Clone(lay.nodes)
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	type answer struct {
		meta *crypto.Metadata
		err  error
		from source
	}
	var errs []error
	for i := 0; i < len(nodes); i += batch {
		group := nodes[i:min(i+batch, len(nodes))]
		bctx, cancel := context.WithCancel(ctx)
		answers := make(chan answer, len(group))
		for _, s := range group {
			go func() {
				meta, err := c.metadataFrom(bctx, id, s)
				answers <- answer{meta, err, s}
			}()
		}
		for range group {
			a := <-answers
			if a.err == nil {
				cancel() // the others need not finish, nor be waited for
				return a.meta, nil
			}
			c.log.Debug("metadata not usable", "blob", id, "node", a.from.node, "err", a.err)
			errs = append(errs, fmt.Errorf("%s (%s): %w", a.from.node, a.from.addr, a.err))
		}
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("client: no node sent metadata matching blob %s: %w", id, errors.Join(append([]error{ErrNotEnoughSlivers}, errs...)...))
}

func (c *Client) metadataFrom(ctx context.Context, id crypto.BlobID, s source) (*crypto.Metadata, error) {
	conn, err := c.conn(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	var resp *weftv1.GetMetadataResponse
	// One try per node: there are other nodes to ask.
	err = c.retry(ctx, c.cfg.NodeTimeout, retryPolicy{attempts: 1}, func(ctx context.Context) error {
		var err error
		resp, err = weftv1.NewStorageClient(conn).GetMetadata(ctx, &weftv1.GetMetadataRequest{BlobId: id[:]})
		return err
	})
	if err != nil {
		return nil, err
	}
	var meta crypto.Metadata
	if err := meta.UnmarshalBinary(resp.Metadata); err != nil {
		return nil, err
	}
	if err := meta.CheckBlobID(id); err != nil {
		return nil, err
	}
	return &meta, nil
}

// read is one read's sliver-fetching state.
type read struct {
	c          *Client
	id         crypto.BlobID
	meta       *crypto.Metadata
	codec      *coding.Codec
	params     coding.Params
	symbolSize int
	lay        *layout
	prog       *progress
	stats      *ReadStats
	decodeGate chan struct{} // ReadOptions.decodeGate

	// down holds nodes that failed transiently even after retries: the
	// rest of this read does not wait on them again for other slivers.
	down sync.Map // node → error
	// from records which source each sliver in hand came from, so that a
	// sliver found bad later is blamed on, and replaced from, the right one.
	from sync.Map // index → source number
	// launched counts sliver fetches started; the first nP are in the
	// progress total from the start, later ones (replacements) add to it.
	launched int
	// verifying counts fetches checking a sliver that has arrived: busy
	// here, not waiting on a node (a range read's stall watch).
	verifying atomic.Int32
	// ownBuffers: every sliver gets a buffer of its own. A range read
	// sets it, as it never holds the blob whole (the back-to-back buffer
	// below would be the size of the blob).
	ownBuffers bool

	// sys holds the systematic primaries back to back, so that Decode
	// returns it as the blob instead of copying them into one (≈ 20 % of
	// a large read). claimed[i] belongs to the fetch receiving sliver i
	// into its place: any other fetch of sliver i gets a buffer of its own,
	// so no two write the same bytes and none writes the blob returned.
	sysOnce sync.Once
	sys     []byte
	claimed []atomic.Bool
}

// sliverBuffer returns where to receive primary sliver index: its place in
// sys if it is systematic and the place is free (slot), else a new buffer.
func (r *read) sliverBuffer(index uint32) (buf []byte, slot bool) {
	size, total := r.params.SystematicLayout(r.symbolSize)
	if int(index) < r.params.NP && !r.ownBuffers {
		r.sysOnce.Do(func() {
			r.sys = make([]byte, total)
			r.claimed = make([]atomic.Bool, r.params.NP)
		})
		if r.claimed[index].CompareAndSwap(false, true) {
			return r.sys[int(index)*size : (int(index)+1)*size], true
		}
	}
	return make([]byte, size), false
}

// task is one attempt at primary sliver index from source number src of
// its shard.
type task struct {
	index uint32
	src   int
}

type fetched struct {
	task
	sliver coding.Sliver
	err    error
	bad    bool // it arrived but failed verification
	verify time.Duration
	took   time.Duration // fetching it, retries included
}

func (r *read) shardOf(index uint32) int { return r.params.ShardForPair(int(index), r.id) }

// run fetches primary slivers, the systematic ones (0 … nP−1, which decode
// by copying) first, keeping nP in flight or in hand; a failed shard's
// fallback source goes to the front of the queue, another shard's sliver
// after it. With nP in hand it decodes; if the consistent-read check
// fails, it verifies them, drops the bad ones, and from then on verifies
// each new sliver as it arrives.
//
// With covering set it is a range read (range.go): it fetches only those
// systematic slivers, verifies each as it arrives, and returns them once
// it has all of them (blob nil). If one cannot be had it reads the whole
// blob as above instead, the covering slivers counting toward the nP,
// and returns the blob.
func (r *read) run(ctx context.Context, covering []uint32) (blob []byte, verified []coding.Sliver, err error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Fetches still in flight must not report after Read returns.
	defer r.prog.stop()
	l := r.newFetchLoop(fctx, covering)
	defer l.timer.Stop()
	for {
		l.launch()
		if len(l.good) >= l.need {
			if l.covering != nil {
				r.stats.Fetch = time.Since(l.fetchStart)
				return nil, l.good, nil
			}
			if blob, done, err := l.decode(); done {
				return blob, nil, err
			}
			continue
		}
		if l.inflight == 0 {
			if l.covering != nil { // (a lost covering sliver widens the read at once)
				l.widen(errors.New("no covering sliver left to fetch"))
				continue
			}
			r.stats.Fetch = time.Since(l.fetchStart) - l.busy
			return nil, nil, r.notEnough(l.good, l.failures, l.verifyMode)
		}
		select {
		case f := <-l.results:
			l.take(f)
		case <-l.timer.C:
			l.stalled()
		}
	}
}

// fetchLoop is run's state. Only run's goroutine touches it: the fetches
// it starts hand their results back on results and change none of it.
type fetchLoop struct {
	*read
	ctx         context.Context // ends the fetches in flight when run returns
	sliverBytes int64
	queue       []task
	results     chan fetched
	failures    map[uint32]*SliverError // per sliver index, the latest failure
	good        []coding.Sliver         // in hand; verified only in verifyMode
	inflight    int
	running     map[task]bool // the fetches in flight, to name stalled ones
	// need is how many slivers the read waits for: nP, or a range read's
	// covering slivers (range.go).
	need int
	// covering, during a range read, holds the systematic slivers that
	// hold the range: only they are fetched, each verified as it arrives.
	// nil for a whole read, and once a range read has widened to one.
	covering map[uint32]bool
	// arrived is the sliver bytes received when the stall timer last
	// looked (a range read's stall watch).
	arrived int64
	// verifyMode is set once a decode failed on a sliver mismatch: some
	// node lied, so every sliver from then on is verified as it arrives.
	verifyMode bool
	fetchStart time.Time
	busy       time.Duration // decode and verify time inside the loop

	// A node that accepts a call and then stalls would hold its sliver
	// for the whole NodeTimeout. When nothing arrives for a while, other
	// slivers are fetched alongside, up to f extra: any nP will do.
	hedge   int
	slowest time.Duration
	timer   *time.Timer
	// stalledNodes holds the nodes whose fetches were in flight when the
	// stall timer last fired: stand-ins come from other nodes first
	// (hedge.go).
	stalledNodes map[string]bool
}

// newFetchLoop queues every primary sliver in index order, systematic
// ones first, and puts the nP the read needs into the progress total; for
// a range read only the covering slivers, all of which it needs.
func (r *read) newFetchLoop(ctx context.Context, covering []uint32) *fetchLoop {
	n := r.params.Shards
	l := &fetchLoop{
		read: r, ctx: ctx, queue: make([]task, 0, n), failures: make(map[uint32]*SliverError), running: make(map[task]bool),
		sliverBytes: int64(r.params.SliverSymbols(crypto.Primary) * r.symbolSize), need: r.params.NP,
	}
	capacity := 0
	for i := range n {
		capacity += len(r.lay.sources[r.shardOf(uint32(i))])
	}
	if covering == nil {
		for i := range n {
			l.queue = append(l.queue, task{index: uint32(i)})
		}
	} else {
		l.covering, l.need = make(map[uint32]bool, len(covering)), len(covering)
		for _, i := range covering {
			l.covering[i] = true
			l.queue = append(l.queue, task{index: i})
		}
	}
	r.prog.grow(int64(l.need) * l.sliverBytes)
	l.results = make(chan fetched, capacity) // every task can finish without a reader
	l.fetchStart = time.Now()
	l.timer = time.NewTimer(l.hedgeDelay())
	return l
}

// next queues what comes after a sliver failed: its other source. If it
// has none left, a range read that needed it reads the whole blob.
func (l *fetchLoop) next(t task) {
	if t.src+1 < len(l.lay.sources[l.shardOf(t.index)]) {
		l.queue = append([]task{{index: t.index, src: t.src + 1}}, l.queue...)
		return
	}
	if l.covering[t.index] {
		l.widen(l.failures[t.index])
	}
}

// launch starts fetches from the front of the queue until nP slivers (and
// the hedge) are in hand or in flight, at most MaxParallel at once. A
// replacement beyond the first nP adds its sliver to the progress total.
func (l *fetchLoop) launch() {
	for l.inflight < l.c.cfg.MaxParallel && len(l.good)+l.inflight < l.need+l.hedge && len(l.queue) > 0 {
		t := l.pop()
		if len(l.lay.sources[l.shardOf(t.index)]) == 0 {
			l.failures[t.index] = &SliverError{Index: t.index, Shard: uint32(l.shardOf(t.index)), Node: "-", Err: errors.New("no owner or holder with an address")}
			if l.covering[t.index] {
				l.widen(l.failures[t.index])
			}
			continue
		}
		l.inflight++
		l.running[t] = true
		if l.launched++; l.launched > l.need {
			l.prog.grow(l.sliverBytes)
		}
		r, ctx, results := l.read, l.ctx, l.results
		// A range read's slivers are checked one by one: no decode
		// vouches for them.
		go func(verify bool) { results <- r.fetch(ctx, t, verify) }(l.verifyMode || l.covering[t.index])
	}
}

// decode decodes the nP slivers in hand. done is false only when a node
// lied (the consistent-read check failed on a sliver mismatch): the bad
// slivers are dropped, their fallbacks queued, and the read goes on in
// verifyMode.
func (l *fetchLoop) decode() (blob []byte, done bool, err error) {
	l.stats.Fetch = time.Since(l.fetchStart) - l.busy
	if l.decodeGate != nil {
		select {
		case l.decodeGate <- struct{}{}:
			defer func() { <-l.decodeGate }()
		case <-l.ctx.Done():
			return nil, true, l.ctx.Err()
		}
	}
	t := time.Now()
	blob, err = l.codec.Decode(l.meta, l.good)
	l.stats.Decode += time.Since(t)
	l.stats.Decodes++
	l.busy += time.Since(t)
	if err == nil {
		return blob, true, nil
	}
	if !errors.Is(err, crypto.ErrSliverMismatch) {
		// Either the blob is inconsistent (the same error for every
		// reader, whichever slivers it used), or something else
		// that no other sliver would fix.
		return nil, true, err
	}
	// A node lied. Check every sliver in hand, drop the bad ones,
	// and verify everything fetched from here on.
	l.verifyMode = true
	t = time.Now()
	kept, bad := l.verifyAll(l.good)
	l.stats.Verify += time.Since(t)
	l.busy += time.Since(t)
	l.good = kept
	for _, f := range bad {
		l.stats.BadSlivers++
		l.failures[f.index] = l.sliverError(f.task, f.err)
		l.next(f.task)
	}
	return nil, false, nil
}

// take counts a finished fetch: a good sliver joins those in hand (and
// resets the stall timer), a failed one queues its shard's next source.
func (l *fetchLoop) take(f fetched) {
	l.inflight--
	delete(l.running, f.task)
	l.stats.Slivers++
	l.stats.Verify += f.verify
	if f.err != nil {
		if f.bad {
			l.stats.BadSlivers++
		}
		l.c.log.Debug("primary sliver not usable", "blob", l.id, "sliver", f.index, "err", f.err)
		l.failures[f.index] = l.sliverError(f.task, f.err)
		l.next(f.task)
		return
	}
	l.slowest = max(l.slowest, f.took)
	delete(l.stalledNodes, l.sourceNode(f.task))
	l.timer.Reset(l.hedgeDelay())
	delete(l.failures, f.index)
	l.good = append(l.good, f.sliver)
}

// stalled runs when nothing arrived for the whole hedge delay: every
// fetch in flight is stalled, so each gets a stand-in.
func (l *fetchLoop) stalled() {
	if l.covering != nil {
		l.rangeStalled()
		return
	}
	l.noteStalled()
	if l.hedge < l.params.F {
		l.hedge = min(l.params.F, l.hedge+l.inflight)
		l.stats.Hedged = l.hedge
		l.c.log.Debug("slivers slow to arrive; fetching others alongside", "blob", l.id, "extra", l.hedge, "stalled", l.stats.StalledNodes)
	}
	l.timer.Reset(l.hedgeDelay())
}

func (r *read) sliverError(t task, err error) *SliverError {
	shard := r.shardOf(t.index)
	node := "-"
	if srcs := r.lay.sources[shard]; t.src < len(srcs) {
		node = srcs[t.src].node + " (" + srcs[t.src].addr + ")"
	}
	return &SliverError{Index: t.index, Shard: uint32(shard), Node: node, Err: err}
}

// notEnough builds the error for a read that ran out of sources. Slivers
// still unverified are checked first, so the count is of verified ones.
func (r *read) notEnough(good []coding.Sliver, failures map[uint32]*SliverError, verified bool) error {
	if !verified {
		kept, bad := r.verifyAll(good)
		for _, f := range bad {
			failures[f.index] = r.sliverError(f.task, f.err)
		}
		good = kept
	}
	out := &NotEnoughSliversError{BlobID: r.id, Have: len(good), Need: r.params.NP}
	for _, f := range failures {
		out.Failures = append(out.Failures, f)
	}
	slices.SortFunc(out.Failures, func(a, b *SliverError) int { return int(a.Index) - int(b.Index) })
	return out
}

// verifyAll checks slivers against the metadata in parallel.
func (r *read) verifyAll(slivers []coding.Sliver) (kept []coding.Sliver, bad []fetched) {
	errs := make([]error, len(slivers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.c.cfg.MaxParallel)
	for i, sl := range slivers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = r.codec.VerifySliver(r.meta, sl)
		})
	}
	wg.Wait()
	for i, sl := range slivers {
		if errs[i] != nil {
			// The source that sent it is the one the task used; for a
			// sliver in hand that is recorded by index below.
			bad = append(bad, fetched{task: r.sourceOf(sl.Index), err: errs[i], bad: true})
			continue
		}
		kept = append(kept, sl)
	}
	return kept, bad
}

// sourceOf finds which source a sliver in hand came from.
func (r *read) sourceOf(index uint32) task {
	if v, ok := r.from.Load(index); ok {
		return task{index: index, src: v.(int)}
	}
	return task{index: index}
}

// fetch gets one primary sliver from one source, retrying transient
// failures, and verifies it when asked to.
func (r *read) fetch(ctx context.Context, t task, verify bool) fetched {
	out := fetched{task: t}
	s := r.lay.sources[r.shardOf(t.index)][t.src]
	unfetched := func(err error) fetched {
		r.prog.grow(-int64(r.params.SliverSymbols(crypto.Primary) * r.symbolSize)) // its share of the total comes from another
		out.err = err
		return out
	}
	if err, ok := r.down.Load(s.node); ok {
		return unfetched(fmt.Errorf("skipped: the node failed earlier in this read: %w", err.(error)))
	}
	conn, err := r.c.conn(ctx, s.addr)
	if err != nil {
		return unfetched(err)
	}
	sc := weftv1.NewStorageClient(conn)
	start := time.Now()
	attempt := 0
	err = r.c.retry(ctx, r.c.cfg.NodeTimeout, r.c.policy(nil), func(ctx context.Context) error {
		if attempt++; attempt > 1 {
			r.prog.grow(int64(r.params.SliverSymbols(crypto.Primary) * r.symbolSize))
		}
		var err error
		out.sliver, err = r.receive(ctx, sc, t.index)
		return err
	})
	out.took = time.Since(start)
	if err != nil {
		if transient(err) {
			r.down.Store(s.node, err)
		}
		out.err = err
		return out
	}
	r.from.Store(t.index, t.src)
	if !verify {
		// Its share of the consistent-read check, done now while the
		// other slivers are still on their way (coding.PrepareCheck).
		r.codec.PrepareCheck(&out.sliver)
	} else {
		start := time.Now()
		r.verifying.Add(1)
		err := r.codec.VerifySliver(r.meta, out.sliver)
		r.verifying.Add(-1)
		out.verify = time.Since(start)
		if err != nil {
			out.err, out.bad = err, true
		}
	}
	return out
}

// receive reads one primary sliver's chunks into a buffer of exactly the
// size the metadata implies; a node cannot make the reader hold more.
func (r *read) receive(ctx context.Context, sc weftv1.StorageClient, index uint32) (_ coding.Sliver, err error) {
	size := r.params.SliverSymbols(crypto.Primary) * r.symbolSize
	got := 0
	buf, slot := r.sliverBuffer(index)
	defer func() {
		if got < size {
			// This attempt counted a whole sliver in the total and
			// delivered only got bytes; the rest comes from another one.
			r.prog.grow(int64(got - size))
		}
		if err != nil && slot {
			r.claimed[index].Store(false) // nothing writes there any more
		}
	}()
	stream, err := sc.GetSliver(ctx, &weftv1.GetSliverRequest{BlobId: r.id[:], Axis: uint32(crypto.Primary), Index: index})
	if err != nil {
		return coding.Sliver{}, err
	}
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return coding.Sliver{}, err
		}
		switch {
		case ch.Axis != uint32(crypto.Primary) || ch.Index != index:
			return coding.Sliver{}, fmt.Errorf("asked for primary sliver %d, got a chunk of axis %d sliver %d", index, ch.Axis, ch.Index)
		case ch.SymbolSize != uint32(r.symbolSize) && (got == 0 || ch.SymbolSize != 0):
			return coding.Sliver{}, fmt.Errorf("chunk with symbol size %d, the metadata implies %d", ch.SymbolSize, r.symbolSize)
		case ch.Offset != uint64(got):
			return coding.Sliver{}, fmt.Errorf("chunk at offset %d, expected %d", ch.Offset, got)
		case len(ch.Data) > size-got:
			return coding.Sliver{}, fmt.Errorf("more than the sliver's %d bytes", size)
		}
		copy(buf[got:], ch.Data)
		got += len(ch.Data)
		r.prog.add(int64(len(ch.Data)))
	}
	if got != size {
		return coding.Sliver{}, fmt.Errorf("got %d of the sliver's %d bytes", got, size)
	}
	return coding.Sliver{SliverRef: coding.SliverRef{Axis: crypto.Primary, Index: index}, SymbolSize: r.symbolSize, Data: buf}, nil
}
