package coding

import (
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// symbolRun says where the shards of one codec call lie in their lines:
// each shard is bytes [from, from+len) of back-to-back symbols of size
// bytes, from counted from the start of a symbol. Only lanes16 needs it
// (its element layout is per symbol); for it a call may start or end
// inside a symbol only a whole number of 64-byte blocks into it
// (Codec.nextCut).
type symbolRun struct{ size, from int }

// lineCoder is what the codec needs of a Reed-Solomon code over the
// symbols of a line: klauspost's Encoder (plainCode), or laneCode around
// its Leopard GF(2^16) code. Shards follow klauspost's conventions: a
// missing one is empty, with capacity for its size when it is to be
// filled in place.
type lineCoder interface {
	Encode(shards [][]byte, run symbolRun) error
	Reconstruct(shards [][]byte, run symbolRun) error
	ReconstructData(shards [][]byte, run symbolRun) error
}

// plainCode is a klauspost code whose layout does not depend on where
// symbols begin (rs8: bytes; leopard16: 64-byte blocks, and its symbols
// are whole blocks).
type plainCode struct{ rs reedsolomon.Encoder }

func (p plainCode) Encode(shards [][]byte, _ symbolRun) error { return p.rs.Encode(shards) }

func (p plainCode) Reconstruct(shards [][]byte, _ symbolRun) error {
	return p.rs.Reconstruct(shards)
}

func (p plainCode) ReconstructData(shards [][]byte, _ symbolRun) error {
	return p.rs.ReconstructData(shards)
}

// laneBlock is the unit Leopard GF(2^16) codes: 32 field elements, their
// low bytes first, then their high bytes.
const laneBlock = 64

// laneCode is the Lanes16 encoding's line code: Leopard's GF(2^16) code on
// symbols of any even size. A symbol's elements are defined by Leopard's
// own layout: in each whole 64-byte block of the symbol, element k is
// bytes k (low) and k+32 (high); in the tail of r = size mod 64 bytes,
// element k is bytes k and r/2+k of the tail (its first half holds the
// lows, as reed-solomon-simd lays out its last partial block). Every
// element position of a line is coded on its own, as Leopard codes every
// lane of a block on its own. So a call passes whole blocks to Leopard as
// they are, and packs the tails' elements 32 to a block after them: where
// an element sits in Leopard's blocks does not change its code. A call
// that holds no tail is passed through untouched: then, as for a symbol
// size that is a multiple of 64, lanes16 is leopard16.
type laneCode struct {
	inner reedsolomon.Encoder
	k     int // data shards
}

// Encode computes the parity shards k… from the data shards 0…k−1.
func (l laneCode) Encode(shards [][]byte, run symbolRun) error {
	data := func(x int) bool { return x < l.k }
	return l.code(shards, run, data, func(x int) bool { return x >= l.k }, true, l.inner.Encode)
}

// Reconstruct fills every missing shard (length 0; capacity for the size
// is reused, as klauspost's does).
func (l laneCode) Reconstruct(shards [][]byte, run symbolRun) error {
	have := present(shards)
	return l.code(shards, run, have, func(x int) bool { return !have(x) }, false, l.inner.Reconstruct)
}

// ReconstructData fills the missing data shards only.
func (l laneCode) ReconstructData(shards [][]byte, run symbolRun) error {
	have := present(shards)
	return l.code(shards, run, have, func(x int) bool { return x < l.k && !have(x) }, false, l.inner.ReconstructData)
}

// present reports which shards are given (non-empty), as they are now.
func present(shards [][]byte) func(x int) bool {
	have := make([]bool, len(shards))
	for x, sh := range shards {
		have[x] = len(sh) > 0
	}
	return func(x int) bool { return have[x] }
}

// laneLayout is where one shard of a call goes in Leopard's blocks: its
// whole blocks first, in order, then the elements of every symbol tail
// it holds, 32 to a block.
type laneLayout struct {
	run       symbolRun
	blocks    int // bytes of whole blocks
	tailElems int // elements in tails
}

// wide is the shard's length in Leopard's layout.
func (l laneLayout) wide() int { return l.blocks + (l.tailElems+31)/32*laneBlock }

// layoutOf returns the layout of a shard of length bytes at run, or an
// error if the shard starts or ends inside a symbol elsewhere than a
// whole number of blocks into it.
func layoutOf(length int, run symbolRun) (laneLayout, error) {
	lay := laneLayout{run: run}
	if run.size <= 0 || run.size%2 != 0 || length%2 != 0 || run.from < 0 {
		return lay, fmt.Errorf("%w: lanes16 shard of %d bytes in %d-byte symbols", reedsolomon.ErrShardSize, length, run.size)
	}
	ok := true
	walkRun(length, run, func(_, blocks, tail int) {
		ok = ok && blocks%laneBlock == 0
		lay.blocks += blocks
		lay.tailElems += tail / 2
	})
	if !ok || run.from%run.size%laneBlock != 0 {
		return lay, fmt.Errorf("%w: lanes16 shard of %d bytes from byte %d of %d-byte symbols cuts a block",
			reedsolomon.ErrShardSize, length, run.from, run.size)
	}
	return lay, nil
}

// walkRun calls fn for each symbol a shard of length bytes at run
// touches, in order: where its piece starts in the shard, and how many of
// the piece's bytes are whole blocks and how many the symbol's tail.
func walkRun(length int, run symbolRun, fn func(off, blocks, tail int)) {
	s := run.size
	r := s % laneBlock
	pos := run.from % s
	for off := 0; off < length; {
		take := min(s-pos, length-off)
		if pos+take == s && take >= r {
			fn(off, take-r, r)
		} else {
			fn(off, take, 0)
		}
		off += take
		pos = 0
	}
}

// toLanes writes shard src into dst (lay.wide() bytes) in Leopard's
// layout: whole blocks copied as they are, tails' lows and highs into
// the lanes after them.
func toLanes(dst, src []byte, lay laneLayout) {
	tails := dst[lay.blocks:lay.wide()]
	if len(tails) > 0 {
		clear(tails[len(tails)-laneBlock:]) // lanes no tail fills
	}
	d, lane := 0, 0
	walkRun(len(src), lay.run, func(off, blocks, tail int) {
		d += copy(dst[d:], src[off:off+blocks])
		if tail > 0 {
			t, half := src[off+blocks:off+blocks+tail], tail/2
			toLaneRun(tails, lane, t[:half], 0)
			toLaneRun(tails, lane, t[half:], laneBlock/2)
			lane += half
		}
	})
}

// fromLanes is toLanes' inverse: it writes the shard that src (Leopard's
// layout) holds into dst.
func fromLanes(dst, src []byte, lay laneLayout) {
	tails := src[lay.blocks:lay.wide()]
	d, lane := 0, 0
	walkRun(len(dst), lay.run, func(off, blocks, tail int) {
		d += copy(dst[off:off+blocks], src[d:])
		if tail > 0 {
			t, half := dst[off+blocks:off+blocks+tail], tail/2
			fromLaneRun(t[:half], tails, lane, 0)
			fromLaneRun(t[half:], tails, lane, laneBlock/2)
			lane += half
		}
	})
}

// toLaneRun writes bytes into consecutive lanes from lane on: the low
// halves of the blocks (half 0) or the high ones (half 32).
func toLaneRun(blocks []byte, lane int, bytes []byte, half int) {
	for len(bytes) > 0 {
		b, l := lane/32, lane%32
		n := copy(blocks[b*laneBlock+half+l:b*laneBlock+half+32], bytes)
		bytes, lane = bytes[n:], lane+n
	}
}

// fromLaneRun reads len(dst) consecutive lanes' halves from lane on.
func fromLaneRun(dst, blocks []byte, lane, half int) {
	for len(dst) > 0 {
		b, l := lane/32, lane%32
		n := copy(dst, blocks[b*laneBlock+half+l:b*laneBlock+half+32])
		dst, lane = dst[n:], lane+n
	}
}

// code runs op on the shards in Leopard's layout: the given ones are
// rearranged into scratch, the others get scratch to be filled (of full
// length if sized, as Encode wants its outputs; else empty, as missing),
// and the wanted ones op filled are arranged back into their places
// (allocated where a place lacks the capacity). Shards that hold no
// tail are in that layout already and go to op as they are.
func (l laneCode) code(shards [][]byte, run symbolRun, given, want func(x int) bool, sized bool, op func([][]byte) error) error {
	size := -1
	for x, sh := range shards {
		if given(x) {
			size = len(sh)
			break
		}
	}
	if size < 0 {
		return reedsolomon.ErrTooFewShards
	}
	if size == 0 {
		return nil
	}
	lay, err := layoutOf(size, run)
	if err != nil {
		return err
	}
	if lay.tailElems == 0 {
		return op(shards)
	}
	wide := lay.wide()
	work := getLaneWork(len(shards), wide)
	defer laneWorks.Put(work)
	lanes := work.lanes
	for x, sh := range shards {
		buf := work.buf[x*wide : (x+1)*wide : (x+1)*wide]
		switch {
		case given(x):
			if len(sh) != size {
				return reedsolomon.ErrShardSize
			}
			toLanes(buf, sh, lay)
			lanes[x] = buf
		case sized:
			lanes[x] = buf
		default:
			lanes[x] = buf[:0]
		}
	}
	if err := op(lanes); err != nil {
		return err
	}
	for x := range shards {
		if !want(x) || len(lanes[x]) < wide {
			continue
		}
		if cap(shards[x]) < size {
			shards[x] = make([]byte, size)
		}
		shards[x] = shards[x][:size]
		fromLanes(shards[x], lanes[x], lay)
	}
	return nil
}

// laneWork is one laneCode call's workspace: the shards in Leopard's
// layout, back to back. Pooled, so that a codec call makes no garbage (an
// encode at n = 1000 makes thousands of calls).
type laneWork struct {
	lanes [][]byte
	buf   []byte
}

var laneWorks sync.Pool // *laneWork

func getLaneWork(shards, wide int) *laneWork {
	w, _ := laneWorks.Get().(*laneWork)
	if w == nil {
		w = new(laneWork)
	}
	if cap(w.lanes) < shards {
		w.lanes = make([][]byte, shards)
	}
	w.lanes = w.lanes[:shards]
	if cap(w.buf) < shards*wide {
		w.buf = make([]byte, shards*wide)
	}
	return w
}
