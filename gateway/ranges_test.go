package gateway

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// servedSliverBytes sums the sliver bytes the network's nodes have served.
func servedSliverBytes(nw *devnet.Network) int64 {
	var total int64
	for i := range nw.Nodes() {
		if n := nw.Node(i); n != nil {
			total += n.Stats().BytesServedSlivers
		}
	}
	return total
}

// Range headers against a real network (n = 8: nP = 4 systematic slivers
// of nS = 6 symbols; a 60,000-byte blob puts 15,000 bytes in each): one
// range is 206 with Content-Range, read from the slivers that hold it
// alone; past the end, malformed or "-0" is 416 with "bytes */SIZE";
// several ranges are net/http's multipart answer from the whole blob;
// another unit, or an If-Range naming other bytes, gets the whole blob.
func TestGatewayRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, nw.ClientToken)
	g, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)

	const size = 60_000
	blob := gatewaytest.RandomBlob(t, size)
	sr := gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, blob, http.StatusCreated)
	url := srv.URL + "/v1/blobs/" + sr.BlobID
	p, err := coding.NewParams(gwShards)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.SymbolSize(size)
	row, _ := p.SystematicLayout(s)

	t.Run("one range", func(t *testing.T) {
		for _, tc := range []struct {
			header      string
			first, last int
		}{
			{"bytes=100-199", 100, 199}, {"bytes=0-0", 0, 0}, {"bytes=59999-59999", 59999, 59999},
			{"bytes=59990-", 59990, 59999}, {"bytes=-10", 59990, 59999}, {"bytes=0-", 0, 59999},
			{"bytes=-100000", 0, 59999}, {"bytes=59000-70000", 59000, 59999},
			{fmt.Sprintf("bytes=%d-%d", row-5, row+4), row - 5, row + 4},
			{"Bytes = 7-9", 7, 9}, {"bytes=, 7-9 ,", 7, 9},
		} {
			base := servedSliverBytes(nw)
			resp, body := gatewaytest.Do(t, http.MethodGet, url, nil, "Range", tc.header)
			gatewaytest.Want(t, resp, body, http.StatusPartialContent)
			if !bytes.Equal(body, blob[tc.first:tc.last+1]) {
				t.Fatalf("%s: %d bytes, not bytes %d-%d", tc.header, len(body), tc.first, tc.last)
			}
			h := resp.Header
			if h.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", tc.first, tc.last, size) ||
				h.Get("Content-Length") != strconv.Itoa(tc.last-tc.first+1) || h.Get("Accept-Ranges") != "bytes" ||
				h.Get("ETag") != `"`+sr.BlobID+`"` || h.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("%s: headers %v", tc.header, h)
			}
			// A blob this short could be a file's manifest: its first
			// sliver is read too, to see whether it starts with the
			// manifest magic (client.MightBeManifest).
			covering := tc.last/row - tc.first/row + 1
			want := int64((covering + 1) * row)
			if served := awaitServed(nw, base, want); served != want {
				t.Fatalf("%s: the nodes served %d sliver bytes, want the %d slivers holding the range and the first one, %d", tc.header, served, covering, want)
			}
		}
	})

	t.Run("not satisfiable", func(t *testing.T) {
		for _, h := range []string{
			"bytes=60000-", "bytes=60000-60001", "bytes=70000-80000", "bytes=-0", "bytes=5-3",
			"bytes=abc", "bytes=", "bytes=,", "bytes=1-2-3", "bytes=+1-2", "bytes=99999999999999999999-",
		} {
			resp, body := gatewaytest.Do(t, http.MethodGet, url, nil, "Range", h)
			gatewaytest.Want(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
			if got := resp.Header.Get("Content-Range"); got != "bytes */60000" {
				t.Fatalf("%s: Content-Range %q", h, got)
			}
		}
	})

	t.Run("several ranges", func(t *testing.T) {
		resp, body := gatewaytest.Do(t, http.MethodGet, url, nil, "Range", "bytes=0-9, 100-109")
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			t.Fatalf("Content-Type %q, %v", resp.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for _, want := range [][2]int{{0, 9}, {100, 109}} {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := got.ReadFrom(part); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), blob[want[0]:want[1]+1]) || part.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", want[0], want[1], size) {
				t.Fatalf("part %v: %d bytes, %v", want, got.Len(), part.Header)
			}
		}
	})

	t.Run("ignored", func(t *testing.T) {
		for _, h := range [][]string{
			{"Range", "items=0-5"},
			{"Range", "bytes=0-5", "If-Range", `"other"`},
			{"Range", "bytes=0-5", "If-Range", "Wed, 21 Oct 2015 07:28:00 GMT"},
			{"Range", "bytes=0-5", "If-Range", `W/"` + sr.BlobID + `"`}, // If-Range compares strongly
		} {
			resp, body := gatewaytest.Do(t, http.MethodGet, url, nil, h...)
			gatewaytest.Want(t, resp, body, http.StatusOK)
			if !bytes.Equal(body, blob) || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("%v: %d bytes, headers %v", h, len(body), resp.Header)
			}
		}
		resp, body := gatewaytest.Do(t, http.MethodGet, url, nil, "Range", "bytes=0-5", "If-Range", `"`+sr.BlobID+`"`)
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		resp, body = gatewaytest.Do(t, http.MethodHead, url, nil, "Range", "bytes=0-5")
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if resp.ContentLength != size {
			t.Fatalf("HEAD with a Range: length %d", resp.ContentLength)
		}
	})

	t.Run("other blobs", func(t *testing.T) {
		unknown := srv.URL + "/v1/blobs/" + crypto.BlobID{9}.String()
		resp, body := gatewaytest.Do(t, http.MethodGet, unknown, nil, "Range", "bytes=0-5")
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
		if resp.Header.Get("Content-Range") != "" {
			t.Fatalf("404 with Content-Range %q", resp.Header.Get("Content-Range"))
		}
		empty := gatewaytest.Put[storeResponse](t, srv.URL, nw.ClientToken, nil, http.StatusCreated)
		resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/blobs/"+empty.BlobID, nil, "Range", "bytes=0-5")
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
			t.Fatalf("a range of the empty blob: %d bytes, %v", len(body), resp.Header)
		}
	})
}

