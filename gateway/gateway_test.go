package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	"github.com/weftstore/weft/gateway/gatewaytest"
)

const (
	gwShards  = 8
	gwMaxBlob = 64 << 10
	gwEpochs  = 3
)

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

// gwClient is an SDK client of nw with test-sized timeouts and retries;
// tweaks change its configuration further.
func gwClient(t *testing.T, nw *devnet.Network, token string, tweaks ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		Control: []string{nw.ControlAddr}, Token: token, MaxBlobLength: gwMaxBlob,
		Retries: 1, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		NodeTimeout: 5 * time.Second, ControlTimeout: 5 * time.Second, StragglerWait: 200 * time.Millisecond,
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	cl, err := client.New(cfg)
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
	nw := gatewaytest.Network(t, ctx, gwShards)
	newClient := func(token string) *client.Client { return gwClient(t, nw, token) }
	cl := newClient(nw.ClientToken)
	reg := prometheus.NewRegistry()
	g, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	base := srv.URL

	stored := map[string][]byte{} // blob ID → bytes, for later subtests
	t.Run("round trip", func(t *testing.T) {
		for _, size := range []int{0, 1, 10_000, gwMaxBlob} {
			blob := gatewaytest.RandomBlob(t, size)
			sr := gatewaytest.Put[storeResponse](t, base, nw.ClientToken, blob, http.StatusCreated)
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

			resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
			gatewaytest.Want(t, resp, body, http.StatusOK)
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
			again := gatewaytest.Put[storeResponse](t, base, nw.ClientToken, blob, http.StatusOK)
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

	blob := gatewaytest.RandomBlob(t, 5000)
	sr := gatewaytest.Put[storeResponse](t, base, nw.ClientToken, blob, http.StatusCreated)
	blobURL := base + "/v1/blobs/" + sr.BlobID
	unknown := crypto.BlobID{1, 2, 3}.String()

	t.Run("status", func(t *testing.T) {
		resp, body := gatewaytest.Do(t, http.MethodGet, blobURL+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		var st statusResponse
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.BlobID != sr.BlobID || st.Status != "certified" || st.Length != 5000 || st.Shards != gwShards ||
			st.CertifiedEpoch != sr.Epoch || st.EndEpoch != st.RegisteredEpoch+gwEpochs || st.Certificate != sr.Certificate {
			t.Fatalf("status %+v after storing %+v", st, sr)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+unknown+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
	})

	t.Run("HEAD, conditional and range", func(t *testing.T) {
		resp, body := gatewaytest.Do(t, http.MethodHead, blobURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if resp.ContentLength != 5000 || len(body) != 0 || resp.Header.Get("ETag") != `"`+sr.BlobID+`"` {
			t.Fatalf("HEAD: length %d, %d body bytes, headers %v", resp.ContentLength, len(body), resp.Header)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil, "If-None-Match", `"`+sr.BlobID+`"`)
		gatewaytest.Want(t, resp, body, http.StatusNotModified)
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil, "If-None-Match", `"something-else"`)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil, "Range", "bytes=100-199")
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		if !bytes.Equal(body, blob[100:200]) {
			t.Fatalf("range: got %d bytes, not bytes 100–199", len(body))
		}
		resp, body = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+unknown, nil)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, bad := range []string{"abc", strings.Repeat("A", 44), sr.BlobID + "A", "%20"} {
			for _, suffix := range []string{"", "/status"} {
				resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+bad+suffix, nil)
				gatewaytest.Want(t, resp, body, http.StatusBadRequest)
			}
			resp, body := gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+bad+"/extend?epochs=1", nil, gatewaytest.Bearer(nw.ClientToken)...)
			gatewaytest.Want(t, resp, body, http.StatusBadRequest)
		}
		// An extension needs exactly one of epochs and end_epoch, a
		// positive integer; a refused one changes nothing.
		for _, q := range []string{"", "?epochs=0", "?epochs=x", "?epochs=4294967297", "?end_epoch=-1", "?epochs=1&end_epoch=9"} {
			resp, body := gatewaytest.Do(t, http.MethodPost, blobURL+"/extend"+q, nil, gatewaytest.Bearer(nw.ClientToken)...)
			gatewaytest.Want(t, resp, body, http.StatusBadRequest)
		}
		if st, err := cl.Status(ctx, mustParseID(t, sr.BlobID)); err != nil || st.EndEpoch != st.RegisteredEpoch+gwEpochs {
			t.Fatalf("status after refused extensions: %+v, %v", st, err)
		}
		resp, body := gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+unknown+"/extend?epochs=1", nil, gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+unknown, nil)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
		for _, c := range []struct{ method, path, allow string }{
			{http.MethodDelete, "/v1/blobs/" + sr.BlobID, "GET, HEAD"},
			{http.MethodPut, "/v1/blobs/" + sr.BlobID, "GET, HEAD"},
			{http.MethodPost, "/v1/blobs", "PUT"},
			{http.MethodGet, "/v1/blobs", "PUT"},
			{http.MethodPost, "/v1/blobs/" + sr.BlobID + "/status", "GET, HEAD"},
			{http.MethodGet, "/v1/blobs/" + sr.BlobID + "/extend", "POST"},
		} {
			resp, body := gatewaytest.Do(t, c.method, base+c.path, strings.NewReader("x"))
			gatewaytest.Want(t, resp, body, http.StatusMethodNotAllowed)
			if resp.Header.Get("Allow") != c.allow {
				t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
			}
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v2/things", nil)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)

		// A bad lifetime is refused before anything is registered.
		tiny := gatewaytest.RandomBlob(t, 100)
		for _, q := range []string{"0", "-1", "x", "4294967297"} {
			resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs?epochs="+q, bytes.NewReader(tiny), gatewaytest.Bearer(nw.ClientToken)...)
			gatewaytest.Want(t, resp, body, http.StatusBadRequest)
		}
		wantUnregistered(t, cl, localID(t, tiny))
	})

	t.Run("oversize", func(t *testing.T) {
		big := gatewaytest.RandomBlob(t, gwMaxBlob+1)
		// With a Content-Length: refused before the body is read.
		resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(big), gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusRequestEntityTooLarge)
		// Chunked, so the length is known only once the limit is crossed.
		resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", io.MultiReader(bytes.NewReader(big)), gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusRequestEntityTooLarge)
		if resp.Request.ContentLength > 0 { // 0 with a body: length unknown, sent chunked
			t.Fatalf("the second PUT was not chunked")
		}
		if !resp.Close {
			// Otherwise the server would drain the rest of the body.
			t.Fatal("the connection stays open after a body over the limit")
		}
		wantUnregistered(t, cl, localID(t, big))
	})

	t.Run("caller's token", func(t *testing.T) {
		testGatewayCallerToken(t, ctx, nw, base, sr)
	})

	t.Run("served", func(t *testing.T) {
		testGatewayServe(t, nw, cl)
	})

	t.Run("expired and extended", func(t *testing.T) {
		short := gatewaytest.RandomBlob(t, 700)
		resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs?epochs=1", bytes.NewReader(short), gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		var s storeResponse
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		// Stored for one epoch too, but extended: it outlives s.
		kept := gatewaytest.RandomBlob(t, 800)
		resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs?epochs=1", bytes.NewReader(kept), gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		var k storeResponse
		if err := json.Unmarshal(body, &k); err != nil {
			t.Fatal(err)
		}
		st, err := cl.Status(ctx, mustParseID(t, k.BlobID))
		if err != nil {
			t.Fatal(err)
		}
		resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+k.BlobID+"/extend?epochs=2", nil, gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusOK)
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
		resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+k.BlobID+"/extend?end_epoch="+strconv.FormatUint(st.EndEpoch+1, 10), nil, gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if err := json.Unmarshal(body, &ext); err != nil || ext.EndEpoch != st.EndEpoch+2 || ext.Charged != 0 {
			t.Fatalf("extension to an end epoch already reached: %s", body)
		}

		if _, err := nw.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+k.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, kept) {
			t.Fatal("the extended blob read other bytes")
		}
		resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+s.BlobID+"/extend?epochs=1", nil, gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusGone)
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+s.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusGone)
		resp, body = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+s.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusGone)
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+s.BlobID+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if !strings.Contains(string(body), `"status":"expired"`) {
			t.Fatalf("status of an expired blob: %s", body)
		}
		// Blobs with a longer lifetime still read.
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
	})

	t.Run("nodes down", func(t *testing.T) {
		// Two of four nodes (4 of 8 shards) down: below the write quorum
		// of 6, still the 4 primary slivers a read needs.
		for i := range 2 {
			if err := nw.StopNode(i); err != nil {
				t.Fatal(err)
			}
		}
		pending := gatewaytest.RandomBlob(t, 900)
		resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(pending), gatewaytest.Bearer(nw.ClientToken)...)
		gatewaytest.Want(t, resp, body, http.StatusServiceUnavailable)
		var e errorResponse
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if want := localID(t, pending).String(); e.Error.BlobID != want {
			t.Fatalf("failed store names blob %q, want %q", e.Error.BlobID, want)
		}
		// It was registered but never certified: nothing to read yet.
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+e.Error.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusConflict)
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+e.Error.BlobID+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if !strings.Contains(string(body), `"status":"registered"`) {
			t.Fatalf("status of an uncertified blob: %s", body)
		}

		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, blob) {
			t.Fatal("read other bytes with two nodes down")
		}

		// A third node down leaves 2 shards of the 4 a read needs.
		if err := nw.StopNode(2); err != nil {
			t.Fatal(err)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusServiceUnavailable)
		if resp.Header.Get("ETag") != "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("503 with blob headers: %v", resp.Header)
		}
	})
}

