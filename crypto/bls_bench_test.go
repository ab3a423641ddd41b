package crypto

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func benchKeys(b *testing.B, n int) []*SecretKey {
	sks := make([]*SecretKey, n)
	for i := range sks {
		seed := make([]byte, 32)
		seed[0], seed[1] = byte(i), byte(i>>8)
		var err error
		if sks[i], err = KeyGen(seed); err != nil {
			b.Fatal(err)
		}
	}
	return sks
}

func BenchmarkSign(b *testing.B) {
	sk := benchKeys(b, 1)[0]
	msg := []byte("blob stored")
	for b.Loop() {
		sk.Sign(msg)
	}
}

func BenchmarkVerify(b *testing.B) {
	sk := benchKeys(b, 1)[0]
	pk, msg := sk.PublicKey(), []byte("blob stored")
	sig := sk.Sign(msg)
	for b.Loop() {
		if err := pk.Verify(msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFastAggregateVerify(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			sks := benchKeys(b, n)
			msg := []byte("blob stored")
			pks := make([]*PublicKey, n)
			sigs := make([]*Signature, n)
			for i, sk := range sks {
				pks[i], sigs[i] = sk.PublicKey(), sk.Sign(msg)
			}
			agg, _ := Aggregate(sigs)
			for b.Loop() {
				if err := FastAggregateVerify(pks, msg, agg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAggregate(b *testing.B) {
	b.Run("sigs=100", func(b *testing.B) {
		sks := benchKeys(b, 100)
		sigs := make([]*Signature, len(sks))
		for i, sk := range sks {
			sigs[i] = sk.Sign([]byte("blob stored"))
		}
		for b.Loop() {
			if _, err := Aggregate(sigs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCertificateVerify verifies an availability certificate of a
// 1000-shard committee of 100 nodes (10 shards each), signed by a quorum
// (67 nodes), against a view built once. x-verify is its time over one
// Verify, paired run by run in the same process (median of the pairs).
func BenchmarkCertificateVerify(b *testing.B) {
	b.Run("shards=1000/nodes=100", func(b *testing.B) {
		sks := benchKeys(b, 100)
		pks := make([]*PublicKey, len(sks))
		weights := make([]uint32, len(sks))
		for i, sk := range sks {
			pks[i], weights[i] = sk.PublicKey(), 10
		}
		view, err := NewCommitteeView(5, pks, weights)
		if err != nil {
			b.Fatal(err)
		}
		body := BlobStored{BlobID{7}}
		var sigs []MemberSignature
		for _, sk := range sks[:67] {
			sig, _ := sk.SignMessage(5, body)
			sigs = append(sigs, MemberSignature{sk.PublicKey(), sig})
		}
		cert, err := BuildCertificate(view, body, sigs)
		if err != nil {
			b.Fatal(err)
		}
		msg, _ := EncodeMessage(5, body)
		one := sigs[0].Signature
		var ratios []float64
		for b.Loop() {
			start := time.Now()
			if err := cert.VerifyAvailability(view); err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			b.StopTimer()
			start = time.Now()
			if err := pks[0].Verify(msg, one); err != nil {
				b.Fatal(err)
			}
			ratios = append(ratios, float64(took)/float64(time.Since(start)))
			b.StartTimer()
		}
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "x-verify")
	})
}
