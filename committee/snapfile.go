package committee

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
)

// checkPageGraph reads an uploaded bbolt file with plain reads, before
// bbolt maps it: bbolt trusts the pages it maps, and a page number past
// the file's end makes it fault (SIGBUS, which no recover catches when it
// happens on bbolt's own checking goroutine), a cycle of pages makes it
// loop. So: a meta page whose checksum holds, a high-water mark inside
// the file, and every page reachable from the root — branch, leaf, nested
// and inline buckets, the freelist — inside that mark, of its type, with
// its elements inside it, reached once. After that, bbolt's own
// consistency check (tx.Check) runs on pages known to be sound.
func checkPageGraph(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	g := &pageGraph{r: f, size: info.Size(), seen: map[uint64]bool{}}
	m, err := g.meta()
	if err != nil {
		return err
	}
	if m.freelist != noFreelist {
		if err := g.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	return g.bucket(m.root, nil, 0)
}

// The on-disk layout bbolt writes (go.etcd.io/bbolt/internal/common),
// little-endian as on every platform weft builds for.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	pageElementSize  = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaSize         = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	branchPage       = 0x01
	leafPage         = 0x02
	metaPage         = 0x04
	freelistPage     = 0x10
	bucketLeaf       = 0x01
	noFreelist       = ^uint64(0)
	maxTreeDepth     = 64
)

type pageGraph struct {
	r        io.ReaderAt
	size     int64
	pageSize int64
	hwm      uint64 // pages below it are the file's
	seen     map[uint64]bool
}

type boltMeta struct {
	pageSize       int64
	root, freelist uint64
	hwm, txid      uint64
}

// meta picks the meta page bbolt would: the valid one with the larger
// transaction ID.
func (g *pageGraph) meta() (boltMeta, error) {
	m0, err0 := g.readMeta(0, 0)
	second := m0.pageSize
	if err0 != nil {
		second = int64(os.Getpagesize())
	}
	m1, err1 := g.readMeta(second, 1)
	switch {
	case err0 != nil && err1 != nil:
		return boltMeta{}, fmt.Errorf("no valid meta page: %v; %v", err0, err1)
	case err1 != nil || err0 == nil && m0.txid >= m1.txid:
		m1 = m0
	}
	g.pageSize, g.hwm = m1.pageSize, m1.hwm
	if g.hwm > uint64(g.size/g.pageSize) || g.hwm < 2 {
		return boltMeta{}, fmt.Errorf("meta claims %d pages of %d bytes; the file has %d bytes", g.hwm, g.pageSize, g.size)
	}
	return m1, nil
}

func (g *pageGraph) readMeta(offset int64, id uint64) (boltMeta, error) {
	b := make([]byte, pageHeaderSize+metaSize)
	if _, err := g.r.ReadAt(b, offset); err != nil {
		return boltMeta{}, fmt.Errorf("meta page %d: %w", id, err)
	}
	if h := b[:pageHeaderSize]; binary.LittleEndian.Uint64(h) != id || binary.LittleEndian.Uint16(h[8:]) != metaPage {
		return boltMeta{}, fmt.Errorf("page %d is not a meta page", id)
	}
	m := b[pageHeaderSize:]
	sum := fnv.New64a()
	sum.Write(m[:56])
	switch {
	case binary.LittleEndian.Uint32(m) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("meta page %d: not a bbolt file of version %d", id, boltVersion)
	case sum.Sum64() != binary.LittleEndian.Uint64(m[56:]):
		return boltMeta{}, fmt.Errorf("meta page %d: checksum mismatch", id)
	}
	meta := boltMeta{
		pageSize: int64(binary.LittleEndian.Uint32(m[8:])), root: binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]), hwm: binary.LittleEndian.Uint64(m[40:]), txid: binary.LittleEndian.Uint64(m[48:]),
	}
	if meta.pageSize < 1024 || meta.pageSize > 1<<16 || meta.pageSize&(meta.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page %d: page size %d", id, meta.pageSize)
	}
	return meta, nil
}

