package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
)

// DefaultChunkSize is a file's chunk size unless Config.ChunkSize or
// FileOptions.ChunkSize says otherwise (DESIGN.md: ≤ 6 % padding over
// the coding's limit at n = 1000, ≈ 0.3 GiB of memory per chunk in
// flight).
const DefaultChunkSize = 64 << 20

// FileOptions configures one StoreFile.
type FileOptions struct {
	// Epochs is the lifetime, as StoreOptions.Epochs. Every part of a file
	// (chunks and manifest) gets the same end epoch, fixed when the store
	// starts.
	Epochs uint64
	// Size, if not 0, is the input's length: input that ends sooner or
	// runs longer fails the store before any manifest is stored (a
	// truncated upload is never a file).
	Size int64
	// ContentType is recorded in a file's manifest (printable ASCII, at
	// most MaxContentType bytes). Content stored as a plain blob (one
	// chunk or less) has none.
	ContentType string
	// ChunkSize overrides Config.ChunkSize for this store.
	ChunkSize int64
	// Progress, if set, is called as chunks are done: file bytes stored
	// (or found already certified) of the total (Size if given, else the
	// bytes read so far).
	Progress func(done, total int64)
	// Permanent and Attributes are as in StoreOptions, for the client's
	// objects of every part; the attributes (and ContentType, as
	// "content-type") go on the file's object: the manifest's, or the
	// plain blob's.
	Permanent  bool
	Attributes map[string]string
}

// StoredFile is what StoreFile stored.
type StoredFile struct {
	// ID is the file's ID: the manifest's blob ID, or the plain blob's.
	ID crypto.BlobID
	// Certificate is the manifest's certificate (or the plain blob's).
	Certificate *crypto.Certificate
	Length      uint64
	// Manifest is nil when the content was stored as one plain blob.
	Manifest *Manifest
	// Object is the client's blob object of the file (the manifest's or
	// the plain blob's): Delete it to delete the file's entry, and its
	// chunks' objects (ChunkObjects) to let their bytes go.
	Object       uint64
	ChunkObjects []uint64
	// ChunkCertificates are the chunks' certificates, in manifest order.
	ChunkCertificates []*crypto.Certificate
	// Reused counts the parts (chunks, the manifest, or the plain blob)
	// that were certified before this store began: nothing was sent for
	// them, and nothing charged where the client owned an object of them
	// already (a resumed store).
	Reused int
	// SentBytes is the sliver bytes this store sent to storage nodes.
	SentBytes int64
}

// ChunkError is a failure of one chunk of a file, with its place in the
// file; Err is the chunk store's or read's own error (which names the
// nodes or slivers at fault).
type ChunkError struct {
	File   crypto.BlobID // zero while storing: the file's ID comes last
	Index  int
	Chunk  crypto.BlobID // zero if the failure came before the ID was known
	Offset uint64        // of the chunk's first byte in the file
	Err    error
}

