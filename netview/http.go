package netview

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// The page's assets, embedded in the binary: no CDN, nothing fetched from
// anywhere but the server that serves the page.
//
//go:embed ui
var uiFiles embed.FS

// Routes are the paths the handlers are meant to be mounted at.
const (
	// JSONPath serves the snapshot (GET, HEAD).
	JSONPath = "/v1/network"
	// UIPath redirects to UIPrefix, which serves the page and its assets.
	UIPath   = "/ui"
	UIPrefix = "/ui/"
)

// contentSecurityPolicy lets the page load its own script, style and
// icon and fetch its own JSON, nothing else; nobody may frame it.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// errorBody is every error's JSON.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Details []any  `json:"details"` // always a list (Walrus's clients refuse an error without one)
}

// statusNames are the error statuses this package answers with, named as
// the gateway's (google.rpc.Code).
var statusNames = map[int]string{
	http.StatusNotFound:            "NOT_FOUND",
	http.StatusMethodNotAllowed:    "UNIMPLEMENTED",
	http.StatusServiceUnavailable:  "UNAVAILABLE",
	http.StatusInternalServerError: "INTERNAL",
}

// WriteError answers an error as {"error": {"code", "status", "message",
// "details"}}, the gateway's shape, never to be cached.
func WriteError(w http.ResponseWriter, code int, msg string) {
	name := statusNames[code]
	if name == "" {
		name = strings.ToUpper(strings.ReplaceAll(http.StatusText(code), " ", "_"))
	}
	b, _ := json.Marshal(errorBody{errorDetail{Code: code, Status: name, Message: msg, Details: []any{}}})
	b = append(b, '\n')
	h := w.Header()
	for _, k := range []string{"ETag", "Content-Encoding", "Last-Modified"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// onlyGet answers 405 to anything but GET and HEAD; false: answered.
func onlyGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s (allowed: GET, HEAD)", r.Method, r.URL.Path))
	return false
}

// JSONHandler serves the snapshot at GET /v1/network: the cached one, or
// one refreshed for this request and every other asking meanwhile. ETag
// and If-None-Match make an unchanged network a 304; gzip when the
// caller takes it. 503 (with Retry-After) when no voter answers.
func (c *Collector) JSONHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !onlyGet(w, r) {
			return
		}
		v, err := c.current(r.Context())
		if err == nil {
			err = v.err
		}
		if err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(c.cfg.Interval.Seconds())))))
			WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", v.etag)
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Content-Type-Options", "nosniff")
		if etagMatches(r.Header.Get("If-None-Match"), v.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		body := v.body
		if acceptsGzip(r) {
			body = v.gz
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (without q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// asset is one embedded file with its headers' values.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

var assets = func() map[string]asset {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	out := map[string]asset{}
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := types[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[strings.TrimPrefix(p, "ui/")] = asset{body: b, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // the files are compiled in
	}
	return out
}()

// UIHandler serves the page: /ui redirects to /ui/, which serves
// index.html; /ui/NAME serves the other assets. Every answer says the
// page may load nothing but its own assets and JSON (CSP default-src
// 'self'); the page only reads.
func UIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !onlyGet(w, r) {
			return
		}
		p := r.URL.Path
		if p == UIPath {
			// Relative, so that the page works behind a proxy that mounts
			// it under a prefix.
			w.Header().Set("Location", "ui/")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		name, ok := strings.CutPrefix(p, UIPrefix)
		if !ok {
			WriteError(w, http.StatusNotFound, "no such page: "+p)
			return
		}
		if name == "" {
			name = "index.html"
		}
		a, found := assets[name]
		if !found {
			WriteError(w, http.StatusNotFound, "no such page: "+p)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(a.body)
		}
	})
}

// Register mounts the page and the JSON on mux: GET /v1/network, GET /ui
// and /ui/… (other methods: 405).
func (c *Collector) Register(mux *http.ServeMux) {
	mux.Handle(JSONPath, c.JSONHandler())
	mux.Handle(UIPath, UIHandler())
	mux.Handle(UIPrefix, UIHandler())
}
