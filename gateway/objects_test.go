package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// objPut sends a PUT of body to url, charged to token, with header (name,
// value pairs, set as given: two spellings of one name stay two lines),
// and returns the answer.
func objPut(t *testing.T, url, token string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[header[i]] = append(req.Header[header[i]], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// objectInfo reads GET /v1/objects/{id}/info.
func objectInfo(t *testing.T, base string, id uint64) objectResponse {
	t.Helper()
	resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/objects/"+strconv.FormatUint(id, 10)+"/info", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	return decodeJSON[objectResponse](t, body)
}

func wantHeaders(t *testing.T, what string, resp *http.Response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Fatalf("%s: %s %q, want %q (headers %v)", what, k, got, v, resp.Header)
		}
	}
}

// Blob objects through the gateway, over a real network: a PUT makes the
// caller's object (its Content-Type and X-Weft-Attr-* headers as
// attributes, deletable unless ?permanent=true) and names it; GET
// /v1/blobs/{id} answers the content type the objects agree on, GET
// /v1/objects/{id} the object's served attributes; only the owner
// deletes or edits an object, a permanent one is not deleted; once the
// last object is deleted and the epoch ends the blob is 410. Malformed
// object IDs and attributes are 400 and change nothing.
func TestGatewayObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "", func(cfg *client.Config) { cfg.ChunkSize = fileChunk })
	reg := prometheus.NewRegistry()
	g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, Epochs: gwEpochs, WriteTimeout: time.Minute, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	base := srv.URL
	alice := gwAddClient(t, ctx, nw, "alice", 1<<40)
	bob := gwAddClient(t, ctx, nw, "bob", 1<<40)
	objURL := func(id uint64) string { return base + "/v1/objects/" + strconv.FormatUint(id, 10) }

	// A PNG, with a file name and caching for its object's GET.
	png := gatewaytest.RandomBlob(t, 6000)
	resp, body := objPut(t, base+"/v1/blobs", alice, png, "Content-Type", "image/png",
		"X-Weft-Attr-Content-Disposition", `inline; filename="cat.png"`, "X-Weft-Attr-Cache-Control", "max-age=60",
		"X-Weft-Attr-Label", "Cats")
	gatewaytest.Want(t, resp, body, http.StatusCreated)
	pngPut := decodeJSON[storeResponse](t, body)
	if pngPut.ObjectID == 0 || pngPut.BlobID != localID(t, png).String() {
		t.Fatalf("PUT answered %s", body)
	}
	pngObj := pngPut.ObjectID

	t.Run("content type", func(t *testing.T) {
		info := objectInfo(t, base, pngObj)
		wantAttrs := map[string]string{"content-type": "image/png", "content-disposition": `inline; filename="cat.png"`, "cache-control": "max-age=60", "label": "Cats"}
		if info.ObjectID != pngObj || info.BlobID != pngPut.BlobID || info.Owner != "alice" || !info.Deletable || info.StoredBytes == 0 ||
			len(info.Attributes) != len(wantAttrs) {
			t.Fatalf("object %+v after PUT %+v", info, pngPut)
		}
		for k, v := range wantAttrs {
			if info.Attributes[k] != v {
				t.Fatalf("attribute %s = %q, want %q (%v)", k, info.Attributes[k], v, info.Attributes)
			}
		}
		// The blob's GET answers the content type, not the object's
		// other attributes.
		resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "GET of the blob", resp, map[string]string{"Content-Type": "image/png", "Content-Disposition": "", "Cache-Control": cacheImmutable, "X-Content-Type-Options": "nosniff"})
		if !bytes.Equal(body, png) {
			t.Fatal("GET of the blob: other bytes")
		}
		resp, _ = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+pngPut.BlobID, nil)
		wantHeaders(t, "HEAD of the blob", resp, map[string]string{"Content-Type": "image/png", "Content-Length": "6000"})
		// The object's GET: its served attributes, every GET feature.
		objHeaders := map[string]string{"Content-Type": "image/png", "Content-Disposition": `inline; filename="cat.png"`,
			"Cache-Control": "max-age=60", "ETag": `"` + pngPut.BlobID + `"`, "X-Weft-Attr-Label": "", "Label": ""}
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(pngObj), nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "GET of the object", resp, objHeaders)
		if !bytes.Equal(body, png) {
			t.Fatal("GET of the object: other bytes")
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(pngObj), nil, "Range", "bytes=100-199")
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		wantHeaders(t, "range of the object", resp, objHeaders)
		if !bytes.Equal(body, png[100:200]) || resp.Header.Get("Content-Range") != "bytes 100-199/6000" {
			t.Fatalf("range of the object: %d bytes, Content-Range %q", len(body), resp.Header.Get("Content-Range"))
		}
		resp, body = gatewaytest.Do(t, http.MethodHead, objURL(pngObj), nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "HEAD of the object", resp, objHeaders)
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(pngObj), nil, "If-None-Match", `"`+pngPut.BlobID+`"`)
		gatewaytest.Want(t, resp, body, http.StatusNotModified)
		// Past the end: 416, and the error carries none of the object's
		// headers (they describe bytes it does not have).
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(pngObj), nil, "Range", "bytes=6000-")
		gatewaytest.Want(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
		wantHeaders(t, "416 of the object", resp, map[string]string{"Content-Disposition": "", "Cache-Control": "no-store"})

		// application/octet-stream says nothing: no attribute.
		plain := gatewaytest.RandomBlob(t, 700)
		resp, body = objPut(t, base+"/v1/blobs", alice, plain, "Content-Type", "application/octet-stream")
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		p := decodeJSON[storeResponse](t, body)
		if info := objectInfo(t, base, p.ObjectID); len(info.Attributes) != 0 {
			t.Fatalf("octet-stream PUT made attributes %v", info.Attributes)
		}
		resp, _ = gatewaytest.Do(t, http.MethodGet, objURL(p.ObjectID), nil)
		// Without a cache-control attribute an object's bytes are
		// revalidated: its owner may edit or delete it.
		wantHeaders(t, "GET of an untyped object", resp, map[string]string{"Content-Type": "application/octet-stream", "Cache-Control": cacheRevalidate})

		// The content type as an attribute header alone types it too.
		typed := gatewaytest.RandomBlob(t, 800)
		resp, body = objPut(t, base+"/v1/blobs", alice, typed, "X-Weft-Attr-Content-Type", "text/plain; charset=utf-8")
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		tp := decodeJSON[storeResponse](t, body)
		if info := objectInfo(t, base, tp.ObjectID); len(info.Attributes) != 1 || info.Attributes["content-type"] != "text/plain; charset=utf-8" {
			t.Fatalf("attributes %v", info.Attributes)
		}
		resp, _ = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+tp.BlobID, nil)
		wantHeaders(t, "GET of a blob typed by its attribute", resp, map[string]string{"Content-Type": "text/plain; charset=utf-8"})

		// A file (chunks and a manifest) streamed by its object.
		csv := gatewaytest.RandomBlob(t, 3*fileChunk+5)
		resp, body = objPut(t, base+"/v1/blobs", alice, csv, "Content-Type", "text/csv", "X-Weft-Attr-Content-Language", "en")
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		f := decodeJSON[storeResponse](t, body)
		if f.Chunks != 4 || f.ObjectID == 0 {
			t.Fatalf("PUT of a file: %s", body)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(f.ObjectID), nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		wantHeaders(t, "GET of a file's object", resp, map[string]string{"Content-Type": "text/csv", "Content-Language": "en"})
		if !bytes.Equal(body, csv) {
			t.Fatal("GET of a file's object: other bytes")
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, objURL(f.ObjectID), nil, "Range", "bytes=-10")
		gatewaytest.Want(t, resp, body, http.StatusPartialContent)
		if !bytes.Equal(body, csv[len(csv)-10:]) || resp.Header.Get("Content-Language") != "en" {
			t.Fatalf("range of a file's object: %d bytes, headers %v", len(body), resp.Header)
		}

		// Bob stores the same bytes as text/plain: the objects disagree,
		// so the blob's GET names no type; each object's names its own.
		resp, body = objPut(t, base+"/v1/blobs", bob, png, "Content-Type", "text/plain")
		gatewaytest.Want(t, resp, body, http.StatusOK) // certified before: nothing sent
		b := decodeJSON[storeResponse](t, body)
		if b.BlobID != pngPut.BlobID || b.ObjectID == 0 || b.ObjectID == pngObj {
			t.Fatalf("bob's PUT of the same bytes: %s", body)
		}
		resp, _ = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID, nil)
		wantHeaders(t, "GET of a blob typed twice", resp, map[string]string{"Content-Type": "application/octet-stream"})
		resp, _ = gatewaytest.Do(t, http.MethodGet, objURL(b.ObjectID), nil)
		wantHeaders(t, "GET of bob's object", resp, map[string]string{"Content-Type": "text/plain", "Content-Disposition": ""})
		resp, body = gatewaytest.Do(t, http.MethodDelete, objURL(b.ObjectID), nil, gatewaytest.Bearer(bob)...)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if d := decodeJSON[deleteResponse](t, body); d.BlobEndsEpoch != 0 || d.ObjectID != b.ObjectID {
			t.Fatalf("deleting one of two objects: %s", body)
		}
		resp, _ = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID, nil)
		wantHeaders(t, "GET of the blob after bob's deletion", resp, map[string]string{"Content-Type": "image/png"})
	})

	t.Run("bad attributes", func(t *testing.T) {
		tiny := gatewaytest.RandomBlob(t, 300)
		long := strings.Repeat("v", 1025)
		var many []string
		for i := range 33 {
			many = append(many, "X-Weft-Attr-K"+strconv.Itoa(i), "v")
		}
		var heavy []string
		for i := range 5 {
			heavy = append(heavy, "X-Weft-Attr-K"+strconv.Itoa(i), strings.Repeat("v", 1000))
		}
		for _, c := range []struct {
			name   string
			query  string
			header []string
		}{
			{"permanent not a boolean", "?permanent=maybe", nil},
			{"permanent twice", "?permanent=true&permanent=false", nil},
			{"key with a bad character", "", []string{"X-Weft-Attr-Bad!key", "v"}},
			{"empty key", "", []string{"X-Weft-Attr-", "v"}},
			{"key too long", "", []string{"X-Weft-Attr-" + strings.Repeat("k", 65), "v"}},
			{"value too long", "", []string{"X-Weft-Attr-Note", long}},
			{"too many", "", many},
			{"too many bytes", "", heavy},
			{"a tab in a value", "", []string{"X-Weft-Attr-Note", "a\tb"}},
			// Two spellings of one key, which lower-casing would merge.
			{"one key twice", "", []string{"X-Weft-Attr-Label", "a", "x-weft-attr-label", "b"}},
			{"content type twice, disagreeing", "", []string{"Content-Type", "image/png", "X-Weft-Attr-Content-Type", "text/html"}},
			{"attribute content type not ASCII", "", []string{"X-Weft-Attr-Content-Type", "text/é"}},
			{"no token", "", nil},
		} {
			token := alice
			code := http.StatusBadRequest
			if c.name == "no token" {
				token, code = "", http.StatusUnauthorized
			}
			resp, body := objPut(t, base+"/v1/blobs"+c.query, token, tiny, c.header...)
			if resp.StatusCode != code {
				t.Fatalf("%s: %d %s, want %d", c.name, resp.StatusCode, body, code)
			}
			gatewaytest.Want(t, resp, body, code)
			wantUnregistered(t, cl, localID(t, tiny))
		}
		// Control characters that net/http refuses itself, and bytes that
		// are not UTF-8: refused all the same, nothing stored.
		addr := srv.Listener.Addr().String()
		for _, h := range []string{"X-Weft-Attr-Note: a\x01b", "X-Weft-Attr-Note: a\x7fb", "X-Weft-Attr-Note: \xff\xfe"} {
			resp, body, _, err := gatewaytest.RawExchange(t, addr, gatewaytest.PutHead(alice, h+"\r\nContent-Length: 300"), tiny, false)
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("PUT with %q: %v, %v %s", h, err, resp, body)
			}
			t.Logf("PUT with %q: %s %s", h, resp.Status, bytes.TrimSpace(body))
		}
		wantUnregistered(t, cl, localID(t, tiny))
		// The same headers on a quilt: refused before its body is read.
		resp, body := objPut(t, base+"/v1/quilts", alice, []byte("--x--\r\n"), "Content-Type", "multipart/form-data; boundary=x", "X-Weft-Attr-Bad!key", "v")
		gatewaytest.Want(t, resp, body, http.StatusBadRequest)
	})

	t.Run("object IDs", func(t *testing.T) {
		for _, bad := range []string{"abc", "0", "-1", "+1", "007", "1.5", "0x10", "18446744073709551616", "%20"} {
			for _, c := range []struct{ method, suffix string }{
				{http.MethodGet, ""}, {http.MethodHead, ""}, {http.MethodGet, "/info"}, {http.MethodDelete, ""}, {http.MethodPut, "/attributes"},
			} {
				var body io.Reader
				if c.method == http.MethodPut {
					body = strings.NewReader(`{"set":{"a":"b"}}`)
				}
				resp, respBody := gatewaytest.Do(t, c.method, base+"/v1/objects/"+bad+c.suffix, body, gatewaytest.Bearer(alice)...)
				gatewaytest.Want(t, resp, respBody, http.StatusBadRequest)
			}
		}
		unknown := objURL(1 << 40)
		for _, c := range []struct{ method, suffix string }{
			{http.MethodGet, ""}, {http.MethodGet, "/info"}, {http.MethodDelete, ""}, {http.MethodPut, "/attributes"},
		} {
			var body io.Reader
			if c.method == http.MethodPut {
				body = strings.NewReader(`{"set":{"a":"b"}}`)
			}
			resp, respBody := gatewaytest.Do(t, c.method, unknown+c.suffix, body, gatewaytest.Bearer(alice)...)
			gatewaytest.Want(t, resp, respBody, http.StatusNotFound)
		}
		for _, c := range []struct{ method, path, allow string }{
			{http.MethodPost, "/v1/objects/1", "GET, HEAD, DELETE"},
			{http.MethodPut, "/v1/objects/1", "GET, HEAD, DELETE"},
			{http.MethodDelete, "/v1/objects/1/info", "GET, HEAD"},
			{http.MethodGet, "/v1/objects/1/attributes", "PUT"},
		} {
			resp, body := gatewaytest.Do(t, c.method, base+c.path, nil)
			gatewaytest.Want(t, resp, body, http.StatusMethodNotAllowed)
			if resp.Header.Get("Allow") != c.allow {
				t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
			}
		}
	})

	t.Run("owner only", func(t *testing.T) {
		before := objectInfo(t, base, pngObj)
		stBefore, err := cl.Status(ctx, mustParseID(t, pngPut.BlobID))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			header []string
			code   int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"not a token", gatewaytest.Bearer("not-a-token"), http.StatusForbidden},
			{"another client", gatewaytest.Bearer(bob), http.StatusForbidden},
		} {
			resp, body := gatewaytest.Do(t, http.MethodDelete, objURL(pngObj), nil, c.header...)
			gatewaytest.Want(t, resp, body, c.code)
			resp, body = gatewaytest.Do(t, http.MethodPut, objURL(pngObj)+"/attributes", strings.NewReader(`{"set":{"label":"dogs"}}`), c.header...)
			gatewaytest.Want(t, resp, body, c.code)
		}
		after := objectInfo(t, base, pngObj)
		if after.Owner != before.Owner || after.EndEpoch != before.EndEpoch || after.Attributes["label"] != "Cats" {
			t.Fatalf("refused requests changed the object: %+v, was %+v", after, before)
		}
		if st, err := cl.Status(ctx, mustParseID(t, pngPut.BlobID)); err != nil || st.Objects != stBefore.Objects || st.Deleting || st.EndEpoch != stBefore.EndEpoch {
			t.Fatalf("refused deletions changed the blob: %+v, %v (was %+v)", st, err, stBefore)
		}

		// Malformed changes: 400, nothing changed.
		for _, bad := range []string{
			`{"set":{"Content-Type":"text/html","content-type":"image/png"}}`, // one key twice once lower-cased
			`{"set":{"bad key":"v"}}`,
			`{"set":{"note":"a\u0001b"}}`,
			`{"set":{"note":"` + strings.Repeat("v", 1025) + `"}}`,
			`{"set":{"note":"v"},"remove":["Note"]}`,
			`{"remove":["bad key"]}`,
			`{}`,
			`{"sett":{"a":"b"}}`,
			`{"set":{"a":"b"}} {"set":{"c":"d"}}`,
			`not json`,
			``,
		} {
			resp, body := gatewaytest.Do(t, http.MethodPut, objURL(pngObj)+"/attributes", strings.NewReader(bad), gatewaytest.Bearer(alice)...)
			gatewaytest.Want(t, resp, body, http.StatusBadRequest)
		}
		// Each change within bounds, but the object's whole set would not
		// be: the control plane refuses it, 400.
		var set []string
		for i := range 30 {
			set = append(set, `"k`+strconv.Itoa(i)+`":"v"`)
		}
		resp, body := gatewaytest.Do(t, http.MethodPut, objURL(pngObj)+"/attributes", strings.NewReader(`{"set":{`+strings.Join(set, ",")+`}}`), gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusBadRequest)
		big := bytes.Repeat([]byte(" "), maxAttributesBody+1)
		resp, body = gatewaytest.Do(t, http.MethodPut, objURL(pngObj)+"/attributes", bytes.NewReader(big), gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusRequestEntityTooLarge)
		if now := objectInfo(t, base, pngObj); len(now.Attributes) != len(before.Attributes) || now.Attributes["label"] != "Cats" {
			t.Fatalf("refused changes changed the attributes: %v", now.Attributes)
		}

		// The owner's change: keys lower-cased, removals applied, served.
		resp, body = gatewaytest.Do(t, http.MethodPut, objURL(pngObj)+"/attributes",
			strings.NewReader(`{"set":{"Label":"dogs","cache-control":"no-store"},"remove":["Content-Disposition"]}`), gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		now := objectInfo(t, base, pngObj)
		if now.Attributes["label"] != "dogs" || now.Attributes["cache-control"] != "no-store" || now.Attributes["content-disposition"] != "" ||
			now.Attributes["content-type"] != "image/png" || len(now.Attributes) != 3 {
			t.Fatalf("attributes after the owner's change: %v", now.Attributes)
		}
		resp, _ = gatewaytest.Do(t, http.MethodHead, objURL(pngObj), nil)
		wantHeaders(t, "HEAD after the change", resp, map[string]string{"Cache-Control": "no-store", "Content-Disposition": "", "Content-Type": "image/png"})
	})

	t.Run("permanent", func(t *testing.T) {
		perm := gatewaytest.RandomBlob(t, 900)
		resp, body := objPut(t, base+"/v1/blobs?permanent=true", alice, perm)
		gatewaytest.Want(t, resp, body, http.StatusCreated)
		p := decodeJSON[storeResponse](t, body)
		if info := objectInfo(t, base, p.ObjectID); info.Deletable {
			t.Fatalf("a permanent PUT made %+v", info)
		}
		used := gwUsed(t, ctx, nw, alice)
		resp, body = gatewaytest.Do(t, http.MethodDelete, objURL(p.ObjectID), nil, gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusConflict)
		if !strings.Contains(string(body), "permanent") {
			t.Fatalf("409 without the reason: %s", body)
		}
		if info := objectInfo(t, base, p.ObjectID); info.Deletable || gwUsed(t, ctx, nw, alice) != used {
			t.Fatalf("a refused deletion changed the object or the quota: %+v", info)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+p.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
	})

	t.Run("deleted", func(t *testing.T) {
		info := objectInfo(t, base, pngObj)
		used := gwUsed(t, ctx, nw, alice)
		epoch := info.CreatedEpoch // no epoch has passed since the PUT
		resp, body := gatewaytest.Do(t, http.MethodDelete, objURL(pngObj), nil, gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		d := decodeJSON[deleteResponse](t, body)
		if want := info.StoredBytes * (info.EndEpoch - epoch - 1); d.Refund != want || d.BlobEndsEpoch != epoch+1 || d.ObjectID != pngObj {
			t.Fatalf("deletion %+v, want refund %d and the blob ending at %d", d, want, epoch+1)
		}
		if got := gwUsed(t, ctx, nw, alice); got != used-d.Refund {
			t.Fatalf("quota used %d after a refund of %d, was %d", got, d.Refund, used)
		}
		for _, c := range []struct{ method, suffix string }{{http.MethodGet, ""}, {http.MethodGet, "/info"}, {http.MethodDelete, ""}} {
			resp, body := gatewaytest.Do(t, c.method, objURL(pngObj)+c.suffix, nil, gatewaytest.Bearer(alice)...)
			gatewaytest.Want(t, resp, body, http.StatusNotFound)
		}
		// Readable to the end of the epoch, flagged as deleting.
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if st := decodeJSON[statusResponse](t, body); !st.Deleting || st.Objects != 0 || st.EndEpoch != epoch+1 {
			t.Fatalf("status of a blob whose last object was deleted: %s", body)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID, nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)

		if _, err := nw.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body = gatewaytest.Do(t, method, base+"/v1/blobs/"+pngPut.BlobID, nil)
			gatewaytest.Want(t, resp, body, http.StatusGone)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID, nil, "Range", "bytes=0-9")
		gatewaytest.Want(t, resp, body, http.StatusGone)
		if !strings.Contains(string(body), "deleted") {
			t.Fatalf("410 without the reason: %s", body)
		}
		resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+pngPut.BlobID+"/status", nil)
		gatewaytest.Want(t, resp, body, http.StatusOK)
		if st := decodeJSON[statusResponse](t, body); st.Status != client.StatusDeleted {
			t.Fatalf("status after the epoch: %s", body)
		}
		// Extending it is too late as well.
		resp, body = gatewaytest.Do(t, http.MethodPost, base+"/v1/blobs/"+pngPut.BlobID+"/extend?epochs=1", nil, gatewaytest.Bearer(alice)...)
		gatewaytest.Want(t, resp, body, http.StatusGone)
	})

	var m dto.Metric
	if err := g.metrics.requests.WithLabelValues("DELETE /v1/objects/{object}", "DELETE", "403").Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 2 {
		t.Fatalf("metrics counted %v DELETEs refused 403, want 2", v)
	}
}

// The object routes' answers are JSON a caller can decode.
func TestObjectResponseJSON(t *testing.T) {
	b, err := json.Marshal(deleteResponse{ObjectID: 7, Refund: 10, BlobEndsEpoch: 3})
	if err != nil || string(b) != `{"object_id":7,"refund":10,"blob_ends_epoch":3}` {
		t.Fatalf("%s, %v", b, err)
	}
}
