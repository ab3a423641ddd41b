package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
)

// testChunk is the chunk size of the file tests: many chunks from small
// inputs, the same code paths as 64 MiB ones.
const testChunk = 64 << 10

func fileClient(t *testing.T, net *devnet.Network, tweak ...func(*Config)) *Client {
	return newClient(t, net, append([]func(*Config){func(cfg *Config) { cfg.ChunkSize = testChunk }}, tweak...)...)
}

// onlyReader hides a reader's length (bytes.Reader's Len), as a pipe or
// a socket would.
type onlyReader struct{ io.Reader }

// readBack reads id through ReadTo and through Open and checks both give
// want.
func readBack(t *testing.T, ctx context.Context, c *Client, id crypto.BlobID, want []byte) *FileInfo {
	t.Helper()
	var buf bytes.Buffer
	info, err := c.ReadTo(ctx, id, &buf, ReadOptions{})
	if err != nil {
		t.Fatalf("ReadTo %s: %v", id, err)
	}
	if !bytes.Equal(buf.Bytes(), want) || info.Length != uint64(len(want)) {
		t.Fatalf("ReadTo %s: %d bytes (info %d), want %d, or they differ", id, buf.Len(), info.Length, len(want))
	}
	fr, err := c.Open(ctx, id, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	got, err := io.ReadAll(fr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Open %s: %d bytes, %v; want %d", id, len(got), err, len(want))
	}
	return info
}

// Content of every size goes through StoreFile and comes back through
// ReadTo and Open: one chunk or less as a plain blob with the ID Store
// gives it, more as chunks plus a manifest, from readers of known and
// unknown length; every certificate verifies.
func TestFileRoundTrip(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 3*time.Minute)

	for i, tc := range []struct {
		size      int
		hideLen   bool
		declare   bool
		wantParts int // 0: a plain blob
	}{
		{size: 0},
		{size: 1000, hideLen: true},
		{size: testChunk, declare: true},
		{size: testChunk + 1, wantParts: 2},
		{size: 5*testChunk + testChunk/2, hideLen: true, wantParts: 6},
		{size: 3 * testChunk, declare: true, wantParts: 3},
	} {
		content := randomBlob(uint64(500+i), tc.size)
		var r io.Reader = bytes.NewReader(content)
		if tc.hideLen {
			r = onlyReader{r}
		}
		opts := FileOptions{ContentType: "application/x-test"}
		if tc.declare {
			opts.Size = int64(tc.size)
		}
		var lastDone, lastTotal int64
		opts.Progress = func(done, total int64) { lastDone, lastTotal = done, total }
		sf, err := c.StoreFile(ctx, r, opts)
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		if lastDone != int64(tc.size) || lastTotal != int64(tc.size) {
			t.Errorf("%d bytes: progress ended at %d of %d", tc.size, lastDone, lastTotal)
		}
		if sf.Length != uint64(tc.size) || sf.Certificate == nil || sf.Certificate.BlobID != sf.ID {
			t.Fatalf("%d bytes: stored %+v", tc.size, sf)
		}
		if tc.wantParts == 0 {
			if sf.Manifest != nil {
				t.Fatalf("%d bytes stored as a file of %d chunks", tc.size, len(sf.Manifest.Chunks))
			}
			// The same ID Store gives it: small files stay plain blobs.
			id, _, err := c.Store(ctx, bytes.NewReader(content), StoreOptions{})
			if err != nil || id != sf.ID || sf.Reused != 0 {
				t.Fatalf("%d bytes: StoreFile gave %s, Store %s (%v); reused %d", tc.size, sf.ID, id, err, sf.Reused)
			}
		} else {
			m := sf.Manifest
			if m == nil || len(m.Chunks) != tc.wantParts || len(sf.ChunkCertificates) != tc.wantParts || m.SHA256 != sha256.Sum256(content) {
				t.Fatalf("%d bytes: manifest %+v, %d chunk certificates", tc.size, m, len(sf.ChunkCertificates))
			}
			for k, ch := range m.Chunks {
				if sf.ChunkCertificates[k].BlobID != ch.ID || ch.ID == sf.ID {
					t.Fatalf("chunk %d: %s, certificate for %s, file %s", k, ch.ID, sf.ChunkCertificates[k].BlobID, sf.ID)
				}
			}
		}
		info := readBack(t, ctx, c, sf.ID, content)
		if (info.Manifest != nil) != (tc.wantParts > 0) || (tc.wantParts > 0 && info.ContentType != "application/x-test") {
			t.Fatalf("%d bytes: read as %+v", tc.size, info)
		}
		fv, err := c.VerifyFile(ctx, sf.ID)
		if err != nil || len(fv.Certificates) != 1+tc.wantParts {
			t.Fatalf("%d bytes: VerifyFile: %v (%d certificates)", tc.size, err, len(fv.Certificates))
		}
	}
}