// gwReadTimeout is the ReadTimeout testGatewayServe gives: short, to see
// a trickled body cut off at it.
const gwReadTimeout = 2 * time.Second

// testGatewayServe runs a gateway with Serve, as `weft gateway` does
// (a listener, the server's timeouts, graceful shutdown): a trickled PUT
// is cut off at ReadTimeout, a caller that half-closes still gets a real
// answer, and once Serve's context ends it returns nil and nothing
// answers any more.
func testGatewayServe(t *testing.T, nw *devnet.Network, cl *client.Client) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{
		Client: cl, MaxBlobSize: 2048, Epochs: 2,
		ReadTimeout: gwReadTimeout, WriteTimeout: 30 * time.Second,
		ReadHeaderTimeout: DefaultReadHeaderTimeout, IdleTimeout: DefaultIdleTimeout, ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, lis) }()

	addr := lis.Addr().String()
	blob := gatewaytest.RandomBlob(t, 2048)
	sr := gatewaytest.Put[storeResponse](t, "http://"+addr, nw.ClientToken, blob, http.StatusCreated)
	t.Run("trickled body", func(t *testing.T) { gatewaytest.CheckTrickle(t, addr, nw.ClientToken, gwReadTimeout) })
	t.Run("half-closed", func(t *testing.T) { testGatewayHalfClosed(t, nw, addr, sr.BlobID) })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if _, err := http.Get("http://" + addr + "/v1/blobs/x"); err == nil {
		t.Fatal("the gateway still answers after Serve returned")
	}
}

