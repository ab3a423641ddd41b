package client

import (
	"context"
	"fmt"
	"io"

	"github.com/weftstore/weft/crypto"
)

// ReadFileRange writes bytes [offset, offset+length) of a file or a plain
// blob to w, fetching only what holds them: for a plain blob, ReadRange;
// for a file, ReadRange of each chunk the range touches, and of no other
// (the manifest gives each chunk's offset), each chunk's part written
// before the next is read — memory bounded by the chunk size, not by the
// range. Each byte is checked as ReadRange checks it. The whole-file SHA-256 is not checked — that needs every
// byte — so a range of a file promises what a range of each chunk does
// (client/DESIGN.md, Range reads). A range outside the file is a
// *RangeError whose Size is the file's length; nothing is written then.
// A chunk that fails is a *ChunkError, after the parts before it were
// written. info says what id is.
func (c *Client) ReadFileRange(ctx context.Context, id crypto.BlobID, offset, length int64, w io.Writer, opts ReadOptions) (*FileInfo, error) {
	info, err := c.Stat(ctx, id, opts)
	if err != nil {
		return nil, err
	}
	return info, c.StreamRangeTo(ctx, info, offset, length, w, opts)
}

// StreamRangeTo is ReadFileRange for what info (from Stat) describes: a
// caller that must answer before the first byte (an HTTP gateway: the
// size, for Content-Range) calls Stat, then this, and the ID is not
// looked into twice.
func (c *Client) StreamRangeTo(ctx context.Context, info *FileInfo, offset, length int64, w io.Writer, opts ReadOptions) error {
	id := info.ID
	if info.Manifest == nil {
		b, err := c.ReadRange(ctx, id, offset, length, opts)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if err := checkRange(id, offset, length, info.Length); err != nil {
		return err
	}
	for pos, end := uint64(offset), uint64(offset+length); pos < end; {
		i, start, ok := info.Manifest.ChunkAt(pos)
		if !ok {
			// Validate made the chunks sum to the file's length.
			return fmt.Errorf("file %s: no chunk holds byte %d of %d", id, pos, info.Length)
		}
		ch := info.Manifest.Chunks[i]
		n := min(end, start+ch.Length) - pos
		b, err := c.ReadRange(ctx, ch.ID, int64(pos-start), int64(n), opts)
		if err != nil {
			return &ChunkError{File: id, Index: i, Chunk: ch.ID, Offset: start, Err: err}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		pos += n
	}
	return nil
}
