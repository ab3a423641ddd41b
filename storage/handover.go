package storage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// syncPage is how many blobs one sync request asks for.
const syncPage = 64

// SyncShard serves a page of a shard to its owner (DESIGN §5): the request
// must be signed by the node the current epoch names as the shard's owner,
// for this epoch, with a nonce above its previous one.
func (s *service) SyncShard(req *weftv1.SyncShardRequest, stream weftv1.Storage_SyncShardServer) error {
	n := s.n
	sr, err := n.authorizeSync(stream.Context(), req)
	if err != nil {
		return err
	}
	// The signature names the peer: the owner's node ID, not its address.
	peer := "node " + req.Node
	ids, err := n.store.Blobs(sr.Shard, sr.After, int(min(max(sr.Limit, 1), 256)))
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	for _, id := range ids {
		if err := n.sendSyncedCounted(stream, peer, sr.Shard, id); err != nil {
			return err
		}
	}
	return nil
}

// sendSyncedCounted sends one blob's pair, counted against the owner's
// read caps while it is read and sent (one pair at a time).
func (n *Node) sendSyncedCounted(stream weftv1.Storage_SyncShardServer, peer string, shard uint32, id crypto.BlobID) error {
	call, err := n.openRead(peer, shard, id, crypto.Primary, crypto.Secondary)
	if status.Code(err) == codes.NotFound {
		return nil // deleted since it was listed
	}
	if err != nil {
		return err
	}
	defer call.close()
	return n.sendSynced(stream, shard, id)
}

// authorizeSync checks a sync request: who signed it, for which epoch and
// shard, and that it is not a replay.
func (n *Node) authorizeSync(ctx context.Context, req *weftv1.SyncShardRequest) (crypto.ShardSyncRequest, error) {
	epoch, body, err := crypto.DecodeMessage(req.Message)
	if err != nil {
		return crypto.ShardSyncRequest{}, status.Errorf(codes.InvalidArgument, "sync request: %v", err)
	}
	sr, ok := body.(crypto.ShardSyncRequest)
	if !ok {
		return crypto.ShardSyncRequest{}, status.Errorf(codes.InvalidArgument, "signed message is a %s, not a shard sync request", body.MessageType())
	}
	a := n.follower.Current()
	if epoch > a.Epoch {
		// The owner may have seen the new epoch before this node did.
		a = n.awaitEpoch(ctx, epoch, 5*time.Second)
	}
	switch {
	case epoch != a.Epoch:
		return sr, status.Errorf(codes.PermissionDenied, "sync request for epoch %d; this node is in epoch %d", epoch, a.Epoch)
	case int(sr.Shard) >= len(a.Owners):
		return sr, status.Errorf(codes.InvalidArgument, "shard %d of %d", sr.Shard, len(a.Owners))
	case a.Owners[sr.Shard] != shardmap.NodeID(req.Node):
		return sr, status.Errorf(codes.PermissionDenied, "node %q does not own shard %d in epoch %d", req.Node, sr.Shard, epoch)
	}
	c, err := n.peers.committeeOf(ctx, epoch)
	if err != nil {
		return sr, status.Errorf(codes.Unavailable, "committee of epoch %d: %v", epoch, err)
	}
	var key *crypto.PublicKey
	if m, ok := c.Member(shardmap.NodeID(req.Node)); ok {
		key = m.PublicKey
	}
	sig, serr := crypto.SignatureFromBytes(req.Signature)
	if key == nil || serr != nil || key.Verify(req.Message, sig) != nil {
		n.metrics.rejected.WithLabelValues("sync-request").Inc()
		return sr, status.Errorf(codes.PermissionDenied, "sync request not signed by %q's key", req.Node)
	}
	// Nonces grow per requester and shard: a shard's pages are asked one
	// after another, while several shards may sync at once.
	nk := syncNonceKey{node: req.Node, shard: sr.Shard}
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	if last := n.syncNonces[nk]; sr.Nonce <= last {
		return sr, status.Errorf(codes.PermissionDenied, "sync request nonce %d is not above %d: a replay", sr.Nonce, last)
	}
	n.syncNonces[nk] = sr.Nonce
	return sr, nil
}

type syncNonceKey struct {
	node  string
	shard uint32
}