// A GET of a blob that an open storage-challenge round samples is a 503
// with Retry-After at once (nodes serve it to no one until the round
// closes), not a request held open; after the close it reads.
func TestGatewayUnderChallenge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, nw.ClientToken)
	g, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	blob := gatewaytest.RandomBlob(t, 50_000)
	stored := gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, blob, http.StatusCreated)
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
		resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/blobs/"+stored.BlobID, nil)
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
		resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/blobs/"+stored.BlobID, nil)
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
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, nw.ClientToken)
	reg := prometheus.NewRegistry()
	g, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, Metrics: reg, CacheSize: 4 * gwMaxBlob})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	blob := gatewaytest.RandomBlob(t, gwMaxBlob/2)
	resp, body := gatewaytest.Do(t, http.MethodPut, srv.URL+"/v1/blobs?epochs=1", bytes.NewReader(blob), gatewaytest.Bearer(nw.ClientToken)...)
	gatewaytest.Want(t, resp, body, http.StatusCreated)
	var sr storeResponse
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/v1/blobs/" + sr.BlobID
	resp, body = gatewaytest.Do(t, http.MethodGet, url, nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)

	for i := range nw.Nodes() {
		if err := nw.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, url, nil, "Range", "bytes=10-19")
	gatewaytest.Want(t, resp, body, http.StatusPartialContent)
	if !bytes.Equal(body, blob[10:20]) {
		t.Fatal("the kept blob served other bytes")
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, url, nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
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
	resp, body = gatewaytest.Do(t, http.MethodGet, url, nil)
	gatewaytest.Want(t, resp, body, http.StatusGone)
}

