package client

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// The zero-copy marshalling writes exactly proto.Marshal's bytes, for
// chunks with and without each field, below and above the threshold.
func TestChunkCodecMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(v uint64) uint64 {
		if r.IntN(3) == 0 {
			return 0
		}
		return v
	}
	for i := range 300 {
		size := r.IntN(3 * zeroCopyFrom)
		if i%10 == 0 {
			size = zeroCopyFrom
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		ch := &weftv1.SliverChunk{
			Axis: uint32(pick(1)), Index: uint32(pick(r.Uint64N(1000))), SymbolSize: uint32(pick(r.Uint64N(1 << 20))),
			Offset: pick(r.Uint64()), Data: data,
		}
		if r.IntN(2) == 0 {
			ch.BlobId = bytes.Repeat([]byte{byte(i)}, 32)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		out, err := sendCodec.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("chunk %d (%d bytes of data): marshalled %d bytes, protobuf %d", i, size, len(got), len(want))
		}
		if size >= zeroCopyFrom && &out[len(out)-1].ReadOnlyData()[0] != &data[0] {
			t.Fatalf("chunk %d: the data was copied", i)
		}
	}
}
