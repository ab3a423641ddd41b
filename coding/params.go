// Package coding implements Red Stuff, weft's two-dimensional Reed-Solomon
// code (DESIGN §3): encoding a blob into n sliver pairs with their
// commitments, decoding from any nP primary or nS secondary slivers, and
// rebuilding a lost sliver from one symbol per peer. It is pure: no I/O, no
// clocks; fetching symbols from peers is the caller's job, behind the
// SymbolFetcher interface. See DESIGN.md beside this file.
package coding

import (
	"errors"
	"fmt"
	"math"

	"github.com/weftstore/weft/crypto"
)

// Encoding is the codec a blob was encoded with. It is recorded in the
// metadata and hashed into the blob ID, so a blob always decodes with the
// codec that made it.
type Encoding uint8

const (
	// RS8 is klauspost/reedsolomon's systematic Vandermonde code over
	// GF(2^8): up to 256 shards, symbols of any size.
	RS8 Encoding = 1
	// Leopard16 is klauspost/reedsolomon's Leopard FFT code over GF(2^16):
	// up to MaxShards shards, symbols a multiple of 64 bytes (the codec
	// works on 64-byte blocks; aligning symbols to them keeps every symbol
	// a whole number of codewords).
	Leopard16 Encoding = 2
	// Lanes16 is Leopard's GF(2^16) code with 2-byte symbols, up to
	// MaxShards shards: symbols of any even size, element t of a symbol
	// being its bytes 2t (low) and 2t+1 (high), each element position
	// coded on its own. The codec still works on 64-byte blocks, of 32
	// elements packed from wherever they come (laneCode): small blobs are
	// not padded to 64-byte symbols at large n (coding/DESIGN.md).
	Lanes16 Encoding = 3
)

