package storage

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// recoverer works through the recovery list: every certified blob is
// checked for pairs missing on the node's owned shards, and those are
// rebuilt from peers' recovery symbols (optimistic, secondary first —
// coding.RecoverPair). At most RecoveryWorkers blobs at once, each holding
// one pair's slivers and symbols at a time, so memory stays bounded.
type recoverer struct {
	n      *Node
	wakeCh chan struct{}

	mu        sync.Mutex
	firstSeen map[crypto.BlobID]time.Time
	retryAt   map[crypto.BlobID]time.Time
	attempts  map[crypto.BlobID]int
	inflight  map[crypto.BlobID]bool
	pending   int
}

func newRecoverer(n *Node) *recoverer {
	return &recoverer{
		n: n, wakeCh: make(chan struct{}, 1),
		firstSeen: map[crypto.BlobID]time.Time{}, retryAt: map[crypto.BlobID]time.Time{},
		attempts: map[crypto.BlobID]int{}, inflight: map[crypto.BlobID]bool{},
	}
}

func (r *recoverer) wake() {
	select {
	case r.wakeCh <- struct{}{}:
	default:
	}
}

func (r *recoverer) backlog() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

func (r *recoverer) run(ctx context.Context) {
	sem := make(chan struct{}, r.n.cfg.RecoveryWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	epochChanged := r.n.follower.Changed()
	for ctx.Err() == nil {
		next := r.dispatch(ctx, sem, &wg)
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
		case <-r.wakeCh:
		case <-epochChanged:
			epochChanged = r.n.follower.Changed()
		case <-timer.C:
		}
		timer.Stop()
	}
}

