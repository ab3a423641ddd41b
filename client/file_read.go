package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/weftstore/weft/crypto"
)

// FileInfo says what an ID names: a file (Manifest set) or a plain blob.
type FileInfo struct {
	ID     crypto.BlobID
	Length uint64 // of the file, or of the plain blob
	// ContentType is the manifest's ("" for a plain blob, or a file stored
	// without one).
	ContentType string
	// Manifest lists a file's chunks; nil for a plain blob.
	Manifest *Manifest
	// Status is the ID's registry entry (a file's: its manifest's).
	Status *BlobStatus

	// small holds a plain blob's bytes when finding out what it is took
	// reading it (it was no longer than a manifest can be).
	small []byte
}

// ErrFileMismatch is wrapped when a file's chunks, each consistent with
// its ID, do not add up to the length or SHA-256 its manifest records:
// the manifest's writer lied or erred. The bytes were already written.
var ErrFileMismatch = errors.New("client: the file's chunks do not match its manifest's length or SHA-256")

// Stat finds out what id names. A blob longer than any manifest is plain
// (its length comes from the registry); a shorter one whose first bytes
// (one sliver, MightBeManifest) are not the manifest magic is plain too;
// the rest are read (they are small) and are a file's manifest when
// framed as one (DESIGN.md).
func (c *Client) Stat(ctx context.Context, id crypto.BlobID, opts ReadOptions) (*FileInfo, error) {
	return c.stat(ctx, id, opts, true)
}

// stat is Stat; probe false reads a blob short enough to be a manifest
// whole rather than its first bytes — what a caller that wants the whole
// content does (ReadTo, Open): the bytes are kept in the FileInfo, read
// once.
func (c *Client) stat(ctx context.Context, id crypto.BlobID, opts ReadOptions, probe bool) (*FileInfo, error) {
	st, err := c.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := st.Err(); err != nil {
		return nil, err
	}
	info := &FileInfo{ID: id, Length: st.Length, Status: st}
	if probe {
		if maybe, err := c.MightBeManifest(ctx, id, st.Length, opts); err != nil || !maybe {
			return info, err
		}
	} else if !manifestLength(st.Length) {
		return info, nil
	}
	b, err := c.Read(ctx, id, ReadOptions{NoChallengeWait: opts.NoChallengeWait})
	if err != nil {
		return nil, err
	}
	if !IsManifest(b) {
		info.small = b
		return info, nil
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", id, err)
	}
	info.Manifest, info.Length, info.ContentType = m, m.Length, m.ContentType
	return info, nil
}

// manifestLength reports whether a blob of length bytes could be a
// manifest.
func manifestLength(length uint64) bool {
	return length >= uint64(minManifestLength) && length <= uint64(MaxManifestLength)
}

// MightBeManifest reports whether a blob of length bytes could be a
// file's manifest: its length is one a manifest can have and its first
// bytes — a range read, one sliver checked against its hash — are the
// manifest magic. A false answer settles that the blob is plain without
// reading it whole; a true one needs the whole blob (IsManifest) to say.
func (c *Client) MightBeManifest(ctx context.Context, id crypto.BlobID, length uint64, opts ReadOptions) (bool, error) {
	if !manifestLength(length) {
		return false, nil
	}
	head, err := c.ReadRange(ctx, id, 0, int64(len(manifestMagic)), ReadOptions{NoChallengeWait: opts.NoChallengeWait})
	if err != nil {
		return false, err
	}
	return bytes.Equal(head, manifestMagic[:]), nil
}

// ReadTo writes the file or plain blob id names to w (DESIGN.md, Files of
// any size): a plain blob once it has passed the consistent-read check, a
// file chunk by chunk, each chunk once it has passed its own, with up to
// Config.ReadAhead chunks fetched at once. So memory is bounded by the
// configuration, not by the file. If a chunk fails, w has the chunks
// before it (all checked) and the error is a *ChunkError naming it.
func (c *Client) ReadTo(ctx context.Context, id crypto.BlobID, w io.Writer, opts ReadOptions) (*FileInfo, error) {
	info, err := c.stat(ctx, id, opts, false)
	if err != nil {
		return nil, err
	}
	return info, c.StreamTo(ctx, info, w, opts)
}

// StreamTo writes what info (from Stat) describes to w, as ReadTo does.
// A caller that must answer before the first byte (an HTTP gateway: the
// length and content type) calls Stat, then this.
func (c *Client) StreamTo(ctx context.Context, info *FileInfo, w io.Writer, opts ReadOptions) error {
	if info.Manifest != nil {
		return c.streamChunks(ctx, info, w, opts)
	}
	blob := info.small
	if blob == nil {
		var err error
		if blob, err = c.Read(ctx, info.ID, opts); err != nil {
			return err
		}
	}
	_, err := w.Write(blob)
	return err
}