// awaitEpoch waits up to d for the followed state to reach an epoch and
// returns the state then.
func (n *Node) awaitEpoch(ctx context.Context, epoch uint64, d time.Duration) Assignment {
	deadline := time.After(d)
	for {
		changed := n.follower.Changed()
		a := n.follower.Current()
		if a.Epoch >= epoch {
			return a
		}
		select {
		case <-changed:
		case <-deadline:
			return a
		case <-ctx.Done():
			return a
		}
	}
}

// sendSynced streams one blob of a shard: its metadata, then its pair.
func (n *Node) sendSynced(stream weftv1.Storage_SyncShardServer, shard uint32, id crypto.BlobID) error {
	meta, err := n.store.Metadata(shard, id)
	if err != nil {
		return nil // deleted since it was listed
	}
	raw, err := meta.MarshalBinary()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	var slivers []coding.Sliver
	for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
		sl, err := n.sliver(shard, id, axis)
		if err != nil {
			return nil
		}
		if n.cfg.Faults.CorruptSlivers {
			spoil(sl.Data)
		}
		slivers = append(slivers, sl)
	}
	if err := stream.Send(&weftv1.SyncShardItem{BlobId: id[:], Metadata: raw}); err != nil {
		return err
	}
	for _, sl := range slivers {
		err := sendChunks(sl, func(c *weftv1.SliverChunk) error {
			if err := stream.Send(&weftv1.SyncShardItem{Chunk: c}); err != nil {
				return err
			}
			n.metrics.bytesServed.WithLabelValues("sync").Add(float64(len(c.Data)))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// handover runs the syncs of gained shards, one per shard; what they do
// at once is bounded by the node's syncLimits (syncbudget.go).
type handover struct {
	n       *Node
	mu      sync.Mutex
	running map[uint32]bool
}

func newHandover(n *Node) *handover {
	return &handover{n: n, running: map[uint32]bool{}}
}

// start launches the sync of every shard the node owns in a Syncing state.
func (h *handover) start(ctx context.Context, a Assignment) {
	n := h.n
	states, err := n.store.ShardStates()
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for shard, owner := range a.Owners {
		s := uint32(shard)
		if owner != n.cfg.ID || states[s] != ShardSyncing || h.running[s] {
			continue
		}
		h.running[s] = true
		n.goRun(func() {
			n.syncUntilDone(ctx, a, s)
			h.mu.Lock()
			delete(h.running, s)
			h.mu.Unlock()
			// The epoch may have moved on while this sync ran: pick the
			// shard up again under the new assignment if it still needs it.
			if ctx.Err() == nil {
				h.start(ctx, n.follower.Current())
			}
		})
	}
}

// syncUntilDone syncs a gained shard, retrying after failures for as long
// as the epoch and the shard's assignment stay as they were.
func (n *Node) syncUntilDone(ctx context.Context, a Assignment, shard uint32) {
	for ctx.Err() == nil {
		err := n.syncShard(ctx, a, shard)
		if err == nil || ctx.Err() != nil {
			return
		}
		n.log.Warn("storage: shard handover will be retried", "shard", shard, "epoch", a.Epoch, "err", err)
		sleep(ctx, retryWait(err, 2*time.Second))
		if cur := n.follower.Current(); cur.Epoch != a.Epoch || cur.Owners[shard] != n.cfg.ID {
			return
		}
	}
}

// deleteRetired deletes the data of shards the committed state shows the
// node neither owns nor holds — asked again inside the deleting
// transaction, since a shard can come back (A → B → A). A shard the node
// must still prove in an open challenge round waits for the round's close.
func (n *Node) deleteRetired() {
	states, err := n.store.ShardStates()
	if err != nil {
		return
	}
	for shard, state := range states {
		if state != ShardRetired || n.chal.mustProve(shard) {
			continue
		}
		gone := func() bool {
			a := n.follower.Current()
			return int(shard) < len(a.Owners) && a.Owners[shard] != n.cfg.ID && a.Holders[shard] != n.cfg.ID
		}
		if !gone() {
			continue
		}
		// Deleted already. A shard with no pair left may still reference
		// metadata, which goes with it.
		if keeps, _ := n.store.KeepsShard(shard); !keeps {
			continue
		}
		if err := n.store.DeleteShard(shard, gone); err == nil {
			n.log.Info("storage: deleted a shard it neither owns nor holds", "shard", shard)
		}
	}
}

// syncShard hands a gained shard over: every blob certified before the
// epoch (the registry's list, not what the holder happens to have) is
// copied from the holder and checked, or rebuilt by recovery when the
// holder lacks it, cannot serve it or serves it wrong. Progress is on disk
// with each pair; when the list is done the node signs "shard synced".
func (n *Node) syncShard(ctx context.Context, a Assignment, shard uint32) error {
	start := time.Now()
	cursor, err := n.store.SyncCursor(a.Epoch, shard)
	if err != nil {
		return err
	}
	for {
		more, next, err := n.syncPage(ctx, a, shard, cursor)
		if err != nil {
			return err
		}
		if cursor = next; !more {
			break
		}
	}
	if a.Holders[shard] != n.cfg.ID {
		// Counted as synced before the report goes out: the control plane
		// may close the handover before the report's answer is back, and a
		// status read in between must not show the shard still syncing.
		n.markSynced(a.Epoch, shard)
		if err := n.reportSynced(ctx, a.Epoch, shard); err != nil {
			return err
		}
	}
	// Owned from now on, unless the assignment moved on meanwhile.
	if cur := n.follower.Current(); cur.Epoch == a.Epoch && cur.Owners[shard] == n.cfg.ID {
		if err := n.store.SetShardState(shard, ShardOwned); err != nil {
			return err
		}
	}
	n.metrics.handoverSeconds.Observe(time.Since(start).Seconds())
	n.log.Info("storage: shard synced", "shard", shard, "epoch", a.Epoch, "took", time.Since(start))
	return nil
}

// syncProgress is a page's progress. The shard's cursor moves past a
// to-do blob only once every blob before it is on disk, so a restart
// never skips a blob the holder lacked and that was not rebuilt yet. Pairs
// are written as they come (copied in the holder's order, rebuilt as each
// is done), each with the cursor as far as it can move then; one page's
// writes go one at a time, so the cursor on disk only moves forward.
type syncProgress struct {
	mu     sync.Mutex
	todo   []crypto.BlobID
	done   map[crypto.BlobID]bool
	next   int // todo[:next] are done
	cursor crypto.BlobID
}

func newSyncProgress(cursor crypto.BlobID, todo []crypto.BlobID) *syncProgress {
	return &syncProgress{todo: todo, done: map[crypto.BlobID]bool{}, cursor: cursor}
}

// cursorWithLocked is the cursor markLocked(id) would return, for writing
// it with id's pair; mark only once that write succeeded.
func (p *syncProgress) cursorWithLocked(id crypto.BlobID) crypto.BlobID {
	cursor := p.cursor
	for i := p.next; i < len(p.todo) && (p.done[p.todo[i]] || p.todo[i] == id); i++ {
		cursor = p.todo[i]
	}
	return cursor
}

// markLocked records a blob as on disk (or as no longer needed) and
// returns the cursor.
func (p *syncProgress) markLocked(id crypto.BlobID) crypto.BlobID {
	p.done[id] = true
	for p.next < len(p.todo) && p.done[p.todo[p.next]] {
		p.cursor = p.todo[p.next]
		p.next++
	}
	return p.cursor
}

// mark records a blob as on disk or as no longer needed and returns the
// cursor.
func (p *syncProgress) mark(id crypto.BlobID) crypto.BlobID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.markLocked(id)
}

// commit has write store id's pair with the cursor as far as it moves
// with it, and marks id done if it did.
func (p *syncProgress) commit(id crypto.BlobID, write func(cursor crypto.BlobID) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := write(p.cursorWithLocked(id)); err != nil {
		return err
	}
	p.markLocked(id)
	return nil
}

func (p *syncProgress) isDone(id crypto.BlobID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done[id]
}

// position is the cursor and whether every blob of the page is done.
func (p *syncProgress) position() (crypto.BlobID, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cursor, p.next == len(p.todo)
}

// syncPage brings the next page of the to-do list in: copied from the
// holder where it can, rebuilt otherwise. It returns whether more pages
// follow and the new cursor. Listing and copying hold one of the node's
// sync streams; the rebuild does not, so a shard rebuilding slowly does
// not keep the others from copying.
func (n *Node) syncPage(ctx context.Context, a Assignment, shard uint32, cursor crypto.BlobID) (bool, crypto.BlobID, error) {
	lim := n.syncLim
	stream := &slot{ch: lim.streams}
	if err := stream.take(ctx); err != nil {
		return false, cursor, err
	}
	lim.budget.shardStarted(shard)
	defer lim.budget.shardStopped(shard)
	prog, more, err := n.copyPage(ctx, a, shard, cursor, stream)
	stream.give()
	if err != nil || prog == nil {
		return more, cursor, err
	}
	cursor, err = n.rebuildPage(ctx, a, shard, prog)
	return more, cursor, err
}

// copyPage lists the next page of the to-do list and copies what it can
// from the holder; nil when the list is done.
func (n *Node) copyPage(ctx context.Context, a Assignment, shard uint32, cursor crypto.BlobID, stream *slot) (*syncProgress, bool, error) {
	todo, more, err := n.cfg.Plane.ListCertified(ctx, a.Epoch, cursor, syncPage)
	if err != nil {
		return nil, false, fmt.Errorf("listing the certified blobs: %w", err)
	}
	if len(todo) == 0 {
		return nil, more, nil
	}
	prog := newSyncProgress(cursor, todo)
	for _, id := range todo {
		if has, _ := n.store.HasPair(shard, id); has {
			prog.mark(id) // stored before a restart, or sent by its writer
		}
	}
	if _, all := prog.position(); all {
		return prog, more, nil
	}
	if holder := a.Holders[shard]; holder != "" && holder != n.cfg.ID {
		err := n.copyRetrying(ctx, a, shard, holder, prog, stream)
		if errors.Is(err, ErrNoSpace) {
			return nil, more, err // rebuilding would fetch for nothing: retried later (retryWait)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Warn("storage: copying from the shard's holder; rebuilding instead", "shard", shard, "holder", holder, "err", err)
		}
	}
	return prog, more, nil
}

// rebuildPage rebuilds what the holder did not give, several at once (each
// is a round of small requests to many peers: latency, not bandwidth), and
// writes each pair as soon as it is rebuilt; returns the new cursor.
func (n *Node) rebuildPage(ctx context.Context, a Assignment, shard uint32, prog *syncProgress) (crypto.BlobID, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, rebuildParallel)
	for _, id := range prog.todo {
		if prog.isDone(id) {
			continue
		}
		if take(ctx, sem) != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.rebuildAndWrite(ctx, a, shard, id, prog); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	cursor, all := prog.position()
	// Keep what came before the first blob not done (each write carried
	// the cursor already; this one covers blobs that ended meanwhile).
	if err := n.store.WriteSynced(a.Epoch, shard, cursor); err != nil {
		return cursor, err
	}
	switch {
	case first != nil:
		return cursor, first
	case !all:
		return cursor, cmp.Or(ctx.Err(), errors.New("blobs of the page left to do"))
	}
	return cursor, nil
}

// rebuildAndWrite rebuilds one pair for a gained shard and writes it, its
// bytes held from the node's sync budget until written.
func (n *Node) rebuildAndWrite(ctx context.Context, a Assignment, shard uint32, id crypto.BlobID, prog *syncProgress) error {
	// Under an open challenge round nobody serves a sampled blob's symbols:
	// wait for the round to close rather than fail (holding none of the
	// node's rebuilds meanwhile).
	if err := n.chal.waitLifted(ctx, id); err != nil {
		return err
	}
	if err := take(ctx, n.syncLim.rebuilds); err != nil {
		return err
	}
	defer func() { <-n.syncLim.rebuilds }()
	v, release, err := n.rebuildForShard(ctx, a, shard, id)
	if err == nil {
		defer release()
		err = prog.commit(id, func(cursor crypto.BlobID) error { return n.store.WriteSynced(a.Epoch, shard, cursor, v) })
	}
	if errors.Is(err, ErrEnded) {
		prog.mark(id) // it ended since the list was made: nothing to hold
		return nil
	}
	if err != nil {
		return fmt.Errorf("rebuilding %s for shard %d: %w", id, shard, err)
	}
	return nil
}

// copyRetrying copies from the holder, trying again with backoff while it
// cannot be reached, until it has been unreachable for
// Config.CopyRetryWindow: each attempt goes on from what the last one
// wrote. The window is the holder's, not each shard's — a holder that is
// gone for good costs every shard it held one window in all, not one
// each. A holder that answers with an error is not asked again: the rest
// is rebuilt. The shard's sync stream is given back while it waits.
func (n *Node) copyRetrying(ctx context.Context, a Assignment, shard uint32, holder shardmap.NodeID, prog *syncProgress, stream *slot) error {
	backoff := copyBackoff
	for attempt := 1; ; attempt++ {
		err := n.copyFromHolder(ctx, a, shard, holder, prog)
		if err == nil || !holderUnreachable(err) {
			n.holderDown.answered(holder)
			return err
		}
		since := n.holderDown.failed(holder, n.cfg.CopyRetryWindow)
		if ctx.Err() != nil || time.Since(since)+backoff > n.cfg.CopyRetryWindow {
			return err
		}
		n.log.Info("storage: shard holder unreachable; trying the copy again", "shard", shard, "holder", holder, "attempt", attempt, "in", backoff, "err", err)
		stream.give()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := stream.take(ctx); err != nil {
			return err
		}
		backoff = min(2*backoff, copyMaxBackoff)
	}
}

// holderOutages remembers since when each holder has not answered.
type holderOutages struct {
	mu     sync.Mutex
	outage map[shardmap.NodeID]outage
}

type outage struct{ since, last time.Time }

// failed records a failed attempt and returns when the outage began: a
// failure more than window after the last one begins a new outage (the
// holder answered others meanwhile, or nobody asked).
func (h *holderOutages) failed(node shardmap.NodeID, window time.Duration) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.outage == nil {
		h.outage = map[shardmap.NodeID]outage{}
	}
	now := time.Now()
	o, ok := h.outage[node]
	if !ok || now.Sub(o.last) > window {
		o.since = now
	}
	o.last = now
	h.outage[node] = o
	return o.since
}

// answered ends the holder's outage.
func (h *holderOutages) answered(node shardmap.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.outage, node)
}

