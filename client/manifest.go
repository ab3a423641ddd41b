package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// A manifest lists a file's chunk blobs (DESIGN.md, Files of any size).
// Its encoding is fixed and canonical: the bytes are the file's ID.
const (
	manifestVersion = 1
	// MaxChunks bounds a file's chunk count: 65,536 chunks of 64 MiB are
	// 4 TiB, and the manifest stays under 3 MB.
	MaxChunks = 1 << 16
	// MaxChunkLength bounds one chunk: a blob the network can store.
	MaxChunkLength = coding.DefaultMaxBlobLength
	// MaxContentType bounds the content type's length.
	MaxContentType = 255

	manifestEntry  = crypto.DigestSize + 8
	manifestHeader = len(manifestMagic) + 1 + 1 + 8 + sha256.Size + 1
	// MaxManifestLength is the largest manifest: a blob longer than this
	// is never one, so a reader knows it is plain from its length alone.
	MaxManifestLength = manifestHeader + MaxContentType + 4 + MaxChunks*manifestEntry + sha256.Size
	minManifestLength = manifestHeader + 4 + manifestEntry + sha256.Size
)

// manifestMagic opens every manifest. The first byte is not ASCII and
// the fourth-last a newline (as in PNG's signature), so a text file is
// never taken for one even before the trailing hash is checked.
var manifestMagic = [8]byte{0x89, 'W', 'E', 'F', 'T', 'M', 'F', '\n'}

// The manifest errors; test with errors.Is.
var (
	// ErrInvalidManifest: bytes framed as a manifest (the magic and the
	// trailing self-hash match) whose fields do not hold together.
	ErrInvalidManifest = errors.New("client: invalid file manifest")
	// ErrNestedManifest: a file's chunk is itself a manifest. Files do
	// not nest, so a read never recurses.
	ErrNestedManifest = errors.New("client: a chunk of the file is itself a manifest (a manifest of a manifest)")
	// ErrManifestContent: content to store is a manifest's bytes. Stored
	// as a plain blob or chunk it would be taken for a file (or refused as
	// a nested manifest) by every reader.
	ErrManifestContent = errors.New("client: the content is a weft file manifest; store the file's bytes, not its manifest")
)

// Chunk is one entry of a manifest.
type Chunk struct {
	ID     crypto.BlobID
	Length uint64
}

// Manifest is a file's table of contents: its chunk blobs in order, the
// file's length and SHA-256, and its content type.
type Manifest struct {
	Length      uint64
	SHA256      [sha256.Size]byte
	ContentType string
	Chunks      []Chunk
}

// ChunkAt returns the index of the chunk holding byte offset off of the
// file and that chunk's first byte's offset (false past the end). A range
// read maps its range to chunks with it.
func (m *Manifest) ChunkAt(off uint64) (index int, start uint64, ok bool) {
	for i, c := range m.Chunks {
		if off < start+c.Length {
			return i, start, true
		}
		start += c.Length
	}
	return 0, 0, false
}

// Validate checks what a manifest must satisfy to be encoded or read:
// 1 … MaxChunks chunks, each 1 … MaxChunkLength bytes, summing to Length,
// and a content type of printable ASCII of at most MaxContentType bytes.
func (m *Manifest) Validate() error {
	switch n := len(m.Chunks); {
	case n == 0:
		return fmt.Errorf("%w: no chunks", ErrInvalidManifest)
	case n > MaxChunks:
		return fmt.Errorf("%w: %d chunks, at most %d", ErrInvalidManifest, n, MaxChunks)
	}
	if err := checkContentType(m.ContentType); err != nil {
		return err
	}
	var sum uint64
	for i, c := range m.Chunks {
		if c.Length == 0 || c.Length > MaxChunkLength {
			return fmt.Errorf("%w: chunk %d has %d bytes, want 1 to %d", ErrInvalidManifest, i, c.Length, MaxChunkLength)
		}
		if sum > math.MaxUint64-c.Length {
			return fmt.Errorf("%w: chunk lengths overflow", ErrInvalidManifest)
		}
		sum += c.Length
	}
	if sum != m.Length {
		return fmt.Errorf("%w: chunks sum to %d bytes, the file has %d", ErrInvalidManifest, sum, m.Length)
	}
	return nil
}

