package storage

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

// chunkCodec is the node server's gRPC codec: protobuf, except that a
// received SliverChunk is parsed straight from the frames gRPC read, its
// data copied once into a pooled buffer. The protobuf codec first joins
// the frames into one buffer and then copies the data out of it into fresh
// memory: two copies, and hundreds of megabytes of new allocations per
// large blob.
type chunkCodec struct{ encoding.CodecV2 }

func newChunkCodec() chunkCodec { return chunkCodec{encoding.GetCodecV2(grpcproto.Name)} }

func (c chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	chunk, ok := v.(*weftv1.SliverChunk)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	return decodeChunk(r, chunk)
}

var errChunkFormat = errors.New("storage: malformed SliverChunk")

// decodeChunk parses the protobuf encoding of a SliverChunk as
// proto.Unmarshal would, except that it rejects groups (no sender of ours
// writes them) and drops unknown fields; FuzzDecodeChunk holds it to that.
func decodeChunk(r *mem.Reader, chunk *weftv1.SliverChunk) error {
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
				out.Data = alignedBuffer(int(n))
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
