package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

const (
	chunkSize  = 1 << 20  // sliver bytes per stream message
	maxMessage = 16 << 20 // gRPC message cap (chunks, symbol batches)
	// maxPartialPairs bounds the pairs a StorePairs stream may leave
	// half-sent at once, and so the memory one writer can pin.
	maxPartialPairs = 4
	// lagWait is how long a node waits to see an epoch a writer already
	// knows before it refuses for the epoch.
	lagWait = 3 * time.Second
)

// service implements weftv1.StorageServer.
type service struct {
	weftv1.UnimplementedStorageServer
	n *Node
}

func blobIDFrom(b []byte) (crypto.BlobID, error) {
	if len(b) != crypto.DigestSize {
		return crypto.BlobID{}, status.Errorf(codes.InvalidArgument, "blob ID of %d bytes, want %d", len(b), crypto.DigestSize)
	}
	return crypto.BlobID(b), nil
}

func axisFrom(a uint32) (crypto.Axis, error) {
	if a > uint32(crypto.Secondary) {
		return 0, status.Errorf(codes.InvalidArgument, "axis %d: want 0 (primary) or 1 (secondary)", a)
	}
	return crypto.Axis(a), nil
}

// storeError maps store errors to gRPC codes.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrNoSpace):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrNoMetadata), errors.Is(err, ErrEnded):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, ErrWrongShard), errors.Is(err, crypto.ErrSliverMismatch), errors.Is(err, crypto.ErrBlobIDMismatch),
		errors.Is(err, coding.ErrInvalidParams), errors.Is(err, coding.ErrBlobTooLarge):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// checkWritable makes sure a blob may be written here: not marked invalid,
// and registered (and neither invalid nor expired) at the control plane.
func (n *Node) checkWritable(ctx context.Context, id crypto.BlobID) error {
	if invalid, err := n.store.IsInvalid(id); err != nil {
		return status.Error(codes.Internal, err.Error())
	} else if invalid {
		return status.Errorf(codes.FailedPrecondition, "blob %s is invalid", id)
	}
	if n.registered.Contains(id) {
		return nil
	}
	st, err := n.cfg.Plane.BlobStatus(ctx, id)
	if status.Code(err) == codes.NotFound {
		return status.Errorf(codes.NotFound, "blob %s is not registered at the control plane", id)
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "asking the control plane about blob %s: %v", id, err)
	}
	switch st.Status {
	case "registered", "certified":
	default:
		return status.Errorf(codes.FailedPrecondition, "blob %s is %s", id, st.Status)
	}
	// Events before the registration may still end an earlier
	// registration of the same content here (a node catching up after a
	// restart): what it took now, that event would delete.
	if err := n.awaitApplied(ctx, st.RegisteredIndex); err != nil {
		return err
	}
	n.registered.Add(id, struct{}{})
	return nil
}

// catchUpWait bounds how long a write waits for the node's event follower
// to reach the blob's registration (milliseconds, unless the node is
// catching up after a restart) before it is answered Unavailable.
const catchUpWait = 5 * time.Second

// awaitApplied waits until the node has applied the control plane's
// events up to index.
func (n *Node) awaitApplied(ctx context.Context, index uint64) error {
	timer := time.NewTimer(catchUpWait)
	defer timer.Stop()
	for {
		next := n.appliedChanged()
		applied, err := n.store.AppliedEvent()
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if applied >= index {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-timer.C:
			return status.Errorf(codes.Unavailable, "node %s has applied the control plane's events up to index %d, the blob's registration is at %d: catching up, retry",
				n.cfg.ID, applied, index)
		}
	}
}

// ownedNow lists the shards the node owns in the epoch it follows.
func (n *Node) ownedNow() (Assignment, []uint32, error) {
	a := n.follower.Current()
	owned := a.Owned(n.cfg.ID)
	if len(owned) == 0 {
		return a, nil, status.Errorf(codes.FailedPrecondition, "node %s owns no shards in epoch %d", n.cfg.ID, a.Epoch)
	}
	return a, owned, nil
}

