package coding

import (
	"encoding/binary"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// lineCoder is what the codec needs of a Reed-Solomon code over the
// symbols of a line: klauspost's Encoder, or laneCode around its Leopard
// GF(2^16) code.
type lineCoder interface {
	Encode(shards [][]byte) error
	Reconstruct(shards [][]byte) error
	ReconstructData(shards [][]byte) error
}

// laneBlock is the unit Leopard GF(2^16) codes: 32 field elements, their
// low bytes first, then their high bytes.
const laneBlock = 64

// laneCode is the Lanes16 encoding's line code: Leopard's GF(2^16) code on
// shards of any even length. Element t of a shard is its bytes 2t (low)
// and 2t+1 (high), and every element position is coded on its own — as
// Leopard does within its 64-byte blocks, where element k is bytes k and
// k+32. So a shard is rearranged into whole blocks (32 elements per block,
// the last zero-padded), coded, and the outputs arranged back. The
// elements a block packs together are coded independently of each other,
// so how a shard is cut into pieces (codeLine) does not change the code.
type laneCode struct {
	inner reedsolomon.Encoder
	k     int // data shards
}

// laneSize is the length of a shard of size bytes in whole blocks.
func laneSize(size int) int { return (size + laneBlock - 1) / laneBlock * laneBlock }

// toLanes writes src (an even number of bytes) into dst (laneSize(len(src))
// bytes) in block layout. Whole blocks go eight bytes at a time: the even
// bytes of two words make one word of lows, the odd bytes one of highs.
func toLanes(dst, src []byte) {
	for len(src) >= laneBlock {
		s, d := src[:laneBlock:laneBlock], dst[:laneBlock:laneBlock]
		for w := 0; w < 4; w++ {
			a := binary.LittleEndian.Uint64(s[16*w:])
			b := binary.LittleEndian.Uint64(s[16*w+8:])
			binary.LittleEndian.PutUint64(d[8*w:], evenBytes(a)|evenBytes(b)<<32)
			binary.LittleEndian.PutUint64(d[32+8*w:], evenBytes(a>>8)|evenBytes(b>>8)<<32)
		}
		src, dst = src[laneBlock:], dst[laneBlock:]
	}
	if len(src) > 0 {
		clear(dst[:laneBlock])
		for k := range len(src) / 2 {
			dst[k], dst[32+k] = src[2*k], src[2*k+1]
		}
	}
}

// fromLanes writes the first len(dst) bytes that src (block layout) holds
// into dst.
func fromLanes(dst, src []byte) {
	for len(dst) >= laneBlock {
		s, d := src[:laneBlock:laneBlock], dst[:laneBlock:laneBlock]
		for w := 0; w < 4; w++ {
			lo := binary.LittleEndian.Uint64(s[8*w:])
			hi := binary.LittleEndian.Uint64(s[32+8*w:])
			binary.LittleEndian.PutUint64(d[16*w:], spreadBytes(lo)|spreadBytes(hi)<<8)
			binary.LittleEndian.PutUint64(d[16*w+8:], spreadBytes(lo>>32)|spreadBytes(hi>>32)<<8)
		}
		src, dst = src[laneBlock:], dst[laneBlock:]
	}
	for k := range len(dst) / 2 {
		dst[2*k], dst[2*k+1] = src[k], src[32+k]
	}
}

// evenBytes packs bytes 0, 2, 4 and 6 of w (little-endian) into the low
// four bytes of the result.
func evenBytes(w uint64) uint64 {
	w &= 0x00ff00ff00ff00ff
	w = (w | w>>8) & 0x0000ffff0000ffff
	return (w | w>>16) & 0x00000000ffffffff
}

// spreadBytes is evenBytes' inverse: the low four bytes of w go to bytes
// 0, 2, 4 and 6.
func spreadBytes(w uint64) uint64 {
	w &= 0x00000000ffffffff
	w = (w | w<<16) & 0x0000ffff0000ffff
	return (w | w<<8) & 0x00ff00ff00ff00ff
}

// Encode computes the parity shards k… from the data shards 0…k−1.
func (l laneCode) Encode(shards [][]byte) error {
	data := func(x int) bool { return x < l.k }
	return l.code(shards, data, func(x int) bool { return x >= l.k }, true, l.inner.Encode)
}

// Reconstruct fills every missing shard (length 0; capacity for the size
// is reused, as klauspost's does).
func (l laneCode) Reconstruct(shards [][]byte) error {
	have := present(shards)
	return l.code(shards, have, func(x int) bool { return !have(x) }, false, l.inner.Reconstruct)
}

// ReconstructData fills the missing data shards only.
func (l laneCode) ReconstructData(shards [][]byte) error {
	have := present(shards)
	return l.code(shards, have, func(x int) bool { return x < l.k && !have(x) }, false, l.inner.ReconstructData)
}

// present reports which shards are given (non-empty), as they are now.
func present(shards [][]byte) func(x int) bool {
	have := make([]bool, len(shards))
	for x, sh := range shards {
		have[x] = len(sh) > 0
	}
	return func(x int) bool { return have[x] }
}

// code runs op on the shards in block layout: the given ones are
// rearranged into scratch, the others get scratch to be filled (of full
// length if sized, as Encode wants its outputs; else empty, as missing),
// and the wanted ones op filled are arranged back into their places
// (allocated where a place lacks the capacity).
func (l laneCode) code(shards [][]byte, given, want func(x int) bool, sized bool, op func([][]byte) error) error {
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
	if size%2 != 0 {
		return reedsolomon.ErrShardSize
	}
	if size == 0 {
		return nil
	}
	wide := laneSize(size)
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
			toLanes(buf, sh)
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
		fromLanes(shards[x], lanes[x])
	}
	return nil
}

// laneWork is one laneCode call's workspace: the shards in block layout,
// back to back. Pooled, so that a codec call makes no garbage (an encode
// at n = 1000 makes thousands of calls).
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
