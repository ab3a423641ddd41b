package crypto

import (
	"errors"
	"testing"
)

// testCommittee has members with the given weights and their secret keys.
func testCommittee(t testing.TB, epoch uint64, weights []uint32) (*CommitteeView, []*SecretKey) {
	t.Helper()
	sks := make([]*SecretKey, len(weights))
	pks := make([]*PublicKey, len(weights))
	for i := range weights {
		sks[i] = mustKey(t, byte(100+i))
		pks[i] = sks[i].PublicKey()
	}
	view, err := NewCommitteeView(epoch, pks, weights)
	if err != nil {
		t.Fatal(err)
	}
	return view, sks
}

func sign(t testing.TB, view *CommitteeView, sks []*SecretKey, body MessageBody, members ...int) []MemberSignature {
	t.Helper()
	var out []MemberSignature
	for _, m := range members {
		sig, err := sks[m].SignMessage(view.Epoch(), body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, MemberSignature{Key: sks[m].PublicKey(), Signature: sig})
	}
	return out
}

func TestMessagesBindTypeAndEpoch(t *testing.T) {
	sk := mustKey(t, 20)
	pk := sk.PublicKey()
	id := BlobID{1, 2, 3}
	sig, err := sk.SignMessage(7, BlobStored{id})
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.VerifyMessage(7, BlobStored{id}, sig); err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string]func() error{
		"another type":  func() error { return pk.VerifyMessage(7, BlobInvalid{id}, sig) },
		"another epoch": func() error { return pk.VerifyMessage(8, BlobStored{id}, sig) },
		"another blob":  func() error { return pk.VerifyMessage(7, BlobStored{BlobID{9}}, sig) },
	} {
		if err := other(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// Every body type round-trips through its canonical encoding.
	bodies := []MessageBody{
		BlobStored{id}, BlobInvalid{id},
		ShardSyncRequest{Shard: 3, After: id, Limit: 100, Nonce: 42},
		ShardSynced{Shard: 999},
		ChallengeResponse{Round: 5, Digest: Digest{7}},
		NodeRequest{Nonce: 1, Method: "RegisterNode", Node: "node-3", Payload: Digest{8}},
		NodeRequest{Nonce: 1, Method: "RegisterNode", Node: "node-4", Payload: Digest{8}},
	}
	seen := map[string]bool{}
	for _, body := range bodies {
		b, err := EncodeMessage(11, body)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != byte(body.MessageType()) || b[1] != IntentVersion || b[2] != AppID {
			t.Fatalf("%s: intent % x", body.MessageType(), b[:3])
		}
		epoch, got, err := DecodeMessage(b)
		if err != nil || epoch != 11 || got != body {
			t.Fatalf("%s: decoded %v %v %v", body.MessageType(), epoch, got, err)
		}
		if seen[string(b)] {
			t.Fatalf("%s: two bodies encode alike", body.MessageType())
		}
		seen[string(b)] = true
		for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte(nil), b...), 0), append([]byte{b[0], 2}, b[2:]...), append([]byte{b[0], b[1], 0}, b[3:]...)} {
			if _, _, err := DecodeMessage(bad); !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("%s: malformed %x accepted", body.MessageType(), bad)
			}
		}
	}
	if _, err := EncodeMessage(1, NodeRequest{Method: string(make([]byte, 256))}); err == nil {
		t.Fatal("over-long method accepted")
	}
	if _, err := EncodeMessage(1, NodeRequest{Method: "M", Node: string(make([]byte, MaxNodeIDLength+1))}); err == nil {
		t.Fatal("over-long node ID accepted")
	}
}

// The node ID is part of what a node signs, and a decoder refuses an ID
// longer than the registry takes even when the bytes are otherwise well
// formed.
func TestNodeRequestNodeID(t *testing.T) {
	sk, _ := GenerateKey(nil)
	a := NodeRequest{Nonce: 1, Method: "RegisterNode", Node: "A", Payload: Digest{1}}
	sig, err := sk.SignMessage(0, a)
	if err != nil {
		t.Fatal(err)
	}
	b := a
	b.Node = "B"
	if sk.PublicKey().VerifyMessage(0, b, sig) == nil {
		t.Fatal("a signature for node A verifies for node B")
	}
	long := NodeRequest{Method: "M", Node: string(make([]byte, MaxNodeIDLength))}
	enc, err := EncodeMessage(0, long)
	if err != nil {
		t.Fatal(err)
	}
	// Grow the ID by one byte and its length prefix with it: still one
	// value, one encoding, but past the bound.
	at := messageHeader + 9 + len(long.Method)
	grown := append(append(append([]byte(nil), enc[:at]...), MaxNodeIDLength+1, 0), enc[at+1:]...)
	if _, _, err := DecodeMessage(grown); !errors.Is(err, ErrMalformedMessage) {
		t.Fatalf("a node ID of %d bytes decoded: %v", MaxNodeIDLength+1, err)
	}
}

