package crypto

import (
	"bytes"
	"testing"
)

// Decoders of keys, signatures, certificates and signed messages: no
// panic, and what they accept re-encodes to exactly its input.

func FuzzPublicKeyFromBytes(f *testing.F) {
	pk := mustKey(f, 40).PublicKey()
	f.Add(pk.Bytes())
	f.Add(pk.p.Bytes()) // uncompressed: refused
	f.Add(append([]byte{0xc0}, make([]byte, 47)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := PublicKeyFromBytes(data)
		if err != nil {
			return
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("accepted key %x re-encodes as %x", data, got.Bytes())
		}
		if !got.p.IsOnG1() {
			t.Fatal("accepted a point outside G1")
		}
	})
}

func FuzzSignatureFromBytes(f *testing.F) {
	sig := mustKey(f, 41).Sign([]byte("m"))
	f.Add(sig.Bytes())
	f.Add(sig.p.Bytes())
	f.Add(append([]byte{0xc0}, make([]byte, 95)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := SignatureFromBytes(data)
		if err != nil {
			return
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("accepted signature %x re-encodes as %x", data, got.Bytes())
		}
		if !got.p.IsOnG2() {
			t.Fatal("accepted a point outside G2")
		}
	})
}

func FuzzCertificateUnmarshal(f *testing.F) {
	view, sks := testCommittee(f, 3, weights)
	body := BlobStored{BlobID{42}}
	cert, err := BuildCertificate(view, body, sign(f, view, sks, body, 0, 1, 2, 3, 4))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := cert.MarshalBinary()
	f.Add(good)
	f.Add(good[:50])
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Certificate
		if c.UnmarshalBinary(data) != nil {
			return
		}
		again, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted certificate does not re-encode to its input: %v", err)
		}
		if c.VerifyAvailability(view) == nil && !bytes.Equal(data, good) {
			// Only the signers' set and signature that were made verify;
			// a different encoding of them would have failed above.
			t.Fatal("a forged certificate verifies")
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, body := range []MessageBody{
		BlobStored{BlobID{1}}, ShardSyncRequest{Shard: 2, Limit: 3}, ShardSynced{4},
		ChallengeResponse{Round: 5}, NodeRequest{Nonce: 6, Method: "Register", Node: "node-7"},
	} {
		b, _ := EncodeMessage(9, body)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		epoch, body, err := DecodeMessage(data)
		if err != nil {
			return
		}
		again, err := EncodeMessage(epoch, body)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted message does not re-encode to its input: %v", err)
		}
	})
}
