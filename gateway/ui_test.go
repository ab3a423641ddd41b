package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/gateway/gatewaytest"
	"github.com/weftstore/weft/netview"
)

// With Config.UI the gateway serves the status page and its JSON; without,
// neither exists.
func TestStatusPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "")
	g, err := New(Config{Client: cl, Control: []string{nw.ControlAddr}, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(g)
	defer srv.Close()

	resp, body := gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/network", nil)
	var s netview.Snapshot
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil || len(s.Nodes) != 4 || len(s.Owners) != gwShards || s.Epoch != 1 {
		t.Fatalf("GET /v1/network: %s %s", resp.Status, body)
	}
	resp, _ = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/network", nil, "If-None-Match", resp.Header.Get("ETag"))
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %s", resp.Status)
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/ui", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/" || !strings.Contains(string(body), `id="shard-map"`) ||
		!strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /ui → %s: %s", resp.Request.URL.Path, resp.Status)
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/ui/app.js", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || len(body) == 0 {
		t.Fatalf("GET /ui/app.js: %s", resp.Status)
	}
	for _, path := range []string{"/v1/network", "/ui/"} {
		resp, body = gatewaytest.Do(t, http.MethodPost, srv.URL+path, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(string(body), `"UNIMPLEMENTED"`) {
			t.Fatalf("POST %s: %s %s", path, resp.Status, body)
		}
	}

	// Off (the library's default): the routes are the API's 404s.
	off, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	offSrv := httptest.NewServer(off)
	defer offSrv.Close()
	for _, path := range []string{"/v1/network", "/ui/"} {
		resp, body := gatewaytest.Do(t, http.MethodGet, offSrv.URL+path, nil)
		gatewaytest.Want(t, resp, body, http.StatusNotFound)
	}
	// On without the voters' addresses: refused at New.
	if _, err := New(Config{Client: cl, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, UI: true}); err == nil {
		t.Fatal("UI without Control was accepted")
	}
}