// gwAddClient registers a client with quota (bytes × epochs) at the
// control plane, as `weft admin client add` does, and returns its token.
func gwAddClient(t *testing.T, ctx context.Context, nw *devnet.Network, name string, quota uint64) string {
	t.Helper()
	conn, err := grpc.NewClient(nw.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+nw.OperatorToken)
	added, err := weftv1.NewAdminClient(conn).AddClient(actx, &weftv1.AddClientRequest{Client: name, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	return added.Token
}

// gwUsed is what the control plane has charged token's client so far.
func gwUsed(t *testing.T, ctx context.Context, nw *devnet.Network, token string) uint64 {
	t.Helper()
	q, err := gwClient(t, nw, token).Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return q.Used
}

// A PUT or extend is charged to the caller's own client token, never to
// the gateway's (base's gateway has one, nw.ClientToken): 401 without a
// token, 403 with one the control plane refuses, 507 when the caller's
// quota cannot pay; none of them registers or extends anything. An
// extension moves the caller's own object: 404 from a client who owns
// none of the blob.
func testGatewayCallerToken(t *testing.T, ctx context.Context, nw *devnet.Network, base string, stored storeResponse) {
	cl := gwClient(t, nw, "")
	alice := gwAddClient(t, ctx, nw, "alice", 1<<40)
	poor := gwAddClient(t, ctx, nw, "poor", 10)
	gatewayUsed, aliceUsed := gwUsed(t, ctx, nw, nw.ClientToken), gwUsed(t, ctx, nw, alice)

	fresh := gatewaytest.RandomBlob(t, 3000)
	for _, c := range []struct {
		header []string
		code   int
	}{
		{nil, http.StatusUnauthorized},
		{[]string{"Authorization", "Basic YWxpY2U6c2VjcmV0"}, http.StatusUnauthorized},
		{[]string{"Authorization", "Bearer "}, http.StatusUnauthorized},
		{gatewaytest.Bearer("not-a-token"), http.StatusForbidden},
		{gatewaytest.Bearer(poor), http.StatusInsufficientStorage},
	} {
		resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(fresh), c.header...)
		gatewaytest.Want(t, resp, body, c.code)
		if c.code != http.StatusInsufficientStorage && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%d without a Bearer challenge: WWW-Authenticate %q", c.code, resp.Header.Get("WWW-Authenticate"))
		}
		wantUnregistered(t, cl, localID(t, fresh))
		extendCode := c.code
		if c.code == http.StatusInsufficientStorage {
			// A client of the network, who never stored the blob: it
			// owns no object of it to extend (the quota is not reached).
			extendCode = http.StatusNotFound
		}
		resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+stored.BlobID+"/extend?epochs=1", nil, c.header...)
		gatewaytest.Want(t, resp, body, extendCode)
	}
	before, err := cl.Status(ctx, mustParseID(t, stored.BlobID))
	if err != nil {
		t.Fatal(err)
	}
	if before.EndEpoch != before.RegisteredEpoch+gwEpochs {
		t.Fatalf("a refused extension moved the end epoch: %+v", before)
	}

	sr := gatewaytest.Put[storeResponse](t, base, alice, fresh, http.StatusCreated)
	cost, ok, err := cl.StoreCost(ctx, uint64(len(fresh)), gwEpochs)
	if err != nil || !ok {
		t.Fatal(cost, ok, err)
	}
	resp, body := gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+sr.BlobID+"/extend?epochs=2", nil, gatewaytest.Bearer(alice)...)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	var ext extendResponse
	if err := json.Unmarshal(body, &ext); err != nil || ext.Charged == 0 {
		t.Fatalf("extension answer %s: %v", body, err)
	}
	if got := gwUsed(t, ctx, nw, alice) - aliceUsed; got != cost+ext.Charged {
		t.Fatalf("the caller was charged %d, want %d for the store and %d for the extension", got, cost, ext.Charged)
	}
	if got := gwUsed(t, ctx, nw, nw.ClientToken); got != gatewayUsed {
		t.Fatalf("the gateway's own token was charged %d", got-gatewayUsed)
	}
	t.Logf("caller charged %d (store %d + extension %d), gateway's own token %d", cost+ext.Charged, cost, ext.Charged, 0)

	// A client whose quota pays for one epoch of a blob stores it for
	// one epoch, then owns an object of it that it cannot afford to
	// extend: 507, and the end epoch stays.
	small := gatewaytest.RandomBlob(t, 2000)
	oneEpoch, ok, err := cl.StoreCost(ctx, uint64(len(small)), 1)
	if err != nil || !ok {
		t.Fatal(oneEpoch, ok, err)
	}
	frugal := gwAddClient(t, ctx, nw, "frugal", oneEpoch)
	resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs?epochs=1", bytes.NewReader(small), gatewaytest.Bearer(frugal)...)
	gatewaytest.Want(t, resp, body, http.StatusCreated)
	fs := decodeJSON[storeResponse](t, body)
	before, err = cl.Status(ctx, mustParseID(t, fs.BlobID))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+fs.BlobID+"/extend?epochs=1", nil, gatewaytest.Bearer(frugal)...)
	gatewaytest.Want(t, resp, body, http.StatusInsufficientStorage)
	if after, err := cl.Status(ctx, mustParseID(t, fs.BlobID)); err != nil || after.EndEpoch != before.EndEpoch {
		t.Fatalf("an extension over quota moved the end epoch from %d: %+v, %v", before.EndEpoch, after, err)
	}
	if got := gwUsed(t, ctx, nw, frugal); got != oneEpoch {
		t.Fatalf("the client was charged %d, want %d (the store only)", got, oneEpoch)
	}
}

