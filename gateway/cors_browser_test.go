package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/gateway/gatewaytest"
	"github.com/weftstore/weft/internal/browser"
)

// fetchResult is what the page's fetch saw: the answer, or the error a
// browser gives a script when CORS blocks it (the answer stays hidden).
type fetchResult struct {
	Status int    `json:"status"`
	ETag   string `json:"etag"`
	Body   []int  `json:"body"`
	Error  string `json:"error"`
}

// fetchFrom runs fetch(url, init) in the page and returns what it saw.
func fetchFrom(b *browser.Browser, url, init string) fetchResult {
	js := fmt.Sprintf(`fetch(%q, %s).then(async r => ({status: r.status, etag: r.headers.get("ETag") || "",
		body: Array.from(new Uint8Array(await r.arrayBuffer()))})).catch(e => ({error: String(e)}))`, url, init)
	var res fetchResult
	b.Eval(js, &res)
	return res
}

// A page of an allowed origin calls the gateway from Chromium — a plain
// GET, a preflighted ranged GET that reads the exposed ETag, a PUT with
// its bearer token, and Walrus's route — and a page of another origin is
// refused by the browser for each.
func TestCORSFromABrowserPage(t *testing.T) {
	b := browser.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, nw.ClientToken)
	page := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, "<!doctype html><title>a page</title><p>calls the gateway")
		}))
		t.Cleanup(s.Close)
		return s
	}
	allowed, other := page(), page() // two ports: two origins
	g, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, CORSOrigins: []string{allowed.URL}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	blob := gatewaytest.RandomBlob(t, 1000)
	stored := gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, blob, http.StatusCreated)
	blobURL := srv.URL + "/v1/blobs/" + stored.BlobID
	put := fmt.Sprintf(`{method: "PUT", body: new Uint8Array([1,2,3,4,5]), headers: {"Authorization": "Bearer %s"}}`, nw.ClientToken)
	calls := []struct {
		name, url, init string
		status          int
		body            []byte
	}{
		{"GET", blobURL, "{}", http.StatusOK, blob},
		{"ranged GET (preflighted)", blobURL, `{headers: {"Range": "bytes=0-9"}}`, http.StatusPartialContent, blob[:10]},
		{"PUT with a bearer token (preflighted)", srv.URL + "/v1/blobs", put, http.StatusCreated, nil},
		{"Walrus's GET", srv.URL + "/walrus/v1/blobs/" + stored.BlobID, `{headers: {"Range": "bytes=0-9"}}`, http.StatusPartialContent, blob[:10]},
	}

	b.Open(allowed.URL)
	for _, c := range calls {
		res := fetchFrom(b, c.url, c.init)
		if res.Error != "" || res.Status != c.status {
			t.Fatalf("%s from the allowed origin %s: %+v\nconsole: %v", c.name, allowed.URL, res, b.Console())
		}
		if c.body != nil && !bytes.Equal(intsToBytes(res.Body), c.body) {
			t.Fatalf("%s from the allowed origin: other bytes", c.name)
		}
		if c.body != nil && res.ETag == "" {
			t.Fatalf("%s: the page cannot read the ETag (not exposed)", c.name)
		}
	}

	b.Open(other.URL)
	for _, c := range calls {
		res := fetchFrom(b, c.url, c.init)
		if res.Error == "" || !strings.Contains(res.Error, "TypeError") {
			t.Fatalf("%s from %s, an origin not allowed, was not blocked: %+v", c.name, other.URL, res)
		}
	}
}

func intsToBytes(v []int) []byte {
	out := make([]byte, len(v))
	for i, x := range v {
		out[i] = byte(x)
	}
	return out
}
