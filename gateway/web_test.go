package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
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

const (
	webOrigin   = "https://app.example"
	otherOrigin = "https://evil.example"
)

// wantError checks an error answer (gatewaytest.Want) and its status's
// name.
func wantError(t *testing.T, resp *http.Response, body []byte, code int, status string) gatewaytest.Error {
	t.Helper()
	gatewaytest.Want(t, resp, body, code)
	e, err := gatewaytest.DecodeError(body)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != status {
		t.Fatalf("%d answered status %q, want %q: %s", code, e.Status, status, body)
	}
	return e
}

// preflight sends a browser's CORS preflight of method to url from origin,
// asking for headers (a comma-separated list, as browsers send it).
func preflight(t *testing.T, url, origin, method, headers string) (*http.Response, []byte) {
	t.Helper()
	h := []string{"Origin", origin, "Access-Control-Request-Method", method}
	if headers != "" {
		h = append(h, "Access-Control-Request-Headers", headers)
	}
	return gatewaytest.Do(t, http.MethodOptions, url, nil, h...)
}

func hasVaryOrigin(resp *http.Response) bool {
	for _, v := range resp.Header.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}

// The gateway as a web page's back end, over a real network: CORS
// (preflights of every route's path from an allowed origin, refused from
// others; the headers of actual answers, errors included; "*"; none),
// caching (a blob's and a file's bytes immutable, JSON revalidated, errors
// never kept), conditional requests (304 and 412 on GET and HEAD), and
// the JSON error of each status class.
func TestGatewayWeb(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "", func(cfg *client.Config) { cfg.ChunkSize = fileChunk })
	newGateway := func(cfg Config) string {
		t.Helper()
		cfg.Client, cfg.MaxBlobSize, cfg.Epochs, cfg.WriteTimeout = cl, 1<<20, gwEpochs, time.Minute
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(g)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	base := newGateway(Config{CORSOrigins: []string{webOrigin + "/", "http://localhost:3000"}})
	token := nw.ClientToken

	blob := gatewaytest.RandomBlob(t, 5000)
	sr := gatewaytest.Put[storeResponse](t, base, token, blob, http.StatusCreated)
	blobURL := base + "/v1/blobs/" + sr.BlobID
	file := gatewaytest.RandomBlob(t, 3*fileChunk+11)
	fr := gatewaytest.Put[storeResponse](t, base, token, file, http.StatusCreated)
	if fr.Chunks == 0 {
		t.Fatalf("a PUT of %d bytes made no file: %+v", len(file), fr)
	}
	fileURL := base + "/v1/blobs/" + fr.BlobID
	objURL := base + "/v1/objects/" + strconv.FormatUint(sr.ObjectID, 10)
	unknown := crypto.BlobID{7, 7, 7}.String()

	t.Run("preflight", func(t *testing.T) {
		// Every route's path, with the methods the route has.
		g, err := New(Config{Client: cl, MaxBlobSize: 1, Epochs: 1})
		if err != nil {
			t.Fatal(err)
		}
		allow := map[string][]string{}
		for _, rt := range g.routeTable() {
			allow[rt.pattern] = append(allow[rt.pattern], rt.method)
			if rt.method == http.MethodGet {
				allow[rt.pattern] = append(allow[rt.pattern], http.MethodHead)
			}
		}
		for pattern, methods := range allow {
			url := base + wildcard.ReplaceAllString(pattern, "1")
			resp, body := preflight(t, url, webOrigin, methods[0], "")
			gatewaytest.Want(t, resp, body, http.StatusNoContent)
			wantHeaders(t, "preflight of "+pattern, resp, map[string]string{
				"Access-Control-Allow-Origin": webOrigin, "Access-Control-Allow-Methods": strings.Join(methods, ", "),
				"Access-Control-Max-Age": corsMaxAge, "Access-Control-Allow-Credentials": "",
			})
			if !hasVaryOrigin(resp) {
				t.Fatalf("preflight of %s without Vary: Origin: %v", pattern, resp.Header)
			}
		}
		// The headers the API reads are allowed, as the browser named
		// them; others are left out (the browser then refuses).
		resp, body := preflight(t, base+"/v1/blobs", "http://localhost:3000", http.MethodPut,
			"authorization,content-type,x-weft-attr-content-disposition,x-custom, X-Weft-Attr-Label")
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		wantHeaders(t, "preflight with headers", resp, map[string]string{
			"Access-Control-Allow-Origin":  "http://localhost:3000",
			"Access-Control-Allow-Headers": "authorization, content-type, x-weft-attr-content-disposition, X-Weft-Attr-Label",
		})
		resp, body = preflight(t, blobURL, webOrigin, http.MethodGet, "range,if-none-match,if-match,if-range")
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		wantHeaders(t, "preflight of a read", resp, map[string]string{"Access-Control-Allow-Headers": "range, if-none-match, if-match, if-range"})

		// Another origin: 403, no CORS header.
		for _, origin := range []string{otherOrigin, "null", "https://app.example.evil", "http://app.example"} {
			resp, body := preflight(t, base+"/v1/blobs", origin, http.MethodPut, "authorization")
			wantError(t, resp, body, http.StatusForbidden, "PERMISSION_DENIED")
			wantHeaders(t, "preflight from "+origin, resp, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Allow-Headers": ""})
		}
		// A path no route has: 404.
		resp, body = preflight(t, base+"/v2/things", webOrigin, http.MethodGet, "")
		wantError(t, resp, body, http.StatusNotFound, "NOT_FOUND")
		// An OPTIONS that is no preflight: 204 with Allow.
		resp, body = gatewaytest.Do(t, http.MethodOptions, objURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		wantHeaders(t, "OPTIONS", resp, map[string]string{"Allow": "GET, HEAD, DELETE", "Access-Control-Allow-Origin": ""})
	})

	t.Run("actual answers", func(t *testing.T) {
		resp, body := gatewaytest.Do(t, http.MethodGet, blobURL, nil, "Origin", webOrigin)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "GET from an allowed origin", resp, map[string]string{"Access-Control-Allow-Origin": webOrigin})
		expose := resp.Header.Get("Access-Control-Expose-Headers")
		for _, h := range []string{"ETag", "Content-Length", "Content-Range", "Accept-Ranges", "Content-Disposition", "Retry-After", "Location"} {
			if !strings.Contains(expose, h) {
				t.Fatalf("Access-Control-Expose-Headers %q lacks %s", expose, h)
			}
		}
		if !hasVaryOrigin(resp) || !bytes.Equal(body, blob) {
			t.Fatalf("GET from an allowed origin: Vary %q, %d bytes", resp.Header.Values("Vary"), len(body))
		}
		// Errors and PUTs too: the page reads why it failed.
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+unknown, nil, "Origin", webOrigin)
		wantError(t, resp, body, http.StatusNotFound, "NOT_FOUND")
		wantHeaders(t, "404 to an allowed origin", resp, map[string]string{"Access-Control-Allow-Origin": webOrigin})
		resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(blob), "Origin", webOrigin, "Authorization", "Bearer "+token)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "PUT from an allowed origin", resp, map[string]string{"Access-Control-Allow-Origin": webOrigin})
		// Another origin, or none: no CORS header, but Vary: Origin.
		for _, origin := range []string{otherOrigin, ""} {
			resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil, "Origin", origin)
			gatewaytest.Want(t, resp, body, http.StatusOK)
			wantHeaders(t, "GET from "+origin, resp, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": ""})
			if !hasVaryOrigin(resp) {
				t.Fatalf("GET from %q without Vary: Origin", origin)
			}
		}

		// "*": any origin, and every answer says so, without Vary.
		anyBase := newGateway(Config{CORSOrigins: []string{"*"}})
		for _, origin := range []string{otherOrigin, ""} {
			resp, body = gatewaytest.Do(t, http.MethodGet, anyBase+"/v1/blobs/"+sr.BlobID, nil, "Origin", origin)
			gatewaytest.Want(t, resp, body, http.StatusOK)
			wantHeaders(t, "GET with *", resp, map[string]string{"Access-Control-Allow-Origin": "*", "Vary": ""})
		}
		resp, body = preflight(t, anyBase+"/v1/objects/1/attributes", "null", http.MethodPut, "authorization,content-type")
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		wantHeaders(t, "preflight with *", resp, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "PUT",
			"Access-Control-Allow-Headers": "authorization, content-type"})

		// None: today's answers, without any CORS header; a preflight is
		// refused, a plain OPTIONS answered.
		noneBase := newGateway(Config{})
		resp, body = gatewaytest.Do(t, http.MethodGet, noneBase+"/v1/blobs/"+sr.BlobID, nil, "Origin", webOrigin)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
				t.Fatalf("a gateway without CORS answered %s: %v", k, resp.Header)
			}
		}
		resp, body = preflight(t, noneBase+"/v1/blobs", webOrigin, http.MethodPut, "")
		wantError(t, resp, body, http.StatusForbidden, "PERMISSION_DENIED")
		resp, body = gatewaytest.Do(t, http.MethodOptions, noneBase+"/v1/blobs", nil)
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
	})

	t.Run("caching", func(t *testing.T) {
		tag := `"` + sr.BlobID + `"`
		for _, c := range []struct {
			what, url, tag string
		}{
			{"blob", blobURL, tag},
			{"file", fileURL, `"` + fr.BlobID + `"`},
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				what := method + " " + c.what
				resp, body := gatewaytest.Do(t, method, c.url, nil)
				gatewaytest.Want(t, resp, body, http.StatusOK)
				wantHeaders(t, what, resp, map[string]string{"Cache-Control": cacheImmutable, "ETag": c.tag})
				// If-None-Match, weakly: 304 with the ETag and caching.
				for _, inm := range []string{c.tag, "W/" + c.tag, `"other", ` + c.tag, "*"} {
					resp, body = gatewaytest.Do(t, method, c.url, nil, "If-None-Match", inm)
					gatewaytest.Want(t, resp, body, http.StatusNotModified)
					wantHeaders(t, what+" If-None-Match "+inm, resp, map[string]string{"Cache-Control": cacheImmutable, "ETag": c.tag})
				}
				resp, body = gatewaytest.Do(t, method, c.url, nil, "If-None-Match", `"other"`)
				gatewaytest.Want(t, resp, body, http.StatusOK)
				// If-Match, strongly: served when it names the ETag, else 412.
				for _, im := range []string{c.tag, `"other", ` + c.tag, "*"} {
					resp, body = gatewaytest.Do(t, method, c.url, nil, "If-Match", im)
					gatewaytest.Want(t, resp, body, http.StatusOK)
				}
				for _, im := range []string{`"other"`, "W/" + c.tag} {
					resp, body = gatewaytest.Do(t, method, c.url, nil, "If-Match", im)
					if method == http.MethodGet {
						wantError(t, resp, body, http.StatusPreconditionFailed, "FAILED_PRECONDITION")
					} else {
						gatewaytest.Want(t, resp, body, http.StatusPreconditionFailed)
					}
					wantHeaders(t, what+" If-Match "+im, resp, map[string]string{"ETag": ""})
				}
			}
		}
		// A range of an immutable blob is immutable too; If-Range with its
		// ETag keeps the range.
		resp, body := gatewaytest.Do(t, http.MethodGet, blobURL, nil, "Range", "bytes=10-19", "If-Range", tag)
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		wantHeaders(t, "range", resp, map[string]string{"Cache-Control": cacheImmutable, "Content-Range": "bytes 10-19/5000"})
		// An object's bytes are revalidated: its owner may change them.
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "object", resp, map[string]string{"Cache-Control": cacheRevalidate, "ETag": tag})
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL, nil, "If-None-Match", tag)
		gatewaytest.Want(t, resp, body, http.StatusNotModified)
		wantHeaders(t, "object's 304", resp, map[string]string{"Cache-Control": cacheRevalidate, "ETag": tag})

		// JSON that changes: no-cache, its ETag changes with it.
		for _, url := range []string{blobURL + "/status", objURL + "/info"} {
			resp, body = gatewaytest.Do(t, http.MethodGet, url, nil)
			gatewaytest.Want(t, resp, body, http.StatusOK)
			etag := resp.Header.Get("ETag")
			if resp.Header.Get("Cache-Control") != cacheRevalidate || !strings.HasPrefix(etag, `"`) {
				t.Fatalf("GET %s: headers %v", url, resp.Header)
			}
			resp, body = gatewaytest.Do(t, http.MethodHead, url, nil, "If-None-Match", etag)
			gatewaytest.Want(t, resp, body, http.StatusNotModified)
			resp, body = gatewaytest.Do(t, http.MethodGet, url, nil, "If-None-Match", etag)
			gatewaytest.Want(t, resp, body, http.StatusNotModified)
			wantHeaders(t, url+" 304", resp, map[string]string{"ETag": etag, "Cache-Control": cacheRevalidate})
			resp, body = gatewaytest.Do(t, http.MethodGet, url, nil, "If-Match", `"stale"`)
			wantError(t, resp, body, http.StatusPreconditionFailed, "FAILED_PRECONDITION")
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL+"/status", nil)
		before := resp.Header.Get("ETag")
		resp, body = gatewaytest.Do(t, http.MethodPost, blobURL+"/extend?epochs=1", nil, gatewaytest.Bearer(token)...)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL+"/status", nil, "If-None-Match", before)
		gatewaytest.Want(t, resp, body, http.StatusOK) // extended: another entry, another ETag
		if resp.Header.Get("ETag") == before {
			t.Fatalf("the status's ETag %s did not change with its end epoch", before)
		}

		// Errors are never kept (gatewaytest.Want checks no-store).
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+unknown, nil, "If-None-Match", "*")
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
		resp, body = gatewaytest.Do(t, http.MethodGet, blobURL, nil, "Range", "bytes=9000-")
		wantError(t, resp, body, http.StatusRequestedRangeNotSatisfiable, "OUT_OF_RANGE")
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			header       []string
			code         int
			status       string
		}{
			{http.MethodGet, "/v1/blobs/not-an-id", nil, http.StatusBadRequest, "INVALID_ARGUMENT"},
			{http.MethodGet, "/v1/objects/007", nil, http.StatusBadRequest, "INVALID_ARGUMENT"},
			{http.MethodPut, "/v1/blobs", nil, http.StatusUnauthorized, "UNAUTHENTICATED"},
			{http.MethodPut, "/v1/blobs", gatewaytest.Bearer("not-a-token"), http.StatusForbidden, "PERMISSION_DENIED"},
			{http.MethodGet, "/v1/blobs/" + unknown, nil, http.StatusNotFound, "NOT_FOUND"},
			{http.MethodGet, "/v2/things", nil, http.StatusNotFound, "NOT_FOUND"},
			{http.MethodGet, "/", nil, http.StatusNotFound, "NOT_FOUND"},
			{http.MethodPatch, "/v1/blobs/" + sr.BlobID, nil, http.StatusMethodNotAllowed, "UNIMPLEMENTED"},
			{http.MethodPost, "/v1/api", nil, http.StatusMethodNotAllowed, "UNIMPLEMENTED"},
			{http.MethodPut, "/v1/quilts", append(gatewaytest.Bearer(token), "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "INVALID_ARGUMENT"},
			// Several ranges, none in the blob: net/http's own 416
			// (text) answered as JSON.
			{http.MethodGet, "/v1/blobs/" + sr.BlobID, []string{"Range", "bytes=6000-6001,7000-7001"}, http.StatusRequestedRangeNotSatisfiable, "OUT_OF_RANGE"},
		} {
			resp, body := gatewaytest.Do(t, c.method, base+c.path, strings.NewReader("x"), c.header...)
			wantError(t, resp, body, c.code, c.status)
			if c.code == http.StatusRequestedRangeNotSatisfiable && resp.Header.Get("Content-Range") != "bytes */5000" {
				t.Fatalf("416 without the size: %v", resp.Header)
			}
		}
		// 413: over the limit, declared or found out while reading.
		big := gatewaytest.RandomBlob(t, 1<<20+1)
		resp, body := gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(big), gatewaytest.Bearer(token)...)
		wantError(t, resp, body, http.StatusRequestEntityTooLarge, "RESOURCE_EXHAUSTED")
		// Chunked: net/http's MaxBytesReader finds it out.
		resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/quilts", io.MultiReader(bytes.NewReader(big)),
			append(gatewaytest.Bearer(token), "Content-Type", "multipart/form-data; boundary=x")...)
		wantError(t, resp, body, http.StatusRequestEntityTooLarge, "RESOURCE_EXHAUSTED")
		if resp.Request.ContentLength > 0 {
			t.Fatal("the quilt was not sent chunked")
		}

		// 499: the caller gone before the answer.
		g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, Epochs: 1})
		if err != nil {
			t.Fatal(err)
		}
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(gone, http.MethodGet, "/v1/blobs/"+sr.BlobID+"/status", nil)
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if e, err := gatewaytest.DecodeError(rec.Body.Bytes()); err != nil || rec.Code != statusClientClosed || e.Code != statusClientClosed || e.Status != "CANCELLED" {
			t.Fatalf("a request whose caller left: %d %s (%v)", rec.Code, rec.Body, err)
		}
	})

	t.Run("busy", func(t *testing.T) {
		// One slot, held by a PUT whose body never comes: a preflight is
		// still answered, the request itself is 429 — readable by the
		// page, as JSON.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, Epochs: 1, MaxInflight: 1, CORSOrigins: []string{webOrigin}})
		if err != nil {
			t.Fatal(err)
		}
		srv := &httptest.Server{Listener: lis, Config: &http.Server{Handler: g}}
		srv.Start()
		defer srv.Close()
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(gatewaytest.PutHead(token, "Content-Length: 1000") + "\r\n\r\n0123")); err != nil {
			t.Fatal(err)
		}
		// The PUT must hold the slot before the first GET: on a loaded
		// machine a GET served first took it, the PUT was answered 429,
		// and every later GET found the slot free.
		for deadline := time.Now().Add(20 * time.Second); len(g.slots) == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the PUT never took the gateway's one slot")
			}
		}
		var resp *http.Response
		var body []byte
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/blobs/"+sr.BlobID, nil, "Origin", webOrigin)
			if resp.StatusCode == http.StatusTooManyRequests || time.Now().After(deadline) {
				break
			}
		}
		wantError(t, resp, body, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED")
		wantHeaders(t, "429", resp, map[string]string{"Access-Control-Allow-Origin": webOrigin, "Retry-After": busyRetryAfter})
		resp, body = preflight(t, srv.URL+"/v1/blobs/"+sr.BlobID, webOrigin, http.MethodGet, "range")
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		wantHeaders(t, "preflight while busy", resp, map[string]string{"Access-Control-Allow-Origin": webOrigin, "Access-Control-Allow-Headers": "range"})
	})
}