// The backoff between copy attempts from an unreachable holder.
const (
	copyBackoff    = 250 * time.Millisecond
	copyMaxBackoff = 4 * time.Second
)

// holderUnreachable: the holder did not answer (down, restarting, cut
// off), as opposed to answering with a refusal.
func holderUnreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// rebuildParallel bounds the pairs one shard's sync rebuilds at once
// (rebuildsPerNode all shards together).
const rebuildParallel = 8

// copyFromHolder asks the holder for the shard's blobs after the cursor
// and keeps, verified, those on the to-do list (each written with the
// cursor as far as it can move), until the page is covered or the holder
// has nothing more.
func (n *Node) copyFromHolder(ctx context.Context, a Assignment, shard uint32, holder shardmap.NodeID, prog *syncProgress) error {
	last := prog.todo[len(prog.todo)-1]
	peer, err := n.peers.peer(ctx, a.Epoch, holder)
	if err != nil {
		return err
	}
	after, _ := prog.position()
	for {
		req, err := n.signSync(a.Epoch, shard, after, 2*syncPage)
		if err != nil {
			return err
		}
		// A holder that sends nothing for 5 × PeerTimeout counts as
		// unreachable; the time the stream waits for the node's sync
		// budget is not the holder's.
		cctx, cancel := context.WithCancelCause(ctx)
		idle := 5 * n.cfg.PeerTimeout
		watch := &idleWatch{d: idle, t: time.AfterFunc(idle, func() {
			cancel(status.Errorf(codes.DeadlineExceeded, "the holder sent nothing for %s", idle))
		})}
		got, lastSeen, err := 0, crypto.BlobID{}, error(nil)
		stream, err := peer.SyncShard(cctx, req)
		if err == nil {
			got, lastSeen, err = n.receiveSync(ctx, stream, watch, a.Epoch, shard, prog)
		}
		watch.t.Stop()
		if cause := context.Cause(cctx); err != nil && cause != nil && ctx.Err() == nil {
			err = cause // the watch fired
		}
		cancel(nil)
		if err != nil {
			return err
		}
		if got < 2*syncPage || bytes.Compare(lastSeen[:], last[:]) >= 0 {
			return nil
		}
		after = lastSeen
	}
}

