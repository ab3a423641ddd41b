package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
)

const (
	gwShards  = 8
	gwMaxBlob = 64 << 10
	gwEpochs  = 3
)

// gwDo sends one request and returns the response with its body read.
func gwDo(t *testing.T, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, b
}

// gwWant checks an answer's status and, for errors, that the body is the
// JSON error object.
func gwWant(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, code, body)
	}
	if code >= 400 {
		t.Logf("%s %s → %d %s", resp.Request.Method, resp.Request.URL.Path, code, bytes.TrimSpace(body))
	}
	if code >= 400 && resp.Request.Method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("error with Content-Type %q, want application/json", ct)
		}
		var e errorResponse
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Fatalf("error body %q is not {\"error\": ...} (%v)", body, err)
		}
	}
	if code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
}

func gwPut(t *testing.T, base string, blob []byte, wantCode int) storeResponse {
	t.Helper()
	resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(blob))
	gwWant(t, resp, body, wantCode)
	var sr storeResponse
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatalf("store answer %q: %v", body, err)
	}
	return sr
}

func randomBlob(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// localID is the blob ID the network would give blob, computed here
// without it, to check that a refused PUT registered nothing.
func localID(t *testing.T, blob []byte) crypto.BlobID {
	t.Helper()
	codec, err := coding.New(gwShards)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := codec.Encode(blob)
	if err != nil {
		t.Fatal(err)
	}
	return enc.ID
}

func mustParseID(t *testing.T, s string) crypto.BlobID {
	t.Helper()
	id, err := crypto.ParseBlobID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func wantUnregistered(t *testing.T, cl *client.Client, id crypto.BlobID) {
	t.Helper()
	if st, err := cl.Status(context.Background(), id); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("blob %s: status %+v, %v; want it not registered", id, st, err)
	}
}

// gwNetwork starts the in-process network the gateway tests stand in
// front of: a Raft control plane and 4 storage nodes, n = gwShards.
func gwNetwork(t *testing.T, ctx context.Context) *devnet.Network {
	t.Helper()
	nw, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: 4, Shards: gwShards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return nw
}

// gwClient is an SDK client of nw with test-sized timeouts and retries.
func gwClient(t *testing.T, nw *devnet.Network, token string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{
		Control: []string{nw.ControlAddr}, Token: token, MaxBlobLength: gwMaxBlob,
		Retries: 1, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		NodeTimeout: 5 * time.Second, ControlTimeout: 5 * time.Second, StragglerWait: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// The gateway over real HTTP on loopback in front of a real in-process
// network (a Raft control plane and 4 storage nodes on gRPC, n = 8:
// reads need 4 shards, stores a quorum of 6).
func TestGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gwNetwork(t, ctx)
	newClient := func(token string) *client.Client { return gwClient(t, nw, token) }
	cl := newClient(nw.ClientToken)
	reg := prometheus.NewRegistry()
	g, err := newGateway(cl, gatewayConfig{MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, CanStore: true, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	base := srv.URL

	stored := map[string][]byte{} // blob ID → bytes, for later subtests
	t.Run("round trip", func(t *testing.T) {
		for _, size := range []int{0, 1, 10_000, gwMaxBlob} {
			blob := randomBlob(t, size)
			sr := gwPut(t, base, blob, http.StatusCreated)
			id, err := crypto.ParseBlobID(sr.BlobID)
			if err != nil {
				t.Fatalf("blob_id %q: %v", sr.BlobID, err)
			}
			if want := localID(t, blob); id != want || sr.Size != uint64(size) {
				t.Fatalf("stored %d bytes as %s (size %d), want %s", size, id, sr.Size, want)
			}
			raw, err := base64.StdEncoding.DecodeString(sr.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			var cert crypto.Certificate
			if err := cert.UnmarshalBinary(raw); err != nil {
				t.Fatal(err)
			}
			if cert.BlobID != id || cert.Epoch != sr.Epoch {
				t.Fatalf("certificate for %s epoch %d, answer says %s epoch %d", cert.BlobID, cert.Epoch, id, sr.Epoch)
			}
			if err := cl.VerifyCertificate(ctx, &cert); err != nil {
				t.Fatalf("the certificate does not verify: %v", err)
			}

			resp, body := gwDo(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
			gwWant(t, resp, body, http.StatusOK)
			if !bytes.Equal(body, blob) {
				t.Fatalf("read %d bytes back, not the %d stored", len(body), size)
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(size) {
				t.Fatalf("Content-Length %q, want %d", got, size)
			}
			if resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("ETag") != `"`+sr.BlobID+`"` {
				t.Fatalf("headers %v", resp.Header)
			}
			stored[sr.BlobID] = blob

			// The same bytes again: nothing new, the same certificate.
			again := gwPut(t, base, blob, http.StatusOK)
			if again.BlobID != sr.BlobID || again.Certificate != sr.Certificate {
				t.Fatalf("second store of the same bytes answered %+v, first %+v", again, sr)
			}
		}
		var m dto.Metric
		if err := g.metrics.requests.WithLabelValues("PUT /v1/blobs", "PUT", "201").Write(&m); err != nil {
			t.Fatal(err)
		}
		if v := m.GetCounter().GetValue(); v != 4 {
			t.Fatalf("metrics counted %v created blobs, want 4", v)
		}
	})

	blob := randomBlob(t, 5000)
	sr := gwPut(t, base, blob, http.StatusCreated)
	blobURL := base + "/v1/blobs/" + sr.BlobID
	unknown := crypto.BlobID{1, 2, 3}.String()

	t.Run("status", func(t *testing.T) {
		resp, body := gwDo(t, http.MethodGet, blobURL+"/status", nil)
		gwWant(t, resp, body, http.StatusOK)
		var st statusResponse
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.BlobID != sr.BlobID || st.Status != "certified" || st.Length != 5000 || st.Shards != gwShards ||
			st.CertifiedEpoch != sr.Epoch || st.EndEpoch != st.RegisteredEpoch+gwEpochs || st.Certificate != sr.Certificate {
			t.Fatalf("status %+v after storing %+v", st, sr)
		}
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+unknown+"/status", nil)
		gwWant(t, resp, body, http.StatusNotFound)
	})

	t.Run("HEAD, conditional and range", func(t *testing.T) {
		resp, body := gwDo(t, http.MethodHead, blobURL, nil)
		gwWant(t, resp, body, http.StatusOK)
		if resp.ContentLength != 5000 || len(body) != 0 || resp.Header.Get("ETag") != `"`+sr.BlobID+`"` {
			t.Fatalf("HEAD: length %d, %d body bytes, headers %v", resp.ContentLength, len(body), resp.Header)
		}
		resp, body = gwDo(t, http.MethodGet, blobURL, nil, "If-None-Match", `"`+sr.BlobID+`"`)
		gwWant(t, resp, body, http.StatusNotModified)
		resp, body = gwDo(t, http.MethodGet, blobURL, nil, "If-None-Match", `"something-else"`)
		gwWant(t, resp, body, http.StatusOK)
		resp, body = gwDo(t, http.MethodGet, blobURL, nil, "Range", "bytes=100-199")
		gwWant(t, resp, body, http.StatusPartialContent)
		if !bytes.Equal(body, blob[100:200]) {
			t.Fatalf("range: got %d bytes, not bytes 100–199", len(body))
		}
		resp, body = gwDo(t, http.MethodHead, base+"/v1/blobs/"+unknown, nil)
		gwWant(t, resp, body, http.StatusNotFound)
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, bad := range []string{"abc", strings.Repeat("A", 44), sr.BlobID + "A", "%20"} {
			for _, suffix := range []string{"", "/status"} {
				resp, body := gwDo(t, http.MethodGet, base+"/v1/blobs/"+bad+suffix, nil)
				gwWant(t, resp, body, http.StatusBadRequest)
			}
			resp, body := gwDo(t, http.MethodPost, base+"/v1/blobs/"+bad+"/extend?epochs=1", nil)
			gwWant(t, resp, body, http.StatusBadRequest)
		}
		// An extension needs exactly one of epochs and end_epoch, a
		// positive integer; a refused one changes nothing.
		for _, q := range []string{"", "?epochs=0", "?epochs=x", "?epochs=4294967297", "?end_epoch=-1", "?epochs=1&end_epoch=9"} {
			resp, body := gwDo(t, http.MethodPost, blobURL+"/extend"+q, nil)
			gwWant(t, resp, body, http.StatusBadRequest)
		}
		if st, err := cl.Status(ctx, mustParseID(t, sr.BlobID)); err != nil || st.EndEpoch != st.RegisteredEpoch+gwEpochs {
			t.Fatalf("status after refused extensions: %+v, %v", st, err)
		}
		resp, body := gwDo(t, http.MethodPost, base+"/v1/blobs/"+unknown+"/extend?epochs=1", nil)
		gwWant(t, resp, body, http.StatusNotFound)
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+unknown, nil)
		gwWant(t, resp, body, http.StatusNotFound)
		for _, c := range []struct{ method, path, allow string }{
			{http.MethodDelete, "/v1/blobs/" + sr.BlobID, "GET, HEAD"},
			{http.MethodPut, "/v1/blobs/" + sr.BlobID, "GET, HEAD"},
			{http.MethodPost, "/v1/blobs", "PUT"},
			{http.MethodGet, "/v1/blobs", "PUT"},
			{http.MethodPost, "/v1/blobs/" + sr.BlobID + "/status", "GET, HEAD"},
			{http.MethodGet, "/v1/blobs/" + sr.BlobID + "/extend", "POST"},
		} {
			resp, body := gwDo(t, c.method, base+c.path, strings.NewReader("x"))
			gwWant(t, resp, body, http.StatusMethodNotAllowed)
			if resp.Header.Get("Allow") != c.allow {
				t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
			}
		}
		resp, body = gwDo(t, http.MethodGet, base+"/v2/things", nil)
		gwWant(t, resp, body, http.StatusNotFound)

		// A bad lifetime is refused before anything is registered.
		tiny := randomBlob(t, 100)
		for _, q := range []string{"0", "-1", "x", "4294967297"} {
			resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs?epochs="+q, bytes.NewReader(tiny))
			gwWant(t, resp, body, http.StatusBadRequest)
		}
		wantUnregistered(t, cl, localID(t, tiny))
	})

	t.Run("oversize", func(t *testing.T) {
		big := randomBlob(t, gwMaxBlob+1)
		// With a Content-Length: refused before the body is read.
		resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(big))
		gwWant(t, resp, body, http.StatusRequestEntityTooLarge)
		// Chunked, so the length is known only once the limit is crossed.
		resp, body = gwDo(t, http.MethodPut, base+"/v1/blobs", io.MultiReader(bytes.NewReader(big)))
		gwWant(t, resp, body, http.StatusRequestEntityTooLarge)
		if resp.Request.ContentLength > 0 { // 0 with a body: length unknown, sent chunked
			t.Fatalf("the second PUT was not chunked")
		}
		if !resp.Close {
			// Otherwise the server would drain the rest of the body.
			t.Fatal("the connection stays open after a body over the limit")
		}
		wantUnregistered(t, cl, localID(t, big))
	})

	t.Run("read-only gateway", func(t *testing.T) {
		ro, err := newGateway(newClient(""), gatewayConfig{MaxBlobSize: gwMaxBlob, Epochs: gwEpochs})
		if err != nil {
			t.Fatal(err)
		}
		rsrv := httptest.NewServer(ro)
		defer rsrv.Close()
		fresh := randomBlob(t, 300)
		resp, body := gwDo(t, http.MethodPut, rsrv.URL+"/v1/blobs", bytes.NewReader(fresh))
		gwWant(t, resp, body, http.StatusForbidden)
		wantUnregistered(t, cl, localID(t, fresh))
		resp, body = gwDo(t, http.MethodPost, rsrv.URL+"/v1/blobs/"+sr.BlobID+"/extend?epochs=1", nil)
		gwWant(t, resp, body, http.StatusForbidden)
		resp, body = gwDo(t, http.MethodGet, rsrv.URL+"/v1/blobs/"+sr.BlobID, nil)
		gwWant(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, blob) {
			t.Fatal("the read-only gateway read other bytes")
		}
	})

	t.Run("refused credentials", func(t *testing.T) {
		// A client whose quota (bytes × epochs) cannot pay for any blob.
		conn, err := grpc.NewClient(nw.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+nw.OperatorToken)
		poor, err := weftv1.NewAdminClient(conn).AddClient(actx, &weftv1.AddClientRequest{Client: "poor", Quota: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			token string
			code  int
		}{
			{poor.Token, http.StatusInsufficientStorage},    // quota used up
			{"not-a-token", http.StatusInternalServerError}, // the gateway's own credential is wrong
		} {
			gw, err := newGateway(newClient(c.token), gatewayConfig{MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, CanStore: true})
			if err != nil {
				t.Fatal(err)
			}
			gsrv := httptest.NewServer(gw)
			fresh := randomBlob(t, 400)
			resp, body := gwDo(t, http.MethodPut, gsrv.URL+"/v1/blobs", bytes.NewReader(fresh))
			gwWant(t, resp, body, c.code)
			wantUnregistered(t, cl, localID(t, fresh))
			// Extending a stored blob is refused the same way, and
			// changes nothing.
			before, err := cl.Status(ctx, mustParseID(t, sr.BlobID))
			if err != nil {
				t.Fatal(err)
			}
			resp, body = gwDo(t, http.MethodPost, gsrv.URL+"/v1/blobs/"+sr.BlobID+"/extend?epochs=1", nil)
			gsrv.Close()
			gwWant(t, resp, body, c.code)
			if after, err := cl.Status(ctx, before.ID); err != nil || after.EndEpoch != before.EndEpoch {
				t.Fatalf("a refused extension moved the end epoch %d: %+v, %v", before.EndEpoch, after, err)
			}
		}
	})

	t.Run("command", func(t *testing.T) {
		testGatewayCommand(t, nw)
	})

	t.Run("expired and extended", func(t *testing.T) {
		short := randomBlob(t, 700)
		resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs?epochs=1", bytes.NewReader(short))
		gwWant(t, resp, body, http.StatusCreated)
		var s storeResponse
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		// Stored for one epoch too, but extended: it outlives s.
		kept := randomBlob(t, 800)
		resp, body = gwDo(t, http.MethodPut, base+"/v1/blobs?epochs=1", bytes.NewReader(kept))
		gwWant(t, resp, body, http.StatusCreated)
		var k storeResponse
		if err := json.Unmarshal(body, &k); err != nil {
			t.Fatal(err)
		}
		st, err := cl.Status(ctx, mustParseID(t, k.BlobID))
		if err != nil {
			t.Fatal(err)
		}
		resp, body = gwDo(t, http.MethodPost, base+"/v1/blobs/"+k.BlobID+"/extend?epochs=2", nil)
		gwWant(t, resp, body, http.StatusOK)
		var ext extendResponse
		if err := json.Unmarshal(body, &ext); err != nil {
			t.Fatal(err)
		}
		params, err := coding.NewParams(gwShards)
		if err != nil {
			t.Fatal(err)
		}
		size, err := params.EncodedSize(uint64(len(kept)))
		if err != nil {
			t.Fatal(err)
		}
		if ext.BlobID != k.BlobID || ext.PreviousEndEpoch != st.EndEpoch || ext.EndEpoch != st.EndEpoch+2 || ext.Charged != 2*size {
			t.Fatalf("extension %+v of a blob ending at epoch %d (encoded size %d)", ext, st.EndEpoch, size)
		}
		resp, body = gwDo(t, http.MethodPost, base+"/v1/blobs/"+k.BlobID+"/extend?end_epoch="+strconv.FormatUint(st.EndEpoch+1, 10), nil)
		gwWant(t, resp, body, http.StatusOK)
		if err := json.Unmarshal(body, &ext); err != nil || ext.EndEpoch != st.EndEpoch+2 || ext.Charged != 0 {
			t.Fatalf("extension to an end epoch already reached: %s", body)
		}

		if _, err := nw.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+k.BlobID, nil)
		gwWant(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, kept) {
			t.Fatal("the extended blob read other bytes")
		}
		resp, body = gwDo(t, http.MethodPost, base+"/v1/blobs/"+s.BlobID+"/extend?epochs=1", nil)
		gwWant(t, resp, body, http.StatusGone)
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+s.BlobID, nil)
		gwWant(t, resp, body, http.StatusGone)
		resp, body = gwDo(t, http.MethodHead, base+"/v1/blobs/"+s.BlobID, nil)
		gwWant(t, resp, body, http.StatusGone)
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+s.BlobID+"/status", nil)
		gwWant(t, resp, body, http.StatusOK)
		if !strings.Contains(string(body), `"status":"expired"`) {
			t.Fatalf("status of an expired blob: %s", body)
		}
		// Blobs with a longer lifetime still read.
		resp, body = gwDo(t, http.MethodGet, blobURL, nil)
		gwWant(t, resp, body, http.StatusOK)
	})

	t.Run("nodes down", func(t *testing.T) {
		// Two of four nodes (4 of 8 shards) down: below the write quorum
		// of 6, still the 4 primary slivers a read needs.
		for i := range 2 {
			if err := nw.StopNode(i); err != nil {
				t.Fatal(err)
			}
		}
		pending := randomBlob(t, 900)
		resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(pending))
		gwWant(t, resp, body, http.StatusServiceUnavailable)
		var e errorResponse
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if want := localID(t, pending).String(); e.BlobID != want {
			t.Fatalf("failed store names blob %q, want %q", e.BlobID, want)
		}
		// It was registered but never certified: nothing to read yet.
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+e.BlobID, nil)
		gwWant(t, resp, body, http.StatusConflict)
		resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+e.BlobID+"/status", nil)
		gwWant(t, resp, body, http.StatusOK)
		if !strings.Contains(string(body), `"status":"registered"`) {
			t.Fatalf("status of an uncertified blob: %s", body)
		}

		resp, body = gwDo(t, http.MethodGet, blobURL, nil)
		gwWant(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, blob) {
			t.Fatal("read other bytes with two nodes down")
		}

		// A third node down leaves 2 shards of the 4 a read needs.
		if err := nw.StopNode(2); err != nil {
			t.Fatal(err)
		}
		resp, body = gwDo(t, http.MethodGet, blobURL, nil)
		gwWant(t, resp, body, http.StatusServiceUnavailable)
		if resp.Header.Get("ETag") != "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("503 with blob headers: %v", resp.Header)
		}
	})
}

