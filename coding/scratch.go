package coding

import (
	"math/bits"
	"strings"
	"sync"
	"unsafe"
)

// Scratch buffers for work a call throws away when it returns (a verified
// sliver's parity symbols), pooled by power-of-two size. A node verifies
// hundreds of megabytes of slivers per large blob; fresh buffers for that
// cost more in page faults and clearing than the coding itself.
var scratchPools [48]sync.Pool

func scratchClass(n int) int { return bits.Len(uint(max(n, 1) - 1)) }

// scratch returns a buffer of n bytes with undefined contents.
func scratch(n int) []byte {
	c := scratchClass(n)
	if p, ok := scratchPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// putScratch gives back a buffer from scratch; the caller must not use it
// afterwards.
func putScratch(b []byte) {
	c := scratchClass(cap(b))
	if cap(b) != 1<<c {
		return
	}
	b = b[:cap(b)]
	scratchPools[c].Put(&b)
}

// uncleared returns a new buffer of n bytes whose contents are undefined,
// for output the encoder then writes in full (parity primaries, secondary
// slivers): make would clear it first, one more pass over a few hundred MB
// of cold memory per large encode. strings.Builder.Grow is the one
// standard library allocation that skips the clearing; the buffer is
// taken from the builder, which is dropped, so no string sees its bytes
// change.
func uncleared(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteByte(0)
	b := unsafe.Slice(unsafe.StringData(sb.String()), n)
	if poisonUncleared {
		for i := range b {
			b[i] = 0xa5
		}
	}
	return b
}

// poisonUncleared makes uncleared fill its buffers with a pattern, so that
// a test whose encoder left a byte unwritten fails against the reference
// even where the allocator happened to return zeroed memory.
var poisonUncleared = false
