package client

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ErrRangeOutsideBlob is wrapped by a RangeError: bytes asked of a blob
// that it does not have (shared with package coding).
var ErrRangeOutsideBlob = coding.ErrRangeOutsideBlob

// RangeError is ReadRange's answer to a range that is not inside the blob
// (or has a negative offset or length). Size lets the caller say what
// would have been satisfiable, as HTTP's 416 does with
// "Content-Range: bytes */Size".
type RangeError struct {
	BlobID         crypto.BlobID
	Offset, Length int64
	Size           uint64 // the blob's length
}

func (e *RangeError) Error() string {
	if e.Offset < 0 || e.Length < 0 {
		return fmt.Sprintf("read %s: %d bytes at offset %d: offset and length cannot be negative", e.BlobID, e.Length, e.Offset)
	}
	return fmt.Sprintf("read %s: %d bytes at offset %d are not inside the blob's %d bytes", e.BlobID, e.Length, e.Offset, e.Size)
}

func (e *RangeError) Unwrap() error { return ErrRangeOutsideBlob }

// checkRange returns a *RangeError unless [offset, offset+length) lies in
// a blob of size bytes.
func checkRange(id crypto.BlobID, offset, length int64, size uint64) error {
	if offset < 0 || length < 0 || uint64(offset) > size || uint64(length) > size-uint64(offset) {
		return &RangeError{BlobID: id, Offset: offset, Length: length, Size: size}
	}
	return nil
}

// ReadRange returns bytes [offset, offset+length) of a certified blob,
// fetching only the systematic primary slivers that hold them (primary
// sliver i < nP is row i of the blob, coding.Params.SystematicSpans) from
// their shards' owners or holders, each checked against its hash in the
// metadata, the metadata against the blob ID. If any of those slivers
// cannot be had — every source failed, was refused, sent a sliver that
// does not match its hash, or sent nothing for the stall delay — it reads
// the whole blob as Read does (the slivers in hand count) and returns the
// range of it; ReadStats.RangeFallback then says why.
//
// A range read promises less than Read: see client/DESIGN.md, "Range
// reads". Every byte it returns is the byte the writer committed to at
// that position, so every range read of a blob returns the same bytes
// there, and for a consistently encoded blob they are Read's bytes. What
// it cannot tell without decoding the whole blob is that the writer
// encoded it inconsistently, where Read fails with ErrInconsistentBlob.
//
// A range not inside the blob is a *RangeError (errors.Is
// ErrRangeOutsideBlob), found from the registry before any node is asked.
// A length of 0 inside the blob returns no bytes and fetches nothing. The
// blob's other failures are Read's: ErrNotFound, ErrNotCertified, …,
// *NotEnoughSliversError when even the whole read cannot be done.
func (c *Client) ReadRange(ctx context.Context, id crypto.BlobID, offset, length int64, opts ReadOptions) ([]byte, error) {
	return c.waitOutChallenges(ctx, id, opts, func() ([]byte, error) { return c.readRangeOnce(ctx, id, offset, length, opts) })
}

func (c *Client) readRangeOnce(ctx context.Context, id crypto.BlobID, offset, length int64, opts ReadOptions) ([]byte, error) {
	start := time.Now()
	var stats ReadStats
	defer reportStats(opts, &stats, start)
	st, err := c.readableStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := checkRange(id, offset, length, st.Length); err != nil {
		return nil, err
	}
	if length == 0 {
		return []byte{}, nil
	}
	r, err := c.openRead(ctx, st, opts, &stats, start)
	if err != nil {
		return nil, err
	}
	r.ownBuffers = true
	spans, err := r.params.SystematicSpans(r.meta.Length, uint64(offset), uint64(length))
	if err != nil {
		return nil, err
	}
	covering := make([]uint32, len(spans))
	for i, sp := range spans {
		covering[i] = sp.Sliver
	}
	blob, slivers, err := r.run(ctx, covering)
	stats.ReceivedBytes = r.prog.bytes()
	if err != nil {
		return nil, err
	}
	if blob != nil {
		// The whole blob, decoded and checked: a copy of the range, so
		// that the caller does not keep the rest alive.
		return bytes.Clone(blob[offset : offset+length]), nil
	}
	return cutSpans(spans, slivers, uint64(offset), length), nil
}

// cutSpans copies the range out of its covering slivers.
func cutSpans(spans []coding.SystematicSpan, slivers []coding.Sliver, offset uint64, length int64) []byte {
	byIndex := make(map[uint32][]byte, len(slivers))
	for _, sl := range slivers {
		byIndex[sl.Index] = sl.Data
	}
	out := make([]byte, length)
	for _, sp := range spans {
		copy(out[sp.BlobOffset-offset:], byIndex[sp.Sliver][sp.Start:sp.End])
	}
	return out
}

// widen turns a range read into a whole one: a covering sliver cannot be
// had (cause says why). Every other primary sliver is queued, systematic
// ones first; the covering slivers in hand or in flight count toward the
// nP, which enter the progress total; stalls are hedged as a whole read's.
func (l *fetchLoop) widen(cause error) {
	if l.covering == nil {
		return
	}
	l.stats.RangeFallback = cause
	l.c.log.Info("range read: a covering sliver cannot be had; reading the whole blob", "blob", l.id, "cause", cause)
	for i := range l.params.Shards {
		if !l.covering[uint32(i)] {
			l.queue = append(l.queue, task{index: uint32(i)})
		}
	}
	l.prog.grow(int64(l.params.NP-l.need) * l.sliverBytes)
	l.need, l.covering = l.params.NP, nil
}

// rangeStalled runs when no covering sliver was completed for the stall
// delay. A fetch that is still receiving bytes, or checking what it
// received, is slow, not stalled; if none is, the nodes asked have
// stopped answering and the read widens rather than wait out their
// timeouts.
func (l *fetchLoop) rangeStalled() {
	got := l.prog.bytes()
	if got == l.arrived && l.verifying.Load() == 0 {
		l.widen(l.stalledError())
	}
	l.arrived = got
	l.timer.Reset(l.hedgeDelay())
}

// stalledError names the fetches in flight when nothing arrived for the
// stall delay: each sliver, shard and node (a *SliverError; joined if
// there are several).
func (l *fetchLoop) stalledError() error {
	cause := fmt.Errorf("no byte of the covering slivers arrived for %v", l.hedgeDelay())
	running := slices.SortedFunc(maps.Keys(l.running), func(a, b task) int { return cmp.Compare(a.index, b.index) })
	var errs []error
	for _, t := range running {
		errs = append(errs, l.sliverError(t, cause))
	}
	switch len(errs) {
	case 0:
		return cause
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}
