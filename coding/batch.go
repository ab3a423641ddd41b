package coding

import (
	"fmt"
	"math/bits"

	"github.com/weftstore/weft/crypto"
)

// SymbolRequest names one recovery symbol asked of a peer: position Target
// of source sliver Source's extended line.
type SymbolRequest struct {
	Source SliverRef
	Target uint32
}

func (q SymbolRequest) String() string { return fmt.Sprintf("%s→%d", q.Source, q.Target) }

// SymbolVersionBatch is the answer a node asking for it gets to all its
// requests at once: one SymbolBatch instead of one RecoverySymbol each. A
// node announces it (GetRecoverySymbols' symbol_version) to peers that
// answer many of its requests per call — at n = 1000 a node holds ≈ 10
// shards — since a per-symbol header costs as much as the symbol itself
// when symbols are a few bytes (6 at 1 MiB).
const SymbolVersionBatch = 3

// MaxBatchRequests bounds the requests one SymbolBatch answers: a symbol
// of each axis for every shard, more than one node is ever asked for.
const MaxBatchRequests = 2 * MaxShards

// Symbol batch flags.
const (
	batchFlagProofs  = 1 << 0 // every symbol carries its Merkle proof
	batchFlagPartial = 1 << 1 // a bitmap of the requests served follows
	batchKnownFlags  = batchFlagProofs | batchFlagPartial
	batchHeader      = 1 + 1
)

// SymbolBatch is one peer's answer to a list of symbol requests, in one
// encoding (big-endian, canonical):
//
//	u8 3 ‖ u8 flags ‖ [bitmap] ‖ served × data ‖ [served × proof]
//
// flags bit 0: the symbols carry proofs; bit 1: not every request was
// served, and a bitmap of ⌈len(Asked)/8⌉ bytes follows (bit i%8 of byte
// i/8 set when request i was served; bits past the last request zero).
// The data of each served symbol follows in request order, SymbolSize
// bytes each, then their Merkle proofs in the same order. Neither the
// requests nor the symbol size travel: the requester decodes against its
// own request list and the blob's metadata, so a batch of ten 6-byte
// symbols costs 62 bytes where version 2 symbols cost 120.
type SymbolBatch struct {
	// Asked lists the requests in the order they were sent (not encoded).
	Asked []SymbolRequest
	// SymbolSize is the blob's symbol size (not encoded).
	SymbolSize int
	// Proofs is whether the symbols carry Merkle proofs (with_proofs).
	Proofs bool
	// Symbols are the answers, in the order of the requests they answer:
	// each answers the first request after the previous one's that names
	// its source and target. Requests with no answer were not served.
	Symbols []RecoverySymbol
}

// checkAsked validates what the batch is decoded or encoded against.
func (b *SymbolBatch) checkAsked() error {
	if len(b.Asked) > MaxBatchRequests {
		return fmt.Errorf("coding: symbol batch for %d requests, at most %d", len(b.Asked), MaxBatchRequests)
	}
	if b.SymbolSize <= 0 || uint64(b.SymbolSize) > maxSymbolSize {
		return fmt.Errorf("coding: symbol batch of %d-byte symbols", b.SymbolSize)
	}
	for i, q := range b.Asked {
		if !q.Source.Axis.Valid() || q.Source.Index >= MaxShards || q.Target >= MaxShards {
			return fmt.Errorf("coding: symbol batch request %d (%s) beyond the %d-shard limit", i, q, MaxShards)
		}
	}
	return nil
}

// served matches Symbols to Asked and checks each symbol's shape.
func (b *SymbolBatch) served() ([]bool, error) {
	served := make([]bool, len(b.Asked))
	j := 0
	for i, q := range b.Asked {
		if j < len(b.Symbols) && b.Symbols[j].SourceRef() == q.Source && b.Symbols[j].Target == q.Target {
			served[i] = true
			j++
		}
	}
	if j < len(b.Symbols) {
		sym := b.Symbols[j]
		return nil, fmt.Errorf("coding: symbol batch: symbol %d (%s→%d) answers no request left of %d", j, sym.SourceRef(), sym.Target, len(b.Asked))
	}
	for j, sym := range b.Symbols {
		if err := sym.checkShape(); err != nil {
			return nil, fmt.Errorf("coding: symbol batch: symbol %d: %w", j, err)
		}
		if len(sym.Data) != b.SymbolSize {
			return nil, fmt.Errorf("coding: symbol batch: symbol %d (%s→%d) has %d bytes, the batch's have %d", j, sym.SourceRef(), sym.Target, len(sym.Data), b.SymbolSize)
		}
		if (sym.Proof != nil) != b.Proofs {
			return nil, fmt.Errorf("coding: symbol batch: symbol %d (%s→%d) with proof %t in a batch with proofs %t", j, sym.SourceRef(), sym.Target, sym.Proof != nil, b.Proofs)
		}
	}
	return served, nil
}

