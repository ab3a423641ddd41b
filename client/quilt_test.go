package client

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func testQuiltIndex() *QuiltIndex {
	return &QuiltIndex{Files: []QuiltFile{
		{Name: "a.txt", Offset: 0, Length: 10, ContentType: "text/plain", Attributes: []Attribute{{"author", "ana"}}},
		{Name: "dir/b.bin", Offset: 10, Length: 0},
		{Name: "ç.json", Offset: 10, Length: 4096, ContentType: "application/json", Attributes: []Attribute{{"k", ""}, {"x-y", strings.Repeat("v", MaxAttributeValue)}}},
	}}
}

// An index encodes canonically, parses back to itself, says its length
// from its first bytes, and rejects every single-byte change.
func TestQuiltIndexRoundTrip(t *testing.T) {
	q := testQuiltIndex()
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := QuiltIndexLength(b[:quiltPrefix]); !ok || n != len(b) {
		t.Fatalf("QuiltIndexLength = %d, %v; the index has %d bytes", n, ok, len(b))
	}
	got, err := ParseQuiltIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.MarshalBinary()
	if !bytes.Equal(again, b) {
		t.Fatal("the parsed index encodes differently")
	}
	if got.DataLength() != 4106 {
		t.Fatalf("data length %d", got.DataLength())
	}
	if i, ok := got.Lookup("ç.json"); !ok || i != 2 {
		t.Fatalf("Lookup = %d, %v", i, ok)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		if _, err := ParseQuiltIndex(bad); err == nil {
			t.Fatalf("byte %d changed: parsed", i)
		}
	}
	if IsManifest(b) {
		t.Fatal("a quilt index is taken for a manifest")
	}
}

// Bad indexes are clear errors: duplicate names, gaps and overlaps, bad
// names and attributes, no files.
func TestQuiltIndexRefusesBadInput(t *testing.T) {
	for what, mutate := range map[string]func(q *QuiltIndex){
		"duplicate names":    func(q *QuiltIndex) { q.Files[1].Name = "a.txt" },
		"a gap":              func(q *QuiltIndex) { q.Files[1].Offset = 11; q.Files[2].Offset = 11 },
		"an overlap":         func(q *QuiltIndex) { q.Files[2].Offset = 9 },
		"an empty name":      func(q *QuiltIndex) { q.Files[0].Name = "" },
		"a control char":     func(q *QuiltIndex) { q.Files[0].Name = "a\nb" },
		"a long name":        func(q *QuiltIndex) { q.Files[0].Name = strings.Repeat("n", MaxQuiltName+1) },
		"bad UTF-8":          func(q *QuiltIndex) { q.Files[0].Name = "\xff" },
		"a key with a space": func(q *QuiltIndex) { q.Files[0].Attributes[0].Key = "a b" },
		"a repeated key":     func(q *QuiltIndex) { q.Files[2].Attributes[1].Key = "k" },
		"a long value":       func(q *QuiltIndex) { q.Files[0].Attributes[0].Value = strings.Repeat("v", MaxAttributeValue+1) },
		"too many attributes": func(q *QuiltIndex) {
			for i := range MaxAttributes {
				q.Files[1].Attributes = append(q.Files[1].Attributes, Attribute{Key: string(rune('a' + i)), Value: ""})
			}
			q.Files[1].Attributes = append(q.Files[1].Attributes, Attribute{Key: "z1"})
		},
		"no files": func(q *QuiltIndex) { q.Files = nil },
	} {
		q := testQuiltIndex()
		mutate(q)
		if _, err := q.MarshalBinary(); !errors.Is(err, ErrInvalidQuilt) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// A quilt file's ID prints as 46 characters (a blob ID has 43) and parses
// back; other lengths and alphabets are refused.
func TestQuiltFileID(t *testing.T) {
	id := QuiltFileID{Quilt: crypto.BlobID{1, 2, 3}, Index: 513}
	s := id.String()
	if len(s) != 46 || len(crypto.BlobID{}.String()) != 43 {
		t.Fatalf("%q has %d characters", s, len(s))
	}
	got, err := ParseQuiltFileID(s)
	if err != nil || got != id {
		t.Fatalf("ParseQuiltFileID(%q) = %v, %v", s, got, err)
	}
	for _, bad := range []string{"", s[:45], s + "A", strings.Repeat("*", 46)} {
		if _, err := ParseQuiltFileID(bad); !errors.Is(err, ErrInvalidQuilt) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseQuiltIndex: no panic, and whatever parses encodes back to the
// same bytes.
func FuzzParseQuiltIndex(f *testing.F) {
	b, _ := testQuiltIndex().MarshalBinary()
	f.Add(b)
	f.Add(b[:quiltPrefix])
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := ParseQuiltIndex(data)
		if err != nil {
			return
		}
		again, err := q.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted index does not re-encode to its input: %v", err)
		}
	})
}

// FuzzParseQuiltFileID: no panic, and what parses prints back the same.
func FuzzParseQuiltFileID(f *testing.F) {
	f.Add(QuiltFileID{Index: 7}.String())
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseQuiltFileID(s)
		if err == nil && id.String() != s {
			t.Fatalf("%q parses to %v, which prints as %q", s, id, id.String())
		}
	})
}