func (e *ChunkError) Error() string {
	file := "the file"
	if e.File != (crypto.BlobID{}) {
		file = "file " + e.File.String()
	}
	chunk := ""
	if e.Chunk != (crypto.BlobID{}) {
		chunk = " (blob " + e.Chunk.String() + ")"
	}
	return fmt.Sprintf("%s: chunk %d%s at offset %d: %v", file, e.Index, chunk, e.Offset, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// ErrSizeMismatch is wrapped when the input's length is not
// FileOptions.Size.
var ErrSizeMismatch = errors.New("client: the input's length is not the size declared")

// StoreFile stores content of any length read from r, in memory bounded by
// the configuration (about Config.StoreParallel × 4.5 × the chunk size),
// not by the content (DESIGN.md, Files of any size). Content of at most
// one chunk is stored as a plain blob, as Store would; longer content is
// split into chunks, stored StoreParallel at a time while the next is
// read, and a manifest naming them is stored last. A chunk already
// certified is not sent again, so a store that was stopped resumes where
// it was. The file's ID is the manifest's blob ID.
func (c *Client) StoreFile(ctx context.Context, r io.Reader, opts FileOptions) (*StoredFile, error) {
	if err := c.requireToken(ctx, "store"); err != nil {
		return nil, err
	}
	chunkSize, err := c.chunkSize(opts.ChunkSize)
	if err != nil {
		return nil, err
	}
	if opts.Size < 0 {
		return nil, fmt.Errorf("client: a negative size (%d) declared", opts.Size)
	}
	if err := checkContentType(opts.ContentType); err != nil {
		return nil, err
	}
	if opts.Epochs == 0 {
		opts.Epochs = DefaultEpochs
	}
	com, err := c.currentCommittee(ctx, false)
	if err != nil {
		return nil, err
	}
	fs := &fileStore{
		c: c, opts: opts, chunkSize: chunkSize, endEpoch: com.Epoch + opts.Epochs,
		in: bufio.NewReaderSize(r, 64<<10), hash: sha256.New(),
	}
	first, last, err := fs.readChunk()
	if err != nil {
		return nil, err
	}
	if last {
		return fs.storePlain(ctx, first)
	}
	return fs.storeChunked(ctx, first)
}

// chunkSize is the chunk size a store uses: override, else the config's.
func (c *Client) chunkSize(override int64) (int, error) {
	size := int64(c.cfg.ChunkSize)
	if override != 0 {
		size = override
	}
	if size <= 0 || uint64(size) > c.cfg.MaxBlobLength {
		return 0, fmt.Errorf("client: chunk size %d: want 1 to the largest blob, %d", size, c.cfg.MaxBlobLength)
	}
	return int(size), nil
}

// fileStore is one StoreFile's state.
type fileStore struct {
	c         *Client
	opts      FileOptions
	chunkSize int
	endEpoch  uint64

	in   *bufio.Reader
	hash hash.Hash // of the bytes read so far
	read uint64    // bytes read so far

	readSeen atomic.Int64 // read, for progress reports from the chunks' goroutines
	done     atomic.Int64 // bytes of chunks stored
	sent     atomic.Int64
	reused   atomic.Int64
	progMu   sync.Mutex
}

// readChunk reads the next chunk into a fresh buffer (a stored chunk's
// buffer is never reused: gRPC may still be sending from it) and says
// whether it is the last, checking the declared size as it goes.
func (fs *fileStore) readChunk() (chunk []byte, last bool, err error) {
	want := fs.chunkSize
	if fs.opts.Size > 0 {
		left := uint64(fs.opts.Size) - min(fs.read, uint64(fs.opts.Size))
		want = int(min(uint64(want), max(left, 1))) // 1 more byte past the size shows that it runs over
	}
	chunk = make([]byte, want)
	n, err := io.ReadFull(fs.in, chunk)
	chunk = chunk[:n]
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return nil, false, fmt.Errorf("client: reading the input at byte %d: %w", fs.read+uint64(n), err)
	default:
		if _, perr := fs.in.Peek(1); perr == io.EOF {
			last = true
		} else if perr != nil {
			return nil, false, fmt.Errorf("client: reading the input at byte %d: %w", fs.read+uint64(n), perr)
		}
	}
	fs.read += uint64(n)
	fs.readSeen.Store(int64(fs.read))
	fs.hash.Write(chunk)
	if size := uint64(fs.opts.Size); size > 0 && (fs.read > size || (fs.read == size) != last) {
		return nil, false, fmt.Errorf("%w: declared %d bytes, the input has %s", ErrSizeMismatch, size, fs.lengthSeen(last))
	}
	return chunk, last, nil
}

func (fs *fileStore) lengthSeen(atEOF bool) string {
	if atEOF {
		return fmt.Sprint(fs.read)
	}
	return fmt.Sprintf("more than %d", fs.read-1)
}

// storePlain stores content of one chunk or less as a plain blob.
func (fs *fileStore) storePlain(ctx context.Context, blob []byte) (*StoredFile, error) {
	if IsManifest(blob) {
		return nil, ErrManifestContent
	}
	var stats StoreStats
	id, cert, err := fs.c.storeBlob(ctx, blob, fs.fileObject(&stats), fs.endEpoch)
	if err != nil {
		return nil, err
	}
	fs.progress(int64(len(blob)))
	out := &StoredFile{ID: id, Certificate: cert, Length: uint64(len(blob)), SentBytes: stats.SentBytes, Object: stats.Object}
	if stats.AlreadyCertified {
		out.Reused = 1
	}
	return out, nil
}

// storeChunked reads and stores the chunks, StoreParallel at a time, then
// the manifest. A chunk that fails cancels the others in flight; input
// that fails (cut short, not the size declared) lets the chunks already
// read finish, so that a retry finds them certified. Either way no
// manifest is stored.
func (fs *fileStore) storeChunked(ctx context.Context, first []byte) (*StoredFile, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		chunks   []Chunk
		certs    []*crypto.Certificate
		objects  []uint64
		inputErr error
	)
	slots := make(chan struct{}, fs.c.cfg.StoreParallel)
	next, last, offset := first, false, uint64(0)
	for index := 0; ctx.Err() == nil; index++ {
		chunk, chunkOffset := next, offset
		if IsManifest(chunk) {
			inputErr = &ChunkError{Index: index, Offset: chunkOffset, Err: ErrManifestContent}
			break
		}
		if index >= MaxChunks {
			inputErr = fmt.Errorf("client: the input needs more than %d chunks of %d bytes: store it with a larger chunk size", MaxChunks, fs.chunkSize)
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue // the loop ends
		}
		mu.Lock()
		chunks, certs, objects = append(chunks, Chunk{Length: uint64(len(chunk))}), append(certs, nil), append(objects, 0)
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-slots }()
			id, cert, object, err := fs.storeChunk(ctx, chunk)
			if err != nil {
				cancel(&ChunkError{Index: index, Chunk: id, Offset: chunkOffset, Err: err})
				return
			}
			mu.Lock()
			chunks[index].ID, certs[index], objects[index] = id, cert, object
			mu.Unlock()
		})
		if last {
			break
		}
		offset += uint64(len(chunk))
		if next, last, inputErr = fs.readChunk(); inputErr != nil {
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if inputErr != nil {
		return nil, inputErr
	}
	return fs.storeManifest(ctx, chunks, certs, objects)
}