// dispatch starts recovery of every eligible pending blob and returns when
// to look again.
func (r *recoverer) dispatch(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) time.Time {
	next := time.Now().Add(time.Minute)
	pending, err := r.n.store.Pending()
	if err != nil {
		r.n.log.Error("storage: reading the recovery list", "err", err)
		return time.Now().Add(time.Second)
	}
	r.mu.Lock()
	r.pending = len(pending)
	r.forgetAllBut(pending)
	r.mu.Unlock()
	r.n.metrics.backlog.Set(float64(len(pending)))
	for _, p := range pending {
		id := p.ID
		if _, held := r.n.chal.embargoed(id); held {
			continue // peers refuse its symbols until the round closes (retryNow)
		}
		r.mu.Lock()
		now := time.Now()
		if _, ok := r.firstSeen[id]; !ok {
			r.firstSeen[id] = now
		}
		due := r.firstSeen[id].Add(r.n.cfg.RecoveryDelay)
		if t := r.retryAt[id]; t.After(due) {
			due = t
		}
		busy := r.inflight[id]
		if !busy && !due.After(now) {
			r.inflight[id] = true
		}
		r.mu.Unlock()
		if busy {
			continue
		}
		if due.After(now) {
			if due.Before(next) {
				next = due
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return next
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.n.recoverBlob(ctx, id, p.Epoch)
			if errors.Is(err, ErrEnded) {
				err = nil // it ended meanwhile: nothing left to hold
			}
			<-sem
			r.finish(id, err)
		}()
	}
	return next
}

// forgetAllBut drops the timings of blobs that left the recovery list
// without being recovered here (they ended, or were stored meanwhile), so
// that they do not pile up in a node that runs for months. r.mu is held.
func (r *recoverer) forgetAllBut(pending []PendingBlob) {
	keep := make(map[crypto.BlobID]bool, len(pending))
	for _, p := range pending {
		keep[p.ID] = true
	}
	for id := range r.firstSeen {
		if !keep[id] && !r.inflight[id] {
			delete(r.firstSeen, id)
			delete(r.retryAt, id)
			delete(r.attempts, id)
		}
	}
}

// retryNow clears the backoff of blobs whose challenge embargo lifted and
// wakes the worker.
func (r *recoverer) retryNow(ids []crypto.BlobID) {
	r.mu.Lock()
	for _, id := range ids {
		delete(r.retryAt, id)
		delete(r.attempts, id)
	}
	r.mu.Unlock()
	r.wake()
}

func (r *recoverer) finish(id crypto.BlobID, err error) {
	if err == nil {
		if derr := r.n.store.DonePending(id); derr != nil {
			err = derr
		}
	}
	r.mu.Lock()
	delete(r.inflight, id)
	if err == nil {
		delete(r.firstSeen, id)
		delete(r.retryAt, id)
		delete(r.attempts, id)
	} else {
		r.attempts[id]++
		backoff := min(time.Second<<min(r.attempts[id], 6), time.Minute)
		r.retryAt[id] = time.Now().Add(backoff)
		if r.n.cfg.RecoveryDelay < time.Second {
			r.retryAt[id] = time.Now().Add(backoff / 4)
		}
		if errors.Is(err, ErrNoSpace) {
			// Not the blob's fault: tried again once there may be room
			// (watchSpace logs the node being full, once).
			r.attempts[id]--
			r.retryAt[id] = time.Now().Add(noSpaceRetry)
		}
	}
	r.mu.Unlock()
	if errors.Is(err, ErrNoSpace) {
		r.n.log.Debug("storage: recovery waits for space", "blob", id, "err", err)
	} else if err != nil && !errors.Is(err, context.Canceled) {
		r.n.log.Warn("storage: recovery will be retried", "blob", id, "err", err)
	}
	r.wake()
}

// sliver reads a stored sliver. A corrupt one (its bytes fail their CRC or
// no longer parse) is quarantined; the caller gets the *CorruptError
// (DataLoss on the wire) and asks someone else.
func (n *Node) sliver(shard uint32, id crypto.BlobID, axis crypto.Axis) (coding.Sliver, error) {
	sl, err := n.store.Sliver(shard, id, axis)
	n.quarantine(err)
	return sl, err
}

// quarantine acts on a *CorruptError (any other error is left alone): the
// corrupt sliver is dropped and its blob put back on the recovery list, so
// the node rebuilds it from peers as if it had missed it.
func (n *Node) quarantine(err error) {
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) {
		return
	}
	dropped, derr := n.store.DropCorrupt(corrupt, n.follower.Current().Epoch)
	if derr != nil {
		n.log.Error("storage: dropping a corrupt sliver", "blob", corrupt.Blob, "shard", corrupt.Shard, "axis", corrupt.Axis, "err", derr)
		return
	}
	if dropped {
		n.metrics.corrupt.Inc()
		n.log.Error("storage: a stored sliver is corrupt; dropped, to be rebuilt from peers",
			"blob", corrupt.Blob, "shard", corrupt.Shard, "axis", corrupt.Axis, "err", corrupt.Cause)
		n.recovery.wake()
	}
}

