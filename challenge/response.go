package challenge

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// Item proves one position: the symbol at the position of the extended
// line of the node's sliver, with its Merkle proof against the sliver's
// committed hash.
type Item struct {
	Blob   crypto.BlobID
	Shard  uint32
	Symbol coding.RecoverySymbol // SourceAxis/Source: the sliver; Target: the symbol's position
}

// Response is a node's signed answer to a round: one item per position, in
// the order Positions lists them. The node signs crypto.ChallengeResponse
// {Round, Digest()} in the round's epoch, so an answer cannot be replayed
// into another round or epoch, or its items swapped.
type Response struct {
	Epoch     uint64
	Round     uint64
	Node      string
	Items     []Item
	Signature *crypto.Signature
}

const (
	responseVersion = 1
	maxNodeID       = 255
	// MaxItems bounds a response's items when decoding outside bytes:
	// samples × shards, with room to spare.
	MaxItems = 1 << 20
)

// body encodes everything but the signature: u8 version ‖ u64 epoch ‖
// u64 round ‖ u8 len ‖ node ‖ u32 items ‖ per item: blob ‖ u32 shard ‖
// u32 len ‖ symbol (coding's encoding, with its proof).
func (r *Response) body() ([]byte, error) {
	if len(r.Node) == 0 || len(r.Node) > maxNodeID {
		return nil, fmt.Errorf("challenge: node ID of %d bytes", len(r.Node))
	}
	b := []byte{responseVersion}
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint64(b, r.Round)
	b = append(b, byte(len(r.Node)))
	b = append(b, r.Node...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Items)))
	for _, it := range r.Items {
		sym, err := it.Symbol.MarshalBinary()
		if err != nil {
			return nil, err
		}
		b = append(b, it.Blob[:]...)
		b = binary.BigEndian.AppendUint32(b, it.Shard)
		b = binary.BigEndian.AppendUint32(b, uint32(len(sym)))
		b = append(b, sym...)
	}
	return b, nil
}

// Digest is the hash the node signs.
func (r *Response) Digest() (crypto.Digest, error) {
	b, err := r.body()
	if err != nil {
		return crypto.Digest{}, err
	}
	return sha256.Sum256(b), nil
}

// Sign signs the response with the node's key.
func (r *Response) Sign(sk *crypto.SecretKey) error {
	d, err := r.Digest()
	if err != nil {
		return err
	}
	r.Signature, err = sk.SignMessage(r.Epoch, crypto.ChallengeResponse{Round: r.Round, Digest: d})
	return err
}

