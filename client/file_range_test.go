package client

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// A range of a file comes back byte for byte — inside one chunk, across
// a chunk boundary, the first and last byte, the whole file — and reads
// only the chunks it touches: one byte costs the nodes far less than one
// chunk. A range past the end is a *RangeError with the file's size, and
// a failing chunk is a *ChunkError naming it.
func TestReadFileRange(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 3*time.Minute)
	content := randomBlob(77, 5*testChunk+1234)
	sf, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{
		{0, 1},
		{int64(len(content)) - 1, 1},
		{2*testChunk + 10, 100},
		{testChunk - 50, 100}, // across a chunk boundary
		{testChunk - 1, 3*testChunk + 2},
		{0, int64(len(content))},
		{int64(len(content)), 0},
	} {
		var buf bytes.Buffer
		info, err := c.ReadFileRange(ctx, sf.ID, r.off, r.n, &buf, ReadOptions{})
		got := buf.Bytes()
		if err != nil {
			t.Fatalf("range %d+%d: %v", r.off, r.n, err)
		}
		if info.Manifest == nil || !bytes.Equal(got, content[r.off:r.off+r.n]) {
			t.Fatalf("range %d+%d: %d bytes, or they differ (a file: %v)", r.off, r.n, len(got), info.Manifest != nil)
		}
	}
	base := settledServed(net)
	if _, err := c.ReadFileRange(ctx, sf.ID, 3*testChunk+5, 1, io.Discard, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if served := awaitServed(net, base, 1); served >= testChunk {
		t.Fatalf("one byte of a file cost the nodes %d sliver bytes, a whole chunk is %d", served, testChunk)
	}
	var re *RangeError
	if _, err := c.ReadFileRange(ctx, sf.ID, int64(len(content)), 1, io.Discard, ReadOptions{}); !errors.As(err, &re) || re.Size != uint64(len(content)) {
		t.Fatalf("a range past the end: %v", err)
	}
	// A plain blob goes through ReadRange.
	small := content[:1000]
	plain, err := c.StoreFile(ctx, bytes.NewReader(small), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if info, err := c.ReadFileRange(ctx, plain.ID, 10, 20, &buf, ReadOptions{}); err != nil || info.Manifest != nil || !bytes.Equal(buf.Bytes(), small[10:30]) {
		t.Fatalf("a plain blob's range: %v", err)
	}
}

// ExtendFile moves a file's every chunk and its manifest to the same end
// epoch, charging each part once: the quota used grows by exactly the
// charge it reports, and running it again to the same end charges nothing.
func TestExtendFileExtendsEveryPart(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 3*time.Minute)
	content := randomBlob(78, 3*testChunk+99)
	sf, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Stat(ctx, sf.ID, ReadOptions{})
	if err != nil || info.Manifest == nil {
		t.Fatalf("stat: %v", err)
	}
	before, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := c.ExtendFile(ctx, sf.ID, ExtendOptions{Epochs: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := info.Status.EndEpoch + 3
	if ext.Status.EndEpoch != want || ext.PreviousEndEpoch != info.Status.EndEpoch {
		t.Fatalf("manifest: end %d (was %d), want %d", ext.Status.EndEpoch, ext.PreviousEndEpoch, want)
	}
	for i, ch := range info.Manifest.Chunks {
		st, err := c.Status(ctx, ch.ID)
		if err != nil || st.EndEpoch != want {
			t.Fatalf("chunk %d: end %v, %v; want %d", i, st, err, want)
		}
	}
	after, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Used-before.Used != ext.Charged || ext.Charged == 0 {
		t.Fatalf("charged %d, the quota used grew by %d", ext.Charged, after.Used-before.Used)
	}
	again, err := c.ExtendFile(ctx, sf.ID, ExtendOptions{EndEpoch: want})
	if err != nil || again.Charged != 0 {
		t.Fatalf("extending to the same end again: charged %v, %v", again, err)
	}
}
