package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// fileChunk is the chunk size of the gateway's file tests: a body of a
// few hundred KiB is a file of many chunks.
const fileChunk = 16 << 10

// Files through the gateway: a PUT larger than a chunk is stored as
// chunks plus a manifest (with its Content-Type) and GET streams it back
// with the file's length and type; HEAD describes it; the same PUT again
// reuses every part; a chunked upload of unknown length works; an upload
// cut short stores no file, and its complete retry reuses the chunks that
// got through; a file whose first chunk is missing is an error status,
// one whose later chunk is missing a response cut short of its length.
func TestGatewayFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "", func(cfg *client.Config) { cfg.ChunkSize = fileChunk })
	g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, Epochs: gwEpochs, WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	base, token := srv.URL, nw.ClientToken

	content := gatewaytest.RandomBlob(t, 12*fileChunk+777)
	put := func(body io.Reader, length int64, wantCode int) storeResponse {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, base+"/v1/blobs", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "video/mp4")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		gatewaytest.Want(t, resp, b, wantCode)
		return decodeJSON[storeResponse](t, b)
	}
	sr := put(bytes.NewReader(content), int64(len(content)), http.StatusCreated)
	if sr.Chunks != 13 || sr.Size != uint64(len(content)) || sr.Reused != 0 {
		t.Fatalf("PUT of a file: %+v", sr)
	}

	resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, content) || resp.Header.Get("Content-Type") != "video/mp4" || resp.Header.Get("ETag") != `"`+sr.BlobID+`"` {
		t.Fatalf("GET of the file: %d bytes, headers %v", len(body), resp.Header)
	}
	resp, _ = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+sr.BlobID, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != strconv.Itoa(len(content)) {
		t.Fatalf("HEAD of the file: %s, Content-Length %q", resp.Status, resp.Header.Get("Content-Length"))
	}
	resp, _ = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil, "If-None-Match", `"`+sr.BlobID+`"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET of the file: %s", resp.Status)
	}
	// One byte range of a file: 206 from the chunks it touches (across
	// a chunk boundary here, and a suffix); past the end or malformed: 416.
	for _, rc := range []struct {
		header      string
		first, last int
	}{
		{"bytes=" + strconv.Itoa(fileChunk-10) + "-" + strconv.Itoa(fileChunk+9), fileChunk - 10, fileChunk + 9},
		{"bytes=-5", len(content) - 5, len(content) - 1},
		{"bytes=3-3", 3, 3},
	} {
		resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil, "Range", rc.header)
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		wantRange := "bytes " + strconv.Itoa(rc.first) + "-" + strconv.Itoa(rc.last) + "/" + strconv.Itoa(len(content))
		if !bytes.Equal(body, content[rc.first:rc.last+1]) || resp.Header.Get("Content-Range") != wantRange || resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("Range %s of the file: %d bytes, Content-Range %q", rc.header, len(body), resp.Header.Get("Content-Range"))
		}
	}
	for _, bad := range []string{"bytes=" + strconv.Itoa(len(content)) + "-", "bytes=x-y"} {
		resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil, "Range", bad)
		gatewaytest.Want(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
		if resp.Header.Get("Content-Range") != "bytes */"+strconv.Itoa(len(content)) {
			t.Fatalf("Range %s of the file: Content-Range %q", bad, resp.Header.Get("Content-Range"))
		}
	}

	again := put(bytes.NewReader(content), int64(len(content)), http.StatusOK)
	if again.BlobID != sr.BlobID || again.Reused != 14 {
		t.Fatalf("the same PUT again: %+v, want every part reused", again)
	}
	unknown := put(io.MultiReader(bytes.NewReader(content)), -1, http.StatusOK)
	if unknown.BlobID != sr.BlobID {
		t.Fatalf("a chunked upload of the same bytes: %+v", unknown)
	}

	// Cut short after 5 chunks: 400, no file; the retry reuses them.
	other := gatewaytest.RandomBlob(t, 8*fileChunk)
	resp, respBody, _, err := gatewaytest.RawExchange(t, srv.Listener.Addr().String(),
		gatewaytest.PutHead(token, "Content-Length: "+strconv.Itoa(len(other))), other[:5*fileChunk+10], true)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a cut-short upload: %v %v %s", err, resp, respBody)
	}
	retry := put(bytes.NewReader(other), int64(len(other)), http.StatusCreated)
	if retry.Reused < 3 {
		t.Fatalf("the retry of a cut-short upload reused %d chunks: %+v", retry.Reused, retry)
	}

	// Manifests naming a missing chunk, first and second.
	m, err := client.ParseManifest(mustRead(t, cl, mustParseID(t, sr.BlobID)))
	if err != nil {
		t.Fatal(err)
	}
	good := m.Chunks[0]
	missing := client.Chunk{ID: crypto.BlobID{3}, Length: 100}
	for _, tc := range []struct {
		chunks []client.Chunk
		code   int
	}{
		{[]client.Chunk{missing, good}, http.StatusNotFound},
		{[]client.Chunk{good, missing}, http.StatusOK},
	} {
		lie := &client.Manifest{Length: good.Length + missing.Length, Chunks: tc.chunks}
		raw, err := lie.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := cl.Store(client.WithToken(ctx, token), bytes.NewReader(raw), client.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(base + "/v1/blobs/" + id.String())
		if err != nil {
			t.Fatal(err)
		}
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Fatalf("file with a missing chunk: %s, want %d: %s", resp.Status, tc.code, b)
		}
		if tc.code == http.StatusOK {
			// Headers went out with the first chunk; the missing second one
			// cuts the body short of Content-Length.
			if !errors.Is(rerr, io.ErrUnexpectedEOF) || !bytes.Equal(b, content[:good.Length]) {
				t.Fatalf("file whose second chunk is missing: %d bytes, %v; want the first chunk, then unexpected EOF", len(b), rerr)
			}
		} else if !strings.Contains(string(b), "chunk 0") {
			t.Fatalf("the error does not name the chunk: %s", b)
		}
		t.Logf("file with chunks %v: %s, %d bytes, %v", tc.chunks, resp.Status, len(b), rerr)
	}
}

func mustRead(t *testing.T, cl *client.Client, id crypto.BlobID) []byte {
	t.Helper()
	b, err := cl.Read(context.Background(), id, client.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return out
}