// page reads a page and returns its bytes (header included, all its
// overflow pages) and type, having checked it is inside the file, of one
// of the wanted types and reached for the first time.
func (g *pageGraph) page(id uint64, want ...uint16) ([]byte, uint16, error) {
	if id < 2 || id >= g.hwm {
		return nil, 0, fmt.Errorf("page %d is outside the file's %d pages", id, g.hwm)
	}
	if g.seen[id] {
		return nil, 0, fmt.Errorf("page %d is reached twice", id)
	}
	g.seen[id] = true
	h := make([]byte, pageHeaderSize)
	if _, err := g.r.ReadAt(h, int64(id)*g.pageSize); err != nil {
		return nil, 0, fmt.Errorf("page %d: %w", id, err)
	}
	overflow, flags := uint64(binary.LittleEndian.Uint32(h[12:])), binary.LittleEndian.Uint16(h[8:])
	switch {
	case binary.LittleEndian.Uint64(h) != id:
		return nil, 0, fmt.Errorf("page %d says it is page %d", id, binary.LittleEndian.Uint64(h))
	case !slices.Contains(want, flags):
		return nil, 0, fmt.Errorf("page %d has flags %#x, want one of %#x", id, flags, want)
	case id+overflow >= g.hwm:
		return nil, 0, fmt.Errorf("page %d runs %d pages past the file's %d", id, overflow, g.hwm)
	}
	for i := uint64(1); i <= overflow; i++ {
		if g.seen[id+i] {
			return nil, 0, fmt.Errorf("page %d overlaps page %d", id, id+i)
		}
		g.seen[id+i] = true
	}
	b := make([]byte, int64(overflow+1)*g.pageSize)
	if _, err := g.r.ReadAt(b, int64(id)*g.pageSize); err != nil {
		return nil, 0, fmt.Errorf("page %d: %w", id, err)
	}
	return b, flags, nil
}

func (g *pageGraph) checkFreelist(id uint64) error {
	b, _, err := g.page(id, freelistPage)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	count, ids := uint64(binary.LittleEndian.Uint16(b[10:])), b[pageHeaderSize:]
	if count == 0xFFFF { // the real count is the first element
		count, ids = binary.LittleEndian.Uint64(ids), ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return fmt.Errorf("freelist page %d lists %d pages; it has room for %d", id, count, len(ids)/8)
	}
	for i := range count {
		if free := binary.LittleEndian.Uint64(ids[8*i:]); free < 2 || free >= g.hwm {
			return fmt.Errorf("freelist page %d frees page %d, outside the file's %d", id, free, g.hwm)
		}
	}
	return nil
}

// bucket checks a bucket: its tree of pages, or its inline page.
func (g *pageGraph) bucket(root uint64, inline []byte, depth int) error {
	if depth > maxTreeDepth {
		return errors.New("buckets nested too deep")
	}
	if root != 0 {
		return g.tree(root, depth+1)
	}
	if len(inline) < pageHeaderSize || binary.LittleEndian.Uint16(inline[8:]) != leafPage {
		return fmt.Errorf("inline bucket of %d bytes is not a leaf page", len(inline))
	}
	return g.leaf(inline, depth+1)
}

// tree checks the page id and, through it, every page below it.
func (g *pageGraph) tree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	b, flags, err := g.page(id, branchPage, leafPage)
	if err != nil {
		return err
	}
	if flags == leafPage {
		return g.leaf(b, depth)
	}
	return elements(b, func(e []byte, key, _ []byte) error {
		return g.tree(binary.LittleEndian.Uint64(e[8:]), depth+1)
	}, false)
}

// leaf checks a leaf page's elements and the buckets it holds.
func (g *pageGraph) leaf(b []byte, depth int) error {
	return elements(b, func(e []byte, key, value []byte) error {
		if binary.LittleEndian.Uint32(e)&bucketLeaf == 0 {
			return nil
		}
		if len(value) < bucketHeaderSize {
			return fmt.Errorf("bucket %q: value of %d bytes", key, len(value))
		}
		return g.bucket(binary.LittleEndian.Uint64(value), value[bucketHeaderSize:], depth)
	}, true)
}

// elements checks that each element of page b and its key (and value, on
// a leaf) lie inside b, and calls fn with them.
func elements(b []byte, fn func(e, key, value []byte) error, leaf bool) error {
	count := int(binary.LittleEndian.Uint16(b[10:]))
	if pageHeaderSize+count*pageElementSize > len(b) {
		return fmt.Errorf("page of %d bytes cannot hold %d elements", len(b), count)
	}
	for i := range count {
		at := pageHeaderSize + i*pageElementSize
		e := b[at : at+pageElementSize]
		var pos, ksize, vsize uint64
		if leaf {
			pos, ksize, vsize = uint64(binary.LittleEndian.Uint32(e[4:])), uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		} else {
			pos, ksize = uint64(binary.LittleEndian.Uint32(e)), uint64(binary.LittleEndian.Uint32(e[4:]))
		}
		start := uint64(at) + pos
		if start+ksize+vsize > uint64(len(b)) {
			return fmt.Errorf("element %d of a page of %d bytes ends at byte %d", i, len(b), start+ksize+vsize)
		}
		if err := fn(e, b[start:start+ksize], b[start+ksize:start+ksize+vsize]); err != nil {
			return err
		}
	}
	return nil
}