// MarshalBinary returns the body followed by the 96-byte signature.
func (r *Response) MarshalBinary() ([]byte, error) {
	if r.Signature == nil {
		return nil, errors.New("challenge: response is not signed")
	}
	b, err := r.body()
	if err != nil {
		return nil, err
	}
	return append(b, r.Signature.Bytes()...), nil
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("challenge: malformed response")

// UnmarshalBinary decodes a response from outside bytes; it checks shape
// only — Verify checks content.
func (r *Response) UnmarshalBinary(data []byte) error {
	fail := func(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }
	if len(data) < 1+8+8+1 || data[0] != responseVersion {
		return fail("header")
	}
	out := Response{Epoch: binary.BigEndian.Uint64(data[1:]), Round: binary.BigEndian.Uint64(data[9:])}
	rest := data[17:]
	idLen := int(rest[0])
	if idLen == 0 || len(rest) < 1+idLen+4 {
		return fail("node ID")
	}
	out.Node, rest = string(rest[1:1+idLen]), rest[1+idLen:]
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if count > MaxItems || uint64(count)*(crypto.DigestSize+8) > uint64(len(rest)) {
		return fail(fmt.Sprintf("%d items", count))
	}
	out.Items = make([]Item, count)
	for i := range out.Items {
		if len(rest) < crypto.DigestSize+8 {
			return fail(fmt.Sprintf("item %d header", i))
		}
		it := &out.Items[i]
		copy(it.Blob[:], rest)
		it.Shard = binary.BigEndian.Uint32(rest[crypto.DigestSize:])
		n := binary.BigEndian.Uint32(rest[crypto.DigestSize+4:])
		rest = rest[crypto.DigestSize+8:]
		if uint64(n) > uint64(len(rest)) {
			return fail(fmt.Sprintf("item %d symbol length %d", i, n))
		}
		if err := it.Symbol.UnmarshalBinary(rest[:n]); err != nil {
			return fmt.Errorf("%w: item %d: %v", ErrMalformed, i, err)
		}
		rest = rest[n:]
	}
	if len(rest) != crypto.SignatureSize {
		return fail(fmt.Sprintf("%d signature bytes", len(rest)))
	}
	sig, err := crypto.SignatureFromBytes(rest)
	if err != nil {
		return fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	out.Signature = sig
	*r = out
	return nil
}

// The ways a response fails, wrapped by *Failure.
var (
	ErrWrongRound     = errors.New("challenge: response for another round, epoch or node")
	ErrBadSignature   = errors.New("challenge: response signature does not verify")
	ErrWrongPositions = errors.New("challenge: response does not answer the round's positions")
	ErrBadSymbol      = errors.New("challenge: symbol does not match the blob's commitment")
	// ErrNoMetadata means the challenger could not judge an item: it lacks
	// the blob's metadata. It is not evidence against the node.
	ErrNoMetadata = errors.New("challenge: no metadata to judge the item")
)

// Failure is a failed response, with the evidence: which item, which
// position it had to prove, and why it did not.
type Failure struct {
	Item     int // -1 for the response as a whole
	Position Position
	Err      error
}

func (f *Failure) Error() string {
	if f.Item < 0 {
		return f.Err.Error()
	}
	p := f.Position
	return fmt.Sprintf("challenge: item %d (blob %s, shard %d, %s sliver %d, symbol %d): %v",
		f.Item, p.Blob, p.Shard, p.Axis, p.Sliver, p.Symbol, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

// Verify judges a response to round (epoch, round) by node, whose key is
// pk, against the positions the node had to prove; metadata returns a
// blob's verified metadata. nil means every position is proven.
func Verify(r *Response, epoch, round uint64, node string, pk *crypto.PublicKey, want []Position, metadata func(crypto.BlobID) (*crypto.Metadata, error)) error {
	whole := func(err error) error { return &Failure{Item: -1, Err: err} }
	if r.Epoch != epoch || r.Round != round || r.Node != node {
		return whole(fmt.Errorf("%w: epoch %d round %d node %s, want epoch %d round %d node %s", ErrWrongRound, r.Epoch, r.Round, r.Node, epoch, round, node))
	}
	d, err := r.Digest()
	if err != nil {
		return whole(fmt.Errorf("%w: %v", ErrMalformed, err))
	}
	if r.Signature == nil || pk.VerifyMessage(epoch, crypto.ChallengeResponse{Round: round, Digest: d}, r.Signature) != nil {
		return whole(ErrBadSignature)
	}
	if len(r.Items) != len(want) {
		return whole(fmt.Errorf("%w: %d items for %d positions", ErrWrongPositions, len(r.Items), len(want)))
	}
	for i, it := range r.Items {
		p := want[i]
		s := it.Symbol
		if it.Blob != p.Blob || it.Shard != p.Shard || s.SourceAxis != p.Axis || s.Source != p.Sliver || s.Target != p.Symbol {
			return &Failure{Item: i, Position: p, Err: fmt.Errorf("%w: answers blob %s shard %d %s sliver %d symbol %d",
				ErrWrongPositions, it.Blob, it.Shard, s.SourceAxis, s.Source, s.Target)}
		}
		meta, err := metadata(p.Blob)
		if err != nil {
			return &Failure{Item: i, Position: p, Err: fmt.Errorf("%w: %v", ErrNoMetadata, err)}
		}
		if err := s.Verify(meta); err != nil {
			return &Failure{Item: i, Position: p, Err: fmt.Errorf("%w: %v", ErrBadSymbol, err)}
		}
	}
	return nil
}

// Prove builds the items for positions from the node's own slivers:
// extend returns the extended line of the sliver a position names (the
// node's stored sliver, extended — which needs the whole sliver).
func Prove(positions []Position, extend func(Position) (*coding.ExtendedSliver, error)) ([]Item, error) {
	items := make([]Item, 0, len(positions))
	for _, p := range positions {
		ext, err := extend(p)
		if err != nil {
			return nil, fmt.Errorf("challenge: blob %s shard %d %s sliver %d: %w", p.Blob, p.Shard, p.Axis, p.Sliver, err)
		}
		sym, err := ext.Symbol(int(p.Symbol), true)
		if err != nil {
			return nil, err
		}
		items = append(items, Item{Blob: p.Blob, Shard: p.Shard, Symbol: sym})
	}
	return items, nil
}
