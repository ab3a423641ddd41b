package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftstore/weft/crypto"
)

// Caching and conditional requests (RFC 9110 §13, RFC 9111). A blob ID
// names its bytes for good, so a blob's (and a file's, and a quilt
// file's) bytes are cacheable for a year, their ETag the ID; JSON that
// changes (a blob's status, an object) must be revalidated, its ETag a
// hash of the body.
const (
	// cacheImmutable is the Cache-Control of content-addressed bytes.
	cacheImmutable = "public, max-age=31536000, immutable"
	// cacheRevalidate is that of answers that change: a cache may keep
	// them, but asks (If-None-Match) before each use.
	cacheRevalidate = "no-cache"
	// cacheAPI is that of the API's description (GET /v1/api): it
	// changes only with the gateway's version.
	cacheAPI = "public, max-age=3600"
)

// etag is the strong entity tag of a blob's bytes: its ID.
func etag(id crypto.BlobID) string { return `"` + id.String() + `"` }

// bodyETag is the strong entity tag of an answer's body: a hash of it.
func bodyETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// etagMatches reports whether an If-None-Match header names tag, by the
// weak comparison RFC 9110 §13.1.2 asks for it ("*" names any).
func etagMatches(header, tag string) bool {
	return matchETag(header, tag, false)
}

// matchETag reports whether a list of entity tags (If-Match,
// If-None-Match) names tag: "*", or one equal to it — by the strong
// comparison (If-Match) a weak tag equals none, by the weak one its
// W/ is ignored. A malformed list names nothing past the fault.
func matchETag(header, tag string, strong bool) bool {
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for rest := header; ; {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			return false
		}
		weak := strings.HasPrefix(rest, "W/")
		if weak {
			rest = rest[2:]
		}
		if !strings.HasPrefix(rest, `"`) {
			return false
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return false
		}
		t := rest[:end+2]
		rest = rest[end+2:]
		if t == tag && !(strong && weak) {
			return true
		}
	}
}

// checkPreconditions evaluates a GET's or HEAD's If-Match and
// If-None-Match against tag, the current representation's ETag (RFC 9110
// §13.2.2; the headers describing it set already). It answers, and
// returns false, when the request is not to be served: If-Match naming
// no current tag strongly is 412, If-None-Match naming it (weakly) is 304
// with the representation's headers (ETag, Cache-Control, …: a cache
// refreshes its copy from them). Other methods are served as if the
// headers were absent: nothing the API changes has an ETag to compare.
func checkPreconditions(w http.ResponseWriter, r *http.Request, tag string) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	if im := r.Header.Get("If-Match"); im != "" && !matchETag(im, tag, true) {
		writeError(w, r, http.StatusPreconditionFailed, errors.New("If-Match names none of this resource's current entity tags (compared strongly): it changed, or is another"))
		return false
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, tag) {
		h := w.Header()
		h.Del("Content-Length")
		h.Del("Content-Range")
		w.WriteHeader(http.StatusNotModified)
		return false
	}
	return true
}

// writeJSONTagged answers a GET or HEAD with v as JSON, 200, its ETag a
// hash of the body and cacheControl its Cache-Control, or 304 or 412 as
// the request's preconditions say.
func writeJSONTagged(w http.ResponseWriter, r *http.Request, v any, cacheControl string) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings and numbers come here
	}
	writeBodyTagged(w, r, append(b, '\n'), "application/json", cacheControl)
}

// writeBodyTagged answers a GET or HEAD with body, of type contentType,
// as writeJSONTagged does.
func writeBodyTagged(w http.ResponseWriter, r *http.Request, body []byte, contentType, cacheControl string) {
	h := w.Header()
	h.Set("ETag", bodyETag(body))
	h.Set("Cache-Control", cacheControl)
	if !checkPreconditions(w, r, h.Get("ETag")) {
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