// The CORS origins a Config may name, and those it refuses.
func TestCORSOrigins(t *testing.T) {
	p, err := newCORSPolicy([]string{"https://A.example:443/", " http://b.example:8080, http://[::1]:80", ""})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://a.example": true, "https://a.example:443": true, "http://b.example:8080": true, "http://[::1]": true,
		"http://a.example": false, "https://b.example:8080": false, "http://b.example": false, "null": false, "": false,
		"https://a.example.evil": false,
	} {
		if got := p.allowed(origin); got != want {
			t.Errorf("allowed(%q) = %v, want %v", origin, got, want)
		}
	}
	if p, err := newCORSPolicy([]string{"", " "}); p != nil || err != nil {
		t.Errorf("no origins: %+v, %v; want none", p, err)
	}
	for _, bad := range []string{"app.example", "https://app.example/path", "https://user@app.example", "https://app.example?q", "https://", "::"} {
		if _, err := New(Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1, Epochs: 1, CORSOrigins: []string{bad}}); err == nil || !strings.Contains(err.Error(), "CORS origin") {
			t.Errorf("CORS origin %q: %v, want it refused", bad, err)
		}
	}
}

// Entity-tag lists as If-Match (strong) and If-None-Match (weak) compare
// them.
func TestMatchETag(t *testing.T) {
	for _, c := range []struct {
		header       string
		strong, weak bool
	}{
		{`"a"`, true, true},
		{`W/"a"`, false, true},
		{`"b", "a"`, true, true},
		{` "b" ,W/"a"`, false, true},
		{`*`, true, true},
		{`"b"`, false, false},
		{`a`, false, false},
		{`"a`, false, false},
		{`"b", garbage, "a"`, false, false},
		{``, false, false},
	} {
		if got := matchETag(c.header, `"a"`, true); got != c.strong {
			t.Errorf("strong %q: %v", c.header, got)
		}
		if got := matchETag(c.header, `"a"`, false); got != c.weak {
			t.Errorf("weak %q: %v", c.header, got)
		}
	}
}