func checkContentType(ct string) error {
	if len(ct) > MaxContentType {
		return fmt.Errorf("%w: content type of %d bytes, at most %d", ErrInvalidManifest, len(ct), MaxContentType)
	}
	for i := range len(ct) {
		if ct[i] < 0x20 || ct[i] > 0x7e {
			return fmt.Errorf("%w: content type has byte 0x%02x at %d (printable ASCII only)", ErrInvalidManifest, ct[i], i)
		}
	}
	return nil
}

// MarshalBinary returns the manifest's canonical encoding (DESIGN.md).
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, manifestHeader+len(m.ContentType)+4+len(m.Chunks)*manifestEntry+sha256.Size)
	b = append(b, manifestMagic[:]...)
	b = append(b, manifestVersion, 0)
	b = binary.BigEndian.AppendUint64(b, m.Length)
	b = append(b, m.SHA256[:]...)
	b = append(b, byte(len(m.ContentType)))
	b = append(b, m.ContentType...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = append(b, c.ID[:]...)
		b = binary.BigEndian.AppendUint64(b, c.Length)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// IsManifest reports whether b is framed as a manifest: the magic first
// and, last, the SHA-256 of everything before it. Only such bytes are
// parsed as one; any other blob is plain content.
func IsManifest(b []byte) bool {
	if len(b) < minManifestLength || len(b) > MaxManifestLength || !bytes.HasPrefix(b, manifestMagic[:]) {
		return false
	}
	body := len(b) - sha256.Size
	sum := sha256.Sum256(b[:body])
	return bytes.Equal(sum[:], b[body:])
}

// ParseManifest decodes a manifest strictly: b must be framed as one
// (IsManifest), of version 1 with no flags, exactly as long as its chunk
// count says, and its fields must pass Validate. Every count is checked
// against the bytes present before anything is allocated for it.
func ParseManifest(b []byte) (*Manifest, error) {
	if !IsManifest(b) {
		return nil, fmt.Errorf("%w: not framed as a manifest (magic and trailing SHA-256)", ErrInvalidManifest)
	}
	r := manifestReader{b: b[len(manifestMagic) : len(b)-sha256.Size]}
	if v, flags := r.byte(), r.byte(); v != manifestVersion || flags != 0 {
		return nil, fmt.Errorf("%w: version %d flags %d, this client reads version %d with no flags", ErrInvalidManifest, v, flags, manifestVersion)
	}
	m := &Manifest{Length: r.u64()}
	copy(m.SHA256[:], r.next(sha256.Size))
	m.ContentType = string(r.next(int(r.byte())))
	count := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if count == 0 || count > MaxChunks || uint64(len(r.b)) != uint64(count)*manifestEntry {
		return nil, fmt.Errorf("%w: %d chunks in %d bytes of entries (%d bytes each, at most %d chunks)", ErrInvalidManifest, count, len(r.b), manifestEntry, MaxChunks)
	}
	m.Chunks = make([]Chunk, count)
	for i := range m.Chunks {
		copy(m.Chunks[i].ID[:], r.next(crypto.DigestSize))
		m.Chunks[i].Length = r.u64()
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// manifestReader takes fields off the front of b; running short sets err
// and yields zeros from then on.
type manifestReader struct {
	b   []byte
	err error
}

func (r *manifestReader) next(n int) []byte {
	if r.err != nil || n > len(r.b) {
		if r.err == nil {
			r.err = fmt.Errorf("%w: truncated", ErrInvalidManifest)
		}
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *manifestReader) byte() byte  { return r.next(1)[0] }
func (r *manifestReader) u32() uint32 { return binary.BigEndian.Uint32(r.next(4)) }
func (r *manifestReader) u64() uint64 { return binary.BigEndian.Uint64(r.next(8)) }
