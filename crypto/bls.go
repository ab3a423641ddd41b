package crypto

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// BLS12-381 signatures in the minimal-pubkey-size proof-of-possession
// ciphersuite of the IETF BLS draft (the one Ethereum uses): public keys in
// G1, signatures in G2, built on circl's group operations (circl's own
// sign/bls implements only the basic scheme). DESIGN §4.

const (
	// SecretKeySize is the size of an encoded secret key (a big-endian scalar).
	SecretKeySize = 32
	// PublicKeySize is the size of a compressed G1 point.
	PublicKeySize = bls.G1SizeCompressed
	// SignatureSize is the size of a compressed G2 point.
	SignatureSize = bls.G2SizeCompressed
)

var (
	signatureDST = []byte("BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_")
	popDST       = []byte("BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_")
	keyGenSalt   = []byte("BLS-SIG-KEYGEN-SALT-")
)

var (
	// ErrInvalidSecretKey: not 32 bytes, zero, or not below the group order.
	ErrInvalidSecretKey = errors.New("crypto: invalid BLS secret key")
	// ErrInvalidPublicKey: not a 48-byte compressed point of G1.
	ErrInvalidPublicKey = errors.New("crypto: invalid BLS public key encoding")
	// ErrInvalidSignature: not a 96-byte compressed point of G2.
	ErrInvalidSignature = errors.New("crypto: invalid BLS signature encoding")
	// ErrIdentityPublicKey: key validation refuses the identity, alone or
	// as an aggregate — it would verify the identity signature on anything.
	ErrIdentityPublicKey = errors.New("crypto: BLS public key is the identity")
	// ErrBadSignature: a well-formed signature that does not verify.
	ErrBadSignature = errors.New("crypto: BLS signature does not verify")
	// ErrBadProofOfPossession: the PoP does not verify for the key.
	ErrBadProofOfPossession = errors.New("crypto: BLS proof of possession does not verify")
	// ErrNothingToAggregate: an aggregate or aggregate verification of nothing.
	ErrNothingToAggregate = errors.New("crypto: nothing to aggregate")
	// ErrShortSeed: KeyGen needs at least 32 bytes of key material.
	ErrShortSeed = errors.New("crypto: BLS key seed shorter than 32 bytes")
)

// SecretKey is a BLS secret key. It never prints itself: every fmt verb
// and slog render it as "[secret key]".
type SecretKey struct{ s bls.Scalar }

// PublicKey is a point of G1, decoded and checked once.
type PublicKey struct{ p bls.G1 }

// Signature is a point of G2, decoded and checked once.
type Signature struct{ p bls.G2 }

// KeyGen derives a secret key from at least 32 bytes of secret seed, as the
// IETF draft's KeyGen (and EIP-2333's HKDF_mod_r) specify: HKDF-SHA-256 with
// a salt that is re-hashed until the result mod r is not zero.
func KeyGen(seed []byte) (*SecretKey, error) {
	if len(seed) < 32 {
		return nil, ErrShortSeed
	}
	const okmLen = 48 // ⌈3·⌈log2 r⌉/16⌉
	ikm := append(append([]byte(nil), seed...), 0)
	info := binary.BigEndian.AppendUint16(nil, okmLen)
	order := new(big.Int).SetBytes(bls.Order())
	salt := keyGenSalt
	for {
		h := sha256.Sum256(salt)
		salt = h[:]
		prk, err := hkdf.Extract(sha256.New, ikm, salt)
		if err != nil {
			return nil, err
		}
		okm, err := hkdf.Expand(sha256.New, prk, string(info), okmLen)
		if err != nil {
			return nil, err
		}
		v := new(big.Int).Mod(new(big.Int).SetBytes(okm), order)
		if v.Sign() != 0 {
			var b [SecretKeySize]byte
			return SecretKeyFromBytes(v.FillBytes(b[:]))
		}
	}
}

// GenerateKey makes a fresh secret key from r (crypto/rand when nil).
func GenerateKey(r io.Reader) (*SecretKey, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, 32)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("crypto: reading key seed: %w", err)
	}
	return KeyGen(seed)
}

// SecretKeyFromBytes decodes a 32-byte big-endian scalar in [1, r).
func SecretKeyFromBytes(b []byte) (*SecretKey, error) {
	if len(b) != SecretKeySize {
		return nil, ErrInvalidSecretKey
	}
	sk := new(SecretKey)
	if err := sk.s.UnmarshalBinary(b); err != nil || sk.s.IsZero() == 1 {
		return nil, ErrInvalidSecretKey
	}
	return sk, nil
}

// Bytes returns the 32-byte encoding; only a key file should hold it.
func (sk *SecretKey) Bytes() []byte {
	b, _ := sk.s.MarshalBinary()
	return b
}