// idleWatch cancels a copy stream whose holder sends nothing for d; it is
// paused while the stream waits for the sync budget.
type idleWatch struct {
	d time.Duration
	t *time.Timer
}

func (w *idleWatch) kick()  { w.t.Reset(w.d) }
func (w *idleWatch) pause() { w.t.Stop() }

// receiveSync reads one sync stream: blobs on the to-do list not on disk
// yet are assembled, verified and written with the cursor; others are
// skipped. Each pair assembled holds its bytes from the node's sync budget,
// taken before its first chunk is read and given back once it is written
// or dropped. It returns how many blobs the holder sent and the last one.
func (n *Node) receiveSync(ctx context.Context, stream weftv1.Storage_SyncShardClient, watch *idleWatch, epoch uint64, shard uint32, prog *syncProgress) (int, crypto.BlobID, error) {
	want := map[crypto.BlobID]bool{}
	for _, id := range prog.todo {
		want[id] = true
	}
	var (
		count   int
		lastID  crypto.BlobID
		asm     *pairAssembler // nil while the current blob's chunks are skipped
		release = func() {}    // gives back the bytes asm holds
		current crypto.BlobID
	)
	drop := func() {
		asm = nil
		release()
		release = func() {}
	}
	defer drop()
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return count, lastID, nil
		}
		if err != nil {
			return count, lastID, err
		}
		watch.kick()
		// An item with a blob ID starts the next blob; the chunks of its
		// pair follow it.
		if len(item.BlobId) == crypto.DigestSize {
			count++
			drop() // a pair left incomplete: the holder skipped it
			current, lastID = crypto.BlobID(item.BlobId), crypto.BlobID(item.BlobId)
			if !want[current] || prog.isDone(current) {
				continue
			}
			if asm = n.syncAssembler(shard, current, item.Metadata, prog); asm == nil {
				continue
			}
			watch.pause()
			release, err = n.syncLim.budget.acquire(ctx, int64(asm.size(crypto.Primary)+asm.size(crypto.Secondary)))
			watch.kick()
			if err != nil {
				release = func() {}
				return count, lastID, err
			}
			continue
		}
		if asm == nil || item.Chunk == nil {
			continue
		}
		done, _, err := asm.add(item.Chunk)
		if err != nil {
			n.metrics.rejected.WithLabelValues("sync-pair").Inc()
			drop()
			continue
		}
		if done == nil {
			continue
		}
		err = n.keepSyncedPair(epoch, shard, current, done, prog)
		drop()
		if err != nil {
			return count, lastID, err
		}
	}
}

