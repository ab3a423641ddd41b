package coding

import (
	"fmt"
	"slices"
	"sync"

	"github.com/weftstore/weft/crypto"
)

// Codecs are a network's codecs: one for each encoding its blobs may use
// at its shard count, each made on first use. A blob is coded with the
// encoding its metadata (and so its ID) names, so a network that moves to
// a new encoding still reads, verifies and repairs the blobs of the old.
// Safe for concurrent use.
type Codecs struct {
	n    int
	opts []Option
	def  *Codec

	mu sync.Mutex
	by map[Encoding]*Codec
}

// NewCodecs returns the codecs of a network of n shards; opts apply to
// each (the default encoding is DefaultEncoding(n) unless WithEncoding).
func NewCodecs(n int, opts ...Option) (*Codecs, error) {
	def, err := New(n, opts...)
	if err != nil {
		return nil, err
	}
	return &Codecs{n: n, opts: opts, def: def, by: map[Encoding]*Codec{def.params.Encoding: def}}, nil
}

// Default is the codec new blobs are encoded with.
func (cs *Codecs) Default() *Codec { return cs.def }

// Params are the default codec's parameters. The shard mapping (n, nP, nS,
// pairs, quorums) is every encoding's; sizes (SymbolSize, EncodedSize)
// are the default encoding's: a blob's come from its own codec (For).
func (cs *Codecs) Params() Params { return cs.def.params }

// For returns the codec of an encoding at the network's shard count.
func (cs *Codecs) For(enc Encoding) (*Codec, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.by[enc]; ok {
		return c, nil
	}
	if !slices.Contains(Encodings(cs.n), enc) {
		return nil, fmt.Errorf("%w: a network of %d shards stores blobs in %v, not %s", ErrInvalidParams, cs.n, Encodings(cs.n), enc)
	}
	c, err := New(cs.n, append(append([]Option(nil), cs.opts...), WithEncoding(enc))...)
	if err != nil {
		return nil, err
	}
	cs.by[enc] = c
	return c, nil
}

// ForMetadata returns the codec a blob's metadata names, refusing
// metadata for another shard count or an encoding unknown at this one.
func (cs *Codecs) ForMetadata(meta *crypto.Metadata) (*Codec, error) {
	if meta == nil {
		return nil, fmt.Errorf("%w: no metadata", ErrInvalidParams)
	}
	if int64(meta.Shards) != int64(cs.n) {
		return nil, fmt.Errorf("%w: metadata for %d shards, this network has %d", ErrInvalidParams, meta.Shards, cs.n)
	}
	return cs.For(Encoding(meta.Encoding))
}

// VerifyInconsistencyProof checks a proof with the codec its metadata
// names (Codec.VerifyInconsistencyProof).
func (cs *Codecs) VerifyInconsistencyProof(proof *InconsistencyProof) error {
	if proof == nil {
		return fmt.Errorf("%w: no proof", ErrInvalidParams)
	}
	c, err := cs.ForMetadata(proof.Metadata)
	if err != nil {
		return err
	}
	return c.VerifyInconsistencyProof(proof)
}