// Format keeps secret keys out of logs and error messages.
func (sk *SecretKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "[secret key]") }

// LogValue keeps secret keys out of structured logs.
func (sk *SecretKey) LogValue() slog.Value { return slog.StringValue("[secret key]") }

// PublicKey returns sk·G1.
func (sk *SecretKey) PublicKey() *PublicKey {
	pk := new(PublicKey)
	pk.p.ScalarMult(&sk.s, bls.G1Generator())
	return pk
}

// Sign signs msg under the signing DST.
func (sk *SecretKey) Sign(msg []byte) *Signature { return sk.signWith(msg, signatureDST) }

// ProvePossession returns the key's proof of possession: a signature of its
// own public key under the PoP DST, which no ordinary signature can pass for.
func (sk *SecretKey) ProvePossession() *Signature {
	return sk.signWith(sk.PublicKey().Bytes(), popDST)
}

func (sk *SecretKey) signWith(msg, dst []byte) *Signature {
	var h bls.G2
	h.Hash(msg, dst)
	sig := new(Signature)
	sig.p.ScalarMult(&sk.s, &h)
	return sig
}

// PublicKeyFromBytes decodes a compressed public key. It checks that the
// point is in G1 and accepts the identity (decoding is not validation, as
// the draft and the vectors require); the uncompressed form is refused so
// that a key has exactly one encoding.
func PublicKeyFromBytes(b []byte) (*PublicKey, error) {
	if len(b) != PublicKeySize || b[0]&0x80 == 0 {
		return nil, ErrInvalidPublicKey
	}
	pk := new(PublicKey)
	if err := pk.p.SetBytes(b); err != nil {
		return nil, ErrInvalidPublicKey
	}
	return pk, nil
}

// Bytes returns the 48-byte compressed encoding.
func (pk *PublicKey) Bytes() []byte { return pk.p.BytesCompressed() }

// Fingerprint names a public key for people: the first 8 bytes of the
// SHA-256 of its compressed encoding, in hex (16 characters). Operators
// compare it between `weft key`, `weft admin node list` and the stake
// command, so it is computed here only.
func (pk *PublicKey) Fingerprint() string { return KeyFingerprint(pk.Bytes()) }

// KeyFingerprint is Fingerprint of a compressed public key's bytes, for
// records that keep the bytes (the encoding is canonical: one key, one
// fingerprint).
func KeyFingerprint(compressed []byte) string {
	sum := sha256.Sum256(compressed)
	return hex.EncodeToString(sum[:8])
}

// String renders the key as hex.
func (pk *PublicKey) String() string { return hex.EncodeToString(pk.Bytes()) }

// Equal reports whether two keys are the same point.
func (pk *PublicKey) Equal(o *PublicKey) bool { return pk.p.IsEqual(&o.p) }

// Validate is the draft's KeyValidate for a decoded key: the identity is
// refused (subgroup membership was checked when decoding).
func (pk *PublicKey) Validate() error {
	if pk.p.IsIdentity() {
		return ErrIdentityPublicKey
	}
	return nil
}

// Verify checks a signature of msg under this key.
func (pk *PublicKey) Verify(msg []byte, sig *Signature) error {
	if err := pk.Validate(); err != nil {
		return err
	}
	return coreVerify(&pk.p, msg, signatureDST, sig, ErrBadSignature)
}

// VerifyPossession checks a proof of possession. Only keys that pass it may
// take part in FastAggregateVerify: a rogue key (crafted from others' keys
// so that an aggregate verifies without their signatures) cannot pass.
func (pk *PublicKey) VerifyPossession(pop *Signature) error {
	if err := pk.Validate(); err != nil {
		return err
	}
	return coreVerify(&pk.p, pk.Bytes(), popDST, pop, ErrBadProofOfPossession)
}

// coreVerify checks e(pk, H(msg)) = e(G1, sig) as one product of pairings.
func coreVerify(pk *bls.G1, msg, dst []byte, sig *Signature, fail error) error {
	var h bls.G2
	h.Hash(msg, dst)
	if !pairingsCancel([]*bls.G1{pk}, []*bls.G2{&h}, &sig.p) {
		return fail
	}
	return nil
}

// pairingsCancel reports whether ∏ e(P_i, Q_i) · e(−G1, sig) = 1.
func pairingsCancel(ps []*bls.G1, qs []*bls.G2, sig *bls.G2) bool {
	ps = append(ps, bls.G1Generator())
	qs = append(qs, sig)
	signs := make([]int, len(ps))
	for i := range signs {
		signs[i] = 1
	}
	signs[len(signs)-1] = -1
	return bls.ProdPairFrac(ps, qs, signs).IsIdentity()
}