// A caller that half-closes its connection after its request still gets
// a real answer: a body cut short (fewer bytes than Content-Length) is a
// 400 and stores nothing; a complete chunked body is stored and answered
// 201 with its blob ID. Neither is ever the empty 200 that net/http sends
// for a handler that wrote no status.
func testGatewayHalfClosed(t *testing.T, nw *devnet.Network, addr, storedID string) {
	cl := gwClient(t, nw, "")
	blob := gatewaytest.RandomBlob(t, 1500)

	resp, body, _, err := gatewaytest.RawExchange(t, addr, gatewaytest.PutHead(nw.ClientToken, "Content-Length: 1500"), blob[:700], true)
	if err != nil {
		t.Fatalf("the cut-short PUT got no answer: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "unexpected EOF") {
		t.Fatalf("the cut-short PUT: %s %q, want 400 naming the cut", resp.Status, body)
	}
	t.Logf("cut-short PUT, half-closed: %s %s", resp.Status, bytes.TrimSpace(body))
	wantUnregistered(t, cl, localID(t, blob[:700]))
	wantUnregistered(t, cl, localID(t, blob))

	chunked := fmt.Appendf(nil, "%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 1000, blob[:1000], 500, blob[1000:])
	resp, body, _, err = gatewaytest.RawExchange(t, addr, gatewaytest.PutHead(nw.ClientToken, "Transfer-Encoding: chunked"), chunked, true)
	if err != nil {
		t.Fatalf("the complete chunked PUT got no answer: %v", err)
	}
	var sr storeResponse
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &sr) != nil || sr.BlobID != localID(t, blob).String() {
		t.Fatalf("the complete chunked PUT, half-closed: %s %q, want 201 with blob %s", resp.Status, body, localID(t, blob))
	}
	if st, err := cl.Status(context.Background(), localID(t, blob)); err != nil || st.Status != client.StatusCertified {
		t.Fatalf("the chunked PUT answered 201, but the blob is %+v, %v", st, err)
	}
	t.Logf("complete chunked PUT, half-closed: %s %s", resp.Status, sr.BlobID)

	// A GET whose caller half-closes is the whole blob or an explicit
	// 499, never an empty 200.
	resp, body, _, err = gatewaytest.RawExchange(t, addr, "GET /v1/blobs/"+storedID+" HTTP/1.1\r\nHost: gateway", nil, true)
	if err != nil {
		t.Fatalf("the half-closed GET got no answer: %v", err)
	}
	if resp.StatusCode == http.StatusOK && len(body) != 2048 || resp.StatusCode != http.StatusOK && resp.StatusCode != statusClientClosed {
		t.Fatalf("the half-closed GET: %s with %d bytes", resp.Status, len(body))
	}
	t.Logf("GET, half-closed: %s, %d bytes", resp.Status, len(body))
}

// New refuses a config it cannot serve with, dials its own SDK client
// when given none (Close closes it), and registers its metrics once.
func TestNewConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Control: []string{"127.0.0.1:1"}, Epochs: 1}, "maximum blob size"},
		{Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1}, "epochs"},
		{Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1, Epochs: maxRequestEpochs + 1}, "epochs"},
		{Config{MaxBlobSize: 1, Epochs: 1}, "control-plane address"},
	} {
		if g, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, %v; want an error about %s", c.cfg, g, err, c.want)
		}
	}
	reg := prometheus.NewRegistry()
	g, err := New(Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1, Epochs: 1, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if !g.ownCl || g.cfg.MaxInflight != DefaultMaxInflight {
		t.Fatalf("own client %v, max in flight %d", g.ownCl, g.cfg.MaxInflight)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1, Epochs: 1, Metrics: reg}); err == nil {
		t.Fatal("a second gateway registered the same metrics")
	}
}
