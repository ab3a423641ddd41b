package client

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// quiltFiles makes count files of size bytes each (a few of other sizes:
// empty, one byte, and one larger than a systematic sliver here).
func quiltFiles(seed uint64, count, size int) []QuiltInput {
	var files []QuiltInput
	for i := range count {
		n := size
		switch i {
		case 1:
			n = 0
		case 2:
			n = 1
		case 3:
			n = 50_000
		}
		files = append(files, QuiltInput{
			Name: fmt.Sprintf("dir/file-%03d.txt", i), Data: randomBlob(seed+uint64(i), n),
			ContentType: "text/plain", Attributes: []Attribute{{Key: "n", Value: fmt.Sprint(i)}},
		})
	}
	return files
}

// A quilt of many files stores as one blob; every file reads back by its
// ID with its name, content type and attributes; one small file's read
// receives only the slivers that hold the index and the file, plus the
// metadata once; and with those slivers' owners stopped it still reads
// (the range read falls back to the whole quilt).
func TestQuiltRoundTrip(t *testing.T) {
	net := startNet(t, rangeNodes, rangeShards, nil)
	c := newClient(t, net)
	ctx := testContext(t, 2*time.Minute)
	files := quiltFiles(900, 60, 4096)
	sq, err := c.StoreQuilt(ctx, files, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sq.Files) != len(files) {
		t.Fatalf("%d file IDs for %d files", len(sq.Files), len(files))
	}
	for i, id := range sq.Files {
		got, f, err := c.ReadQuiltFile(ctx, id, ReadOptions{})
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if !bytes.Equal(got, files[i].Data) || f.Name != files[i].Name || f.ContentType != "text/plain" ||
			len(f.Attributes) != 1 || f.Attributes[0].Value != fmt.Sprint(i) {
			t.Fatalf("file %d (%q) read back differs: %d bytes, %+v", i, files[i].Name, len(got), f)
		}
	}
	if id, err := c.QuiltFileByName(ctx, sq.ID, "dir/file-042.txt", ReadOptions{}); err != nil || id != sq.Files[42] {
		t.Fatalf("by name: %v, %v", id, err)
	}

	// One 4 KiB file far into the quilt: the index's sliver and the
	// file's, no more.
	p, row := rangeLayout(t, c, int(sq.Length))
	target := len(files) - 1
	idxLen, _ := sq.Index.MarshalBinary()
	off := int64(len(idxLen)) + int64(sq.Index.Files[target].Offset)
	covering := coveringSlivers(0, int64(len(idxLen)), row) + coveringSlivers(off, int64(len(files[target].Data)), row)
	if off/row == 0 {
		covering = coveringSlivers(0, off+int64(len(files[target].Data)), row)
	}
	var st ReadStats
	if _, _, err := c.ReadQuiltFile(ctx, sq.Files[target], ReadOptions{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	if st.ReceivedBytes != covering*row {
		t.Fatalf("one file's read received %d sliver bytes; the index and the file lie in %d slivers of %d bytes", st.ReceivedBytes, covering, row)
	}
	if covering > 2 {
		t.Fatalf("the test's file spans %d slivers with the index: pick another", covering)
	}

	// With the file's sliver's owner down: the fallback.
	stopNodes(t, net, ownerOf(t, net, p, sq.ID, uint32(off/row)))
	got, _, err := c.ReadQuiltFile(ctx, sq.Files[target], ReadOptions{Stats: &st})
	if err != nil || !bytes.Equal(got, files[target].Data) {
		t.Fatalf("with the file's sliver's owner down: %d bytes, %v", len(got), err)
	}
	if st.RangeFallback == nil {
		t.Fatal("no fallback recorded with the covering sliver's owner down")
	}
}

// Bad quilts are clear errors and store nothing: duplicate names, an
// unknown file, a plain blob read as a quilt.
func TestQuiltRefusesBadInput(t *testing.T) {
	net := startNet(t, 4, 10, nil)
	c := newClient(t, net)
	ctx := testContext(t, time.Minute)
	before, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dup := quiltFiles(950, 3, 10)
	dup[2].Name = dup[0].Name
	if _, err := c.StoreQuilt(ctx, dup, StoreOptions{}); !errors.Is(err, ErrInvalidQuilt) {
		t.Fatalf("duplicate names: %v", err)
	}
	if _, err := c.StoreQuilt(ctx, nil, StoreOptions{}); !errors.Is(err, ErrInvalidQuilt) {
		t.Fatalf("no files: %v", err)
	}
	if after, err := c.Quota(ctx); err != nil || after.Used != before.Used {
		t.Fatalf("a refused quilt charged %d bytes (%v)", after.Used-before.Used, err)
	}
	sq, err := c.StoreQuilt(ctx, quiltFiles(960, 3, 10), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadQuiltFile(ctx, QuiltFileID{Quilt: sq.ID, Index: 3}, ReadOptions{}); !errors.Is(err, ErrNoQuiltFile) {
		t.Fatalf("file 3 of 3: %v", err)
	}
	if _, err := c.QuiltFileByName(ctx, sq.ID, "nope", ReadOptions{}); !errors.Is(err, ErrNoQuiltFile) {
		t.Fatalf("an unknown name: %v", err)
	}
	plain, _, err := c.Store(ctx, bytes.NewReader(randomBlob(970, 5000)), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadQuiltFile(ctx, QuiltFileID{Quilt: plain}, ReadOptions{}); !errors.Is(err, ErrInvalidQuilt) {
		t.Fatalf("a plain blob as a quilt: %v", err)
	}
}