// awaitServed waits until the nodes have counted want more sliver bytes
// than base (a node counts a chunk after its Send returns, which may be
// after the caller has it), and returns what they counted.
func awaitServed(nw *devnet.Network, base, want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := servedSliverBytes(nw) - base
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzRangeHeader: the Range header is outside text. No panic; and where
// the gateway serves one range itself, it answers as net/http's
// ServeContent — the gateway's answer before range reads, and its answer
// still for several ranges — answers the same header for a blob of the
// same size: the same status, Content-Range and bytes. (Where the
// gateway parses more strictly — a sign, or a unit in capitals — it says
// malformed or reads the unit case-blind, and that is not compared;
// another unit it ignores (200) where net/http refuses it (416), as RFC
// 9110 §14.2 asks.)
func FuzzRangeHeader(f *testing.F) {
	for _, h := range []string{
		"bytes=0-0", "bytes=5-", "bytes=-3", "bytes=0-1,4-5", "bytes=-0", "bytes=7-2", "bytes= 1-2 ,",
		"items=0-1", "bytes=", "bytes=99999999999999999999-", "bytes=+1-2", "bytes=1-2-3",
	} {
		f.Add(h, uint16(10))
	}
	f.Add("bytes=0-", uint16(0))
	f.Fuzz(func(t *testing.T, header string, size uint16) {
		kind, rng, err := parseRangeHeader(header)
		if (kind == rangeMalformed) != (err != nil) {
			t.Fatalf("%q: kind %d with error %v", header, kind, err)
		}
		if kind != rangeSingle || !strings.HasPrefix(header, "bytes=") || strings.ContainsAny(header, "+") {
			return
		}
		content := bytes.Repeat([]byte("0123456789abcdef"), int(size)/16+1)[:size]
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Range", header)
		http.ServeContent(rec, req, "", time.Time{}, bytes.NewReader(content))
		off, n, rerr := rng.Resolve(int64(size))
		switch {
		case size == 0 && rng.Suffix > 0:
			// net/http answers a suffix of an empty file 206 with
			// "bytes 0--1/0"; the gateway answers 200, as it does
			// (and net/http does) any other range of an empty blob.
		case size == 0:
			if rec.Code != http.StatusOK {
				t.Fatalf("%q of the empty blob: net/http answers %d, the gateway 200", header, rec.Code)
			}
		case rerr != nil:
			if rec.Code != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("%q of %d bytes: the gateway answers 416 (%v), net/http %d", header, size, rerr, rec.Code)
			}
		default:
			want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size)
			if rec.Code != http.StatusPartialContent || rec.Header().Get("Content-Range") != want ||
				!bytes.Equal(rec.Body.Bytes(), content[off:off+n]) {
				t.Fatalf("%q of %d bytes: the gateway answers 206 %s, net/http %d %q", header, size, want, rec.Code, rec.Header().Get("Content-Range"))
			}
		}
	})
}
