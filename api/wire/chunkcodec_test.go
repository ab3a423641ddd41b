package wire

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// split cuts data into buffers of step bytes, as gRPC hands over a message
// received in several frames.
func split(data []byte, step int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(data) > 0 {
		n := min(step, len(data))
		s = append(s, mem.SliceBuffer(data[:n]))
		data = data[n:]
	}
	return s
}

// hasGroup reports whether encoded unknown fields hold a group, the one
// thing decodeChunk refuses that protobuf accepts.
func hasGroup(unknown []byte) bool {
	for len(unknown) > 0 {
		_, typ, n := protowire.ConsumeField(unknown)
		if n < 0 {
			return false
		}
		if typ == protowire.StartGroupType {
			return true
		}
		unknown = unknown[n:]
	}
	return false
}

// FuzzDecodeChunk holds the node's SliverChunk decoder to protobuf's: what
// it accepts, protobuf accepts with the same fields; what protobuf refuses,
// it refuses — however the bytes are split into frames.
func FuzzDecodeChunk(f *testing.F) {
	for _, c := range []*weftv1.SliverChunk{
		{},
		{BlobId: bytes.Repeat([]byte{7}, 32), Axis: 1, Index: 99, SymbolSize: 4096, Offset: 1 << 20, Data: bytes.Repeat([]byte{1, 2, 3}, 1000)},
		{Index: 3, Data: []byte{}},
	} {
		raw, _ := proto.Marshal(c)
		f.Add(raw, uint8(7))
	}
	f.Add([]byte{0x32, 0x05, 1, 2}, uint8(1))                                                 // data longer than the bytes left
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, uint8(3)) // overlong varint
	f.Add([]byte{0x13, 0x14}, uint8(2))                                                       // a group
	f.Fuzz(func(t *testing.T, raw []byte, step uint8) {
		var want weftv1.SliverChunk
		werr := proto.Unmarshal(raw, &want)
		var got weftv1.SliverChunk
		r := split(raw, int(step)+1).Reader()
		gerr := decodeChunk(r, &got, func(n int) []byte { return make([]byte, n) })
		r.Close()
		switch {
		case gerr == nil && werr != nil:
			t.Fatalf("accepted what protobuf refuses (%v)", werr)
		case gerr != nil && werr == nil && !hasGroup(want.ProtoReflect().GetUnknown()):
			t.Fatalf("refused what protobuf accepts: %v", gerr)
		case gerr == nil:
			if !bytes.Equal(got.BlobId, want.BlobId) || got.Axis != want.Axis || got.Index != want.Index ||
				got.SymbolSize != want.SymbolSize || got.Offset != want.Offset || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("decoded %v, protobuf %v", &got, &want)
			}
		}
	})
}

// The codec leaves every other message to protobuf.
func TestChunkCodecOtherMessages(t *testing.T) {
	c := NewChunkCodec()
	req := &weftv1.GetSliverRequest{BlobId: []byte{1, 2, 3}, Axis: 1, Index: 5}
	out, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back weftv1.GetSliverRequest
	if err := c.Unmarshal(out, &back); err != nil || !proto.Equal(req, &back) {
		t.Fatalf("round trip: %v, %v", &back, err)
	}
	chunk := &weftv1.SliverChunk{BlobId: []byte{9}, Index: 4, Data: bytes.Repeat([]byte{5}, 100_000)}
	raw, _ := proto.Marshal(chunk)
	var got weftv1.SliverChunk
	if err := c.Unmarshal(split(raw, 16<<10), &got); err != nil || !proto.Equal(chunk, &got) {
		t.Fatalf("chunk: %v", err)
	}
}

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
	const zeroCopyFrom = 64 << 10
	sendCodec := NewChunkCodec(WithZeroCopySend(zeroCopyFrom))
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

// putCounter counts Puts: a TrackedChunk's Done.
type putCounter struct{ puts int }

func (p *putCounter) Get(int) *[]byte { panic("a TrackedChunk's Done is never asked for a buffer") }
func (p *putCounter) Put(*[]byte)     { p.puts++ }

// A TrackedChunk marshals as its chunk does, and its Done is told once
// gRPC holds no reference to the data: at once when it was copied, when
// the marshalled buffers are freed when it was not.
func TestTrackedChunk(t *testing.T) {
	const zeroCopyFrom = 64 << 10
	sendCodec := NewChunkCodec(WithZeroCopySend(zeroCopyFrom))
	for _, size := range []int{100, zeroCopyFrom - 1, zeroCopyFrom, 3 * zeroCopyFrom} {
		data := bytes.Repeat([]byte{7}, size)
		ch := &weftv1.SliverChunk{BlobId: bytes.Repeat([]byte{1}, 32), Axis: 1, Index: 3, SymbolSize: 64, Offset: 128, Data: data}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		done := &putCounter{}
		out, err := sendCodec.Marshal(&TrackedChunk{SliverChunk: ch, Done: done})
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes of data: marshalled %d bytes, protobuf %d", size, len(got), len(want))
		}
		copied := size < zeroCopyFrom
		if wantPuts := map[bool]int{true: 1, false: 0}[copied]; done.puts != wantPuts {
			t.Fatalf("%d bytes of data: %d Puts before the buffers were freed, want %d", size, done.puts, wantPuts)
		}
		if !copied && &out[len(out)-1].ReadOnlyData()[0] != &data[0] {
			t.Fatalf("%d bytes of data: copied", size)
		}
		out.Ref() // as gRPC's transport does, and frees it when written
		out.Free()
		if done.puts != map[bool]int{true: 1, false: 0}[copied] {
			t.Fatalf("%d bytes of data: Put while a reference remained", size)
		}
		out.Free()
		if done.puts != 1 {
			t.Fatalf("%d bytes of data: %d Puts after the buffers were freed, want 1", size, done.puts)
		}
	}
}
