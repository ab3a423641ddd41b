package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// CommitteeView is what certificate verification needs to know of an
// epoch's committee: its members in committee order, each with a public key
// (decoded and validated once, when the view is built) and a weight (the
// shards it owns). It lives here, not with the control plane, so that
// clients verify certificates with nothing but this package.
type CommitteeView struct {
	epoch   uint64
	keys    []*PublicKey
	weights []uint32
	shards  uint64 // n: the sum of the weights
	index   map[string]int
}

// NewCommitteeView builds a view. Every key must be valid (not the
// identity) and appear once; every member owns at least one shard.
func NewCommitteeView(epoch uint64, keys []*PublicKey, weights []uint32) (*CommitteeView, error) {
	if len(keys) == 0 || len(keys) != len(weights) {
		return nil, fmt.Errorf("crypto: committee of %d keys and %d weights", len(keys), len(weights))
	}
	v := &CommitteeView{epoch: epoch, keys: keys, weights: weights, index: make(map[string]int, len(keys))}
	for i, pk := range keys {
		if err := pk.Validate(); err != nil {
			return nil, fmt.Errorf("crypto: committee member %d: %w", i, err)
		}
		if weights[i] == 0 {
			return nil, fmt.Errorf("crypto: committee member %d owns no shard", i)
		}
		k := string(pk.Bytes())
		if j, dup := v.index[k]; dup {
			return nil, fmt.Errorf("crypto: committee members %d and %d share a key", j, i)
		}
		v.index[k] = i
		v.shards += uint64(weights[i])
	}
	return v, nil
}

// Epoch is the epoch the committee serves.
func (v *CommitteeView) Epoch() uint64 { return v.epoch }

// Size is the number of members.
func (v *CommitteeView) Size() int { return len(v.keys) }

// Shards is n, the total weight.
func (v *CommitteeView) Shards() uint64 { return v.shards }

// Member returns member i's key and weight.
func (v *CommitteeView) Member(i int) (*PublicKey, uint32) { return v.keys[i], v.weights[i] }

// IndexOf returns the committee position of a key.
func (v *CommitteeView) IndexOf(pk *PublicKey) (int, bool) {
	i, ok := v.index[string(pk.Bytes())]
	return i, ok
}

// WriteQuorum is the smallest weight w with 3w ≥ 2n+1: an availability
// certificate needs signers owning that many shards.
func (v *CommitteeView) WriteQuorum() uint64 { return (2*v.shards + 1 + 2) / 3 }

// ValidityThreshold is f+1 with f = ⌊(n−1)/3⌋: signers owning that many
// shards include at least one honest one, enough to mark a blob invalid.
func (v *CommitteeView) ValidityThreshold() uint64 { return (v.shards-1)/3 + 1 }

// Threshold returns the weight a certificate of the type needs.
func (v *CommitteeView) Threshold(t MessageType) (uint64, error) {
	switch t {
	case MsgBlobStored:
		return v.WriteQuorum(), nil
	case MsgBlobInvalid:
		return v.ValidityThreshold(), nil
	}
	return 0, fmt.Errorf("%w: no certificates of type %s", ErrWrongMessageType, t)
}

// Certificate is an aggregate of committee signatures over one blob
// message: an availability certificate (MsgBlobStored, write quorum) or an
// invalid-blob certificate (MsgBlobInvalid, weight ≥ f+1).
type Certificate struct {
	Type      MessageType
	Epoch     uint64
	BlobID    BlobID
	Signers   []byte // bit i (byte i/8, bit i%8, least significant first) = member i signed
	Signature *Signature
}

// The errors certificate checks return, one per way to be wrong.
var (
	ErrWrongMessageType = errors.New("crypto: certificate of the wrong message type")
	ErrWrongEpoch       = errors.New("crypto: certificate for another epoch")
	ErrBitmapLength     = errors.New("crypto: signer bitmap does not fit the committee")
	ErrSignerOutOfRange = errors.New("crypto: signer bit beyond the committee")
	ErrDuplicateSigner  = errors.New("crypto: the same member signed twice")
	ErrNotMember        = errors.New("crypto: signer is not a committee member")
	ErrBelowThreshold   = errors.New("crypto: signers' weight below the threshold")
)

// ThresholdError carries the signers' weight and the weight needed.
type ThresholdError struct {
	Type         MessageType
	Weight, Need uint64
}

