package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ErrNoQuiltFile: a quilt file ID names a file index or name the quilt's
// index does not have.
var ErrNoQuiltFile = errors.New("client: no such file in the quilt")

// QuiltInput is one file to store in a quilt: small, held in memory.
type QuiltInput struct {
	Name        string
	Data        []byte
	ContentType string
	Attributes  []Attribute
}

// StoredQuilt is what StoreQuilt stored: the quilt blob, its index, and
// each file's ID in the order given.
type StoredQuilt struct {
	ID          crypto.BlobID
	Certificate *crypto.Certificate
	Index       *QuiltIndex
	Files       []QuiltFileID
	Length      uint64 // the quilt blob's
	// AlreadyCertified: the same quilt (same files, same order) was
	// certified before; nothing was sent, and only a new object of the
	// client's charged.
	AlreadyCertified bool
	// Object is the client's blob object of the quilt: its files'
	// lifetime and deletion are the quilt's.
	Object uint64
}

// StoreQuilt stores many small files as one blob (DESIGN.md, Quilts): an
// index (names, offsets, lengths, content types, attributes), then the
// files' bytes back to back. The per-blob costs — metadata on every node,
// registration, certificate, at least a symbol per shard — are paid once
// for all of them. A bad index (duplicate or malformed names, attributes
// out of bounds) is refused before anything is sent. The quilt is held in
// memory whole, so it is bounded by Config.MaxBlobLength.
func (c *Client) StoreQuilt(ctx context.Context, files []QuiltInput, opts StoreOptions) (*StoredQuilt, error) {
	if err := c.requireToken(ctx, "store"); err != nil {
		return nil, err
	}
	idx := &QuiltIndex{Files: make([]QuiltFile, len(files))}
	var off uint64
	for i, f := range files {
		idx.Files[i] = QuiltFile{Name: f.Name, Offset: off, Length: uint64(len(f.Data)), ContentType: f.ContentType, Attributes: f.Attributes}
		off += uint64(len(f.Data))
	}
	head, err := idx.MarshalBinary()
	if err != nil {
		return nil, err
	}
	total := uint64(len(head)) + off
	if total > c.cfg.MaxBlobLength {
		return nil, fmt.Errorf("%w: a quilt of %d bytes, at most %d: store fewer files per quilt", ErrBlobTooLarge, total, c.cfg.MaxBlobLength)
	}
	blob := make([]byte, 0, total)
	blob = append(blob, head...)
	for _, f := range files {
		blob = append(blob, f.Data...)
	}
	var stats StoreStats
	caller := opts.Stats
	opts.Stats = &stats
	id, cert, err := c.storeBlob(ctx, blob, opts, 0)
	if caller != nil {
		*caller = stats
	}
	if err != nil {
		return nil, err
	}
	out := &StoredQuilt{ID: id, Certificate: cert, Index: idx, Length: total, AlreadyCertified: stats.AlreadyCertified, Object: stats.Object}
	for i := range files {
		out.Files = append(out.Files, QuiltFileID{Quilt: id, Index: uint16(i)})
	}
	return out, nil
}

// ReadQuiltIndex reads a quilt's index: a range read of the blob's first
// bytes, checked against the blob's length.
func (c *Client) ReadQuiltIndex(ctx context.Context, quilt crypto.BlobID, opts ReadOptions) (*QuiltIndex, error) {
	rr, err := c.openRanges(ctx, quilt, opts)
	if err != nil {
		return nil, err
	}
	defer rr.report()
	idx, _, err := rr.quiltIndex(ctx)
	return idx, err
}

// ReadQuiltFile reads one file of a quilt: the quilt's index, then only
// the file's bytes, each a range read of the quilt blob (its covering
// slivers, each verified, a whole read if they cannot be had). The
// metadata is fetched once, and a sliver holding both the index and the
// file is fetched once.
func (c *Client) ReadQuiltFile(ctx context.Context, id QuiltFileID, opts ReadOptions) ([]byte, *QuiltFile, error) {
	rr, err := c.openRanges(ctx, id.Quilt, opts)
	if err != nil {
		return nil, nil, err
	}
	defer rr.report()
	idx, indexLen, err := rr.quiltIndex(ctx)
	if err != nil {
		return nil, nil, err
	}
	if int(id.Index) >= len(idx.Files) {
		return nil, nil, fmt.Errorf("%w: quilt %s has %d files, no file %d", ErrNoQuiltFile, id.Quilt, len(idx.Files), id.Index)
	}
	f := idx.Files[id.Index]
	data, err := rr.read(ctx, int64(indexLen)+int64(f.Offset), int64(f.Length))
	if err != nil {
		return nil, nil, fmt.Errorf("client: reading file %d (%q) of quilt %s: %w", id.Index, f.Name, id.Quilt, err)
	}
	return data, &f, nil
}