// storeChunk stores one chunk unless it is certified already: its ID is
// computed by encoding it, then its status asked.
func (fs *fileStore) storeChunk(ctx context.Context, chunk []byte) (crypto.BlobID, *crypto.Certificate, uint64, error) {
	var stats StoreStats
	id, cert, err := fs.c.storeBlob(ctx, chunk, StoreOptions{Stats: &stats, Permanent: fs.opts.Permanent}, fs.endEpoch)
	if err != nil {
		return id, nil, 0, err
	}
	fs.sent.Add(stats.SentBytes)
	if stats.AlreadyCertified {
		fs.reused.Add(1)
	}
	fs.progress(int64(len(chunk)))
	return id, cert, stats.Object, nil
}

// fileObject is the store options of the file's own object: the
// manifest's, or the plain blob's.
func (fs *fileStore) fileObject(stats *StoreStats) StoreOptions {
	attrs := NormalizeAttributes(fs.opts.Attributes)
	if fs.opts.ContentType != "" {
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs[control.ContentTypeAttribute] = fs.opts.ContentType
	}
	return StoreOptions{Stats: stats, Permanent: fs.opts.Permanent, Attributes: attrs}
}

func (fs *fileStore) progress(stored int64) {
	done := fs.done.Add(stored)
	if fs.opts.Progress == nil {
		return
	}
	total := fs.opts.Size
	if total == 0 {
		total = max(fs.readSeen.Load(), done)
	}
	fs.progMu.Lock()
	defer fs.progMu.Unlock()
	fs.opts.Progress(done, total)
}

// storeManifest stores the manifest of the chunks, all certified by now.
func (fs *fileStore) storeManifest(ctx context.Context, chunks []Chunk, certs []*crypto.Certificate, objects []uint64) (*StoredFile, error) {
	m := &Manifest{Length: fs.read, ContentType: fs.opts.ContentType, Chunks: chunks}
	copy(m.SHA256[:], fs.hash.Sum(nil))
	raw, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var stats StoreStats
	id, cert, err := fs.c.storeBlob(ctx, raw, fs.fileObject(&stats), fs.endEpoch)
	if err != nil {
		return nil, fmt.Errorf("client: storing the manifest of %d chunks: %w", len(chunks), err)
	}
	reused := int(fs.reused.Load())
	if stats.AlreadyCertified {
		reused++
	}
	return &StoredFile{
		ID: id, Certificate: cert, Length: m.Length, Manifest: m, ChunkCertificates: certs, Object: stats.Object, ChunkObjects: objects,
		Reused: reused, SentBytes: fs.sent.Load() + stats.SentBytes,
	}, nil
}
