package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Storage challenges (issue 8), the node's side. The control plane commits
// a round: a seed, the sampled blobs and every committee member's held
// shards. Each node then
//   - proves: on ProveChallenge it computes its positions, reads the symbols
//     from its own slivers, signs the response once per round and serves
//     the same bytes to every challenger;
//   - challenges: it asks each challenged node whose sample of challengers
//     it was drawn into (challenge.Challengers, from the round's seed and
//     committee: about k nodes, not every member) for its proof, verifies
//     it against the blobs' metadata and reports "passed" or "failed" (with
//     the evidence) to the control plane — retrying an unanswering node
//     until the round closes, since no timing may decide;
//   - embargoes: while the round is open it serves no sliver and no
//     recovery symbol of a sampled blob, to anyone, so a node that deleted
//     its slivers cannot rebuild the challenged ones on demand.

const (
	// challengeParallel bounds the nodes one challenger asks at once.
	challengeParallel = 4
	// proveTimeoutFactor × PeerTimeout bounds one ProveChallenge call: the
	// prover may extend many slivers first.
	proveTimeoutFactor = 6
	// keepRounds is how many rounds' fetched state and proofs are kept.
	keepRounds = 3
	// openRefresh is how often an open round's state is read again, should
	// its close event be late.
	openRefresh = 15 * time.Second
)

// chalRound is a round as the control plane committed it: immutable once
// fetched, except whether it is open (tracked by challenges).
type chalRound struct {
	round, epoch uint64
	seed         challenge.Seed
	challengers  int  // draws per node; 0: every member judges every node
	perBlob      int  // held shards proven per blob; 0: every one
	open         bool // as read
	blobs        []crypto.BlobID
	sampled      map[crypto.BlobID]bool
	nodes        map[shardmap.NodeID][]uint32 // challenged node → held shards
	order        []shardmap.NodeID
	index        uint64 // the state index it was read at
}

func roundFrom(resp *weftv1.GetChallengeResponse) (*chalRound, error) {
	if len(resp.Seed) != len(challenge.Seed{}) {
		return nil, fmt.Errorf("challenge round %d: seed of %d bytes", resp.Round, len(resp.Seed))
	}
	if resp.Challengers > challenge.MaxChallengers {
		return nil, fmt.Errorf("challenge round %d: %d challengers per node, above %d", resp.Round, resp.Challengers, challenge.MaxChallengers)
	}
	if resp.ShardsPerBlob > challenge.MaxShardsPerBlob {
		return nil, fmt.Errorf("challenge round %d: %d shards per blob, above %d", resp.Round, resp.ShardsPerBlob, challenge.MaxShardsPerBlob)
	}
	r := &chalRound{round: resp.Round, epoch: resp.Epoch, seed: challenge.Seed(resp.Seed), open: resp.Open, challengers: int(resp.Challengers),
		perBlob: int(resp.ShardsPerBlob),
		sampled: map[crypto.BlobID]bool{}, nodes: map[shardmap.NodeID][]uint32{}, index: resp.Index}
	for _, b := range resp.Blobs {
		if len(b) != crypto.DigestSize {
			return nil, fmt.Errorf("challenge round %d: blob ID of %d bytes", resp.Round, len(b))
		}
		id := crypto.BlobID(b)
		r.blobs = append(r.blobs, id)
		r.sampled[id] = true
	}
	for _, cn := range resp.Nodes {
		id := shardmap.NodeID(cn.Node)
		r.nodes[id] = slices.Clone(cn.Shards)
		r.order = append(r.order, id)
	}
	return r, nil
}

// challenges follows the control plane's challenge rounds for the node:
// the latest round and whether it is open (only the latest can be), the
// embargo that follows from it, the node's proofs and its challenger.
type challenges struct {
	n      *Node
	wakeCh chan struct{}

	mu     sync.Mutex
	ctx    context.Context // the node's run context
	want   uint64          // an event index the next refresh must have seen
	latest *chalRound      // nil: no round yet
	open   bool            // latest is open: its blobs are embargoed
	lifted chan struct{}   // closed when the latest round is not open
	stop   context.CancelFunc
	rounds map[uint64]*chalRound
	proofs map[uint64]*proofEntry
}

type proofEntry struct {
	done chan struct{}
	raw  []byte
	err  error
}

