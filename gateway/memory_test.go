package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// limitRecorder stands for runtime/debug.SetMemoryLimit: it records every
// limit the gateway sets.
type limitRecorder struct {
	mu     sync.Mutex
	limits []int64
}

func (l *limitRecorder) set(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = append(l.limits, n)
}

// since returns the limits set from index from on, and how many there are.
func (l *limitRecorder) since(from int) ([]int64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.limits[from:]), len(l.limits)
}

// settled is since, once the last limit set is idle: a handler gives its
// share back after its answer went out, so a caller may see the answer
// first.
func (l *limitRecorder) settled(t *testing.T, from int, idle int64) ([]int64, int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got, n := l.since(from)
		if (len(got) > 0 && got[len(got)-1] == idle) || time.Now().After(deadline) {
			return got, n
		}
	}
}

// The limit is the base and the cache when idle, plus each holder's share
// while it holds it; a release twice counts once; without a setter
// nothing is set.
func TestMemoryLimitShares(t *testing.T) {
	var rec limitRecorder
	m := newMemoryLimit(rec.set, 1000)
	idle := memoryBase + 1000
	a := m.hold(10)
	b := m.hold(20)
	a()
	a()
	m.hold(0)()
	b()
	if got, _ := rec.since(0); !slices.Equal(got, []int64{idle, idle + 10, idle + 30, idle + 20, idle}) {
		t.Fatalf("limits set: %v", got)
	}
	newMemoryLimit(nil, 1000).hold(10)() // nothing to set: no panic
}

// Through the gateway: a PUT of a file raises the limit by its share (10
// chunks) while it runs, a GET of it by the manifest's and the largest
// chunk's (7 each), and every request gives its share back.
func TestGatewayMemoryLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "", func(cfg *client.Config) {
		cfg.ChunkSize = fileChunk
		cfg.EncodeBufferPool = 8 * fileChunk // an operator's opt-in: drained when PUTs end
	})
	var rec limitRecorder
	const cache = 1 << 20
	g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, ChunkSize: fileChunk, CacheSize: cache, Epochs: gwEpochs,
		WriteTimeout: time.Minute, SetMemoryLimit: rec.set})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	idle := memoryBase + cache
	if got, _ := rec.since(0); !slices.Equal(got, []int64{idle}) {
		t.Fatalf("limits set by New: %v, want [%d]", got, idle)
	}

	content := gatewaytest.RandomBlob(t, 5*fileChunk+99)
	sr := gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, content, http.StatusCreated)
	got, n := rec.settled(t, 1, idle)
	if want := []int64{idle + storeChunks*fileChunk, idle}; !slices.Equal(got, want) {
		t.Fatalf("limits set by a PUT of a file: %v, want %v", got, want)
	}
	// The last PUT in flight ended: the SDK's encode buffers are let go,
	// also those of slivers gRPC finished sending after it (the pool
	// would keep them for coding.PoolIdle otherwise).
	time.Sleep(300 * time.Millisecond)
	if held := cl.EncodeBuffersHeld(); held != 0 {
		t.Fatalf("an idle gateway's SDK client holds %d bytes of encode buffers", held)
	}

	resp, body := gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/blobs/"+sr.BlobID, nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, content) {
		t.Fatal("GET of the file: other bytes")
	}
	id := mustParseID(t, sr.BlobID)
	st, err := cl.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	manifest := readChunks * int64(st.Length)
	got, n = rec.settled(t, n, idle)
	if want := []int64{idle + manifest, idle + manifest + readChunks*fileChunk, idle + manifest, idle}; !slices.Equal(got, want) {
		t.Fatalf("limits set by a GET of a file: %v, want %v", got, want)
	}

	// A plain blob (a body shorter than a chunk): its own length's share.
	small := gatewaytest.RandomBlob(t, 1000)
	gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, small, http.StatusCreated)
	if got, _ = rec.settled(t, n, idle); !slices.Equal(got, []int64{idle + storeChunks*1000, idle}) {
		t.Fatalf("limits set by a PUT of a plain blob: %v", got)
	}
}