func (s *service) StoreMetadata(ctx context.Context, req *weftv1.StoreMetadataRequest) (*weftv1.StoreMetadataResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	meta := new(crypto.Metadata)
	if err := meta.UnmarshalBinary(req.Metadata); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "metadata: %v", err)
	}
	if err := meta.CheckBlobID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.n.checkWritable(ctx, id); err != nil {
		return nil, err
	}
	_, owned, err := s.n.ownedNow()
	if err != nil {
		return nil, err
	}
	// A full node says so before the writer sends it pairs.
	if err := s.n.store.roomForBlob(meta, len(owned)); err != nil {
		return nil, storeError(err)
	}
	if err := s.n.store.PutMetadataShards(owned, id, meta); err != nil {
		return nil, storeError(err)
	}
	return &weftv1.StoreMetadataResponse{Shards: owned}, nil
}

// StorePairs receives sliver chunks. Each completed pair is verified in
// the background while the stream goes on (at most a few at once: the
// stream waits when they are all busy), and verified pairs are written in
// batches — one fsync per batch, not per pair. The response is sent once
// everything is on disk.
//
// The stream counts against its peer's stream cap from its start, and
// every chunk's bytes against the peer's in-flight cap until its pair is
// stored or dropped (PeerLimits).
func (s *service) StorePairs(stream weftv1.Storage_StorePairsServer) error {
	n := s.n
	call, err := n.writes.open(peerOf(stream.Context()))
	if err != nil {
		return err
	}
	defer call.close()
	var (
		asm  *pairAssembler
		sink *pairSink
	)
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if asm == nil {
			if asm, err = n.newAssembler(stream.Context(), chunk.BlobId); err != nil {
				putAligned(chunk.Data)
				return err
			}
			sink = newPairSink(n, asm.id, call)
		}
		done, err := s.assemble(call, asm, chunk)
		if err == nil && done != nil {
			err = sink.submit(done)
		}
		if err != nil {
			if _, ferr := sink.finish(); ferr != nil {
				n.log.Warn("storage: writing the pairs verified before an error", "blob", asm.id, "err", ferr)
			}
			return err
		}
	}
	if asm == nil {
		return stream.SendAndClose(&weftv1.StorePairsResponse{})
	}
	stored, err := sink.finish()
	if err != nil {
		return err
	}
	if open := asm.incomplete(); len(open) > 0 {
		return status.Errorf(codes.InvalidArgument, "stream ended with pairs %v incomplete (pairs %v stored)", open, stored)
	}
	return stream.SendAndClose(&weftv1.StorePairsResponse{Pairs: stored})
}

// assemble counts a chunk's bytes against the peer's in-flight cap and
// adds it to the stream's pairs. A chunk not kept as it is goes back to
// the decoder's pool (copied, or refused).
func (s *service) assemble(call *peerCall, asm *pairAssembler, chunk *weftv1.SliverChunk) (*assembledPair, error) {
	if err := call.reserve(int64(len(chunk.Data))); err != nil {
		putAligned(chunk.Data)
		return nil, err
	}
	done, kept, err := asm.add(chunk)
	if !kept {
		putAligned(chunk.Data)
	}
	return done, err
}

// pairSink verifies a stream's pairs in parallel and writes them in
// batches. Memory: at most cap(sem) pairs being verified plus one batch.
type pairSink struct {
	n    *Node
	id   crypto.BlobID
	call *peerCall // the stream's share of its peer's in-flight bytes
	sem  chan struct{}
	wg   sync.WaitGroup

	mu         sync.Mutex
	ready      []VerifiedPair
	readyBytes int
	err        error
	stored     []uint32
}

// batchBytes is how much verified data a stream gathers before a write.
const batchBytes = 32 << 20

func newPairSink(n *Node, id crypto.BlobID, call *peerCall) *pairSink {
	return &pairSink{n: n, id: id, call: call, sem: make(chan struct{}, min(runtime.GOMAXPROCS(0), 4))}
}