// A file whose chunks repeat (zeros) names one chunk blob several times;
// it is stored once and read back whole.
func TestFileRepeatedChunks(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 2*time.Minute)
	content := make([]byte, 4*testChunk)
	sf, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[crypto.BlobID]bool{}
	for _, ch := range sf.Manifest.Chunks {
		ids[ch.ID] = true
	}
	if len(ids) != 1 {
		t.Fatalf("%d distinct chunk IDs for 4 equal chunks (reused %d)", len(ids), sf.Reused)
	}
	readBack(t, ctx, c, sf.ID, content)
}

// storedBytes is the sliver bytes the devnet's nodes have received from
// writers and stored, summed.
func storedBytes(net *devnet.Network) int64 {
	var sum int64
	for i := range net.Nodes() {
		sum += net.Node(i).Stats().BytesStored
	}
	return sum
}

// cancelAfter cancels a context once n bytes have been read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		<-time.After(50 * time.Millisecond) // let the cancellation reach the chunks in flight
		return 0, context.Canceled
	}
	p = p[:min(len(p), c.n)]
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// A store stopped part way (its context cancelled while it reads the
// input) and run again sends only the chunks not yet certified: the
// nodes receive no more than those chunks' share plus one chunk, and the
// quota is not charged again for the chunks stored the first time.
func TestFileStoreResumes(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 3*time.Minute)
	const chunks = 10
	content := randomBlob(600, chunks*testChunk)

	cctx, cancel := context.WithCancel(ctx)
	_, err := c.StoreFile(cctx, &cancelAfter{r: bytes.NewReader(content), n: 6 * testChunk, cancel: cancel}, FileOptions{})
	cancel()
	if err == nil {
		t.Fatal("a cancelled store succeeded")
	}
	t.Logf("first run: %v", err)
	q1, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := storedBytes(net)

	sf, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	received := storedBytes(net) - before
	q2, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readBack(t, ctx, c, sf.ID, content)

	params, err := c.codec(8, 0)
	if err != nil {
		t.Fatal(err)
	}
	perChunk, err := params.Params().EncodedSize(testChunk)
	if err != nil {
		t.Fatal(err)
	}
	chunkCost, _, _ := costOf(params.Params(), testChunk, DefaultEpochs)
	remaining := chunks - sf.Reused // the manifest was not stored the first time
	t.Logf("second run: %d of %d chunks reused; nodes received %d bytes (a chunk is %d encoded); quota charged %d (a chunk costs %d)",
		sf.Reused, chunks, received, perChunk, q2.Used-q1.Used, chunkCost)
	if sf.Reused < 3 {
		t.Fatalf("only %d chunks were certified by the first run, which read 6 of 10 with 2 stored at a time", sf.Reused)
	}
	if received > int64(remaining+1)*int64(perChunk) {
		t.Fatalf("the second run sent %d bytes; the %d chunks left are %d, + one chunk %d", received, remaining, int64(remaining)*int64(perChunk), perChunk)
	}
	if charged := q2.Used - q1.Used; charged >= uint64(chunks)*chunkCost || charged > uint64(remaining)*chunkCost+chunkCost {
		t.Fatalf("the second run was charged %d: %d chunks left cost %d", charged, remaining, uint64(remaining)*chunkCost)
	}
}