func newChallenges(n *Node) *challenges {
	lifted := make(chan struct{})
	close(lifted)
	return &challenges{n: n, wakeCh: make(chan struct{}, 1), lifted: lifted,
		rounds: map[uint64]*chalRound{}, proofs: map[uint64]*proofEntry{}}
}

// notify asks for the latest round to be read again, at a state index of
// at least index (a challenge event's).
func (c *challenges) notify(index uint64) {
	c.mu.Lock()
	c.want = max(c.want, index)
	c.mu.Unlock()
	select {
	case c.wakeCh <- struct{}{}:
	default:
	}
}

// load reads the latest round before the node serves, so that a restarted
// node applies an open round's embargo from its first request.
func (c *challenges) load(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	return retry(ctx, c.n.log, "reading the latest challenge round", func() error { return c.refresh(ctx, 0) })
}

// run keeps the latest round current: on challenge events, and now and
// then while a round is open.
func (c *challenges) run(ctx context.Context) {
	for {
		c.mu.Lock()
		open := c.open
		c.mu.Unlock()
		var tick <-chan time.Time
		if open {
			tick = time.After(openRefresh)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wakeCh:
		case <-tick:
		}
		c.mu.Lock()
		want := c.want
		c.mu.Unlock()
		if err := retry(ctx, c.n.log, "reading the latest challenge round", func() error { return c.refresh(ctx, want) }); err != nil {
			return
		}
	}
}

// refresh reads the latest round (waiting for the voter to have applied
// index, briefly) and applies it.
func (c *challenges) refresh(ctx context.Context, index uint64) error {
	for attempt := 0; ; attempt++ {
		resp, err := c.n.cfg.Plane.Challenge(ctx, 0)
		switch status.Code(err) {
		case codes.OK:
		case codes.NotFound, codes.Unimplemented:
			return nil // no round yet (or a control plane without challenges)
		default:
			return err
		}
		if resp.Index < index {
			if attempt >= 20 {
				return fmt.Errorf("the control plane's state is at index %d, the challenge event at %d", resp.Index, index)
			}
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if resp.Round == 0 {
			return nil
		}
		r, err := roundFrom(resp)
		if err != nil {
			return err
		}
		c.apply(r)
		return nil
	}
}

// apply records a round read from the control plane: a newer round
// replaces the latest (closing its embargo and challenger) and, if open,
// starts its own; the latest round read closed ends them.
func (c *challenges) apply(r *chalRound) {
	c.mu.Lock()
	if _, ok := c.rounds[r.round]; !ok {
		c.rounds[r.round] = r
	}
	var started, ended *chalRound
	switch {
	case c.latest == nil || r.round > c.latest.round:
		if c.open {
			ended = c.latest
		}
		c.latest, c.open = r, r.open
		if r.open {
			started = r
		}
		for round := range c.rounds {
			if round+keepRounds <= r.round {
				delete(c.rounds, round)
			}
		}
		for round := range c.proofs {
			if round+keepRounds <= r.round {
				delete(c.proofs, round)
			}
		}
	case r.round == c.latest.round && c.open && !r.open:
		c.open = false
		ended = c.latest
	}
	if ended != nil {
		close(c.lifted)
		if c.stop != nil {
			c.stop()
			c.stop = nil
		}
	}
	if started != nil {
		c.lifted = make(chan struct{})
		if c.ctx != nil {
			ctx, cancel := context.WithCancel(c.ctx)
			c.stop = cancel
			c.n.goRun(func() { c.challenge(ctx, started) })
		}
	}
	c.mu.Unlock()
	n := c.n
	if ended != nil {
		n.log.Info("storage: challenge round closed; its embargo is lifted", "round", ended.round, "blobs", len(ended.blobs))
		if n.recovery != nil {
			n.recovery.retryNow(ended.blobs)
		}
		n.goRun(n.deleteRetired) // shards kept for the round
	}
	if started != nil {
		n.log.Info("storage: challenge round open; its sampled blobs are embargoed until it closes",
			"round", started.round, "epoch", started.epoch, "blobs", len(started.blobs), "nodes", len(started.nodes))
	}
}

// embargoed returns the open round a blob is sampled in, if any.
func (c *challenges) embargoed(id crypto.BlobID) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open && c.latest.sampled[id] {
		return c.latest.round, true
	}
	return 0, false
}

// mustProve reports whether the node must prove a shard in the open
// round: it keeps the shard's data until the round closes, even if a
// handover retired it meanwhile.
func (c *challenges) mustProve(shard uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open && slices.Contains(c.latest.nodes[c.n.cfg.ID], shard)
}