// submit starts verifying a pair (waiting for a free verifier) and writes
// the verified batch when it is full. It returns the first verification
// error of the stream.
func (s *pairSink) submit(p *assembledPair) error {
	if err := s.failed(); err != nil {
		return err
	}
	s.sem <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		start := time.Now()
		v, err := s.n.store.VerifyPair(p.shard, s.id, p.pair)
		s.n.metrics.verifySeconds.Add(time.Since(start).Seconds())
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.recycle(p.pair)
			s.n.metrics.rejected.WithLabelValues("store-pair").Inc()
			s.n.log.Warn("storage: rejected a sliver pair", "blob", s.id, "pair", p.pair.Index, "err", err)
			if s.err == nil {
				s.err = storeError(err)
			}
			return
		}
		v.inPlace = true // the assembler's buffers: record buffers, the stream's own
		s.ready = append(s.ready, v)
		s.readyBytes += v.Size()
	}()
	s.mu.Lock()
	full := s.readyBytes >= batchBytes
	s.mu.Unlock()
	if full {
		return s.flush()
	}
	return nil
}

func (s *pairSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// flush writes the verified pairs gathered so far.
func (s *pairSink) flush() error {
	s.mu.Lock()
	batch := s.ready
	s.ready, s.readyBytes = nil, 0
	s.mu.Unlock()
	start := time.Now()
	err := s.n.store.WritePairs(batch...)
	s.n.metrics.writeSeconds.Add(time.Since(start).Seconds())
	for _, v := range batch {
		if err == nil {
			s.n.metrics.bytesStored.Add(float64(v.Size()))
			s.stored = append(s.stored, v.pair.Index)
		}
		s.recycle(v.pair) // written (the store keeps copies) or failed
	}
	return storeError(err)
}

// recycle gives an assembled pair's buffers back to the pool and its bytes
// back to the peer's in-flight count; nothing may use the pair
// afterwards.
func (s *pairSink) recycle(p coding.SliverPair) {
	s.call.release(int64(len(p.Primary.Data) + len(p.Secondary.Data)))
	recycle(p)
}

// recycle gives an assembled pair's buffers back to the pool; nothing may
// use the pair afterwards.
func recycle(p coding.SliverPair) {
	putAligned(p.Primary.Data)
	putAligned(p.Secondary.Data)
}

// finish waits for the verifiers and writes what they passed; it returns
// the pairs stored, ascending, and the first error.
func (s *pairSink) finish() ([]uint32, error) {
	if s == nil {
		return nil, nil
	}
	s.wg.Wait()
	ferr := s.flush()
	slices.Sort(s.stored)
	if err := s.failed(); err != nil {
		return s.stored, err
	}
	return s.stored, ferr
}

// newAssembler starts a StorePairs stream: the blob must be writable and
// its metadata stored, the pairs must be of shards the node owns now.
func (n *Node) newAssembler(ctx context.Context, rawID []byte) (*pairAssembler, error) {
	id, err := blobIDFrom(rawID)
	if err != nil {
		return nil, err
	}
	if err := n.checkWritable(ctx, id); err != nil {
		return nil, err
	}
	meta, err := n.store.AnyMetadata(id)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "store the metadata of %s first", id)
	}
	a, owned, err := n.ownedNow()
	if err != nil {
		return nil, err
	}
	if err := n.store.roomForBlob(meta, 1); err != nil {
		return nil, storeError(err)
	}
	// The metadata went to the shards owned when it arrived; if the epoch
	// changed since, the shards gained need it too (it was checked against
	// the blob ID then).
	if err := n.store.PutMetadataShards(owned, id, meta); err != nil {
		return nil, storeError(err)
	}
	owns := func(shard uint32) error {
		if a.Owners[shard] != n.cfg.ID {
			// The writer may know of an epoch this node has not seen yet:
			// give the follower a moment before refusing.
			if next := n.awaitEpoch(ctx, a.Epoch+1, lagWait); next.Epoch > a.Epoch {
				a = next
				if owned := a.Owned(n.cfg.ID); len(owned) > 0 {
					if err := n.store.PutMetadataShards(owned, id, meta); err != nil {
						return storeError(err)
					}
				}
			}
		}
		if a.Owners[shard] != n.cfg.ID {
			return status.Errorf(codes.FailedPrecondition, "shard %d is not owned by node %s in epoch %d", shard, n.cfg.ID, a.Epoch)
		}
		return nil
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "metadata: %v", err)
	}
	return newPairAssembler(codec.Params(), id, meta.Length, owns)
}
func (s *service) GetMetadata(ctx context.Context, req *weftv1.GetMetadataRequest) (*weftv1.GetMetadataResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	meta, err := s.n.store.AnyMetadata(id)
	if err != nil {
		return nil, storeError(err)
	}
	raw, err := meta.MarshalBinary()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &weftv1.GetMetadataResponse{Metadata: raw}, nil
}

