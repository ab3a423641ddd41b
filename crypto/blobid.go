package crypto

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// BlobID names a blob: the hash of its encoding type, shard count, length
// and the Merkle root over its sliver-pair hashes (DESIGN §3). Two blobs
// with the same ID have the same bytes and the same slivers.
type BlobID [DigestSize]byte

// blobIDEncoding renders IDs as unpadded URL-safe base64 (43 characters):
// short enough to paste, safe in a URL path.
var blobIDEncoding = base64.RawURLEncoding.Strict()

// String returns the canonical text form of the ID.
func (id BlobID) String() string { return blobIDEncoding.EncodeToString(id[:]) }

// ParseBlobID parses the text form. Only the canonical encoding is accepted,
// so every ID has exactly one spelling.
func ParseBlobID(s string) (BlobID, error) {
	var id BlobID
	if len(s) != blobIDEncoding.EncodedLen(DigestSize) {
		return id, fmt.Errorf("crypto: blob ID %q: %d characters, want %d", s, len(s), blobIDEncoding.EncodedLen(DigestSize))
	}
	n, err := blobIDEncoding.Decode(id[:], []byte(s))
	if err != nil || n != DigestSize {
		return BlobID{}, fmt.Errorf("crypto: blob ID %q is not canonical unpadded URL-safe base64", s)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler (JSON renders IDs as text).
func (id BlobID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *BlobID) UnmarshalText(b []byte) error {
	parsed, err := ParseBlobID(string(b))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// Mod returns the ID read as a big-endian 256-bit integer, modulo m (m > 0).
// It places sliver pairs on shards: pair p lives on shard (p + id mod n) mod n.
func (id BlobID) Mod(m uint32) uint32 {
	if m == 0 {
		panic("crypto: BlobID.Mod(0)")
	}
	var r uint64
	for _, b := range id {
		r = (r<<8 | uint64(b)) % uint64(m)
	}
	return uint32(r)
}

// DeriveBlobID computes H(u8 encoding ‖ u32 shards ‖ u64 length ‖ root),
// integers big-endian, exactly as DESIGN §3 pins it. The control plane calls
// it on the fields a client registers, so a registration cannot claim one
// length and commit to another.
func DeriveBlobID(encoding uint8, shards uint32, length uint64, root Digest) BlobID {
	var buf [1 + 4 + 8 + DigestSize]byte
	buf[0] = encoding
	binary.BigEndian.PutUint32(buf[1:5], shards)
	binary.BigEndian.PutUint64(buf[5:13], length)
	copy(buf[13:], root[:])
	return BlobID(sha256.Sum256(buf[:]))
}

// ErrBlobIDMismatch is wrapped when metadata does not hash to the expected ID.
var ErrBlobIDMismatch = errors.New("crypto: metadata does not match blob ID")

// BlobIDMismatchError carries both IDs.
type BlobIDMismatchError struct {
	Computed, Expected BlobID
}

func (e *BlobIDMismatchError) Error() string {
	return fmt.Sprintf("crypto: metadata hashes to blob ID %s, expected %s", e.Computed, e.Expected)
}

func (e *BlobIDMismatchError) Unwrap() error { return ErrBlobIDMismatch }