// QuiltFileByName returns the ID of the file called name in a quilt.
func (c *Client) QuiltFileByName(ctx context.Context, quilt crypto.BlobID, name string, opts ReadOptions) (QuiltFileID, error) {
	idx, err := c.ReadQuiltIndex(ctx, quilt, opts)
	if err != nil {
		return QuiltFileID{}, err
	}
	i, ok := idx.Lookup(name)
	if !ok {
		return QuiltFileID{}, fmt.Errorf("%w: quilt %s has no file called %q", ErrNoQuiltFile, quilt, name)
	}
	return QuiltFileID{Quilt: quilt, Index: uint16(i)}, nil
}

// rangeReader reads several ranges of one blob with one status lookup and
// one metadata fetch, keeping the covering slivers it has verified, so
// that a later range within them costs nothing more.
type rangeReader struct {
	c     *Client
	st    *BlobStatus
	base  *read
	opts  ReadOptions
	start time.Time
	stats ReadStats
	held  map[uint32]coding.Sliver
	whole []byte // the blob, once a range read fell back to reading it all
}

func (c *Client) openRanges(ctx context.Context, id crypto.BlobID, opts ReadOptions) (*rangeReader, error) {
	rr := &rangeReader{c: c, opts: opts, start: time.Now(), held: map[uint32]coding.Sliver{}}
	st, err := c.readableStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	rr.st = st
	if rr.base, err = c.openRead(ctx, st, opts, &rr.stats, rr.start); err != nil {
		return nil, err
	}
	return rr, nil
}

func (rr *rangeReader) report() { reportStats(rr.opts, &rr.stats, rr.start) }

// read returns bytes [offset, offset+length) of the blob.
func (rr *rangeReader) read(ctx context.Context, offset, length int64) ([]byte, error) {
	if err := checkRange(rr.st.ID, offset, length, rr.st.Length); err != nil {
		return nil, err
	}
	if rr.whole != nil {
		return bytes.Clone(rr.whole[offset : offset+length]), nil
	}
	if length == 0 {
		return []byte{}, nil
	}
	b := rr.base
	spans, err := b.params.SystematicSpans(b.meta.Length, uint64(offset), uint64(length))
	if err != nil {
		return nil, err
	}
	var missing []uint32
	for _, sp := range spans {
		if _, ok := rr.held[sp.Sliver]; !ok {
			missing = append(missing, sp.Sliver)
		}
	}
	if len(missing) > 0 {
		r := &read{
			c: b.c, id: b.id, meta: b.meta, codec: b.codec, params: b.params, symbolSize: b.symbolSize,
			lay: b.lay, prog: newProgress(rr.opts.Progress), stats: &rr.stats, ownBuffers: true,
		}
		blob, slivers, err := r.run(ctx, missing)
		rr.stats.ReceivedBytes += r.prog.bytes()
		if err != nil {
			return nil, err
		}
		if blob != nil {
			rr.whole = blob
			return bytes.Clone(blob[offset : offset+length]), nil
		}
		for _, sl := range slivers {
			rr.held[sl.Index] = sl
		}
	}
	var slivers []coding.Sliver
	for _, sp := range spans {
		slivers = append(slivers, rr.held[sp.Sliver])
	}
	return cutSpans(spans, slivers, uint64(offset), length), nil
}

// quiltIndex reads and parses the quilt index at the start of the blob
// and returns it with its length; a blob that does not open with one, or
// whose length is not the index's plus its files', is ErrInvalidQuilt.
func (rr *rangeReader) quiltIndex(ctx context.Context) (*QuiltIndex, int, error) {
	size := rr.st.Length
	if size < uint64(quiltPrefix) {
		return nil, 0, fmt.Errorf("%w: blob %s has %d bytes, too few for a quilt index", ErrInvalidQuilt, rr.st.ID, size)
	}
	prefix, err := rr.read(ctx, 0, int64(quiltPrefix))
	if err != nil {
		return nil, 0, err
	}
	length, ok := QuiltIndexLength(prefix)
	if !ok || uint64(length) > size {
		return nil, 0, fmt.Errorf("%w: blob %s does not open with a quilt index", ErrInvalidQuilt, rr.st.ID)
	}
	raw, err := rr.read(ctx, 0, int64(length))
	if err != nil {
		return nil, 0, err
	}
	idx, err := ParseQuiltIndex(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", rr.st.ID, err)
	}
	if uint64(length)+idx.DataLength() != size {
		return nil, 0, fmt.Errorf("%w: blob %s has %d bytes, its index %d and the files %d", ErrInvalidQuilt, rr.st.ID, size, length, idx.DataLength())
	}
	return idx, length, nil
}