// syncAssembler starts on a blob the holder sent that is still to be
// copied: its metadata is stored for the shard, and an assembler for its
// pair returned. It returns nil to have the blob's chunks skipped: when
// the blob ended since the to-do list was made (marked done: nothing to
// hold), or when the holder's metadata is unusable (the blob stays to do,
// for the rebuild).
func (n *Node) syncAssembler(shard uint32, id crypto.BlobID, rawMeta []byte, prog *syncProgress) *pairAssembler {
	meta := new(crypto.Metadata)
	err := meta.UnmarshalBinary(rawMeta)
	if err == nil {
		err = n.store.PutMetadataShards([]uint32{shard}, id, meta)
	}
	if errors.Is(err, ErrEnded) {
		prog.mark(id) // it ended since the list was made: nothing to hold
		return nil
	}
	if err != nil {
		n.metrics.rejected.WithLabelValues("sync-metadata").Inc()
		return nil
	}
	onlyShard := func(s uint32) error {
		if s != shard {
			return fmt.Errorf("a pair of shard %d in the sync of shard %d", s, shard)
		}
		return nil
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return nil
	}
	asm, err := newPairAssembler(codec.Params(), id, meta.Length, onlyShard)
	if err != nil {
		return nil
	}
	return asm
}

// keepSyncedPair verifies a whole pair the holder sent and writes it with
// the cursor moved past its blob. A pair that fails verification is
// dropped, not an error: the blob stays to do, for the rebuild. Only a
// failed write ends the sync.
func (n *Node) keepSyncedPair(epoch uint64, shard uint32, id crypto.BlobID, done *assembledPair, prog *syncProgress) error {
	v, err := n.store.VerifyPair(done.shard, id, done.pair)
	if err != nil {
		recycle(done.pair)
		n.metrics.rejected.WithLabelValues("sync-pair").Inc()
		n.log.Warn("storage: the holder sent a pair that fails verification; it will be rebuilt", "blob", id, "shard", shard, "err", err)
		return nil
	}
	err = prog.commit(id, func(cursor crypto.BlobID) error { return n.store.WriteSynced(epoch, shard, cursor, v) })
	recycle(done.pair)
	if errors.Is(err, ErrEnded) {
		prog.mark(id) // it ended since the list was made: nothing to hold
		return nil
	}
	if err != nil {
		return err
	}
	n.metrics.handoverCopied.Add(float64(v.Size()))
	n.countHandover(epoch, int64(v.Size()), 0)
	return nil
}

