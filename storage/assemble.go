package storage

import (
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// pairAssembler puts a StorePairs stream's chunks back together into
// sliver pairs. It is pure (the shard check is a function it is given), so
// the parsing of outside bytes can be fuzzed on its own. Memory is bounded:
// at most maxPartialPairs pairs may be incomplete at once, no sliver
// grows past its size in the metadata, and a sliver's buffer grows with
// the bytes that arrived, never reserved for the declared size (a caller
// naming a 4 GiB blob and sending one byte must not pin a gigabyte).
type pairAssembler struct {
	params  coding.Params
	id      crypto.BlobID
	symbol  int
	owns    func(shard uint32) error
	partial map[uint32]*pairUpload
}

type pairUpload struct {
	shard     uint32
	primary   []byte
	secondary []byte
}

// assembledPair is a pair whose two slivers are complete (not yet verified).
type assembledPair struct {
	shard uint32
	pair  coding.SliverPair
}

func newPairAssembler(params coding.Params, id crypto.BlobID, length uint64, owns func(uint32) error) (*pairAssembler, error) {
	symbol, err := params.SymbolSize(length)
	if err != nil {
		return nil, storeError(err)
	}
	return &pairAssembler{params: params, id: id, symbol: symbol, owns: owns, partial: map[uint32]*pairUpload{}}, nil
}

// add takes one chunk and returns the pair it completed, if any. A chunk
// that is a whole sliver is kept as it is (kept); the bytes of any other
// are copied, and the caller may reuse its buffer.
func (a *pairAssembler) add(chunk *weftv1.SliverChunk) (done *assembledPair, kept bool, err error) {
	if len(chunk.BlobId) != 0 && (len(chunk.BlobId) != crypto.DigestSize || crypto.BlobID(chunk.BlobId) != a.id) {
		return nil, false, status.Error(codes.InvalidArgument, "one StorePairs stream carries one blob")
	}
	axis, err := axisFrom(chunk.Axis)
	if err != nil {
		return nil, false, err
	}
	p := a.params
	if int(chunk.Index) >= p.Shards || int(chunk.SymbolSize) != a.symbol {
		return nil, false, status.Errorf(codes.InvalidArgument, "sliver %d of %d, symbol size %d (want %d)", chunk.Index, p.Shards, chunk.SymbolSize, a.symbol)
	}
	pair := crypto.PairIndex(axis, chunk.Index, uint32(p.Shards))
	up := a.partial[pair]
	if up == nil {
		shard := uint32(p.ShardForPair(int(pair), a.id))
		if err := a.owns(shard); err != nil {
			return nil, false, err
		}
		if len(a.partial) >= maxPartialPairs {
			return nil, false, status.Errorf(codes.ResourceExhausted, "more than %d pairs half-sent at once: send each pair's slivers together", maxPartialPairs)
		}
		up = &pairUpload{shard: shard}
		a.partial[pair] = up
	}
	buf := &up.primary
	if axis == crypto.Secondary {
		buf = &up.secondary
	}
	want := a.size(axis)
	if chunk.Offset != uint64(len(*buf)) || len(*buf)+len(chunk.Data) > want {
		return nil, false, status.Errorf(codes.InvalidArgument, "%s sliver %d: chunk at offset %d with %d bytes, have %d of %d",
			axis, chunk.Index, chunk.Offset, len(chunk.Data), len(*buf), want)
	}
	if *buf == nil && len(chunk.Data) == want {
		*buf = chunk.Data // the whole sliver in one message: keep it, no copy
		kept = true
	} else {
		*buf = grow(*buf, chunk.Data, want)
	}
	if len(up.primary) < a.size(crypto.Primary) || len(up.secondary) < a.size(crypto.Secondary) {
		return nil, kept, nil
	}
	delete(a.partial, pair)
	sliver := func(axis crypto.Axis, data []byte) coding.Sliver {
		return coding.Sliver{SliverRef: coding.SliverRef{Axis: axis, Index: uint32(p.PairSliver(int(pair), axis))}, SymbolSize: a.symbol, Data: data}
	}
	return &assembledPair{shard: up.shard, pair: coding.SliverPair{
		Index: pair, Primary: sliver(crypto.Primary, up.primary), Secondary: sliver(crypto.Secondary, up.secondary),
	}}, kept, nil
}

func (a *pairAssembler) size(axis crypto.Axis) int { return a.params.SliverSymbols(axis) * a.symbol }

// incomplete lists the pairs still missing bytes, ascending.
func (a *pairAssembler) incomplete() []uint32 {
	var open []uint32
	for p := range a.partial {
		open = append(open, p)
	}
	slices.Sort(open)
	return open
}

// grow appends data to buf, which holds the first bytes of a sliver of
// want bytes. Buffers are record buffers (the value log writes a stored
// sliver from its own buffer), pooled (the sink gives them back once the pair
// is written) and at least double when they fill, up to want: a stream of
// in-order chunks copies each byte about twice, not quadratically, and a
// buffer is less than twice the bytes it holds when it grows (4 KiB at
// least).
func grow(buf, data []byte, want int) []byte {
	need := len(buf) + len(data)
	if need <= cap(buf) {
		return append(buf, data...)
	}
	next := recordBuffer(min(want, max(need, 2*cap(buf))))[:0]
	next = append(append(next, buf...), data...)
	putAligned(buf)
	return next
}