func TestKeyFingerprint(t *testing.T) {
	sk, _ := GenerateKey(nil)
	pk := sk.PublicKey()
	fp := pk.Fingerprint()
	if len(fp) != 16 || fp != KeyFingerprint(pk.Bytes()) {
		t.Fatalf("fingerprint %q", fp)
	}
	other, _ := GenerateKey(nil)
	if other.PublicKey().Fingerprint() == fp {
		t.Fatal("two keys share a fingerprint")
	}
}

// 10 members, 100 shards: quorum 67, validity threshold 34.
var weights = []uint32{20, 15, 12, 10, 10, 9, 8, 7, 5, 4}

func TestCertificateQuorumBoundary(t *testing.T) {
	view, sks := testCommittee(t, 3, weights)
	if view.Shards() != 100 || view.WriteQuorum() != 67 || view.ValidityThreshold() != 34 {
		t.Fatalf("n=%d quorum=%d threshold=%d", view.Shards(), view.WriteQuorum(), view.ValidityThreshold())
	}
	body := BlobStored{BlobID{42}}
	// 20+15+12+10+10 = 67: exactly the quorum.
	cert, err := BuildCertificate(view, body, sign(t, view, sks, body, 0, 1, 2, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyAvailability(view); err != nil {
		t.Fatalf("exactly-quorum certificate: %v", err)
	}
	wire, _ := cert.MarshalBinary()
	var decoded Certificate
	if err := decoded.UnmarshalBinary(wire); err != nil {
		t.Fatal(err)
	}
	if err := decoded.VerifyAvailability(view); err != nil {
		t.Fatalf("after a round trip: %v", err)
	}
	// 20+15+12+10+9 = 66: one shard short, when built and when verified.
	short := sign(t, view, sks, body, 0, 1, 2, 3, 5)
	var te *ThresholdError
	if _, err := BuildCertificate(view, body, short); !errors.As(err, &te) || te.Weight != 66 || te.Need != 67 {
		t.Fatalf("build one shard below quorum: err = %v", err)
	}
	below := *cert
	below.Signers = []byte{0b00101111, 0} // members 0,1,2,3,5
	agg, _ := Aggregate([]*Signature{short[0].Signature, short[1].Signature, short[2].Signature, short[3].Signature, short[4].Signature})
	below.Signature = agg
	if err := below.VerifyAvailability(view); !errors.As(err, &te) || te.Weight != 66 {
		t.Fatalf("verify one shard below quorum: err = %v", err)
	}
	// The same 66 are plenty to prove a blob invalid (f+1 = 34).
	inv := BlobInvalid{BlobID{42}}
	icert, err := BuildCertificate(view, inv, sign(t, view, sks, inv, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := icert.VerifyInvalidity(view); err != nil {
		t.Fatalf("invalid-blob certificate with weight 35: %v", err)
	}
	if _, err := BuildCertificate(view, inv, sign(t, view, sks, inv, 0, 9, 8)); !errors.As(err, &te) || te.Weight != 29 {
		t.Fatalf("invalid-blob certificate with weight 29: err = %v", err)
	}
}

func TestCertificateRejections(t *testing.T) {
	view, sks := testCommittee(t, 3, weights)
	body := BlobStored{BlobID{42}}
	good, err := BuildCertificate(view, body, sign(t, view, sks, body, 0, 1, 2, 3, 4, 5))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(c *Certificate)) *Certificate {
		c := *good
		c.Signers = append([]byte(nil), good.Signers...)
		f(&c)
		return &c
	}
	nextView, _ := testCommittee(t, 4, weights)
	outsider := mustKey(t, 77)
	outsiderSig, _ := outsider.SignMessage(3, body)
	cases := []struct {
		name string
		err  error
		run  func() error
	}{
		{"wrong epoch", ErrWrongEpoch, func() error { return good.VerifyAvailability(nextView) }},
		{"wrong message type", ErrWrongMessageType, func() error { return good.VerifyInvalidity(view) }},
		{"invalid-blob certificate as availability", ErrWrongMessageType, func() error {
			return mutate(func(c *Certificate) { c.Type = MsgBlobInvalid }).VerifyAvailability(view)
		}},
		{"bitmap too short", ErrBitmapLength, func() error {
			return mutate(func(c *Certificate) { c.Signers = c.Signers[:1] }).VerifyAvailability(view)
		}},
		{"bitmap too long", ErrBitmapLength, func() error {
			return mutate(func(c *Certificate) { c.Signers = append(c.Signers, 0) }).VerifyAvailability(view)
		}},
		{"signer bit out of range", ErrSignerOutOfRange, func() error {
			return mutate(func(c *Certificate) { c.Signers[1] |= 1 << 2 }).VerifyAvailability(view) // member 10 of 10
		}},
		{"tampered bitmap", ErrBadSignature, func() error {
			return mutate(func(c *Certificate) { c.Signers[0] |= 1 << 6 }).VerifyAvailability(view) // member 6 claimed, never signed
		}},
		{"tampered body", ErrBadSignature, func() error {
			return mutate(func(c *Certificate) { c.BlobID[0] ^= 1 }).VerifyAvailability(view)
		}},
		{"duplicate signer", ErrDuplicateSigner, func() error {
			sigs := sign(t, view, sks, body, 0, 1, 2, 3, 4)
			_, err := BuildCertificate(view, body, append(sigs, sigs[2]))
			return err
		}},
		{"non-member's signature", ErrNotMember, func() error {
			sigs := append(sign(t, view, sks, body, 0, 1, 2, 3, 4), MemberSignature{outsider.PublicKey(), outsiderSig})
			_, err := BuildCertificate(view, body, sigs)
			return err
		}},
		{"a member's bad signature", ErrBadSignature, func() error {
			sigs := sign(t, view, sks, body, 0, 1, 2, 3, 4)
			sigs[3].Signature = outsiderSig
			_, err := BuildCertificate(view, body, sigs)
			var se *SignerError
			if !errors.As(err, &se) || se.Member != 3 {
				t.Errorf("bad signature not attributed to member 3: %v", err)
			}
			return err
		}},
		{"non-member's signature folded into the aggregate", ErrBadSignature, func() error {
			return mutate(func(c *Certificate) {
				c.Signature, _ = Aggregate([]*Signature{c.Signature, outsiderSig})
			}).VerifyAvailability(view)
		}},
	}
	for _, tc := range cases {
		if err := tc.run(); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestCommitteeViewRejectsBadMembers(t *testing.T) {
	a, b := mustKey(t, 1).PublicKey(), mustKey(t, 2).PublicKey()
	id, _ := PublicKeyFromBytes(append([]byte{0xc0}, make([]byte, 47)...))
	for name, tc := range map[string]struct {
		keys    []*PublicKey
		weights []uint32
	}{
		"empty":         {nil, nil},
		"length":        {[]*PublicKey{a, b}, []uint32{1}},
		"identity key":  {[]*PublicKey{a, id}, []uint32{1, 1}},
		"duplicate key": {[]*PublicKey{a, a}, []uint32{1, 1}},
		"zero weight":   {[]*PublicKey{a, b}, []uint32{1, 0}},
	} {
		if _, err := NewCommitteeView(1, tc.keys, tc.weights); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCertificateEncodingRejectsMalformed(t *testing.T) {
	view, sks := testCommittee(t, 3, weights)
	body := BlobStored{BlobID{42}}
	cert, _ := BuildCertificate(view, body, sign(t, view, sks, body, 0, 1, 2, 3, 4))
	wire, _ := cert.MarshalBinary()
	bad := [][]byte{
		nil, wire[:40], wire[:len(wire)-1], append(append([]byte(nil), wire...), 0),
		append([]byte{2}, wire[1:]...),                       // version
		append([]byte{1, byte(MsgShardSynced)}, wire[2:]...), // not certifiable
	}
	uncompressed := append(append([]byte(nil), wire[:len(wire)-SignatureSize]...), cert.Signature.p.Bytes()...)
	bad = append(bad, uncompressed)
	for i, b := range bad {
		var c Certificate
		if err := c.UnmarshalBinary(b); err == nil {
			t.Errorf("malformed certificate %d accepted", i)
		}
	}
}
