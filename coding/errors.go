package coding

import (
	"errors"
	"fmt"

	"github.com/weftstore/weft/crypto"
)

// ErrNotEnoughSlivers is wrapped when a decode has too few slivers.
var ErrNotEnoughSlivers = errors.New("coding: not enough slivers to decode")

// NotEnoughSliversError says how many slivers of each axis were usable and
// how many a decode needs.
type NotEnoughSliversError struct {
	Primary, Secondary         int // usable slivers given
	NeedPrimary, NeedSecondary int
}

func (e *NotEnoughSliversError) Error() string {
	return fmt.Sprintf("coding: not enough slivers to decode: %d primary (need %d) and %d secondary (need %d)",
		e.Primary, e.NeedPrimary, e.Secondary, e.NeedSecondary)
}

func (e *NotEnoughSliversError) Unwrap() error { return ErrNotEnoughSlivers }

// ErrNotEnoughSymbols is wrapped when a recovery has too few usable symbols.
var ErrNotEnoughSymbols = errors.New("coding: not enough recovery symbols")

// NotEnoughSymbolsError names the target, the symbols needed and had, and
// the symbols rejected on the way (with why).
type NotEnoughSymbolsError struct {
	Target   SliverRef
	Need     int
	Have     int
	Rejected []*SymbolError
}

func (e *NotEnoughSymbolsError) Error() string {
	msg := fmt.Sprintf("coding: recovering %s needs %d symbols, got %d usable", e.Target, e.Need, e.Have)
	if len(e.Rejected) > 0 {
		msg += fmt.Sprintf(" (%d rejected, first: %v)", len(e.Rejected), e.Rejected[0])
	}
	return msg
}

func (e *NotEnoughSymbolsError) Unwrap() error { return ErrNotEnoughSymbols }

// SymbolError says why one recovery symbol was rejected: which source sent
// it, for which target, and the cause (a failed proof, a wrong size, …).
type SymbolError struct {
	Source SliverRef
	Target SliverRef
	Err    error
}

func (e *SymbolError) Error() string {
	return fmt.Sprintf("coding: symbol from %s for %s: %v", e.Source, e.Target, e.Err)
}

func (e *SymbolError) Unwrap() error { return e.Err }

// ErrInconsistentBlob is wrapped by every error that shows a blob's
// slivers do not form one codeword: the writer encoded it inconsistently.
// No reader may return bytes for such a blob.
var ErrInconsistentBlob = errors.New("coding: blob is inconsistently encoded")

// InconsistentBlobError is the consistent-read check's verdict: decoded
// bytes did not re-encode to the blob's metadata. Its message names only the
// blob, so every reader of an inconsistent blob reports the same error,
// whichever slivers it used; the pairs whose hashes differed under this
// reader's decode are kept as detail.
type InconsistentBlobError struct {
	ID              crypto.BlobID
	MismatchedPairs []int
}

func (e *InconsistentBlobError) Error() string {
	return fmt.Sprintf("coding: blob %s is inconsistently encoded: its slivers do not form one codeword", e.ID)
}

func (e *InconsistentBlobError) Unwrap() error { return ErrInconsistentBlob }

// InconsistencyError is returned when verified recovery symbols decode to a
// sliver whose hash differs from the metadata. Proof is the evidence, which
// anyone can check with VerifyInconsistencyProof.
type InconsistencyError struct {
	Proof     *InconsistencyProof
	Rebuilt   crypto.Digest // root over the rebuilt sliver's extended line
	Committed crypto.Digest // the metadata's hash of that sliver
}

func (e *InconsistencyError) Error() string {
	return fmt.Sprintf("coding: blob %s is inconsistently encoded: %d verified symbols rebuild %s with root %s, metadata says %s",
		e.Proof.BlobID, len(e.Proof.Symbols), e.Proof.Target, e.Rebuilt, e.Committed)
}

func (e *InconsistencyError) Unwrap() error { return ErrInconsistentBlob }