// Input that is not what it claims, and content that is a manifest, are
// refused before any manifest is stored; a refused plain blob registers
// nothing, and the chunks a cut-short file got through are reused by the
// complete store that follows.
func TestFileStoreRefusesBadInput(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 2*time.Minute)

	small := randomBlob(700, 1000)
	if _, err := c.StoreFile(ctx, bytes.NewReader(small), FileOptions{Size: 1001}); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("short plain input: %v", err)
	}
	if _, err := c.StoreFile(ctx, bytes.NewReader(small), FileOptions{Size: 999}); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("long plain input: %v", err)
	}
	codec, _ := c.codec(8, 0)
	enc, _ := codec.Encode(small)
	if _, err := c.Status(ctx, enc.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused plain input was registered: %v", err)
	}

	content := randomBlob(701, 4*testChunk)
	_, err := c.StoreFile(ctx, bytes.NewReader(content[:3*testChunk+100]), FileOptions{Size: int64(len(content))})
	if !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("truncated file: %v", err)
	}
	if _, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{Size: int64(len(content) - 1)}); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("file longer than declared: %v", err)
	}
	sf, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{Size: int64(len(content))})
	if err != nil || sf.Reused < 3 {
		t.Fatalf("complete store after the truncated one: %v (reused %+v)", err, sf)
	}

	// A manifest's bytes as content: alone, and as a chunk of a file.
	raw, err := sf.Manifest.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StoreFile(ctx, bytes.NewReader(raw), FileOptions{}); !errors.Is(err, ErrManifestContent) {
		t.Fatalf("a manifest as content: %v", err)
	}
	padded := append(randomBlob(702, testChunk), raw...)
	if _, err := c.StoreFile(ctx, bytes.NewReader(padded), FileOptions{ChunkSize: testChunk}); !errors.Is(err, ErrManifestContent) {
		t.Fatalf("a manifest as the second chunk: %v", err)
	}
}

// storeManifest stores m's bytes as a plain blob with Store (the
// primitive stores bytes as they are), as a hostile writer could.
func storeManifest(t *testing.T, ctx context.Context, c *Client, m *Manifest) crypto.BlobID {
	t.Helper()
	raw, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := c.Store(ctx, bytes.NewReader(raw), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Manifests that lie: a missing chunk, a chunk of another length, a chunk
// that is itself a manifest, a wrong SHA-256. Each read fails with the
// chunk named, after writing exactly the chunks before it.
func TestFileReadRefusesBadManifests(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := fileClient(t, net)
	ctx := testContext(t, 2*time.Minute)
	content := randomBlob(800, 2*testChunk)
	good, err := c.StoreFile(ctx, bytes.NewReader(content), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := good.Manifest.Chunks[0]
	goodRaw, _ := good.Manifest.MarshalBinary()
	lie := func(second Chunk, sum [32]byte) *Manifest {
		return &Manifest{Length: first.Length + second.Length, SHA256: sum, Chunks: []Chunk{first, second}}
	}
	for _, tc := range []struct {
		name      string
		m         *Manifest
		wantIndex int
		want      error
	}{
		{"missing chunk", lie(Chunk{ID: crypto.BlobID{9}, Length: 10}, [32]byte{}), 1, ErrNotFound},
		{"chunk of another length", lie(Chunk{ID: first.ID, Length: first.Length - 1}, [32]byte{}), 1, ErrInvalidManifest},
		{"manifest of a manifest", lie(Chunk{ID: good.ID, Length: uint64(len(goodRaw))}, [32]byte{}), 1, ErrNestedManifest},
		{"wrong SHA-256", lie(good.Manifest.Chunks[1], [32]byte{1}), -1, ErrFileMismatch},
	} {
		id := storeManifest(t, ctx, c, tc.m)
		var buf bytes.Buffer
		_, err := c.ReadTo(ctx, id, &buf, ReadOptions{})
		var ce *ChunkError
		switch {
		case !errors.Is(err, tc.want):
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		case tc.wantIndex >= 0 && (!errors.As(err, &ce) || ce.Index != tc.wantIndex || ce.File != id || ce.Offset != first.Length):
			t.Fatalf("%s: %v does not name chunk %d at offset %d", tc.name, err, tc.wantIndex, first.Length)
		case tc.wantIndex >= 0 && !bytes.Equal(buf.Bytes(), content[:first.Length]):
			t.Fatalf("%s: wrote %d bytes before failing, want the first chunk's %d", tc.name, buf.Len(), first.Length)
		}
		t.Logf("%s: %v", tc.name, err)
		// VerifyFile checks certificates and lengths from the registry,
		// not content: a nested manifest and a wrong SHA-256 are certified.
		_, verr := c.VerifyFile(ctx, id)
		if certified := tc.want == ErrNestedManifest || tc.want == ErrFileMismatch; certified != (verr == nil) ||
			(!certified && (!errors.As(verr, &ce) || ce.Index != tc.wantIndex)) {
			t.Fatalf("%s: VerifyFile: %v", tc.name, verr)
		}
	}
}