// recoverBlob rebuilds the pairs of a certified blob missing on the shards
// the node owns — except on shards being handed over to it, for blobs
// certified before the epoch: those are the handover's to-do list.
func (n *Node) recoverBlob(ctx context.Context, id crypto.BlobID, certified uint64) error {
	a := n.follower.Current()
	owned := a.Owned(n.cfg.ID)
	if invalid, err := n.store.IsInvalid(id); err != nil || invalid {
		return err
	}
	states, err := n.store.ShardStates()
	if err != nil {
		return err
	}
	var missing []uint32
	for _, shard := range owned {
		if states[shard] == ShardSyncing && certified < a.Epoch {
			continue
		}
		has, err := n.store.HasPair(shard, id)
		if err != nil {
			return err
		}
		if !has {
			missing = append(missing, shard)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	meta, err := n.metadataFor(ctx, id, a)
	if err != nil {
		return err
	}
	if err := n.store.PutMetadataShards(owned, id, meta); err != nil {
		return err
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return err
	}
	params := codec.Params()
	// No symbols fetched for pairs the node has no room for.
	if err := n.store.CheckRoom(int64(len(missing)) * pairDiskBytes(params, meta.Length)); err != nil {
		return err
	}
	for _, shard := range missing {
		pair := params.PairForShard(int(shard), id)
		fetch := n.newPeerFetcher(id, a, codec, meta, false)
		sp, stats, err := codec.RecoverPair(ctx, meta, pair, fetch)
		n.metrics.bytesRecovered.Add(float64(stats.BytesReceived))
		for _, bad := range stats.Faulty {
			n.metrics.rejected.WithLabelValues("recovery-symbol").Inc()
			n.log.Warn("storage: rejected a bad recovery symbol", "blob", id, "source", bad, "from", fetch.holderOf(bad))
		}
		var inconsistent *coding.InconsistencyError
		if errors.As(err, &inconsistent) {
			n.log.Warn("storage: recovery proved the blob inconsistently encoded", "blob", id, "target", inconsistent.Proof.Target)
			return n.reportInvalid(ctx, inconsistent.Proof)
		}
		if err != nil {
			return fmt.Errorf("recovering pair %d (shard %d): %w", pair, shard, err)
		}
		if err := n.store.PutPair(shard, id, sp); err != nil {
			return fmt.Errorf("storing recovered pair %d: %w", pair, err)
		}
		n.metrics.slivers.WithLabelValues("recovered").Add(2)
		n.log.Info("storage: recovered a sliver pair", "blob", id, "shard", shard, "pair", pair,
			"bytes_fetched", stats.BytesReceived, "proofs", stats.UsedProofs)
	}
	return nil
}

// metadataFor returns a blob's metadata: stored locally, or from peers,
// checked against the blob ID.
func (n *Node) metadataFor(ctx context.Context, id crypto.BlobID, a Assignment) (*crypto.Metadata, error) {
	if meta, err := n.store.AnyMetadata(id); err == nil {
		return meta, nil
	}
	c, err := n.peers.committeeOf(ctx, a.Epoch)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, m := range c.Members {
		if m.Node == n.cfg.ID {
			continue
		}
		meta, err := n.peerMetadata(ctx, a.Epoch, m.Node, id)
		if err == nil {
			return meta, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Node, err))
	}
	return nil, fmt.Errorf("no peer served valid metadata for %s: %w", id, errors.Join(errs...))
}

func (n *Node) peerMetadata(ctx context.Context, epoch uint64, node shardmap.NodeID, id crypto.BlobID) (*crypto.Metadata, error) {
	peer, err := n.peers.peer(ctx, epoch, node)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.PeerTimeout)
	defer cancel()
	resp, err := peer.GetMetadata(cctx, &weftv1.GetMetadataRequest{BlobId: id[:]})
	if err != nil {
		return nil, err
	}
	meta := new(crypto.Metadata)
	if err := meta.UnmarshalBinary(resp.Metadata); err != nil {
		return nil, err
	}
	if err := meta.CheckBlobID(id); err != nil {
		n.metrics.rejected.WithLabelValues("metadata").Inc()
		n.log.Warn("storage: rejected metadata from a peer", "blob", id, "peer", node, "err", err)
		return nil, err
	}
	return meta, nil
}

// peerFetcher gets recovery symbols for one blob from the nodes holding
// the source slivers in the assignment: one batched call per node, all
// nodes at once, each with its own timeout; its own slivers it reads
// locally.
type peerFetcher struct {
	n  *Node
	id crypto.BlobID
	a  Assignment
	// holders: ask each shard's holder rather than its owner — for blobs
	// certified before the epoch, during a handover.
	holders bool
	// symbolSize is the blob's symbol size, which a batched answer
	// (coding.SymbolBatch) does not carry: with it the fetcher asks for
	// one; without it (0), symbol by symbol.
	symbolSize int
}