func (n *Node) signSync(epoch uint64, shard uint32, after crypto.BlobID, limit uint32) (*weftv1.SyncShardRequest, error) {
	nonce, err := n.nonces.Next()
	if err != nil {
		return nil, err
	}
	msg, err := crypto.EncodeMessage(epoch, crypto.ShardSyncRequest{Shard: shard, After: after, Limit: limit, Nonce: nonce})
	if err != nil {
		return nil, err
	}
	return &weftv1.SyncShardRequest{Node: string(n.cfg.ID), Message: msg, Signature: n.cfg.Key.Sign(msg).Bytes()}, nil
}

// rebuildForShard recovers a blob's pair for a gained shard from the
// nodes that held the sources when the epoch began (the blob under no
// open challenge round). The pair holds its
// bytes from the node's sync budget from before its first symbol is asked
// until the returned release: twice the pair's size, for the symbols it
// is rebuilt from and the pair.
func (n *Node) rebuildForShard(ctx context.Context, a Assignment, shard uint32, id crypto.BlobID) (VerifiedPair, func(), error) {
	meta, err := n.metadataFor(ctx, id, a)
	if err != nil {
		return VerifiedPair{}, nil, err
	}
	if err := n.store.PutMetadataShards([]uint32{shard}, id, meta); err != nil {
		return VerifiedPair{}, nil, err
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return VerifiedPair{}, nil, err
	}
	size, err := pairBytes(codec.Params(), meta.Length)
	if err != nil {
		return VerifiedPair{}, nil, err
	}
	release, err := n.syncLim.budget.acquire(ctx, 2*size)
	if err != nil {
		return VerifiedPair{}, nil, err
	}
	// The holders as they are now: a source shard synced since the epoch
	// began is held by its new owner (possibly this node), and its
	// previous holder deletes it.
	if cur := n.follower.Current(); cur.Epoch == a.Epoch {
		a = cur
	}
	fetch := n.newPeerFetcher(id, a, codec, meta, true)
	pair, stats, err := codec.RecoverPair(ctx, meta, codec.Params().PairForShard(int(shard), id), fetch)
	n.metrics.handoverRebuilt.Add(float64(stats.BytesReceived))
	n.countHandover(a.Epoch, 0, int64(stats.BytesReceived))
	n.log.Debug("storage: rebuilt a pair for a gained shard", "blob", id, "shard", shard, "requests", stats.Requests,
		"symbols", stats.SymbolsReceived, "bytes", stats.BytesReceived, "proofs", stats.UsedProofs, "err", err)
	n.metrics.bytesRecovered.Add(float64(stats.BytesReceived))
	if err == nil {
		var v VerifiedPair
		if v, err = n.store.VerifyPair(shard, id, pair); err == nil {
			return v, release, nil
		}
	}
	release()
	return VerifiedPair{}, nil, err
}

// pairBytes is the size of a pair of a blob of the given length.
func pairBytes(p coding.Params, length uint64) (int64, error) {
	symbol, err := p.SymbolSize(length)
	if err != nil {
		return 0, err
	}
	return int64(symbol) * int64(p.SliverSymbols(crypto.Primary)+p.SliverSymbols(crypto.Secondary)), nil
}

// reportSynced tells the control plane the shard is synced (a signed node
// request; one at a time, so the nonces arrive in order).
func (n *Node) reportSynced(ctx context.Context, epoch uint64, shard uint32) error {
	n.reportMu.Lock()
	defer n.reportMu.Unlock()
	err := n.cfg.Plane.Report(ctx, epoch, &weftv1.ShardSyncedRequest{Epoch: epoch, Shard: shard})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}
