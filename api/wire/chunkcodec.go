package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// ChunkCodec is the protobuf gRPC codec, except for SliverChunk, the
// message that carries a blob's bytes:
//   - received, a chunk is parsed straight from the frames gRPC read, its
//     data copied once into a buffer of the caller's choosing (the
//     protobuf codec joins the frames into one buffer, then copies the
//     data out of it: two copies, and hundreds of megabytes of fresh
//     allocations per large blob);
//   - sent, with WithZeroCopySend, a large chunk is marshalled without
//     copying its data: its few header bytes, then the data's own memory,
//     byte for byte what proto.Marshal writes (a store sends 4.5× the
//     blob's size; the copy cost as much as the sending).
type ChunkCodec struct {
	encoding.CodecV2
	zeroCopyFrom int                // 0: chunks are marshalled by protobuf
	alloc        func(n int) []byte // a received chunk's data buffer
}

// ChunkOption configures a ChunkCodec.
type ChunkOption func(*ChunkCodec)

// WithZeroCopySend marshals chunks of at least from bytes of data
// without copying it. Only for senders that never modify a chunk's data
// after sending it: gRPC may still read it after SendMsg returns.
func WithZeroCopySend(from int) ChunkOption {
	return func(c *ChunkCodec) { c.zeroCopyFrom = from }
}

// WithChunkBuffers sets where a received chunk's data goes (default:
// make).
func WithChunkBuffers(alloc func(n int) []byte) ChunkOption {
	return func(c *ChunkCodec) { c.alloc = alloc }
}

// NewChunkCodec returns the codec; use it with grpc.ForceServerCodecV2 or
// grpc.ForceCodecV2.
func NewChunkCodec(opts ...ChunkOption) ChunkCodec {
	c := ChunkCodec{CodecV2: encoding.GetCodecV2(grpcproto.Name), alloc: func(n int) []byte { return make([]byte, n) }}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// TrackedChunk is a SliverChunk whose sender wants to know when gRPC is
// done with its data, to reuse the memory (client: an encode's slivers,
// coding.Encoded.Release). Send it with SendMsg through a ChunkCodec:
// Marshal calls Done.Put exactly once, when nothing in gRPC reads Data any
// more — at once if the chunk was marshalled by copying, else when gRPC
// frees the last reference to the buffer sent without copying (written
// out, or dropped with its stream). A chunk that never reaches Marshal
// (SendMsg failing first) is never Put: the sender then never reuses its
// memory, which is safe. Done.Get is never called.
type TrackedChunk struct {
	*weftv1.SliverChunk
	Done mem.BufferPool
}

// Marshal implements encoding.CodecV2.
func (c ChunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if tc, ok := v.(*TrackedChunk); ok {
		ch := tc.SliverChunk
		if !c.zeroCopy(ch) || mem.IsBelowBufferPoolingThreshold(cap(ch.Data)) {
			defer tc.Done.Put(&ch.Data) // copied: gRPC holds no reference
			return c.CodecV2.Marshal(ch)
		}
		out := c.marshalZeroCopy(ch)
		out[1] = mem.NewBuffer(&ch.Data, tc.Done)
		return out, nil
	}
	ch, ok := v.(*weftv1.SliverChunk)
	if !ok || !c.zeroCopy(ch) {
		return c.CodecV2.Marshal(v)
	}
	return c.marshalZeroCopy(ch), nil
}

// zeroCopy says whether a chunk is marshalled without copying its data.
func (c ChunkCodec) zeroCopy(ch *weftv1.SliverChunk) bool {
	return c.zeroCopyFrom != 0 && len(ch.Data) >= c.zeroCopyFrom && len(ch.ProtoReflect().GetUnknown()) == 0
}

// marshalZeroCopy returns the chunk's header bytes and its data, as they
// lie.
func (c ChunkCodec) marshalZeroCopy(ch *weftv1.SliverChunk) mem.BufferSlice {
	// Fields in number order, zero scalars left out: proto.Marshal's
	// deterministic output for this message.
	var h []byte
	if len(ch.BlobId) > 0 {
		h = protowire.AppendBytes(protowire.AppendTag(h, 1, protowire.BytesType), ch.BlobId)
	}
	for _, f := range []struct {
		num protowire.Number
		v   uint64
	}{{2, uint64(ch.Axis)}, {3, uint64(ch.Index)}, {4, uint64(ch.SymbolSize)}, {5, ch.Offset}} {
		if f.v != 0 {
			h = protowire.AppendVarint(protowire.AppendTag(h, f.num, protowire.VarintType), f.v)
		}
	}
	h = protowire.AppendVarint(protowire.AppendTag(h, 6, protowire.BytesType), uint64(len(ch.Data)))
	return mem.BufferSlice{mem.SliceBuffer(h), mem.SliceBuffer(ch.Data)}
}

// Unmarshal implements encoding.CodecV2.
func (c ChunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	chunk, ok := v.(*weftv1.SliverChunk)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	return decodeChunk(r, chunk, c.alloc)
}

var errChunkFormat = errors.New("wire: malformed SliverChunk")

// decodeChunk parses the protobuf encoding of a SliverChunk as
// proto.Unmarshal would, except that it rejects groups (no sender of ours
// writes them) and drops unknown fields; FuzzDecodeChunk holds it to that.
func decodeChunk(r *mem.Reader, chunk *weftv1.SliverChunk, alloc func(int) []byte) error {
	var out weftv1.SliverChunk
	for r.Remaining() > 0 {
		tag, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("%w: tag: %v", errChunkFormat, err)
		}
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		if tag>>3 > uint64(protowire.MaxValidNumber) || !num.IsValid() {
			return fmt.Errorf("%w: field number %d", errChunkFormat, tag>>3)
		}
		switch typ {
		case protowire.VarintType:
			v, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("%w: field %d: %v", errChunkFormat, num, err)
			}
			switch num {
			case 2:
				out.Axis = uint32(v)
			case 3:
				out.Index = uint32(v)
			case 4:
				out.SymbolSize = uint32(v)
			case 5:
				out.Offset = v
			}
		case protowire.BytesType:
			n, err := binary.ReadUvarint(r)
			if err != nil || n > uint64(r.Remaining()) {
				return fmt.Errorf("%w: field %d: length %d of %d bytes left", errChunkFormat, num, n, r.Remaining())
			}
			switch num {
			case 1:
				out.BlobId = make([]byte, n)
				_, err = io.ReadFull(r, out.BlobId)
			case 6:
				out.Data = alloc(int(n))
				_, err = io.ReadFull(r, out.Data)
			default:
				_, err = r.Discard(int(n))
			}
			if err != nil {
				return fmt.Errorf("%w: field %d: %v", errChunkFormat, num, err)
			}
		case protowire.Fixed32Type, protowire.Fixed64Type:
			size := 4
			if typ == protowire.Fixed64Type {
				size = 8
			}
			if got, _ := r.Discard(size); got != size {
				return fmt.Errorf("%w: field %d: truncated", errChunkFormat, num)
			}
		default:
			return fmt.Errorf("%w: field %d of wire type %d", errChunkFormat, num, typ)
		}
	}
	chunk.BlobId, chunk.Axis, chunk.Index, chunk.SymbolSize, chunk.Offset, chunk.Data =
		out.BlobId, out.Axis, out.Index, out.SymbolSize, out.Offset, out.Data
	return nil
}