func (e *ThresholdError) Error() string {
	return fmt.Sprintf("crypto: %s certificate signed by %d shards' weight, needs %d", e.Type, e.Weight, e.Need)
}

func (e *ThresholdError) Unwrap() error { return ErrBelowThreshold }

// SignerError names the signature, by its position in the input, that
// kept a certificate from being built.
type SignerError struct {
	Position int
	Member   int // committee index, or -1 for a non-member
	Err      error
}

func (e *SignerError) Error() string {
	return fmt.Sprintf("crypto: signature %d (member %d): %v", e.Position, e.Member, e.Err)
}

func (e *SignerError) Unwrap() error { return e.Err }

// MemberSignature is one node's signature of a certificate's message.
type MemberSignature struct {
	Key       *PublicKey
	Signature *Signature
}

// certifiable returns the body a certificate of type t signs.
func certifiable(t MessageType, id BlobID) (MessageBody, error) {
	switch t {
	case MsgBlobStored:
		return BlobStored{id}, nil
	case MsgBlobInvalid:
		return BlobInvalid{id}, nil
	}
	return nil, fmt.Errorf("%w: no certificates of type %s", ErrWrongMessageType, t)
}

// BuildCertificate aggregates members' signatures of body (BlobStored or
// BlobInvalid) into a certificate for the view's epoch. Each signature is
// verified on its own first, so that one bad signature is named rather
// than spoiling the aggregate; the signers must reach the type's threshold.
func BuildCertificate(view *CommitteeView, body MessageBody, sigs []MemberSignature) (*Certificate, error) {
	var id BlobID
	switch b := body.(type) {
	case BlobStored:
		id = b.BlobID
	case BlobInvalid:
		id = b.BlobID
	default:
		return nil, fmt.Errorf("%w: no certificates of type %s", ErrWrongMessageType, body.MessageType())
	}
	msg, err := EncodeMessage(view.epoch, body)
	if err != nil {
		return nil, err
	}
	cert := &Certificate{Type: body.MessageType(), Epoch: view.epoch, BlobID: id, Signers: make([]byte, bitmapLen(view.Size()))}
	var weight uint64
	parts := make([]*Signature, 0, len(sigs))
	for pos, ms := range sigs {
		member, ok := view.IndexOf(ms.Key)
		if !ok {
			return nil, &SignerError{Position: pos, Member: -1, Err: ErrNotMember}
		}
		if cert.Signers[member/8]&(1<<(member%8)) != 0 {
			return nil, &SignerError{Position: pos, Member: member, Err: ErrDuplicateSigner}
		}
		if ms.Signature == nil {
			return nil, &SignerError{Position: pos, Member: member, Err: ErrBadSignature}
		}
		cert.Signers[member/8] |= 1 << (member % 8)
		weight += uint64(view.weights[member])
		parts = append(parts, ms.Signature)
	}
	need, _ := view.Threshold(cert.Type)
	if weight < need {
		return nil, &ThresholdError{Type: cert.Type, Weight: weight, Need: need}
	}
	if cert.Signature, err = Aggregate(parts); err != nil {
		return nil, err
	}
	// One pairing check for the lot, as every verifier of the certificate
	// will do; only when it fails are the signatures checked one by one,
	// to name the bad one.
	if err := cert.Verify(view, cert.Type); err == nil {
		return cert, nil
	}
	for pos, ms := range sigs {
		if err := ms.Key.Verify(msg, ms.Signature); err != nil {
			member, _ := view.IndexOf(ms.Key)
			return nil, &SignerError{Position: pos, Member: member, Err: err}
		}
	}
	return nil, fmt.Errorf("%w: the aggregate does not verify though every signature does", ErrBadSignature)
}

func bitmapLen(members int) int { return (members + 7) / 8 }