// newPeerFetcher returns the fetcher of a blob's recovery symbols.
func (n *Node) newPeerFetcher(id crypto.BlobID, a Assignment, codec *coding.Codec, meta *crypto.Metadata, holders bool) *peerFetcher {
	s, err := codec.Params().SymbolSize(meta.Length)
	if err != nil {
		s = 0 // recovery refuses such metadata anyway
	}
	return &peerFetcher{n: n, id: id, a: a, holders: holders, symbolSize: s}
}

// holderOf names the node a source sliver was asked of (for logs).
func (f *peerFetcher) holderOf(src coding.SliverRef) shardmap.NodeID {
	shard, err := f.n.sliverShard(f.id, src.Axis, src.Index)
	if err != nil || int(shard) >= len(f.a.Owners) {
		return ""
	}
	if f.holders && f.a.Holders[shard] != "" {
		return f.a.Holders[shard]
	}
	return f.a.Owners[shard]
}

func (f *peerFetcher) FetchSymbols(ctx context.Context, target coding.SliverRef, sources []uint32, withProofs bool) ([]coding.RecoverySymbol, error) {
	got, _, err := f.FetchSymbolsCounted(ctx, target, sources, withProofs)
	return got, err
}

// FetchSymbolsCounted makes peerFetcher a coding.CountingFetcher: its
// peers answer in batches, whose bytes no one symbol's encoding accounts
// for. It counts the answers' payloads as they arrived (batch, or each
// symbol's encoding), usable or not; symbols this node computes from its
// own slivers cost nothing.
func (f *peerFetcher) FetchSymbolsCounted(ctx context.Context, target coding.SliverRef, sources []uint32, withProofs bool) ([]coding.RecoverySymbol, int64, error) {
	srcAxis := crypto.Primary
	if target.Axis == crypto.Primary {
		srcAxis = crypto.Secondary
	}
	byNode := map[shardmap.NodeID][]symbolRequest{}
	for _, src := range sources {
		node := f.holderOf(coding.SliverRef{Axis: srcAxis, Index: src})
		if node != "" {
			byNode[node] = append(byNode[node], symbolRequest{source: coding.SliverRef{Axis: srcAxis, Index: src}, target: target.Index})
		}
	}
	var (
		mu       sync.Mutex
		out      []coding.RecoverySymbol
		received int64
		wg       sync.WaitGroup
	)
	for node, reqs := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			syms, bytes, err := f.fetchFrom(ctx, node, reqs, withProofs)
			mu.Lock()
			defer mu.Unlock()
			received += bytes
			if err != nil {
				f.n.log.Debug("storage: recovery symbols not served", "peer", node, "err", err)
				return
			}
			out = append(out, syms...)
		}()
	}
	wg.Wait()
	return out, received, ctx.Err()
}

