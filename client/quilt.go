package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/weftstore/weft/crypto"
)

// A quilt is many small files in one blob (DESIGN.md, Quilts): an index,
// then the files' bytes back to back. The index's encoding is fixed and
// canonical, framed like a manifest (its own magic, a trailing SHA-256),
// and sits at the start of the blob so that a reader finds it with a
// range read of the blob's first bytes.
const (
	quiltVersion = 1
	// MaxQuiltFiles bounds a quilt's files (the file index is a uint16).
	MaxQuiltFiles = 1<<16 - 1
	// MaxQuiltName bounds a file's name (UTF-8, no control characters).
	MaxQuiltName = 255
	// MaxAttributes bounds a file's attributes, MaxAttributeKey and
	// MaxAttributeValue each one's key (printable ASCII, no spaces) and
	// value (UTF-8).
	MaxAttributes     = 16
	MaxAttributeKey   = 64
	MaxAttributeValue = 1024

	// quiltPrefix is what a reader needs to learn the index's length:
	// magic, version, flags, file count, index length.
	quiltPrefix = len(quiltMagic) + 1 + 1 + 2 + 4
	// MaxQuiltIndexLength bounds an index; a reader refuses a longer one
	// before fetching it.
	MaxQuiltIndexLength = 64 << 20
)

// quiltMagic opens every quilt index (as manifestMagic, a different tag).
var quiltMagic = [8]byte{0x89, 'W', 'E', 'F', 'T', 'Q', 'L', '\n'}

// ErrInvalidQuilt: bytes framed as a quilt index whose fields do not hold
// together, or a quilt (or quilt file ID) that does not match its index.
var ErrInvalidQuilt = errors.New("client: invalid quilt")

// QuiltFile is one entry of a quilt's index: the file's name (unique in
// the quilt), where its bytes are (from the end of the index), its
// content type and attributes.
type QuiltFile struct {
	Name        string
	Offset      uint64
	Length      uint64
	ContentType string
	Attributes  []Attribute
}

// Attribute is a key and value a quilt records for a file.
type Attribute struct{ Key, Value string }

// QuiltIndex is a quilt's table of contents, files in the order their
// bytes follow it.
type QuiltIndex struct {
	Files []QuiltFile
}

// DataLength is the bytes of the files together.
func (q *QuiltIndex) DataLength() uint64 {
	var sum uint64
	for _, f := range q.Files {
		sum += f.Length
	}
	return sum
}

// Lookup returns the index of the file called name.
func (q *QuiltIndex) Lookup(name string) (int, bool) {
	for i, f := range q.Files {
		if f.Name == name {
			return i, true
		}
	}
	return 0, false
}

// Validate checks what an index must satisfy to be encoded or read: 1 …
// MaxQuiltFiles files with unique, well-formed names, laid out back to
// back in order from offset 0, attributes and content types in bounds.
func (q *QuiltIndex) Validate() error {
	if n := len(q.Files); n == 0 || n > MaxQuiltFiles {
		return fmt.Errorf("%w: %d files, want 1 to %d", ErrInvalidQuilt, n, MaxQuiltFiles)
	}
	names := make(map[string]int, len(q.Files))
	var next uint64
	for i, f := range q.Files {
		if err := checkQuiltName(f.Name); err != nil {
			return fmt.Errorf("file %d: %w", i, err)
		}
		if j, dup := names[f.Name]; dup {
			return fmt.Errorf("%w: files %d and %d are both called %q", ErrInvalidQuilt, j, i, f.Name)
		}
		names[f.Name] = i
		if f.Offset != next {
			return fmt.Errorf("%w: file %d (%q) at offset %d, the files before it end at %d", ErrInvalidQuilt, i, f.Name, f.Offset, next)
		}
		if f.Length > math.MaxUint64-next {
			return fmt.Errorf("%w: file lengths overflow at file %d", ErrInvalidQuilt, i)
		}
		next += f.Length
		if err := checkContentType(f.ContentType); err != nil {
			return fmt.Errorf("%w: file %d (%q): %v", ErrInvalidQuilt, i, f.Name, err)
		}
		if err := checkAttributes(f.Attributes); err != nil {
			return fmt.Errorf("file %d (%q): %w", i, f.Name, err)
		}
	}
	return nil
}

func checkQuiltName(name string) error {
	if len(name) == 0 || len(name) > MaxQuiltName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: name %q: want 1 to %d bytes of UTF-8", ErrInvalidQuilt, name, MaxQuiltName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: name %q has a control character", ErrInvalidQuilt, name)
		}
	}
	return nil
}

func checkAttributes(attrs []Attribute) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d", ErrInvalidQuilt, len(attrs), MaxAttributes)
	}
	seen := make(map[string]bool, len(attrs))
	for _, a := range attrs {
		if len(a.Key) == 0 || len(a.Key) > MaxAttributeKey {
			return fmt.Errorf("%w: attribute key %q: want 1 to %d bytes", ErrInvalidQuilt, a.Key, MaxAttributeKey)
		}
		for i := range len(a.Key) {
			if a.Key[i] <= 0x20 || a.Key[i] > 0x7e {
				return fmt.Errorf("%w: attribute key %q: printable ASCII without spaces only", ErrInvalidQuilt, a.Key)
			}
		}
		if seen[a.Key] {
			return fmt.Errorf("%w: attribute %q given twice", ErrInvalidQuilt, a.Key)
		}
		seen[a.Key] = true
		if len(a.Value) > MaxAttributeValue || !utf8.ValidString(a.Value) {
			return fmt.Errorf("%w: attribute %q: value of %d bytes, want at most %d of UTF-8", ErrInvalidQuilt, a.Key, len(a.Value), MaxAttributeValue)
		}
	}
	return nil
}