// sliverShard is the shard that holds a sliver of a blob.
func (n *Node) sliverShard(id crypto.BlobID, axis crypto.Axis, index uint32) (uint32, error) {
	p := n.codecs.Params()
	if int(index) >= p.Shards {
		return 0, status.Errorf(codes.InvalidArgument, "sliver %d of %d", index, p.Shards)
	}
	return uint32(p.ShardForPair(int(crypto.PairIndex(axis, index, uint32(p.Shards))), id)), nil
}

func (s *service) GetSliver(req *weftv1.GetSliverRequest, stream weftv1.Storage_GetSliverServer) error {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return err
	}
	axis, err := axisFrom(req.Axis)
	if err != nil {
		return err
	}
	shard, err := s.n.sliverShard(id, axis, req.Index)
	if err != nil {
		return err
	}
	if err := s.n.embargoError(id); err != nil {
		return err
	}
	call, err := s.n.openRead(peerOf(stream.Context()), shard, id, axis)
	if err != nil {
		return err
	}
	defer call.close()
	sl, err := s.n.sliver(shard, id, axis)
	if err != nil {
		return storeError(err)
	}
	if s.n.cfg.Faults.CorruptSlivers {
		spoil(sl.Data)
	}
	return sendChunks(sl, func(c *weftv1.SliverChunk) error {
		c.BlobId = id[:]
		if err := stream.Send(c); err != nil {
			return err
		}
		s.n.metrics.bytesServed.WithLabelValues("sliver").Add(float64(len(c.Data)))
		return nil
	})
}

// openRead counts a sliver read against its peer's read caps, with the
// sliver's size (from the metadata, before a byte of it is read).
func (n *Node) openRead(peer string, shard uint32, id crypto.BlobID, axes ...crypto.Axis) (*peerCall, error) {
	meta, err := n.store.Metadata(shard, id)
	if err != nil {
		return nil, storeError(err)
	}
	call, err := n.reads.open(peer)
	if err != nil {
		return nil, err
	}
	size, err := n.sliverBytes(meta, axes...)
	if err == nil {
		err = call.reserve(size)
	}
	if err != nil {
		call.close()
		return nil, err
	}
	return call, nil
}

// paramsFor are the parameters of the encoding a blob's metadata names.
func (n *Node) paramsFor(meta *crypto.Metadata) (coding.Params, error) {
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return coding.Params{}, err
	}
	return codec.Params(), nil
}

// sliverBytes is the size of a blob's slivers on the given axes.
func (n *Node) sliverBytes(meta *crypto.Metadata, axes ...crypto.Axis) (int64, error) {
	p, err := n.paramsFor(meta)
	if err != nil {
		return 0, storeError(err)
	}
	symbol, err := p.SymbolSize(meta.Length)
	if err != nil {
		return 0, storeError(err)
	}
	var size int64
	for _, axis := range axes {
		size += int64(p.SliverSymbols(axis) * symbol)
	}
	return size, nil
}

