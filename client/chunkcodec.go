package client

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// chunkCodec is the protobuf codec, except that a large SliverChunk is
// marshalled without copying its data: the message is its few header bytes
// followed by the sliver's own memory, byte for byte what proto.Marshal
// writes. A store sends 4.5× the blob's size; the copy cost as much as the
// sending. Safe because slivers are never modified once encoded.
type chunkCodec struct{ encoding.CodecV2 }

var sendCodec = chunkCodec{encoding.GetCodecV2(grpcproto.Name)}

// zeroCopyFrom is the data size from which a chunk's data is not copied.
const zeroCopyFrom = 64 << 10

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	ch, ok := v.(*weftv1.SliverChunk)
	if !ok || len(ch.Data) < zeroCopyFrom || len(ch.ProtoReflect().GetUnknown()) > 0 {
		return c.CodecV2.Marshal(v)
	}
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
	return mem.BufferSlice{mem.SliceBuffer(h), mem.SliceBuffer(ch.Data)}, nil
}