// SignatureFromBytes decodes a compressed signature, checking that it is in
// G2; the identity decodes (it never verifies under a valid key).
func SignatureFromBytes(b []byte) (*Signature, error) {
	if len(b) != SignatureSize || b[0]&0x80 == 0 {
		return nil, ErrInvalidSignature
	}
	sig := new(Signature)
	if err := sig.p.SetBytes(b); err != nil {
		return nil, ErrInvalidSignature
	}
	return sig, nil
}

// Bytes returns the 96-byte compressed encoding.
func (sig *Signature) Bytes() []byte { return sig.p.BytesCompressed() }

// String renders the signature as hex.
func (sig *Signature) String() string { return hex.EncodeToString(sig.Bytes()) }

// Aggregate adds signatures.
func Aggregate(sigs []*Signature) (*Signature, error) {
	if len(sigs) == 0 {
		return nil, ErrNothingToAggregate
	}
	agg := new(Signature)
	agg.p = sigs[0].p
	for _, s := range sigs[1:] {
		agg.p.Add(&agg.p, &s.p)
	}
	return agg, nil
}

// AggregatePublicKeys adds keys, each of which must be valid; so must the
// sum (keys that cancel out would verify the identity signature).
func AggregatePublicKeys(pks []*PublicKey) (*PublicKey, error) {
	if len(pks) == 0 {
		return nil, ErrNothingToAggregate
	}
	agg := new(PublicKey)
	agg.p.SetIdentity()
	for _, pk := range pks {
		if err := pk.Validate(); err != nil {
			return nil, err
		}
		agg.p.Add(&agg.p, &pk.p)
	}
	if err := agg.Validate(); err != nil {
		return nil, err
	}
	return agg, nil
}

// FastAggregateVerify checks an aggregate signature of one message by
// several keys: two pairings, however many keys. Sound only for keys whose
// proof of possession was checked.
func FastAggregateVerify(pks []*PublicKey, msg []byte, sig *Signature) error {
	agg, err := AggregatePublicKeys(pks)
	if err != nil {
		return err
	}
	return coreVerify(&agg.p, msg, signatureDST, sig, ErrBadSignature)
}

// AggregateVerify checks an aggregate signature of msgs[i] by pks[i].
func AggregateVerify(pks []*PublicKey, msgs [][]byte, sig *Signature) error {
	if len(pks) == 0 {
		return ErrNothingToAggregate
	}
	if len(pks) != len(msgs) {
		return fmt.Errorf("crypto: %d public keys for %d messages", len(pks), len(msgs))
	}
	ps := make([]*bls.G1, len(pks))
	qs := make([]*bls.G2, len(pks))
	for i, pk := range pks {
		if err := pk.Validate(); err != nil {
			return err
		}
		ps[i] = &pk.p
		qs[i] = new(bls.G2)
		qs[i].Hash(msgs[i], signatureDST)
	}
	if !pairingsCancel(ps, qs, &sig.p) {
		return ErrBadSignature
	}
	return nil
}

// BatchVerify checks many (key, message, signature) triples at once: each
// triple is weighted by a fresh random 64-bit scalar, so that the product of
// pairings is 1 only if every triple verifies (except with probability
// 2^-64), at the cost of one final exponentiation for the whole batch.
func BatchVerify(pks []*PublicKey, msgs [][]byte, sigs []*Signature) error {
	if len(pks) == 0 {
		return ErrNothingToAggregate
	}
	if len(pks) != len(msgs) || len(pks) != len(sigs) {
		return fmt.Errorf("crypto: batch of %d keys, %d messages, %d signatures", len(pks), len(msgs), len(sigs))
	}
	n := len(pks)
	ps := make([]*bls.G1, 2*n)
	qs := make([]*bls.G2, 2*n)
	weights := make([]*bls.Scalar, 2*n)
	negG1 := bls.G1Generator()
	negG1.Neg()
	var buf [8]byte
	for i, pk := range pks {
		if err := pk.Validate(); err != nil {
			return err
		}
		if _, err := rand.Read(buf[:]); err != nil {
			return err
		}
		w := new(bls.Scalar)
		w.SetUint64(binary.LittleEndian.Uint64(buf[:]) | 1)
		h := new(bls.G2)
		h.Hash(msgs[i], signatureDST)
		ps[i], qs[i], weights[i] = &pk.p, h, w
		ps[n+i], qs[n+i], weights[n+i] = negG1, &sigs[i].p, w
	}
	if !bls.ProdPair(ps, qs, weights).IsIdentity() {
		return ErrBadSignature
	}
	return nil
}