// EncodedLen is the length of MarshalBinary's output, assuming it
// succeeds: the bytes a peer sends for the whole batch.
func (b *SymbolBatch) EncodedLen() int {
	n := batchHeader + len(b.Symbols)*b.SymbolSize
	if len(b.Symbols) < len(b.Asked) {
		n += bitmapLen(len(b.Asked))
	}
	for _, sym := range b.Symbols {
		if sym.Proof != nil {
			n += sym.Proof.EncodedLen()
		}
	}
	return n
}

func bitmapLen(asked int) int { return (asked + 7) / 8 }

// MarshalBinary encodes the batch; Asked, SymbolSize and Proofs must be
// set, and every symbol must answer a request, in order, with SymbolSize
// bytes and a proof exactly when Proofs.
func (b *SymbolBatch) MarshalBinary() ([]byte, error) {
	if err := b.checkAsked(); err != nil {
		return nil, err
	}
	served, err := b.served()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, b.EncodedLen())
	var flags byte
	if b.Proofs {
		flags |= batchFlagProofs
	}
	if len(b.Symbols) < len(b.Asked) {
		flags |= batchFlagPartial
	}
	out = append(out, SymbolVersionBatch, flags)
	if flags&batchFlagPartial != 0 {
		bitmap := make([]byte, bitmapLen(len(b.Asked)))
		for i, ok := range served {
			if ok {
				bitmap[i/8] |= 1 << (i % 8)
			}
		}
		out = append(out, bitmap...)
	}
	for _, sym := range b.Symbols {
		out = append(out, sym.Data...)
	}
	for _, sym := range b.Symbols {
		if sym.Proof != nil {
			if out, err = sym.Proof.AppendBinary(out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// UnmarshalBinary decodes a peer's batch against b.Asked, b.SymbolSize and
// b.Proofs, which the caller sets to what it asked; it sets b.Symbols,
// whose data alias data. Nothing is allocated beyond what was asked: at
// most one symbol per request, proofs no larger than data.
func (b *SymbolBatch) UnmarshalBinary(data []byte) error {
	if err := b.checkAsked(); err != nil {
		return err
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("coding: symbol batch of %d bytes for %d requests of %d-byte symbols: %s",
			len(data), len(b.Asked), b.SymbolSize, fmt.Sprintf(format, args...))
	}
	if len(data) < batchHeader {
		return fail("header needs %d bytes", batchHeader)
	}
	if data[0] != SymbolVersionBatch {
		return fail("version %d, want %d", data[0], SymbolVersionBatch)
	}
	flags := data[1]
	if flags&^batchKnownFlags != 0 {
		return fail("unknown flags %#x", flags)
	}
	if hasProofs := flags&batchFlagProofs != 0; hasProofs != b.Proofs {
		return fail("proofs %t, asked for proofs %t", hasProofs, b.Proofs)
	}
	rest := data[batchHeader:]
	served := len(b.Asked)
	var bitmap []byte
	if flags&batchFlagPartial != 0 {
		m := bitmapLen(len(b.Asked))
		if len(rest) < m {
			return fail("bitmap of %d bytes truncated at %d", m, len(rest))
		}
		bitmap, rest = rest[:m], rest[m:]
		served = 0
		for _, x := range bitmap {
			served += bits.OnesCount8(x)
		}
		if tail := len(b.Asked) % 8; tail != 0 && bitmap[m-1]>>tail != 0 {
			return fail("bitmap sets bits past request %d", len(b.Asked)-1)
		}
		if served == len(b.Asked) {
			return fail("bitmap marks every request served (not canonical)")
		}
	}
	size := uint64(served) * uint64(b.SymbolSize)
	if uint64(len(rest)) < size {
		return fail("%d symbols served need %d bytes of data, %d left", served, size, len(rest))
	}
	if !b.Proofs && uint64(len(rest)) != size {
		return fail("%d symbols served need exactly %d bytes of data, got %d", served, size, len(rest))
	}
	body, proofs := rest[:size], rest[size:]
	symbols := make([]RecoverySymbol, 0, served)
	s := b.SymbolSize
	for i, q := range b.Asked {
		if bitmap != nil && bitmap[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		at := len(symbols) * s
		sym := RecoverySymbol{SourceAxis: q.Source.Axis, Source: q.Source.Index, Target: q.Target, Data: body[at : at+s : at+s]}
		if b.Proofs {
			proof, tail, err := crypto.DecodeMerkleProof(proofs)
			if err != nil {
				return fail("proof of symbol %d (request %d, %s): %v", len(symbols), i, q, err)
			}
			sym.Proof, proofs = &proof, tail
		}
		if err := sym.checkShape(); err != nil {
			return fail("symbol %d (request %d, %s): %v", len(symbols), i, q, err)
		}
		symbols = append(symbols, sym)
	}
	if len(proofs) != 0 {
		return fail("%d trailing bytes", len(proofs))
	}
	b.Symbols = symbols
	return nil
}