// fetchFrom asks one node for its symbols and returns those that answer
// what was asked, and the bytes its answer carried. It asks for a
// coding.SymbolBatch when it knows the symbol size; a node of an earlier
// release answers symbol by symbol (compact) whatever is asked, so either
// form is accepted — but not both at once.
func (f *peerFetcher) fetchFrom(ctx context.Context, node shardmap.NodeID, reqs []symbolRequest, withProofs bool) ([]coding.RecoverySymbol, int64, error) {
	if node == f.n.cfg.ID {
		syms, err := f.n.localSymbols(f.id, reqs, withProofs)
		return syms, 0, err
	}
	peer, err := f.n.peers.peer(ctx, f.a.Epoch, node)
	if err != nil {
		return nil, 0, err
	}
	version := uint32(coding.SymbolVersionCompact)
	if f.symbolSize > 0 {
		version = coding.SymbolVersionBatch
	}
	req := &weftv1.GetRecoverySymbolsRequest{BlobId: f.id[:], WithProofs: withProofs, SymbolVersion: version}
	asked := map[symbolRequest]bool{}
	for _, r := range reqs {
		asked[r] = true
		req.Symbols = append(req.Symbols, &weftv1.SymbolRequest{SourceAxis: uint32(r.source.Axis), Source: r.source.Index, Target: r.target})
	}
	cctx, cancel := context.WithTimeout(ctx, f.n.cfg.PeerTimeout)
	defer cancel()
	resp, err := peer.GetRecoverySymbols(cctx, req)
	if err != nil {
		return nil, 0, err
	}
	received := int64(len(resp.Batch))
	for _, raw := range resp.Symbols {
		received += int64(len(raw))
	}
	reject := func(err error) ([]coding.RecoverySymbol, int64, error) {
		f.n.metrics.rejected.WithLabelValues("recovery-symbol").Inc()
		f.n.log.Warn("storage: malformed recovery symbols", "peer", node, "err", err)
		return nil, received, err
	}
	if len(resp.Batch) > 0 {
		if len(resp.Symbols) > 0 || version < coding.SymbolVersionBatch {
			return reject(fmt.Errorf("a batch (asked for version %d) and %d symbols", version, len(resp.Symbols)))
		}
		// The batch names its symbols by position in the request list, so
		// it answers only what was asked of this node.
		batch := coding.SymbolBatch{SymbolSize: f.symbolSize, Proofs: withProofs}
		for _, r := range reqs {
			batch.Asked = append(batch.Asked, coding.SymbolRequest{Source: r.source, Target: r.target})
		}
		if err := batch.UnmarshalBinary(resp.Batch); err != nil {
			return reject(err)
		}
		return batch.Symbols, received, nil
	}
	var out []coding.RecoverySymbol
	for _, raw := range resp.Symbols {
		var sym coding.RecoverySymbol
		if err := sym.UnmarshalBinary(raw); err != nil {
			f.n.metrics.rejected.WithLabelValues("recovery-symbol").Inc()
			f.n.log.Warn("storage: malformed recovery symbol", "peer", node, "err", err)
			continue
		}
		// Only answers to what was asked of this node count: a node cannot
		// speak for slivers other nodes hold.
		if !asked[symbolRequest{source: sym.SourceRef(), target: sym.Target}] {
			f.n.metrics.rejected.WithLabelValues("recovery-symbol").Inc()
			continue
		}
		out = append(out, sym)
	}
	return out, received, nil
}

// reportInvalid turns an inconsistency proof into an invalid-blob
// certificate: the node checks the proof itself, signs, asks committee
// members (in random order, a few at a time) to check and sign until the
// signers own f+1 shards, and submits the certificate.
func (n *Node) reportInvalid(ctx context.Context, proof *coding.InconsistencyProof) error {
	if err := n.codecs.VerifyInconsistencyProof(proof); err != nil {
		return fmt.Errorf("own inconsistency proof does not verify: %w", err)
	}
	raw, err := proof.MarshalBinary()
	if err != nil {
		return err
	}
	a := n.follower.Current()
	c, err := n.peers.committeeOf(ctx, a.Epoch)
	if err != nil {
		return err
	}
	body := crypto.BlobInvalid{BlobID: proof.BlobID}
	msg, err := crypto.EncodeMessage(a.Epoch, body)
	if err != nil {
		return err
	}
	sigs, asked := n.invalidSignatures(ctx, a.Epoch, c, raw, msg)
	cert, err := crypto.BuildCertificate(c.View(), body, sigs)
	if err != nil {
		return fmt.Errorf("invalid-blob certificate for %s (%d signers of %d asked): %w", proof.BlobID, len(sigs), asked, err)
	}
	certRaw, err := cert.MarshalBinary()
	if err != nil {
		return err
	}
	err = n.cfg.Plane.Report(ctx, a.Epoch, &weftv1.MarkBlobInvalidRequest{BlobId: proof.BlobID[:], Certificate: certRaw})
	if code := status.Code(err); code == codes.AlreadyExists {
		err = nil
	}
	if err == nil {
		n.log.Warn("storage: blob marked invalid at the control plane", "blob", proof.BlobID, "signers", len(sigs), "asked", asked)
	}
	return err
}