// Verify checks a certificate of the given type against the committee of
// its epoch: type, epoch, bitmap shape, the signers' weight, and then one
// aggregate verification — the signers' keys summed, two pairings —
// whatever the committee's size.
func (c *Certificate) Verify(view *CommitteeView, want MessageType) error {
	if c.Type != want {
		return fmt.Errorf("%w: %s, want %s", ErrWrongMessageType, c.Type, want)
	}
	need, err := view.Threshold(want)
	if err != nil {
		return err
	}
	if c.Epoch != view.epoch {
		return fmt.Errorf("%w: certificate of epoch %d, committee of epoch %d", ErrWrongEpoch, c.Epoch, view.epoch)
	}
	if len(c.Signers) != bitmapLen(view.Size()) {
		return fmt.Errorf("%w: %d bytes for %d members", ErrBitmapLength, len(c.Signers), view.Size())
	}
	if extra := view.Size() % 8; extra != 0 && c.Signers[len(c.Signers)-1]>>extra != 0 {
		return fmt.Errorf("%w: bits set past member %d", ErrSignerOutOfRange, view.Size()-1)
	}
	var weight uint64
	var agg bls.G1
	agg.SetIdentity()
	for _, member := range c.SignerIndices() {
		weight += uint64(view.weights[member])
		agg.Add(&agg, &view.keys[member].p)
	}
	if weight < need {
		return &ThresholdError{Type: c.Type, Weight: weight, Need: need}
	}
	if agg.IsIdentity() {
		return ErrIdentityPublicKey // members' keys that cancel out
	}
	if c.Signature == nil {
		return ErrBadSignature
	}
	body, _ := certifiable(c.Type, c.BlobID)
	msg, err := EncodeMessage(c.Epoch, body)
	if err != nil {
		return err
	}
	return coreVerify(&agg, msg, signatureDST, c.Signature, ErrBadSignature)
}

// VerifyAvailability checks an availability certificate (write quorum).
func (c *Certificate) VerifyAvailability(view *CommitteeView) error {
	return c.Verify(view, MsgBlobStored)
}

// VerifyInvalidity checks an invalid-blob certificate (weight ≥ f+1).
func (c *Certificate) VerifyInvalidity(view *CommitteeView) error {
	return c.Verify(view, MsgBlobInvalid)
}

// SignerIndices lists the members whose bits are set.
func (c *Certificate) SignerIndices() []int {
	var out []int
	for byteIdx, b := range c.Signers {
		for b != 0 {
			out = append(out, byteIdx*8+bits.TrailingZeros8(b))
			b &= b - 1
		}
	}
	return out
}

const (
	certificateVersion = 1
	certificateHeader  = 1 + 1 + 8 + DigestSize + 2
)

// MarshalBinary returns the canonical encoding:
// u8 version ‖ u8 type ‖ u64 epoch ‖ blob ID ‖ u16 bitmap length ‖ bitmap ‖ signature.
func (c *Certificate) MarshalBinary() ([]byte, error) {
	if c.Signature == nil {
		return nil, errors.New("crypto: certificate without a signature")
	}
	if len(c.Signers) > 0xffff {
		return nil, fmt.Errorf("crypto: signer bitmap of %d bytes", len(c.Signers))
	}
	b := make([]byte, 0, certificateHeader+len(c.Signers)+SignatureSize)
	b = append(b, certificateVersion, byte(c.Type))
	b = binary.BigEndian.AppendUint64(b, c.Epoch)
	b = append(b, c.BlobID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Signers)))
	b = append(b, c.Signers...)
	return append(b, c.Signature.Bytes()...), nil
}

// UnmarshalBinary decodes a certificate: a known version and type, exact
// lengths, a signature that is a point of G2. Whether it verifies is
// Verify's question.
func (c *Certificate) UnmarshalBinary(data []byte) error {
	if len(data) < certificateHeader {
		return fmt.Errorf("crypto: certificate of %d bytes, header needs %d", len(data), certificateHeader)
	}
	if data[0] != certificateVersion {
		return fmt.Errorf("crypto: certificate version %d, want %d", data[0], certificateVersion)
	}
	t := MessageType(data[1])
	if _, err := certifiable(t, BlobID{}); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(data[certificateHeader-2 : certificateHeader]))
	if len(data) != certificateHeader+n+SignatureSize {
		return fmt.Errorf("crypto: certificate with a %d-byte bitmap must be %d bytes, got %d", n, certificateHeader+n+SignatureSize, len(data))
	}
	sig, err := SignatureFromBytes(data[certificateHeader+n:])
	if err != nil {
		return err
	}
	*c = Certificate{
		Type:      t,
		Epoch:     binary.BigEndian.Uint64(data[2:10]),
		BlobID:    BlobID(data[10 : 10+DigestSize]),
		Signers:   append([]byte(nil), data[certificateHeader:certificateHeader+n]...),
		Signature: sig,
	}
	return nil
}