// sendChunks cuts a sliver into chunks of at most chunkSize bytes (one,
// empty, for an empty sliver) and hands each to send, in order.
func sendChunks(sl coding.Sliver, send func(*weftv1.SliverChunk) error) error {
	for off := 0; off == 0 || off < len(sl.Data); off += chunkSize {
		end := min(off+chunkSize, len(sl.Data))
		err := send(&weftv1.SliverChunk{Axis: uint32(sl.Axis), Index: sl.Index, SymbolSize: uint32(sl.SymbolSize), Offset: uint64(off), Data: sl.Data[off:end]})
		if err != nil || end == len(sl.Data) {
			return err
		}
	}
	return nil
}

func (s *service) GetRecoverySymbols(ctx context.Context, req *weftv1.GetRecoverySymbolsRequest) (*weftv1.GetRecoverySymbolsResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	if err := s.n.embargoError(id); err != nil {
		return nil, err
	}
	p := s.n.codecs.Params()
	if len(req.Symbols) > 2*p.Shards {
		return nil, status.Errorf(codes.InvalidArgument, "%d symbols asked at once, at most %d", len(req.Symbols), 2*p.Shards)
	}
	reqs := make([]symbolRequest, 0, len(req.Symbols))
	for _, r := range req.Symbols {
		axis, err := axisFrom(r.SourceAxis)
		if err != nil {
			return nil, err
		}
		if int(r.Source) >= p.Shards || int(r.Target) >= p.Shards {
			return nil, status.Errorf(codes.InvalidArgument, "symbol %d of sliver %d: out of range for %d shards", r.Target, r.Source, p.Shards)
		}
		reqs = append(reqs, symbolRequest{source: coding.SliverRef{Axis: axis, Index: r.Source}, target: r.Target})
	}
	call, err := s.n.openSymbols(peerOf(ctx), id, reqs)
	if err != nil {
		return nil, err
	}
	defer call.close()
	symbols, err := s.n.localSymbols(id, reqs, req.WithProofs)
	if err != nil {
		return nil, storeError(err)
	}
	if s.n.cfg.Faults.BadSymbols {
		for i := range symbols {
			// A copy: the symbol's bytes belong to a cached line.
			symbols[i].Data = append([]byte(nil), symbols[i].Data...)
			spoil(symbols[i].Data)
		}
	}
	version := req.SymbolVersion
	if limit := s.n.symbolVersionCap.Load(); limit != 0 {
		version = min(version, limit)
	}
	resp := &weftv1.GetRecoverySymbolsResponse{}
	if version >= coding.SymbolVersionBatch {
		batch := coding.SymbolBatch{SymbolSize: 1, Proofs: req.WithProofs, Symbols: symbols} // size 1: none served, none encoded
		if len(symbols) > 0 {
			batch.SymbolSize = len(symbols[0].Data)
		}
		for _, r := range reqs {
			batch.Asked = append(batch.Asked, coding.SymbolRequest{Source: r.source, Target: r.target})
		}
		raw, err := batch.MarshalBinary()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Batch = raw
		s.n.metrics.bytesServed.WithLabelValues("symbols").Add(float64(len(raw)))
		return resp, nil
	}
	for _, sym := range symbols {
		if version >= coding.SymbolVersionCompact {
			sym = sym.Compact()
		}
		raw, err := sym.MarshalBinary()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Symbols = append(resp.Symbols, raw)
		s.n.metrics.bytesServed.WithLabelValues("symbols").Add(float64(len(raw)))
	}
	return resp, nil
}