const (
	// invalidParallel bounds the signature requests of one invalid-blob
	// report in flight at once.
	invalidParallel = 8
	// invalidHedgeFactor: when no answer came for PeerTimeout / factor,
	// one more member is asked besides the slow ones.
	invalidHedgeFactor = 2
)

// invalidSignatures collects signatures of "blob invalid" — the node's own
// first — until their signers own the f+1 shards the certificate needs.
// It asks only as many members as could reach that weight if all answer
// (more when some refuse, time out, or are slow past the hedge delay), at
// most invalidParallel at once, in random order so that no fixed member
// is asked by every reporter. It returns the signatures and how many
// peers it asked; stragglers still pending are cancelled.
func (n *Node) invalidSignatures(ctx context.Context, epoch uint64, c *control.Committee, proof, msg []byte) ([]crypto.MemberSignature, int) {
	need := c.View().ValidityThreshold()
	var sigs []crypto.MemberSignature
	var weight uint64
	var peers []control.Member
	for _, m := range c.Members {
		switch {
		case m.Node == n.cfg.ID && m.Weight > 0:
			sigs = append(sigs, crypto.MemberSignature{Key: m.PublicKey, Signature: n.cfg.Key.Sign(msg)})
			weight += uint64(m.Weight)
		case m.Node != n.cfg.ID && m.Weight > 0:
			peers = append(peers, m)
		}
	}
	mrand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stragglers: their answers are no longer needed
	type answer struct {
		m   control.Member
		sig *crypto.Signature
	}
	answers := make(chan answer, len(peers)) // never blocks a straggler
	ask := func(m control.Member) {
		go func() {
			sig, err := n.invalidSignature(ctx, epoch, m.Node, proof, msg)
			if err == nil && m.PublicKey.Verify(msg, sig) != nil {
				err = errors.New("signature does not verify")
				n.log.Warn("storage: bad invalid-blob signature", "peer", m.Node)
			}
			if err != nil {
				n.log.Debug("storage: no invalid-blob signature", "peer", m.Node, "err", err)
				sig = nil
			}
			answers <- answer{m, sig}
		}()
	}
	var pending uint64 // weight of the members asked and not yet answered
	asked, running := 0, 0
	for weight < need {
		for asked < len(peers) && running < invalidParallel && weight+pending < need {
			ask(peers[asked])
			pending += uint64(peers[asked].Weight)
			asked, running = asked+1, running+1
		}
		if running == 0 {
			break // every member answered and the weight falls short
		}
		select {
		case ans := <-answers:
			running--
			pending -= uint64(ans.m.Weight)
			if ans.sig != nil {
				sigs = append(sigs, crypto.MemberSignature{Key: ans.m.PublicKey, Signature: ans.sig})
				weight += uint64(ans.m.Weight)
			}
		case <-time.After(n.cfg.PeerTimeout / invalidHedgeFactor):
			if asked < len(peers) && running < invalidParallel {
				ask(peers[asked])
				pending += uint64(peers[asked].Weight)
				asked, running = asked+1, running+1
			}
		case <-ctx.Done():
			return sigs, asked
		}
	}
	return sigs, asked
}

func (n *Node) invalidSignature(ctx context.Context, epoch uint64, node shardmap.NodeID, proof, msg []byte) (*crypto.Signature, error) {
	if node == n.cfg.ID {
		return n.cfg.Key.Sign(msg), nil
	}
	peer, err := n.peers.peer(ctx, epoch, node)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.PeerTimeout)
	defer cancel()
	resp, err := peer.SignInvalid(cctx, &weftv1.SignInvalidRequest{Proof: proof})
	if err != nil {
		return nil, err
	}
	if resp.Epoch != epoch {
		return nil, fmt.Errorf("signed for epoch %d, not %d", resp.Epoch, epoch)
	}
	return crypto.SignatureFromBytes(resp.Signature)
}
