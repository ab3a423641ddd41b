package client

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func randomManifest(r *rand.Rand) *Manifest {
	m := &Manifest{ContentType: []string{"", "video/mp4", "application/octet-stream; q=1"}[r.IntN(3)]}
	for range 1 + r.IntN(20) {
		var c Chunk
		for i := range c.ID {
			c.ID[i] = byte(r.Uint32())
		}
		c.Length = 1 + r.Uint64N(MaxChunkLength)
		m.Chunks = append(m.Chunks, c)
		m.Length += c.Length
	}
	for i := range m.SHA256 {
		m.SHA256[i] = byte(r.Uint32())
	}
	return m
}

// Random manifests survive the round trip, are recognised as manifests,
// and ChunkAt maps every chunk's first and last byte to it.
func TestManifestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		m := randomManifest(r)
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !IsManifest(b) {
			t.Fatalf("encoded manifest not recognised: %x", b[:16])
		}
		got, err := ParseManifest(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Length != m.Length || got.SHA256 != m.SHA256 || got.ContentType != m.ContentType || len(got.Chunks) != len(m.Chunks) {
			t.Fatalf("round trip: %+v, want %+v", got, m)
		}
		var start uint64
		for i, c := range m.Chunks {
			if got.Chunks[i] != c {
				t.Fatalf("chunk %d: %+v, want %+v", i, got.Chunks[i], c)
			}
			for _, off := range []uint64{start, start + c.Length - 1} {
				if idx, s, ok := got.ChunkAt(off); !ok || idx != i || s != start {
					t.Fatalf("ChunkAt(%d) = %d, %d, %v; want %d, %d", off, idx, s, ok, i, start)
				}
			}
			start += c.Length
		}
		if _, _, ok := got.ChunkAt(m.Length); ok {
			t.Fatal("ChunkAt past the end found a chunk")
		}
	}
}

// Every way a manifest can be wrong is refused, with ErrInvalidManifest,
// when encoding it and (re-framed so that the envelope holds) when
// parsing it.
func TestManifestValidation(t *testing.T) {
	ok := func() *Manifest {
		return &Manifest{Length: 30, ContentType: "text/plain", Chunks: []Chunk{{ID: crypto.BlobID{1}, Length: 10}, {ID: crypto.BlobID{1}, Length: 20}}}
	}
	if _, err := ok().MarshalBinary(); err != nil {
		t.Fatalf("a valid manifest (with a repeated chunk) refused: %v", err)
	}
	cases := map[string]func(m *Manifest){
		"no chunks":         func(m *Manifest) { m.Chunks, m.Length = nil, 0 },
		"empty chunk":       func(m *Manifest) { m.Chunks[0].Length, m.Length = 0, 20 },
		"chunk too long":    func(m *Manifest) { m.Chunks[0].Length = MaxChunkLength + 1; m.Length = MaxChunkLength + 21 },
		"sum short":         func(m *Manifest) { m.Length = 29 },
		"sum long":          func(m *Manifest) { m.Length = 31 },
		"control character": func(m *Manifest) { m.ContentType = "text/plain\n" },
		"non-ASCII":         func(m *Manifest) { m.ContentType = "text/plaîn" },
		"long content type": func(m *Manifest) { m.ContentType = strings.Repeat("a", MaxContentType+1) },
		"too many chunks": func(m *Manifest) {
			m.Chunks = make([]Chunk, MaxChunks+1)
			for i := range m.Chunks {
				m.Chunks[i].Length = 1
			}
			m.Length = MaxChunks + 1
		},
	}
	for name, spoil := range cases {
		m := ok()
		spoil(m)
		if _, err := m.MarshalBinary(); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: MarshalBinary: %v", name, err)
		}
		if name == "too many chunks" || name == "long content type" {
			continue // not representable in the format's fields
		}
		if _, err := ParseManifest(frame(encodeUnchecked(m))); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: ParseManifest: %v", name, err)
		}
	}
	// Chunk lengths whose sum wraps around 2^64 to the total.
	if _, err := ParseManifest(frame(encodeUnchecked(&Manifest{Length: 1, Chunks: []Chunk{{Length: 1 << 63}, {Length: 1 << 63}, {Length: 1}}}))); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("overflowing lengths: %v", err)
	}
}