// MarshalBinary returns the index's canonical encoding: the quilt blob
// is these bytes followed by the files'.
func (q *QuiltIndex) MarshalBinary() ([]byte, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	b := append([]byte(nil), quiltMagic[:]...)
	b = append(b, quiltVersion, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(q.Files)))
	b = binary.BigEndian.AppendUint32(b, 0) // the length, filled in below
	for _, f := range q.Files {
		b = append(b, byte(len(f.Name)))
		b = append(b, f.Name...)
		b = binary.BigEndian.AppendUint64(b, f.Offset)
		b = binary.BigEndian.AppendUint64(b, f.Length)
		b = append(b, byte(len(f.ContentType)))
		b = append(b, f.ContentType...)
		b = append(b, byte(len(f.Attributes)))
		for _, a := range f.Attributes {
			b = append(b, byte(len(a.Key)))
			b = append(b, a.Key...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
			b = append(b, a.Value...)
		}
	}
	total := len(b) + sha256.Size
	if total > MaxQuiltIndexLength {
		return nil, fmt.Errorf("%w: an index of %d bytes, at most %d", ErrInvalidQuilt, total, MaxQuiltIndexLength)
	}
	binary.BigEndian.PutUint32(b[quiltPrefix-4:], uint32(total))
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// QuiltIndexLength reads an index's length from the first quiltPrefix
// bytes of a blob: ok is false when they do not open a quilt index.
func QuiltIndexLength(prefix []byte) (length int, ok bool) {
	if len(prefix) < quiltPrefix || !bytes.HasPrefix(prefix, quiltMagic[:]) {
		return 0, false
	}
	length = int(binary.BigEndian.Uint32(prefix[quiltPrefix-4:]))
	if length < quiltPrefix+sha256.Size || length > MaxQuiltIndexLength {
		return 0, false
	}
	return length, true
}

// ParseQuiltIndex decodes an index strictly: b must be exactly the index
// (its length field says so), with the trailing SHA-256 of the rest,
// version 1 with no flags, and fields that pass Validate. Every length is
// checked against the bytes present before anything is allocated for it.
func ParseQuiltIndex(b []byte) (*QuiltIndex, error) {
	length, ok := QuiltIndexLength(b)
	if !ok || length != len(b) {
		return nil, fmt.Errorf("%w: not framed as a quilt index of %d bytes", ErrInvalidQuilt, len(b))
	}
	body := len(b) - sha256.Size
	if sum := sha256.Sum256(b[:body]); !bytes.Equal(sum[:], b[body:]) {
		return nil, fmt.Errorf("%w: the index's SHA-256 does not match", ErrInvalidQuilt)
	}
	r := manifestReader{b: b[len(quiltMagic):body]}
	if v, flags := r.byte(), r.byte(); v != quiltVersion || flags != 0 {
		return nil, fmt.Errorf("%w: version %d flags %d, this client reads version %d with no flags", ErrInvalidQuilt, v, flags, quiltVersion)
	}
	count := int(binary.BigEndian.Uint16(r.next(2)))
	r.u32() // the length, checked above
	// Each entry takes at least 20 bytes: no count beyond what is present.
	if count == 0 || count > len(r.b)/20 {
		return nil, fmt.Errorf("%w: %d files in %d bytes of entries", ErrInvalidQuilt, count, len(r.b))
	}
	q := &QuiltIndex{Files: make([]QuiltFile, count)}
	for i := range q.Files {
		f := &q.Files[i]
		f.Name = string(r.next(int(r.byte())))
		f.Offset, f.Length = r.u64(), r.u64()
		f.ContentType = string(r.next(int(r.byte())))
		attrs := int(r.byte())
		if r.err == nil && attrs > MaxAttributes {
			return nil, fmt.Errorf("%w: file %d has %d attributes, at most %d", ErrInvalidQuilt, i, attrs, MaxAttributes)
		}
		for range attrs {
			key := string(r.next(int(r.byte())))
			value := string(r.next(int(binary.BigEndian.Uint16(r.next(2)))))
			f.Attributes = append(f.Attributes, Attribute{key, value})
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: file %d: %v", ErrInvalidQuilt, i, r.err)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", ErrInvalidQuilt, len(r.b))
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return q, nil
}

// QuiltFileID names one file of a quilt: the quilt's blob ID and the
// file's place in its index. Its text form is 46 characters of
// base64url, three more than a blob ID's, so a reader tells them apart.
type QuiltFileID struct {
	Quilt crypto.BlobID
	Index uint16
}

func (id QuiltFileID) String() string {
	raw := binary.BigEndian.AppendUint16(append([]byte(nil), id.Quilt[:]...), id.Index)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// quiltFileIDLength is the length of a QuiltFileID's text form.
var quiltFileIDLength = base64.RawURLEncoding.EncodedLen(crypto.DigestSize + 2)

// ParseQuiltFileID parses a QuiltFileID's text form.
func ParseQuiltFileID(s string) (QuiltFileID, error) {
	if len(s) != quiltFileIDLength {
		return QuiltFileID{}, fmt.Errorf("%w: a quilt file ID has %d characters, not %d", ErrInvalidQuilt, quiltFileIDLength, len(s))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err == nil && len(raw) != crypto.DigestSize+2 {
		// The decoder skips '\r' and '\n': 46 characters may hold less.
		err = fmt.Errorf("%d bytes, not %d", len(raw), crypto.DigestSize+2)
	}
	if err != nil {
		return QuiltFileID{}, fmt.Errorf("%w: quilt file ID %q: %v", ErrInvalidQuilt, s, err)
	}
	var id QuiltFileID
	copy(id.Quilt[:], raw)
	id.Index = binary.BigEndian.Uint16(raw[crypto.DigestSize:])
	return id, nil
}