func (e Encoding) String() string {
	switch e {
	case RS8:
		return "rs8"
	case Leopard16:
		return "leopard16"
	case Lanes16:
		return "lanes16"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// symbolAlignment is the multiple every symbol size of the encoding is
// rounded up to.
func (e Encoding) symbolAlignment() int {
	switch e {
	case Leopard16:
		return 64
	case Lanes16:
		return 2
	}
	return 1
}

// cutAlignment is the multiple of bytes into a symbol at which a codec
// call may begin or end: lanes16 lays out each symbol's whole 64-byte
// blocks apart from its tail (laneCode).
func (e Encoding) cutAlignment() int {
	if e == Lanes16 {
		return laneBlock
	}
	return e.symbolAlignment()
}

const (
	// MinShards is the smallest n with f ≥ 1.
	MinShards = 4
	// MaxShardsRS8 is the GF(2^8) codec's limit.
	MaxShardsRS8 = 256
	// MaxShards is the largest n both Leopard codes (nP→n and nS→n) accept:
	// the FFT works on a power of two of at least the parity count, and
	// parity and data blocks together must fit the field's 65536 elements.
	// TestMaxShardsIsTheCodecLimit checks this against the library.
	MaxShards = 49155
	// DefaultMaxBlobLength bounds a blob unless WithMaxBlobLength says
	// otherwise; an encode allocates about 5.7× the blob at n = 1000.
	DefaultMaxBlobLength uint64 = 4 << 30
	// maxSymbolSize keeps symbol sizes within the u32 of the wire formats.
	maxSymbolSize = math.MaxUint32
)

// Params are the Red Stuff parameters for n shards (DESIGN §3 table).
type Params struct {
	Shards int // n
	F      int // ⌊(n−1)/3⌋, the faulty shards tolerated
	// NP is the number of source symbols of the primary (column) code: the
	// rows of the source matrix, and the symbols in a secondary sliver.
	NP int
	// NS is the number of source symbols of the secondary (row) code: the
	// columns of the source matrix, and the symbols in a primary sliver.
	NS            int
	Encoding      Encoding
	MaxBlobLength uint64
}

// ErrInvalidParams is wrapped by every parameter error.
var ErrInvalidParams = errors.New("coding: invalid parameters")

// ErrBlobTooLarge is wrapped when a blob exceeds MaxBlobLength.
var ErrBlobTooLarge = errors.New("coding: blob too large")

// Option configures NewParams and New.
type Option func(*options)

type options struct {
	encoding      Encoding
	maxBlobLength uint64
	workers       int
	bufferPool    int64
}

// WithEncoding picks the codec instead of the default (RS8 up to 256
// shards, Lanes16 above).
func WithEncoding(e Encoding) Option { return func(o *options) { o.encoding = e } }

// WithMaxBlobLength sets the largest blob accepted, a network parameter.
func WithMaxBlobLength(n uint64) Option { return func(o *options) { o.maxBlobLength = n } }

// WithWorkers sets how many goroutines a Codec uses (default GOMAXPROCS).
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// DefaultEncoding returns the codec used for n shards unless another is
// requested: RS8 up to MaxShardsRS8, Lanes16 (2-byte symbols, issue #20)
// above.
func DefaultEncoding(n int) Encoding {
	if n <= MaxShardsRS8 {
		return RS8
	}
	return Lanes16
}

// Encodings are the encodings a network of n shards stores blobs in, the
// default first: above MaxShardsRS8 Lanes16, then Leopard16 (the default
// there before lanes16), which still reads and which a client may still
// choose per blob. The control plane registers blobs only in these, and
// storage nodes code each blob in the encoding its metadata names.
func Encodings(n int) []Encoding {
	if n > MaxShardsRS8 {
		return []Encoding{DefaultEncoding(n), Leopard16}
	}
	return []Encoding{DefaultEncoding(n)}
}

// NewParams computes the parameters for n shards.
func NewParams(n int, opts ...Option) (Params, error) {
	o := options{encoding: DefaultEncoding(n), maxBlobLength: DefaultMaxBlobLength}
	for _, opt := range opts {
		opt(&o)
	}
	return newParams(n, o.encoding, o.maxBlobLength)
}

func newParams(n int, enc Encoding, maxBlob uint64) (Params, error) {
	switch {
	case n < MinShards:
		return Params{}, fmt.Errorf("%w: %d shards, Red Stuff needs at least %d (f ≥ 1)", ErrInvalidParams, n, MinShards)
	case enc != RS8 && enc != Leopard16 && enc != Lanes16:
		return Params{}, fmt.Errorf("%w: unknown encoding %d", ErrInvalidParams, uint8(enc))
	case enc == RS8 && n > MaxShardsRS8:
		return Params{}, fmt.Errorf("%w: %d shards, the %s codec supports at most %d", ErrInvalidParams, n, enc, MaxShardsRS8)
	case n > MaxShards:
		return Params{}, fmt.Errorf("%w: %d shards, the %s codec supports at most %d", ErrInvalidParams, n, enc, MaxShards)
	}
	f := (n - 1) / 3
	return Params{Shards: n, F: f, NP: n - 2*f, NS: n - f, Encoding: enc, MaxBlobLength: maxBlob}, nil
}

// ParamsForMetadata returns the parameters a blob's metadata was encoded
// with, checking that its shard count and encoding are ones the codec knows.
func ParamsForMetadata(m *crypto.Metadata, maxBlob uint64) (Params, error) {
	if err := m.Validate(); err != nil {
		return Params{}, fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	if m.Shards > MaxShards {
		return Params{}, fmt.Errorf("%w: metadata for %d shards, at most %d", ErrInvalidParams, m.Shards, MaxShards)
	}
	p, err := newParams(int(m.Shards), Encoding(m.Encoding), maxBlob)
	if err != nil {
		return Params{}, err
	}
	if m.Length > maxBlob {
		return Params{}, fmt.Errorf("%w: metadata claims %d bytes, at most %d", ErrBlobTooLarge, m.Length, maxBlob)
	}
	return p, nil
}

// WriteQuorum is the smallest shard count w with 3w ≥ 2n+1.
func (p Params) WriteQuorum() int { return (2*p.Shards + 1 + 2) / 3 }

// SymbolSize returns the symbol size for a blob of the given length: the
// smallest size that fits the blob in the nP × nS source matrix and meets
// the codec's alignment (at least one alignment unit, even for an empty
// blob).
func (p Params) SymbolSize(length uint64) (int, error) {
	if length > p.MaxBlobLength {
		return 0, fmt.Errorf("%w: %d bytes, the maximum is %d", ErrBlobTooLarge, length, p.MaxBlobLength)
	}
	cells := uint64(p.NP) * uint64(p.NS)
	size := max((length+cells-1)/cells, 1)
	align := uint64(p.Encoding.symbolAlignment())
	size = (size + align - 1) / align * align
	if size > maxSymbolSize {
		return 0, fmt.Errorf("%w: %d bytes need %d-byte symbols, at most %d", ErrBlobTooLarge, length, size, uint64(maxSymbolSize))
	}
	return int(size), nil
}

// SliverSymbols returns the number of symbols in a sliver of the axis: nS
// for a primary sliver (a row), nP for a secondary sliver (a column). It is
// also the number of recovery symbols that rebuild such a sliver.
func (p Params) SliverSymbols(axis crypto.Axis) int {
	if axis == crypto.Primary {
		return p.NS
	}
	return p.NP
}

// EncodedSize returns the bytes stored for a blob over all shards:
// n pairs of nS + nP symbols.
func (p Params) EncodedSize(length uint64) (uint64, error) {
	s, err := p.SymbolSize(length)
	if err != nil {
		return 0, err
	}
	return uint64(p.Shards) * uint64(p.NP+p.NS) * uint64(s), nil
}

// ShardForPair returns the shard that stores pair p of the blob:
// (p + id mod n) mod n.
func (p Params) ShardForPair(pair int, id crypto.BlobID) int {
	return (pair + int(id.Mod(uint32(p.Shards)))) % p.Shards
}

// PairForShard is the inverse of ShardForPair.
func (p Params) PairForShard(shard int, id crypto.BlobID) int {
	return (shard - int(id.Mod(uint32(p.Shards))) + p.Shards) % p.Shards
}

// PairSliver returns the index of the sliver of the given axis in pair p:
// primary p, secondary n−1−p.
func (p Params) PairSliver(pair int, axis crypto.Axis) int {
	if axis == crypto.Primary {
		return pair
	}
	return p.Shards - 1 - pair
}