// waitLifted waits until a blob is under no open round.
func (c *challenges) waitLifted(ctx context.Context, id crypto.BlobID) error {
	logged := false
	for {
		c.mu.Lock()
		held := c.open && c.latest.sampled[id]
		lifted, round := c.lifted, uint64(0)
		if held {
			round = c.latest.round
		}
		c.mu.Unlock()
		if !held {
			return nil
		}
		if !logged {
			c.n.log.Info("storage: waiting for a challenge round to close before rebuilding a sampled blob", "blob", id, "round", round)
			logged = true
		}
		select {
		case <-lifted:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// embargoError refuses a read of a blob under an open round.
func (n *Node) embargoError(id crypto.BlobID) error {
	if n.chal == nil {
		return nil
	}
	round, held := n.chal.embargoed(id)
	if !held {
		return nil
	}
	n.metrics.challengeEmbargoed.Inc()
	return status.Errorf(codes.Unavailable, "blob %s is under storage challenge round %d; retry after it closes", id, round)
}

// roundFor returns a round and whether it is open, reading it from the
// control plane if the node has not seen it yet.
func (c *challenges) roundFor(ctx context.Context, round uint64) (*chalRound, bool, error) {
	c.mu.Lock()
	r := c.rounds[round]
	c.mu.Unlock()
	if r == nil {
		resp, err := c.n.cfg.Plane.Challenge(ctx, round)
		if status.Code(err) == codes.NotFound || (err == nil && resp.Round != round) {
			return nil, false, status.Errorf(codes.FailedPrecondition, "no challenge round %d", round)
		}
		if err != nil {
			return nil, false, status.Errorf(codes.Unavailable, "reading challenge round %d: %v", round, err)
		}
		if r, err = roundFrom(resp); err != nil {
			return nil, false, status.Error(codes.Internal, err.Error())
		}
		c.apply(r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return r, c.latest != nil && c.latest.round == round && c.open, nil
}

// ProveChallenge answers a round with the node's signed proof: computed
// once per round, the same bytes for every challenger.
func (s *service) ProveChallenge(ctx context.Context, req *weftv1.ProveChallengeRequest) (*weftv1.ProveChallengeResponse, error) {
	n := s.n
	if req.Round == 0 {
		return nil, status.Error(codes.InvalidArgument, "challenge round 0")
	}
	r, open, err := n.chal.roundFor(ctx, req.Round)
	if err != nil {
		return nil, err
	}
	if !open {
		return nil, status.Errorf(codes.FailedPrecondition, "challenge round %d is closed", req.Round)
	}
	shards, challenged := r.nodes[n.cfg.ID]
	if !challenged {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s is not challenged in round %d", n.cfg.ID, req.Round)
	}
	raw, err := n.chal.proof(ctx, r, shards)
	if err != nil {
		return nil, err
	}
	n.metrics.bytesServed.WithLabelValues("challenge").Add(float64(len(raw)))
	return &weftv1.ProveChallengeResponse{Response: raw}, nil
}

// proof returns the node's signed response to a round, computing it on
// the first request (in the background: a challenger that hangs up does
// not cancel it for the others). A failure is not kept: the next request
// tries again.
func (c *challenges) proof(ctx context.Context, r *chalRound, shards []uint32) ([]byte, error) {
	c.mu.Lock()
	e := c.proofs[r.round]
	if e == nil {
		e = &proofEntry{done: make(chan struct{})}
		c.proofs[r.round] = e
		run := c.ctx
		c.n.goRun(func() {
			e.raw, e.err = c.n.prove(run, r, shards)
			if e.err != nil {
				c.mu.Lock()
				if c.proofs[r.round] == e {
					delete(c.proofs, r.round)
				}
				c.mu.Unlock()
			}
			close(e.done)
		})
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.raw, e.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// prove builds and signs the node's response to a round from its own
// slivers. An honest node missing a sliver cannot prove the round, and
// says which position it lacks; it does not rebuild it from its peers
// (who would refuse: the embargo).
func (n *Node) prove(ctx context.Context, r *chalRound, shards []uint32) ([]byte, error) {
	start := time.Now()
	params := n.codecs.Params()
	positions := challenge.Positions(r.seed, r.blobs, shards, uint32(params.Shards), r.perBlob)
	items, err := challenge.Prove(positions, func(p challenge.Position) (*coding.ExtendedSliver, error) {
		ref := coding.SliverRef{Axis: p.Axis, Index: p.Sliver}
		if shard, err := n.sliverShard(p.Blob, p.Axis, p.Sliver); err != nil || shard != p.Shard {
			return nil, fmt.Errorf("position of shard %d names a sliver of shard %d", p.Shard, shard)
		}
		ext, err := n.extended(p.Blob, ref)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return ext, err
		}
		if n.cfg.Faults.LazyChallenge {
			ext, lerr := n.lazyRebuild(ctx, p)
			if lerr == nil {
				return ext, nil
			}
			n.log.Warn("storage: FAULT lazy-challenge: could not rebuild a challenged sliver from peers", "blob", p.Blob, "shard", p.Shard, "err", lerr)
		}
		if n.cfg.Faults.DropPairs > 0 || n.cfg.Faults.LazyChallenge {
			return n.forgedLine(ctx, p)
		}
		return nil, err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		n.log.Warn("storage: cannot prove a challenge round: a sliver is missing or corrupt", "round", r.round, "err", err)
		return nil, status.Errorf(codes.NotFound, "node %s cannot prove challenge round %d: %v", n.cfg.ID, r.round, err)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "proving challenge round %d: %v", r.round, err)
	}
	resp := &challenge.Response{Epoch: r.epoch, Round: r.round, Node: string(n.cfg.ID), Items: items}
	if err := resp.Sign(n.cfg.Key); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	raw, err := resp.MarshalBinary()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	n.metrics.challengesProved.Inc()
	n.log.Info("storage: proved a challenge round", "round", r.round, "positions", len(items), "bytes", len(raw), "took", time.Since(start))
	return raw, nil
}

// lazyRebuild is the lazy-challenge fault: rebuild a challenged sliver
// from peers, through the normal recovery path, instead of holding it.
func (n *Node) lazyRebuild(ctx context.Context, p challenge.Position) (*coding.ExtendedSliver, error) {
	a := n.follower.Current()
	meta, err := n.metadataFor(ctx, p.Blob, a)
	if err != nil {
		return nil, err
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return nil, err
	}
	fetch := n.newPeerFetcher(p.Blob, a, codec, meta, true)
	pair, stats, err := codec.RecoverPair(ctx, meta, codec.Params().PairForShard(int(p.Shard), p.Blob), fetch)
	n.metrics.bytesRecovered.Add(float64(stats.BytesReceived))
	if err != nil {
		return nil, err
	}
	sl := pair.Primary
	if p.Axis == crypto.Secondary {
		sl = pair.Secondary
	}
	return codec.Extend(meta, sl)
}

// forgedLine is a cheater's answer for a sliver it dropped: a made-up
// sliver of the right shape (which cannot match the commitment).
func (n *Node) forgedLine(ctx context.Context, p challenge.Position) (*coding.ExtendedSliver, error) {
	meta, err := n.metadataFor(ctx, p.Blob, n.follower.Current())
	if err != nil {
		return nil, err
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return nil, err
	}
	params := codec.Params()
	size, err := params.SymbolSize(meta.Length)
	if err != nil {
		return nil, err
	}
	return codec.Extend(meta, coding.Sliver{SliverRef: coding.SliverRef{Axis: p.Axis, Index: p.Sliver},
		SymbolSize: size, Data: make([]byte, size*params.SliverSymbols(p.Axis))})
}

// challenge runs the node's challenger for an open round until it closes
// (ctx): every challenged node this node was drawn to judge is asked for
// its proof — retried with backoff while it does not answer — and judged;
// verdicts are reported in batches, each node once.
func (c *challenges) challenge(ctx context.Context, r *chalRound) {
	n := c.n
	var com *control.Committee
	if err := retry(ctx, n.log, "reading the committee of a challenge round", func() (err error) {
		com, err = n.peers.committeeOf(ctx, r.epoch)
		return err
	}); err != nil {
		return
	}
	if self, ok := com.Member(n.cfg.ID); !ok || self.Weight == 0 {
		n.log.Debug("storage: not a challenger in this round (not in its committee)", "round", r.round, "epoch", r.epoch)
		return
	}
	targets := c.targets(r, com)
	n.log.Info("storage: challenging the nodes this node was drawn for", "round", r.round, "targets", len(targets), "challenged", len(r.order))
	metas := &metaCache{n: n, epoch: r.epoch, m: map[crypto.BlobID]*crypto.Metadata{}}
	sem := make(chan struct{}, challengeParallel)
	results := make(chan *weftv1.ChallengeVerdict, len(targets))
	var wg sync.WaitGroup
	for _, node := range targets {
		m, _ := com.Member(node)
		pk := m.PublicKey
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v := c.judge(ctx, r, node, pk, sem, metas); v != nil {
				results <- v
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	c.report(ctx, r, results)
	wg.Wait()
}

// targets lists the challenged nodes whose sample this node is in, the
// only ones whose verdicts the control plane takes from it.
func (c *challenges) targets(r *chalRound, com *control.Committee) []shardmap.NodeID {
	members := make([]challenge.Member, len(com.Members))
	for i, m := range com.Members {
		members[i] = challenge.Member{Node: string(m.Node), Weight: uint64(m.Weight)}
	}
	sampler := challenge.NewSampler(r.seed, members, r.challengers)
	var out []shardmap.NodeID
	for _, node := range r.order {
		if _, ok := com.Member(node); !ok || node == c.n.cfg.ID {
			continue
		}
		if sampler.Of(string(node)).Index(string(c.n.cfg.ID)) >= 0 {
			out = append(out, node)
		}
	}
	return out
}

// report sends verdicts as they come, batching those that arrive while a
// report is in flight, until every judge is done or the round closes.
func (c *challenges) report(ctx context.Context, r *chalRound, results <-chan *weftv1.ChallengeVerdict) {
	n := c.n
	var pending []*weftv1.ChallengeVerdict
	more := true
	backoff := 200 * time.Millisecond
	denied := 0
	for more || len(pending) > 0 {
		if len(pending) == 0 {
			select {
			case v, ok := <-results:
				if !ok {
					more = false
					continue
				}
				pending = append(pending, v)
			case <-ctx.Done():
				return
			}
		}
	drain:
		for more {
			select {
			case v, ok := <-results:
				if !ok {
					more = false
					break drain
				}
				pending = append(pending, v)
			default:
				break drain
			}
		}
		err := n.reportVerdicts(ctx, r, pending)
		code := status.Code(err)
		if code == codes.PermissionDenied {
			// Not a member — or a nonce overtaken by another signed request
			// of this node's: worth a few tries.
			if denied++; denied < 3 {
				code = codes.Unavailable
			}
		}
		switch code {
		case codes.OK:
			pending, backoff = nil, 200*time.Millisecond
			continue
		case codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument, codes.PermissionDenied,
			codes.Unauthenticated, codes.Unimplemented:
			if ctx.Err() == nil {
				level := slog.LevelWarn
				if status.Code(err) == codes.FailedPrecondition {
					level = slog.LevelInfo // the round closed: every node had its outcome
				}
				n.log.Log(ctx, level, "storage: the control plane refused challenge verdicts", "round", r.round, "verdicts", len(pending), "err", err)
			}
			c.notify(0) // the round may have closed
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("storage: reporting challenge verdicts will be retried", "round", r.round, "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

// reportVerdicts is one signed ReportChallenge (one node request at a
// time, so nonces arrive in order). The control plane counts one verdict
// per challenger and node, so a retry after an unknown outcome is safe.
func (n *Node) reportVerdicts(ctx context.Context, r *chalRound, verdicts []*weftv1.ChallengeVerdict) error {
	n.reportMu.Lock()
	defer n.reportMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 2*n.cfg.PeerTimeout)
	defer cancel()
	err := n.cfg.Plane.Report(cctx, r.epoch, &weftv1.ReportChallengeRequest{Round: r.round, Verdicts: verdicts})
	if err == nil {
		n.log.Info("storage: reported challenge verdicts", "round", r.round, "verdicts", len(verdicts))
	}
	return err
}

// judge asks a node for its proof until it answers (or the round closes)
// and returns the verdict to report; nil when there is none: the round
// closed first, or the node could not be judged (abstained).
func (c *challenges) judge(ctx context.Context, r *chalRound, node shardmap.NodeID, pk *crypto.PublicKey, sem chan struct{}, metas *metaCache) *weftv1.ChallengeVerdict {
	n := c.n
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		v, final, err := c.judgeOnce(ctx, r, node, pk, sem, metas)
		if final {
			return v
		}
		if ctx.Err() != nil {
			break
		}
		n.log.Debug("storage: no challenge proof yet; asking again", "round", r.round, "peer", node, "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

// judgeOnce asks once. final reports that the node is judged (v is then
// its verdict, or nil: abstained); otherwise the answer did not count.
func (c *challenges) judgeOnce(ctx context.Context, r *chalRound, node shardmap.NodeID, pk *crypto.PublicKey, sem chan struct{}, metas *metaCache) (v *weftv1.ChallengeVerdict, final bool, err error) {
	n := c.n
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() { <-sem }()
	peer, err := n.peers.peer(ctx, r.epoch, node)
	if err != nil {
		return nil, false, err
	}
	cctx, cancel := context.WithTimeout(ctx, proveTimeoutFactor*n.cfg.PeerTimeout)
	resp, err := peer.ProveChallenge(cctx, &weftv1.ProveChallengeRequest{Round: r.round})
	cancel()
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			c.notify(0) // it may know the round closed before this node does
		}
		return nil, false, err
	}
	var rsp challenge.Response
	if err := rsp.UnmarshalBinary(resp.Response); err != nil {
		// Unsigned garbage proves nothing about the node: not a verdict.
		n.metrics.rejected.WithLabelValues("challenge-response").Inc()
		return nil, false, err
	}
	positions := challenge.Positions(r.seed, r.blobs, r.nodes[node], uint32(n.codecs.Params().Shards), r.perBlob)
	err = challenge.Verify(&rsp, r.epoch, r.round, string(node), pk, positions, metas.lookup(ctx, node))
	switch {
	case err == nil:
		n.metrics.challengeVerdicts.WithLabelValues("passed").Inc()
		n.log.Debug("storage: challenge proof verified", "round", r.round, "peer", node, "positions", len(positions))
		return &weftv1.ChallengeVerdict{Node: string(node), Passed: true}, true, nil
	case errors.Is(err, challenge.ErrNoMetadata):
		n.metrics.challengeVerdicts.WithLabelValues("abstained").Inc()
		n.log.Warn("storage: cannot judge a challenge proof without the blob's metadata; abstaining", "round", r.round, "peer", node, "err", err)
		return nil, true, nil
	case (errors.Is(err, challenge.ErrBadSignature) || errors.Is(err, challenge.ErrWrongRound) || errors.Is(err, challenge.ErrMalformed)) && !signedBy(&rsp, pk):
		// Not signed by the node: anyone could have sent it.
		n.metrics.rejected.WithLabelValues("challenge-response").Inc()
		return nil, false, err
	default:
		n.metrics.challengeVerdicts.WithLabelValues("failed").Inc()
		n.log.Warn("storage: challenge proof FAILED", "round", r.round, "peer", node, "err", err)
		return &weftv1.ChallengeVerdict{Node: string(node), Passed: false, Reason: evidence(err)}, true, nil
	}
}

// signedBy reports whether the node's key signed the response as it
// stands (for whatever round it names).
func signedBy(r *challenge.Response, pk *crypto.PublicKey) bool {
	d, err := r.Digest()
	return err == nil && r.Signature != nil && pk.VerifyMessage(r.Epoch, crypto.ChallengeResponse{Round: r.Round, Digest: d}, r.Signature) == nil
}

// metaCache holds the metadata a challenger judges with: its own, or the
// challenged node's, checked against the blob ID.
type metaCache struct {
	n     *Node
	epoch uint64
	mu    sync.Mutex
	m     map[crypto.BlobID]*crypto.Metadata
}

func (mc *metaCache) lookup(ctx context.Context, node shardmap.NodeID) func(crypto.BlobID) (*crypto.Metadata, error) {
	return func(id crypto.BlobID) (*crypto.Metadata, error) {
		mc.mu.Lock()
		meta := mc.m[id]
		mc.mu.Unlock()
		if meta != nil {
			return meta, nil
		}
		meta, err := mc.n.store.AnyMetadata(id)
		if err != nil {
			// peerMetadata checks it against the blob ID.
			if meta, err = mc.n.peerMetadata(ctx, mc.epoch, node, id); err != nil {
				return nil, err
			}
		}
		mc.mu.Lock()
		mc.m[id] = meta
		mc.mu.Unlock()
		return meta, nil
	}
}

// maxReason bounds a verdict's reason: the control plane refuses longer
// strings, and operators need its start, not every byte.
const maxReason = 1024

// evidence is err's message, cut to maxReason bytes.
func evidence(err error) string {
	msg := err.Error()
	if len(msg) > maxReason {
		msg = strings.ToValidUTF8(msg[:maxReason-3], "") + "…"
	}
	return msg
}