// openSymbols counts a recovery-symbol request against its peer's read
// caps, with what it may make the node hold: an extended line (n symbols
// and their hashes) per source sliver asked, and the symbols answered.
func (n *Node) openSymbols(peer string, id crypto.BlobID, reqs []symbolRequest) (*peerCall, error) {
	call, err := n.reads.open(peer)
	if err != nil {
		return nil, err
	}
	meta, err := n.store.AnyMetadata(id)
	if err != nil {
		return call, nil // nothing held, nothing to extend: the answer is empty
	}
	p, err := n.paramsFor(meta)
	if err != nil {
		call.close()
		return nil, storeError(err)
	}
	symbol, err := p.SymbolSize(meta.Length)
	if err != nil {
		call.close()
		return nil, storeError(err)
	}
	sources := map[coding.SliverRef]bool{}
	for _, r := range reqs {
		sources[r.source] = true
	}
	line := int64(p.Shards) * (int64(symbol) + 2*crypto.DigestSize)
	if err := call.reserve(int64(len(sources))*line + int64(len(reqs))*int64(symbol)); err != nil {
		call.close()
		return nil, err
	}
	return call, nil
}

type symbolRequest struct {
	source coding.SliverRef
	target uint32
}

// localSymbols computes recovery symbols from the slivers this node holds,
// extending each source sliver once, in request order (a SymbolBatch
// answers in that order); requests for slivers it does not hold are left
// out.
func (n *Node) localSymbols(id crypto.BlobID, reqs []symbolRequest, withProofs bool) ([]coding.RecoverySymbol, error) {
	lines := map[coding.SliverRef]*coding.ExtendedSliver{} // nil: not held
	var out []coding.RecoverySymbol
	for _, r := range reqs {
		ext, seen := lines[r.source]
		if !seen {
			var err error
			ext, err = n.extended(id, r.source)
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
				ext, err = nil, nil // not held (a corrupt sliver is dropped and rebuilt)
			}
			if err != nil {
				return nil, err
			}
			lines[r.source] = ext
		}
		if ext == nil {
			continue
		}
		sym, err := ext.Symbol(int(r.target), withProofs)
		if err != nil {
			return nil, err
		}
		out = append(out, sym)
	}
	return out, nil
}

// extended returns a held sliver's extended line, from the cache when it
// was extended recently.
func (n *Node) extended(id crypto.BlobID, src coding.SliverRef) (*coding.ExtendedSliver, error) {
	shard, err := n.sliverShard(id, src.Axis, src.Index)
	if err != nil {
		return nil, err
	}
	key := lineKey{id: id, ref: src, shard: shard}
	if ext := n.lines.get(key); ext != nil {
		return ext, nil
	}
	sl, err := n.sliver(shard, id, src.Axis)
	if err != nil {
		return nil, err
	}
	meta, err := n.store.Metadata(shard, id)
	if err != nil {
		return nil, err
	}
	codec, err := n.codecs.ForMetadata(meta)
	if err != nil {
		return nil, err
	}
	ext, err := codec.Extend(meta, sl)
	if err != nil {
		return nil, err
	}
	shards := int64(codec.Params().Shards)
	n.lines.put(key, ext, shards*int64(sl.SymbolSize)+2*shards*crypto.DigestSize)
	return ext, nil
}

// GetConfirmation signs "blob stored" for the current epoch once every
// shard the node owns holds the blob's verified pair (on disk: PutPair
// returns only after the commit).
func (s *service) GetConfirmation(ctx context.Context, req *weftv1.GetConfirmationRequest) (*weftv1.GetConfirmationResponse, error) {
	n := s.n
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	if a := n.follower.Current(); req.Epoch > a.Epoch {
		n.awaitEpoch(ctx, req.Epoch, lagWait) // the writer saw the epoch first
	}
	a, owned, err := n.ownedNow()
	if err != nil {
		return nil, err
	}
	if req.Epoch != a.Epoch {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s is in epoch %d, the request is for epoch %d", n.cfg.ID, a.Epoch, req.Epoch)
	}
	if invalid, err := n.store.IsInvalid(id); err != nil || invalid {
		return nil, status.Errorf(codes.FailedPrecondition, "blob %s is invalid", id)
	}
	var missing []uint32
	for _, shard := range owned {
		has, err := n.store.HasPair(shard, id)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !has {
			missing = append(missing, shard)
		}
	}
	if len(missing) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s lacks the slivers of %s for shards %v", n.cfg.ID, id, missing)
	}
	body := crypto.BlobStored{BlobID: id}
	if n.cfg.Faults.BadSignature {
		body.BlobID[0] ^= 0xff
	}
	sig, err := n.sign(a.Epoch, body)
	if err != nil {
		return nil, err
	}
	return &weftv1.GetConfirmationResponse{Node: string(n.cfg.ID), PublicKey: n.publicKey, Epoch: a.Epoch, Signature: sig}, nil
}

