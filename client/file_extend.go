package client

import (
	"context"
	"fmt"
	"math"

	"github.com/weftstore/weft/crypto"
)

// ExtendFile extends what id names: a plain blob as Extend does; a file's
// every chunk and then its manifest, all to the same end epoch (the
// manifest's end + Epochs, or EndEpoch), so a file never outlives its
// chunks — extending the manifest alone would leave the chunks to expire
// first. Each part is extended to an absolute end epoch, so a run that
// was interrupted and is run again charges nothing twice: a part that
// already lives that long is left as it is. The Extension is the
// manifest's, with Charged the sum over every part; a chunk that fails is
// a *ChunkError naming it, after the chunks before it were extended.
func (c *Client) ExtendFile(ctx context.Context, id crypto.BlobID, opts ExtendOptions) (*Extension, error) {
	if (opts.Epochs == 0) == (opts.EndEpoch == 0) {
		return nil, fmt.Errorf("%w (got Epochs %d, EndEpoch %d)", ErrExtendOptions, opts.Epochs, opts.EndEpoch)
	}
	if err := c.requireToken(ctx, "extend a file"); err != nil {
		return nil, err
	}
	info, err := c.Stat(ctx, id, ReadOptions{})
	if err != nil {
		return nil, err
	}
	if info.Manifest == nil {
		return c.Extend(ctx, id, opts)
	}
	end := opts.EndEpoch
	if opts.Epochs != 0 {
		if opts.Epochs > math.MaxUint64-info.Status.EndEpoch {
			return nil, fmt.Errorf("%w: %d epochs past end epoch %d overflow", ErrExtendOptions, opts.Epochs, info.Status.EndEpoch)
		}
		end = info.Status.EndEpoch + opts.Epochs
	}
	var charged uint64
	seen := map[crypto.BlobID]bool{}
	var offset uint64
	for i, ch := range info.Manifest.Chunks {
		chunkOffset := offset
		offset += ch.Length
		if seen[ch.ID] { // a file of repeated content names a chunk more than once
			continue
		}
		seen[ch.ID] = true
		ext, err := c.Extend(ctx, ch.ID, ExtendOptions{EndEpoch: end})
		if err != nil {
			return nil, &ChunkError{File: id, Index: i, Chunk: ch.ID, Offset: chunkOffset, Err: err}
		}
		charged += ext.Charged
	}
	ext, err := c.Extend(ctx, id, ExtendOptions{EndEpoch: end})
	if err != nil {
		return nil, err
	}
	ext.Charged += charged
	return ext, nil
}