// chunkRead is one chunk's outcome.
type chunkRead struct {
	data  []byte
	stats ReadStats
	err   error
}

// streamChunks reads a file's chunks, up to ReadAhead at once (a chunk
// holds its place until it is written), and writes them in order.
func (c *Client) streamChunks(ctx context.Context, info *FileInfo, w io.Writer, opts ReadOptions) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := info.Manifest
	results := make([]chan chunkRead, len(m.Chunks))
	for i := range results {
		results[i] = make(chan chunkRead, 1) // a reader never waits for the writer
	}
	slots := make(chan struct{}, c.cfg.ReadAhead)
	opts.decodeGate = make(chan struct{}, 1)
	go func() {
		for i, ch := range m.Chunks {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() { results[i] <- c.readChunk(ctx, ch, opts) }()
		}
	}()

	var stats ReadStats
	defer func() {
		stats.Total, stats.Length = time.Since(start), info.Length
		if opts.Stats != nil {
			*opts.Stats = stats
		}
	}()
	sum := sha256.New()
	var off uint64
	for i, ch := range m.Chunks {
		var r chunkRead
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		addReadStats(&stats, r.stats)
		if r.err != nil {
			return &ChunkError{File: info.ID, Index: i, Chunk: ch.ID, Offset: off, Err: r.err}
		}
		sum.Write(r.data)
		if _, err := w.Write(r.data); err != nil {
			return fmt.Errorf("client: writing chunk %d of file %s: %w", i, info.ID, err)
		}
		<-slots
		off += ch.Length
		if opts.Progress != nil {
			opts.Progress(int64(off), int64(m.Length))
		}
	}
	if got := sum.Sum(nil); off != m.Length || [sha256.Size]byte(got) != m.SHA256 {
		return fmt.Errorf("%w: file %s: %d bytes with SHA-256 %x, the manifest says %d bytes with %x", ErrFileMismatch, info.ID, off, got, m.Length, m.SHA256)
	}
	return nil
}

// readChunk reads one chunk: its registry length must be the manifest's
// (checked before fetching anything), and it must not be a manifest.
func (c *Client) readChunk(ctx context.Context, ch Chunk, opts ReadOptions) chunkRead {
	var out chunkRead
	st, err := c.Status(ctx, ch.ID)
	if err == nil {
		err = st.Err()
	}
	if err == nil && st.Length != ch.Length {
		err = fmt.Errorf("%w: the registry has %d bytes for the chunk, the manifest %d", ErrInvalidManifest, st.Length, ch.Length)
	}
	if err != nil {
		out.err = err
		return out
	}
	out.data, out.err = c.Read(ctx, ch.ID, ReadOptions{Stats: &out.stats, NoChallengeWait: opts.NoChallengeWait, decodeGate: opts.decodeGate})
	if out.err == nil && IsManifest(out.data) {
		out.data, out.err = nil, ErrNestedManifest
	}
	return out
}

func addReadStats(to *ReadStats, s ReadStats) {
	to.Lookup += s.Lookup
	to.Metadata += s.Metadata
	to.Fetch += s.Fetch
	to.Verify += s.Verify
	to.Decode += s.Decode
	to.ReceivedBytes += s.ReceivedBytes
	to.Slivers += s.Slivers
	to.BadSlivers += s.BadSlivers
	to.Decodes += s.Decodes
}

// FileReader streams a file or plain blob (Open); Info says what it is.
// A failed chunk is the error of Read, after the bytes before it.
type FileReader struct {
	Info   *FileInfo
	pipe   *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

// Open finds out what id names (Stat) and returns a reader of its bytes,
// fetched as ReadTo fetches them while the caller reads. Close it.
func (c *Client) Open(ctx context.Context, id crypto.BlobID, opts ReadOptions) (*FileReader, error) {
	info, err := c.stat(ctx, id, opts, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	fr := &FileReader{Info: info, pipe: pr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(fr.done)
		pw.CloseWithError(c.StreamTo(ctx, info, pw, opts)) // nil: io.EOF
	}()
	return fr, nil
}

func (f *FileReader) Read(p []byte) (int, error) { return f.pipe.Read(p) }

// Close stops the fetching and waits for it to end.
func (f *FileReader) Close() error {
	f.cancel()
	f.pipe.Close()
	<-f.done
	return nil
}
