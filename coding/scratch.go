package coding

import (
	"math/bits"
	"sync"
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
