package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

type quiltPart struct {
	name, contentType string
	data              []byte
}

func multipartBody(t *testing.T, parts []quiltPart) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+p.name+`"`)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// A multipart PUT /v1/quilts stores its parts as one quilt; each file's ID
// reads back through GET /v1/blobs/{file-id} with its content type (HEAD
// and If-None-Match too); an unknown file is 404; two parts of one name
// are 400, a body that is not multipart 415, no token 401 — and those
// store nothing.
func TestGatewayQuilts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	g, err := New(Config{Client: gwClient(t, nw, ""), MaxBlobSize: 1 << 20, Epochs: gwEpochs, WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	base, token := srv.URL, nw.ClientToken
	auth := []string{"Authorization", "Bearer " + token}

	parts := []quiltPart{
		{"index.html", "text/html", gatewaytest.RandomBlob(t, 3000)},
		{"logo.svg", "image/svg+xml", gatewaytest.RandomBlob(t, 700)},
		{"data.bin", "", gatewaytest.RandomBlob(t, 20_000)},
	}
	body, ct := multipartBody(t, parts)
	resp, raw := gatewaytest.Do(t, http.MethodPut, base+"/v1/quilts?permanent=true", body, append([]string{"Content-Type", ct, "X-Weft-Attr-Label", "site"}, auth...)...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT quilt: %s %s", resp.Status, raw)
	}
	var qr quiltResponse
	if err := json.Unmarshal(raw, &qr); err != nil || len(qr.Files) != len(parts) || qr.ObjectID == 0 {
		t.Fatalf("PUT quilt answered %s (%v)", raw, err)
	}
	// The caller's object of the quilt: permanent, labelled, and not
	// typed by the request's multipart Content-Type.
	if info := objectInfo(t, base, qr.ObjectID); info.BlobID != qr.QuiltID || info.Deletable || len(info.Attributes) != 1 || info.Attributes["label"] != "site" {
		t.Fatalf("the quilt's object: %+v", info)
	}
	for i, f := range qr.Files {
		resp, got := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+f.ID, nil)
		want := parts[i].contentType
		if want == "" {
			want = "application/octet-stream"
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, parts[i].data) || resp.Header.Get("Content-Type") != want || f.Name != parts[i].name {
			t.Fatalf("GET %s (%s): %s, %d bytes, type %q", f.ID, f.Name, resp.Status, len(got), resp.Header.Get("Content-Type"))
		}
		resp, _ = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+f.ID, nil)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(parts[i].data)) {
			t.Fatalf("HEAD %s: %s, length %d", f.ID, resp.Status, resp.ContentLength)
		}
		tag := resp.Header.Get("ETag")
		if resp.Header.Get("Cache-Control") != cacheImmutable || tag != `"`+f.ID+`"` {
			t.Fatalf("HEAD %s: headers %v", f.ID, resp.Header)
		}
		resp, _ = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+f.ID, nil, "If-None-Match", tag)
		if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != tag || resp.Header.Get("Cache-Control") != cacheImmutable {
			t.Fatalf("conditional GET %s: %s %v", f.ID, resp.Status, resp.Header)
		}
		resp, got = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+f.ID, nil, "If-Match", tag)
		gatewaytest.Want(t, resp, got, http.StatusOK)
		resp, got = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+f.ID, nil, "If-Match", `"`+qr.QuiltID+`"`)
		gatewaytest.Want(t, resp, got, http.StatusPreconditionFailed)
	}
	quilt, err := crypto.ParseBlobID(qr.QuiltID)
	if err != nil {
		t.Fatal(err)
	}
	missing := client.QuiltFileID{Quilt: quilt, Index: 3}
	if resp, raw := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+missing.String(), nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("file 3 of 3: %s %s", resp.Status, raw)
	}

	q, err := gwClient(t, nw, token).Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dup, dupCT := multipartBody(t, []quiltPart{{"a", "", []byte("1")}, {"a", "", []byte("2")}})
	for _, tc := range []struct {
		what   string
		body   *bytes.Buffer
		header []string
		code   int
	}{
		{"two parts named a", dup, append([]string{"Content-Type", dupCT}, auth...), http.StatusBadRequest},
		{"not multipart", bytes.NewBufferString("x"), append([]string{"Content-Type", "text/plain"}, auth...), http.StatusUnsupportedMediaType},
		{"no token", bytes.NewBufferString("x"), []string{"Content-Type", dupCT}, http.StatusUnauthorized},
	} {
		if resp, raw := gatewaytest.Do(t, http.MethodPut, base+"/v1/quilts", tc.body, tc.header...); resp.StatusCode != tc.code {
			t.Errorf("%s: %s %s, want %d", tc.what, resp.Status, raw, tc.code)
		}
	}
	if after, err := gwClient(t, nw, token).Quota(ctx); err != nil || after.Used != q.Used {
		t.Fatalf("refused quilts charged %d (%v)", after.Used-q.Used, err)
	}
}