// The framing: only bytes with the magic and a matching trailing hash are
// a manifest; a wrong version, flags, or a count that disagrees with the
// bytes present is refused.
func TestManifestFraming(t *testing.T) {
	b, err := (&Manifest{Length: 5, Chunks: []Chunk{{Length: 5}}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	body := b[:len(b)-sha256.Size]
	for name, mutated := range map[string][]byte{
		"flipped byte":   flip(b, 20),
		"flipped hash":   flip(b, len(b)-1),
		"no magic":       flip(b, 0),
		"truncated":      b[:len(b)-1],
		"appended":       append(bytes.Clone(b), 0),
		"empty":          nil,
		"only the magic": manifestMagic[:],
	} {
		if IsManifest(mutated) {
			t.Errorf("%s: taken for a manifest", name)
		}
		if _, err := ParseManifest(mutated); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, reframed := range map[string][]byte{
		"version 2":      frame(set(body, 8, 2)),
		"flags":          frame(set(body, 9, 1)),
		"count too high": frame(set(body, manifestHeader+3, 2)),
		"count zero":     frame(set(body, manifestHeader+3, 0)),
		"extra entry":    frame(append(bytes.Clone(body), make([]byte, manifestEntry)...)),
		"short entry":    frame(body[:len(body)-1]),
		"truncated head": frame(body[:manifestHeader-2]),
	} {
		if !IsManifest(reframed) && len(reframed) >= minManifestLength {
			t.Fatalf("%s: the test's framing is wrong", name)
		}
		if _, err := ParseManifest(reframed); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// encodeUnchecked encodes m as MarshalBinary would but without
// validating it, and without the trailing hash (frame adds one).
func encodeUnchecked(m *Manifest) []byte {
	b := append([]byte(nil), manifestMagic[:]...)
	b = append(b, manifestVersion, 0)
	b = append(b, be64(m.Length)...)
	b = append(b, m.SHA256[:]...)
	b = append(b, byte(len(m.ContentType)))
	b = append(b, m.ContentType...)
	b = append(b, be32(uint32(len(m.Chunks)))...)
	for _, c := range m.Chunks {
		b = append(b, c.ID[:]...)
		b = append(b, be64(c.Length)...)
	}
	return b
}

func frame(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(bytes.Clone(body), sum[:]...)
}

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 1
	return out
}

func set(b []byte, i int, v byte) []byte {
	out := bytes.Clone(b)
	out[i] = v
	return out
}

func be64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// FuzzParseManifest: whatever the bytes, ParseManifest neither panics nor
// allocates beyond them, and what it accepts re-encodes to the same bytes
// (one encoding per manifest: the bytes are the file's ID).
func FuzzParseManifest(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		b, _ := randomManifest(r).MarshalBinary()
		f.Add(b)
	}
	f.Add(frame(encodeUnchecked(&Manifest{Length: 1, Chunks: []Chunk{{Length: 1 << 63}, {Length: 1 << 63}, {Length: 1}}})))
	f.Add(manifestMagic[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fuzzer rarely finds a matching trailing hash by itself:
		// parse both the bytes as given and the bytes re-framed.
		for _, in := range [][]byte{b, frame(b)} {
			m, err := ParseManifest(in)
			if err != nil {
				if !errors.Is(err, ErrInvalidManifest) {
					t.Fatalf("error not ErrInvalidManifest: %v", err)
				}
				continue
			}
			again, err := m.MarshalBinary()
			if err != nil {
				t.Fatalf("accepted a manifest it cannot encode: %v", err)
			}
			if !bytes.Equal(again, in) {
				t.Fatalf("accepted bytes that are not canonical:\n%x\nre-encodes to\n%x", in, again)
			}
		}
	})
}
