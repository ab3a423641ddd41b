package storage

import (
	"bytes"
	"encoding/binary"
	"testing"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// chunksOf cuts a sliver into chunks of at most size bytes.
func chunksOf(id crypto.BlobID, sl coding.Sliver, size int) []*weftv1.SliverChunk {
	var out []*weftv1.SliverChunk
	for off := 0; off == 0 || off < len(sl.Data); off += size {
		end := min(off+size, len(sl.Data))
		out = append(out, &weftv1.SliverChunk{BlobId: id[:], Axis: uint32(sl.Axis), Index: sl.Index,
			SymbolSize: uint32(sl.SymbolSize), Offset: uint64(off), Data: sl.Data[off:end]})
		if end == len(sl.Data) {
			break
		}
	}
	return out
}

func ownsAll(uint32) error { return nil }

// Chunked slivers come back together as the encoder's pairs, whatever the
// chunk size, and interleaving more pairs than the bound is refused.
func TestPairAssembler(t *testing.T) {
	codec, _ := coding.New(7)
	enc, err := codec.Encode(bytes.Repeat([]byte("weft"), 3000))
	if err != nil {
		t.Fatal(err)
	}
	p := codec.Params()
	for _, size := range []int{1, 7, 100, 1 << 20} {
		asm, err := newPairAssembler(p, enc.ID, enc.Metadata.Length, ownsAll)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, pair := range enc.Pairs {
			for _, sl := range []coding.Sliver{pair.Primary, pair.Secondary} {
				chunks := chunksOf(enc.ID, sl, size)
				for _, c := range chunks {
					done, kept, err := asm.add(c)
					if err != nil {
						t.Fatalf("chunk size %d: %v", size, err)
					}
					// Only a whole sliver is kept; pieces are copied, so the
					// caller may reuse their buffers.
					if whole := len(chunks) == 1; kept != whole {
						t.Fatalf("chunk size %d: kept = %v for %d chunks", size, kept, len(chunks))
					}
					if done != nil {
						got++
						if done.pair.Index != pair.Index || !bytes.Equal(done.pair.Primary.Data, pair.Primary.Data) ||
							!bytes.Equal(done.pair.Secondary.Data, pair.Secondary.Data) || done.pair.Secondary.Index != pair.Secondary.Index {
							t.Fatalf("chunk size %d: pair %d reassembled wrong", size, pair.Index)
						}
						if int(done.shard) != p.ShardForPair(int(pair.Index), enc.ID) {
							t.Fatalf("pair %d assigned to shard %d", pair.Index, done.shard)
						}
					}
				}
			}
		}
		if got != 7 || len(asm.incomplete()) != 0 {
			t.Fatalf("chunk size %d: %d pairs complete, %v open", size, got, asm.incomplete())
		}
	}
	// Primaries of five pairs first: the fifth half-sent pair is refused.
	asm, _ := newPairAssembler(p, enc.ID, enc.Metadata.Length, ownsAll)
	for i := range 5 {
		_, _, err := asm.add(chunksOf(enc.ID, enc.Pairs[i].Primary, 1<<20)[0])
		if (err != nil) != (i == maxPartialPairs) {
			t.Fatalf("half-sent pair %d: %v", i+1, err)
		}
	}
}

// FuzzPairAssembler feeds arbitrary chunk sequences: no panic, no pair
// with wrong sizes, never more than maxPartialPairs buffered.
func FuzzPairAssembler(f *testing.F) {
	codec, _ := coding.New(7)
	enc, _ := codec.Encode(bytes.Repeat([]byte{1, 2, 3}, 700))
	p := codec.Params()
	// Seed: a real pair, chunked, in the fuzz encoding below.
	var seed []byte
	for _, sl := range []coding.Sliver{enc.Pairs[2].Primary, enc.Pairs[2].Secondary} {
		for _, c := range chunksOf(enc.ID, sl, 200) {
			seed = append(seed, byte(c.Axis), byte(c.Index))
			seed = binary.BigEndian.AppendUint16(seed, uint16(c.SymbolSize))
			seed = binary.BigEndian.AppendUint16(seed, uint16(c.Offset))
			seed = binary.BigEndian.AppendUint16(seed, uint16(len(c.Data)))
			seed = append(seed, c.Data...)
		}
	}
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 64, 0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		asm, err := newPairAssembler(p, enc.ID, enc.Metadata.Length, func(shard uint32) error {
			if shard%2 == 1 {
				return errNotReady
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for len(data) >= 8 {
			n := int(binary.BigEndian.Uint16(data[6:8]))
			c := &weftv1.SliverChunk{Axis: uint32(data[0]), Index: uint32(data[1]),
				SymbolSize: uint32(binary.BigEndian.Uint16(data[2:4])), Offset: uint64(binary.BigEndian.Uint16(data[4:6]))}
			data = data[8:]
			c.Data = data[:min(n, len(data))]
			data = data[len(c.Data):]
			done, _, err := asm.add(c)
			if len(asm.partial) > maxPartialPairs {
				t.Fatalf("%d pairs buffered", len(asm.partial))
			}
			if err != nil || done == nil {
				continue
			}
			if len(done.pair.Primary.Data) != asm.size(crypto.Primary) || len(done.pair.Secondary.Data) != asm.size(crypto.Secondary) ||
				done.shard%2 == 1 {
				t.Fatalf("bad pair %d on shard %d", done.pair.Index, done.shard)
			}
		}
	})
}

// A sliver's buffer grows with what arrived: one byte of a 4 GiB blob's
// sliver holds a page, not the sliver's 128 MiB; in-order chunks grow it
// by doubling (a few copies, not one per chunk) up to the sliver's size.
func TestPairAssemblerGrowsWithArrivals(t *testing.T) {
	codec, _ := coding.New(100)
	p := codec.Params()
	var id crypto.BlobID
	asm, err := newPairAssembler(p, id, coding.DefaultMaxBlobLength, ownsAll)
	if err != nil {
		t.Fatal(err)
	}
	chunk := &weftv1.SliverChunk{BlobId: id[:], Axis: uint32(crypto.Primary), Index: 0, SymbolSize: uint32(asm.symbol), Data: []byte{1}}
	if _, _, err := asm.add(chunk); err != nil {
		t.Fatal(err)
	}
	held := cap(asm.partial[crypto.PairIndex(crypto.Primary, 0, uint32(p.Shards))].primary)
	if held > 8<<10 {
		t.Fatalf("one byte of a %d-byte sliver holds a %d-byte buffer", asm.size(crypto.Primary), held)
	}

	want, grown := 3<<20+5, 0
	buf := []byte(nil)
	for off := 0; off < want; off += 64 << 10 {
		before := cap(buf)
		buf = grow(buf, make([]byte, min(64<<10, want-off)), want)
		if cap(buf) != before {
			grown++
		}
	}
	if len(buf) != want || cap(buf) < want || grown > 12 {
		t.Fatalf("%d bytes in 64 KiB chunks: len %d, cap %d, %d buffers", want, len(buf), cap(buf), grown)
	}
}