// testGatewayCommand runs `weft gateway` as the binary would (flags,
// listener, metrics, graceful shutdown) against the devnet.
func testGatewayCommand(t *testing.T, nw *devnet.Network) {
	listen, metrics := freePort(t), freePort(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(nw.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEFT_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCommand()
	root.SetArgs([]string{"gateway", "--listen", listen, "--control", nw.ControlAddr, "--token-file", tokenFile,
		"--max-blob-size", "2048", "--epochs", "2", "--metrics-addr", metrics})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	base := "http://" + listen
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/blobs/x")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the gateway exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	blob := randomBlob(t, 2048)
	sr := gwPut(t, base, blob, http.StatusCreated)
	resp, body := gwDo(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
	gwWant(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, blob) {
		t.Fatal("read other bytes through the command")
	}
	resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID+"/status", nil)
	gwWant(t, resp, body, http.StatusOK)
	var st statusResponse
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.EndEpoch != st.RegisteredEpoch+2 {
		t.Fatalf("--epochs 2 gave end epoch %d, registered in %d", st.EndEpoch, st.RegisteredEpoch)
	}
	resp, body = gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(randomBlob(t, 2049)))
	gwWant(t, resp, body, http.StatusRequestEntityTooLarge)

	resp, body = gwDo(t, http.MethodGet, "http://"+metrics+"/metrics", nil)
	gwWant(t, resp, body, http.StatusOK)
	for _, want := range []string{
		`weft_gateway_requests_total{code="201",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_requests_total{code="413",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_bytes_total{direction="in"} 2048`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the gateway stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	if _, err := http.Get(base + "/v1/blobs/x"); err == nil {
		t.Fatal("the gateway still answers after stopping")
	}
}

func TestGatewayCommandFlags(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-blob-size", "0"}, "--max-blob-size"},
		{[]string{"--epochs", "0"}, "--epochs"},
		{[]string{"--cache-size", "-1"}, "--cache-size"},
		{[]string{"--control", ""}, "--control"},
		{[]string{"--token-file", empty}, "is empty"},
		{[]string{"--listen", "127.0.0.1:99999"}, "99999"},
	} {
		root := newRootCommand()
		root.SetArgs(append([]string{"gateway"}, c.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("gateway %v: %v, want an error about %s", c.args, err, c.want)
		}
	}
}

// A GET of a blob that an open storage-challenge round samples is a 503
// with Retry-After at once (nodes serve it to no one until the round
// closes), not a request held open; after the close it reads.
func TestGatewayUnderChallenge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gwNetwork(t, ctx)
	cl := gwClient(t, nw, nw.ClientToken)
	g, err := newGateway(cl, gatewayConfig{MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, CanStore: true, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	blob := randomBlob(t, 50_000)
	stored := gwPut(t, srv.URL, blob, http.StatusCreated)
	if _, err := nw.AdvanceEpoch(ctx, false); err != nil { // rounds sample blobs of earlier epochs
		t.Fatal(err)
	}
	// A stopped node never answers, so the round stays open until closed.
	if err := nw.StopNode(3); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(nw.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	op := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+nw.OperatorToken)
	admin := weftv1.NewAdminClient(conn)
	started, err := admin.StartChallenge(op, &weftv1.StartChallengeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The nodes learn of the round from the event stream.
	var resp *http.Response
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		t0 := time.Now()
		resp, body = gwDo(t, http.MethodGet, srv.URL+"/v1/blobs/"+stored.BlobID, nil)
		if resp.StatusCode == http.StatusServiceUnavailable {
			if took := time.Since(t0); took > 10*time.Second {
				t.Fatalf("the 503 took %v: the gateway waited for the round", took)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET under the open round: %d %s", resp.StatusCode, body)
		}
	}
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "storage-challenge round") {
		t.Fatalf("503 without Retry-After or the reason: %v %s", resp.Header, body)
	}
	if _, err := admin.CloseChallenge(op, &weftv1.CloseChallengeRequest{Round: started.Round}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, body = gwDo(t, http.MethodGet, srv.URL+"/v1/blobs/"+stored.BlobID, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after the round closed: %d %s", resp.StatusCode, body)
		}
	}
	if !bytes.Equal(body, blob) {
		t.Fatal("other bytes after the round closed")
	}
}

// The gateway keeps blobs it read: a GET of a kept blob needs no storage
// node (all stopped here), and still asks the registry whether the blob
// may be served — an expired one is 410 although its bytes are kept.
func TestGatewayCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gwNetwork(t, ctx)
	cl := gwClient(t, nw, nw.ClientToken)
	reg := prometheus.NewRegistry()
	g, err := newGateway(cl, gatewayConfig{MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, CanStore: true, Metrics: reg, CacheSize: 4 * gwMaxBlob})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	blob := randomBlob(t, gwMaxBlob/2)
	resp, body := gwDo(t, http.MethodPut, srv.URL+"/v1/blobs?epochs=1", bytes.NewReader(blob))
	gwWant(t, resp, body, http.StatusCreated)
	var sr storeResponse
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/v1/blobs/" + sr.BlobID
	resp, body = gwDo(t, http.MethodGet, url, nil)
	gwWant(t, resp, body, http.StatusOK)

	for i := range nw.Nodes() {
		if err := nw.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	resp, body = gwDo(t, http.MethodGet, url, nil, "Range", "bytes=10-19")
	gwWant(t, resp, body, http.StatusPartialContent)
	if !bytes.Equal(body, blob[10:20]) {
		t.Fatal("the kept blob served other bytes")
	}
	resp, body = gwDo(t, http.MethodGet, url, nil)
	gwWant(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, blob) {
		t.Fatal("the kept blob served other bytes")
	}
	for result, want := range map[string]float64{"miss": 1, "hit": 2} {
		var m dto.Metric
		if err := g.metrics.cache.WithLabelValues(result).Write(&m); err != nil {
			t.Fatal(err)
		}
		if v := m.GetCounter().GetValue(); v != want {
			t.Fatalf("%v cache %ss, want %v", v, result, want)
		}
	}

	if _, err := nw.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	resp, body = gwDo(t, http.MethodGet, url, nil)
	gwWant(t, resp, body, http.StatusGone)
}