func (n *Node) sign(epoch uint64, body crypto.MessageBody) ([]byte, error) {
	msg, err := crypto.EncodeMessage(epoch, body)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return n.cfg.Key.Sign(msg).Bytes(), nil
}

// SignInvalid checks an inconsistency proof on its own and signs "blob
// invalid" when it holds.
func (s *service) SignInvalid(ctx context.Context, req *weftv1.SignInvalidRequest) (*weftv1.SignInvalidResponse, error) {
	n := s.n
	var proof coding.InconsistencyProof
	if err := proof.UnmarshalBinary(req.Proof); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "inconsistency proof: %v", err)
	}
	if err := n.codecs.VerifyInconsistencyProof(&proof); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "inconsistency proof rejected: %v", err)
	}
	a := n.follower.Current()
	sig, err := n.sign(a.Epoch, crypto.BlobInvalid{BlobID: proof.BlobID})
	if err != nil {
		return nil, err
	}
	n.log.Info("storage: signed an inconsistency proof", "blob", proof.BlobID, "target", proof.Target)
	return &weftv1.SignInvalidResponse{Node: string(n.cfg.ID), PublicKey: n.publicKey, Epoch: a.Epoch, Signature: sig}, nil
}

func (s *service) NodeStatus(ctx context.Context, _ *weftv1.NodeStatusRequest) (*weftv1.NodeStatusResponse, error) {
	n := s.n
	a := n.follower.Current()
	applied, err := n.store.AppliedEvent()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	states, err := n.store.ShardStates()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.NodeStatusResponse{
		Node: string(n.cfg.ID), PublicKey: n.publicKey, Epoch: a.Epoch, StateIndex: a.Index,
		AppliedEvent: applied, RecoveryBacklog: uint64(n.recovery.backlog()),
	}
	shards := make([]uint32, 0, len(states))
	for shard := range states {
		shards = append(shards, shard)
	}
	slices.Sort(shards)
	for _, shard := range shards {
		resp.Shards = append(resp.Shards, &weftv1.ShardStatus{Shard: shard, State: states[shard].String()})
		if states[shard] == ShardSyncing && !n.isSynced(a.Epoch, shard) {
			resp.ShardsSyncing = append(resp.ShardsSyncing, shard)
		}
	}
	st := n.metrics.snapshot()
	resp.HandoverBytesCopied, resp.HandoverBytesRebuilt = uint64(st.HandoverCopied), uint64(st.HandoverRebuilt)
	moved := n.handoverIn(a.Epoch)
	resp.EpochBytesCopied, resp.EpochBytesRebuilt = uint64(moved.copied), uint64(moved.rebuilt)
	resp.ShardsSynced = n.syncedIn(a.Epoch)
	u := n.store.Usage()
	refused, _ := n.store.SpaceRefusals()
	resp.CapacityBytes, resp.UsedBytes, resp.FreeBytes = uint64(u.Capacity), uint64(u.Used), uint64(u.Free)
	resp.WritesRefusedNoSpace = uint64(refused)
	return resp, nil
}

func (s ShardState) String() string {
	switch s {
	case ShardOwned:
		return "owned"
	case ShardSyncing:
		return "syncing"
	case ShardRecovering:
		return "recovering"
	case ShardHeld:
		return "held"
	case ShardRetired:
		return "retired"
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}
