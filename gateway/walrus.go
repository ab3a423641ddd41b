package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// Walrus's HTTP dialect (issue #22): the publisher and aggregator routes
// and answers that existing Walrus HTTP clients parse, as Walrus's OpenAPI
// descriptions publish them (testdata/walrus holds the copies the tests
// replay), mounted under walrusPrefix onto weft's own handlers. A client
// whose publisher and aggregator URL is http://gateway/walrus works
// unchanged, but for the client token every store needs (an authenticated
// Walrus publisher takes "Authorization: Bearer" too).
//
//   - PUT /walrus/v1/blobs?epochs=N&permanent=…&deletable=…: weft's PUT
//     /v1/blobs (files of any size included), answered 200 with Walrus's
//     BlobStoreResult: newlyCreated, or alreadyCertified when every part
//     of the content was certified before the store.
//   - GET /walrus/v1/blobs/{blobId}: weft's GET /v1/blobs/{id} (Range too).
//   - GET /walrus/v1/blobs/{blobId}/byte-range?start=S&length=L: L bytes
//     at S, 200, from the slivers that hold them; a range not wholly in
//     the blob is 400, as Walrus answers it.
//   - GET /walrus/v1/blobs/by-object-id/{objectId}: weft's GET
//     /v1/objects/{object}, the object ID written as Walrus writes a Sui
//     object ID (walrusObjectID).
//   - GET /walrus/v1/blobs/by-quilt-patch-id/{fileId} and
//     /walrus/v1/blobs/by-quilt-id/{quiltId}/{identifier}: a file of a
//     quilt stored by weft's PUT /v1/quilts (weft's own file IDs).
//   - GET /walrus/status: "OK".
//
// Errors are Walrus's Status (Google's AIP-193): {"error": {"status",
// "code", "message", "details": [ErrorInfo]}}, written here whatever weft's
// own error shape is: the handlers' answers pass through a walrusWriter,
// which holds an error answer and rewrites it (walrusFailureFor).

// walrusPrefix is where the dialect is mounted.
const walrusPrefix = "/walrus"

// The domains of the ErrorInfo of a Walrus error: Walrus's daemon's for
// the reasons it defines (so that a client matching on reason and domain
// finds them), weft's for the rest.
const (
	walrusDaemonDomain = "daemon.walrus.space"
	walrusWeftDomain   = "gateway.weft"
)

// walrusEncodingType is the only encoding type Walrus's description
// lists. A store may name it (it is what a Walrus client sends when it
// names one); weft stores in its network's own encoding either way.
const walrusEncodingType = "RS2"

// maxHeldError bounds an error answer held to be rewritten.
const maxHeldError = 64 << 10

// walrusRoute is the kind of request a Walrus route serves: it decides how
// weft's statuses map to Walrus's (walrusFailureFor).
type walrusRoute int

const (
	walrusStore     walrusRoute = iota // PUT /v1/blobs
	walrusRead                         // a blob's or an object's bytes
	walrusByteRange                    // …/byte-range
	walrusQuiltRead                    // a quilt file
)

// walrusRoutes mounts the dialect. Go's ServeMux refuses patterns that
// overlap with neither more specific (…/by-object-id/{object} against
// …/{id}/byte-range), so the two-segment routes share one pattern and
// walrusBlobSubroute dispatches them.
func (g *Gateway) walrusRoutes() {
	p := walrusPrefix
	g.mux.HandleFunc("PUT "+p+"/v1/blobs", g.walrus(walrusStore, g.walrusPutBlob))
	// GET patterns also match HEAD.
	g.mux.HandleFunc("GET "+p+"/v1/blobs/{id}", g.walrus(walrusRead, g.walrusGetBlob))
	g.mux.HandleFunc("GET "+p+"/v1/blobs/{id}/{sub}", g.walrusBlobSubroute)
	g.mux.HandleFunc("GET "+p+"/v1/blobs/by-quilt-id/{quilt}/{identifier}", g.walrus(walrusQuiltRead, g.walrusGetQuiltFileByName))
	g.mux.HandleFunc("GET "+p+"/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("OK"))
	})
	for pattern, allow := range map[string]string{
		p + "/v1/blobs":                                  "PUT",
		p + "/v1/blobs/{id}":                             "GET, HEAD",
		p + "/v1/blobs/{id}/{sub}":                       "GET, HEAD",
		p + "/v1/blobs/by-quilt-id/{quilt}/{identifier}": "GET, HEAD",
		p + "/status":                                    "GET, HEAD",
	} {
		notAllowed := methodNotAllowed(allow)
		g.mux.HandleFunc(pattern, g.walrus(walrusRead, func(w http.ResponseWriter, r *http.Request, _ *walrusWriter) { notAllowed(w, r) }))
		// CORS preflights, as on weft's own routes (cors.go).
		g.mux.HandleFunc(http.MethodOptions+" "+pattern, g.options(allow))
	}
	g.mux.HandleFunc(p+"/", g.walrus(walrusRead, walrusNoSuchEndpoint))
}

// walrusBlobSubroute dispatches GET /walrus/v1/blobs/{id}/{sub}: the
// byte-range route, or {id} naming how {sub} identifies the content.
func (g *Gateway) walrusBlobSubroute(w http.ResponseWriter, r *http.Request) {
	switch id, sub := r.PathValue("id"), r.PathValue("sub"); {
	case id == "by-object-id":
		g.walrus(walrusRead, g.walrusGetObject)(w, r)
	case id == "by-quilt-patch-id":
		g.walrus(walrusQuiltRead, g.walrusGetQuiltPatch)(w, r)
	case sub == "byte-range":
		g.walrus(walrusByteRange, g.walrusGetByteRange)(w, r)
	default:
		g.walrus(walrusRead, walrusNoSuchEndpoint)(w, r)
	}
}

func walrusNoSuchEndpoint(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	ww.fail(walrusFailure{
		code: http.StatusNotFound, status: "NOT_FOUND", reason: "NO_SUCH_ENDPOINT", domain: walrusWeftDomain,
		message: fmt.Sprintf("no such endpoint: %s %s (the Walrus routes are PUT %[3]s/v1/blobs, GET %[3]s/v1/blobs/{blob_id}, "+
			"GET %[3]s/v1/blobs/{blob_id}/byte-range, GET %[3]s/v1/blobs/by-object-id/{object_id}, "+
			"GET %[3]s/v1/blobs/by-quilt-patch-id/{id}, GET %[3]s/v1/blobs/by-quilt-id/{quilt_id}/{identifier}, GET %[3]s/status)",
			r.Method, r.URL.Path, walrusPrefix),
	})
}

// walrus adapts a handler of the dialect: what it answers goes through a
// walrusWriter (errors rewritten into Walrus's shape), under a
// recordingWriter of its own, so that weft's handlers it calls still find
// one (the request log's error, the body bytes read, and the abort of a
// file cut short), which is handed on to the gateway's.
func (g *Gateway) walrus(route walrusRoute, h func(http.ResponseWriter, *http.Request, *walrusWriter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ww := &walrusWriter{w: w, route: route}
		in := &recordingWriter{ResponseWriter: ww, status: http.StatusOK}
		h(in, r, ww)
		rec := recorderOf(w)
		if rec != nil {
			rec.bodyRead = in.bodyRead
			rec.err = in.err
			if ww.refused != nil {
				rec.err = errors.New(ww.refused.message)
			}
		}
		ww.finish()
		if rec != nil && in.abort && ww.passed() {
			// A file's later chunk failed after its first bytes went out.
			rec.abort = true
		}
	}
}

// walrusFailure is one Walrus error answer.
type walrusFailure struct {
	code           int    // the HTTP status, and the body's "code"
	status         string // UPPER_SNAKE_CASE, Walrus's name for code where it has one
	reason, domain string // the ErrorInfo's
	message        string
	blobID         string // a failed store's blob ID, if known: ErrorInfo metadata
}

// The JSON of a Walrus error (Walrus's Status).
type walrusStatusBody struct {
	Error walrusStatusError `json:"error"`
}

type walrusStatusError struct {
	Status  string            `json:"status"`
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Details []walrusErrorInfo `json:"details"`
}

type walrusErrorInfo struct {
	Type     string            `json:"@type"` // always "ErrorInfo"
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata"`
}

// walrusWriter stands between a weft handler and the answer. A success
// status goes through (check may rewrite it, or refuse it); an error
// status and its body are held, and finish writes them in Walrus's shape.
type walrusWriter struct {
	w       http.ResponseWriter // the answer
	route   walrusRoute
	status  int  // the handler's status, once written
	started bool // the handler wrote a status
	held    bool // an error answer is held: finish rewrites it
	body    []byte
	// refused replaces the answer with this error (held, and its body's
	// writes fail, which stops a file's stream).
	refused *walrusFailure
	// check, if set, sees a success status and the headers before they
	// go out: it returns the status to send, or the error to send
	// instead.
	check func(code int, h http.Header) (int, *walrusFailure)
}

var errWalrusRefused = errors.New("gateway: the answer was replaced by an error")

func (ww *walrusWriter) Header() http.Header         { return ww.w.Header() }
func (ww *walrusWriter) Unwrap() http.ResponseWriter { return ww.w }

func (ww *walrusWriter) WriteHeader(code int) {
	if ww.started {
		return
	}
	ww.started, ww.status = true, code
	if code >= 400 {
		ww.held = true
		return
	}
	if ww.check != nil {
		c, fail := ww.check(code, ww.w.Header())
		if fail != nil {
			ww.held, ww.refused = true, fail
			return
		}
		code = c
	}
	ww.w.WriteHeader(code)
}

func (ww *walrusWriter) Write(p []byte) (int, error) {
	if !ww.started {
		ww.WriteHeader(http.StatusOK)
	}
	switch {
	case ww.refused != nil:
		return 0, errWalrusRefused
	case ww.held:
		if len(ww.body)+len(p) > maxHeldError {
			return 0, errors.New("gateway: an error answer too long to hold")
		}
		ww.body = append(ww.body, p...)
		return len(p), nil
	}
	return ww.w.Write(p)
}

// fail answers f instead of whatever the handler writes.
func (ww *walrusWriter) fail(f walrusFailure) {
	ww.started, ww.held, ww.refused = true, true, &f
}

// passed reports whether the handler's answer went out as it wrote it.
func (ww *walrusWriter) passed() bool { return ww.started && !ww.held }

// finish writes a held (or missing) answer in Walrus's shape.
func (ww *walrusWriter) finish() {
	switch {
	case ww.refused != nil:
		writeWalrusError(ww.w, *ww.refused)
	case ww.held:
		msg, blobID := weftErrorMessage(ww.body, ww.status)
		f := walrusFailureFor(ww.route, ww.status, msg)
		f.blobID = blobID
		writeWalrusError(ww.w, f)
	case !ww.started:
		// As ServeHTTP would, but in the dialect's shape.
		writeWalrusError(ww.w, walrusFailureFor(ww.route, http.StatusInternalServerError, "the gateway wrote no answer (a bug)"))
	}
}

// weftErrorMessage reads the message (and a failed store's blob ID) of a
// weft error body: {"error": "message", "blob_id": …}, or with the error
// an object with a "message".
func weftErrorMessage(body []byte, code int) (msg, blobID string) {
	msg = http.StatusText(code)
	var e struct {
		Error  json.RawMessage `json:"error"`
		BlobID string          `json:"blob_id"`
	}
	if json.Unmarshal(body, &e) != nil {
		return msg, ""
	}
	var s string
	var o struct {
		Message string `json:"message"`
		BlobID  string `json:"blob_id"`
	}
	switch {
	case json.Unmarshal(e.Error, &s) == nil && s != "":
		msg = s
	case json.Unmarshal(e.Error, &o) == nil && o.Message != "":
		msg = o.Message
		if e.BlobID == "" {
			e.BlobID = o.BlobID
		}
	}
	return msg, e.BlobID
}

// walrusFailureFor maps weft's status of an answer on a route to Walrus's
// error. The HTTP status stays weft's but where Walrus's description
// answers the same case with another: an unreadable blob (gone 410, or
// registered but not certified 409) is 404, as Walrus calls a blob it
// cannot serve not found; a read of a blob over this gateway's limit is
// 403 SIZE_EXCEEDED; a byte-range outside the blob 400; weft's 502 (an
// unexpected failure) 500; a store that the registry changed under (409)
// 400 FAILED_PRECONDITION. The status name is from Walrus's table where it
// has the code, else the HTTP reason phrase in UPPER_SNAKE_CASE.
func walrusFailureFor(route walrusRoute, code int, msg string) walrusFailure {
	f := walrusFailure{code: code, message: msg, domain: walrusWeftDomain}
	daemon := func(reason string) { f.reason, f.domain = reason, walrusDaemonDomain }
	switch code {
	case http.StatusBadRequest:
		f.status = "INVALID_ARGUMENT"
		daemon("MALFORMED_REQUEST")
	case http.StatusUnauthorized:
		f.status, f.reason = "UNAUTHENTICATED", "CLIENT_TOKEN_REQUIRED"
	case http.StatusForbidden:
		f.status, f.reason = "PERMISSION_DENIED", "CLIENT_TOKEN_REFUSED"
	case http.StatusNotFound, http.StatusGone:
		f.code, f.status = http.StatusNotFound, "NOT_FOUND"
		daemon("BLOB_NOT_FOUND")
		if route == walrusQuiltRead {
			daemon("QUILT_PATCH_NOT_FOUND")
		}
	case http.StatusConflict:
		if route == walrusStore {
			f.code, f.status, f.reason = http.StatusBadRequest, "FAILED_PRECONDITION", "BLOB_STATE_CHANGED"
		} else {
			f.code, f.status = http.StatusNotFound, "NOT_FOUND"
			daemon("BLOB_NOT_FOUND")
		}
	case http.StatusRequestedRangeNotSatisfiable:
		f.status = "RANGE_NOT_SATISFIABLE"
		if route == walrusByteRange {
			f.code, f.status = http.StatusBadRequest, "INVALID_ARGUMENT"
		}
		daemon("INVALID_BYTE_RANGE")
	case http.StatusTooManyRequests:
		f.status, f.reason = "RESOURCE_EXHAUSTED", "TOO_MANY_REQUESTS"
	case http.StatusInternalServerError, http.StatusBadGateway:
		f.code, f.status, f.reason = http.StatusInternalServerError, "INTERNAL", "INTERNAL_ERROR"
	case http.StatusServiceUnavailable:
		f.status, f.reason = "UNAVAILABLE", "UNAVAILABLE"
		if route != walrusStore {
			daemon("BLOB_UNAVAILABLE")
		}
	case http.StatusGatewayTimeout:
		f.status, f.reason = "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"
	case http.StatusInsufficientStorage:
		if route == walrusStore {
			f.status, f.reason = "INSUFFICIENT_STORAGE", "QUOTA_EXCEEDED"
		} else {
			f.code, f.status = http.StatusForbidden, "SIZE_EXCEEDED"
			daemon("BLOB_TOO_LARGE")
		}
	case statusClientClosed:
		f.status, f.reason = "CANCELLED", "CANCELLED"
	default:
		f.status = strings.ToUpper(strings.ReplaceAll(http.StatusText(code), " ", "_"))
		f.status = strings.ReplaceAll(strings.ReplaceAll(f.status, "-", "_"), "'", "")
		f.reason = f.status
	}
	return f
}

// writeWalrusError answers f in Walrus's shape, without the headers that
// describe content the answer does not carry (a 416 keeps its
// Content-Range: the blob's size).
func writeWalrusError(w http.ResponseWriter, f walrusFailure) {
	if rec := recorderOf(w); rec != nil && rec.err == nil {
		rec.err = errors.New(f.message)
	}
	h := w.Header()
	for _, k := range []string{"ETag", "Content-Length", "Accept-Ranges", "Location", "Cache-Control", "X-Content-Type-Options", "X-Quilt-Patch-Identifier"} {
		h.Del(k)
	}
	for _, k := range servedHeaders {
		h.Del(k)
	}
	if f.code != http.StatusRequestedRangeNotSatisfiable {
		h.Del("Content-Range")
	}
	info := walrusErrorInfo{Type: "ErrorInfo", Reason: f.reason, Domain: f.domain, Metadata: map[string]string{}}
	if f.blobID != "" {
		info.Metadata["blob_id"] = f.blobID
	}
	writeJSON(w, f.code, walrusStatusBody{Error: walrusStatusError{
		Status: f.status, Code: f.code, Message: f.message, Details: []walrusErrorInfo{info},
	}})
}

// walrusBadRequest is a 400 of the dialect's own checks.
func walrusBadRequest(reason, domain, format string, args ...any) walrusFailure {
	return walrusFailure{code: http.StatusBadRequest, status: "INVALID_ARGUMENT", reason: reason, domain: domain, message: fmt.Sprintf(format, args...)}
}

// walrusObjectID writes a weft object ID as Walrus writes a Sui object ID:
// 0x and 64 hexadecimal digits (object 17 is 0x…0011). Sui's parsers read
// it back as the same number, where a decimal "17" would be read as hex.
func walrusObjectID(id uint64) string { return fmt.Sprintf("0x%064x", id) }

// parseWalrusObjectID reads an object ID in Sui's notation: 0x and up to
// 64 hexadecimal digits (leading zeros may be left out, as Sui allows), a
// number from 1 to 2^64−1.
func parseWalrusObjectID(s string) (uint64, error) {
	hex, ok := strings.CutPrefix(s, "0x")
	if !ok || hex == "" || len(hex) > 64 {
		return 0, fmt.Errorf("malformed object ID %q: 0x and up to 64 hexadecimal digits", s)
	}
	digits := strings.TrimLeft(hex, "0")
	id, err := strconv.ParseUint(digits, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("malformed object ID %q: weft's object IDs are numbers from 1 to %d (0x1 to 0x%x)", s, uint64(math.MaxUint64), uint64(math.MaxUint64))
	}
	return id, nil
}

// walrusQueryBool reads an optional boolean query parameter.
func walrusQueryBool(q url.Values, name string) (bool, error) {
	vs, ok := q[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil || len(vs) > 1 {
		return false, fmt.Errorf("%s must be given once, true or false, got %q", name, vs)
	}
	return b, nil
}

// walrusStoreParams checks the publisher's query parameters that weft's
// PUT does not read. deletable is the default (permanent=true, which
// weft's PUT reads, is the other kind); force, reuse_resources and
// quilt_version change nothing here (weft reuses what is certified
// already, and the caller's object of it); encoding_type may only be
// Walrus's RS2; send_object_to and share=true have no weft equivalent
// (no Sui addresses, no shared objects: the object is the caller's).
func walrusStoreParams(q url.Values) *walrusFailure {
	bools := map[string]bool{}
	for _, name := range []string{"deletable", "permanent", "force", "reuse_resources", "share"} {
		b, err := walrusQueryBool(q, name)
		if err != nil {
			f := walrusBadRequest("MALFORMED_REQUEST", walrusDaemonDomain, "the request is malformed: %v", err)
			return &f
		}
		bools[name] = b
	}
	var f walrusFailure
	switch {
	case bools["deletable"] && bools["permanent"]:
		f = walrusBadRequest("INVALID_BLOB_PERSISTENCE", walrusDaemonDomain, "the blob cannot be both deletable and permanent")
	case q.Has("send_object_to"):
		f = walrusBadRequest("UNSUPPORTED_PARAMETER", walrusWeftDomain,
			"send_object_to: weft has no Sui addresses; the blob object is the client token's (transfer it with the Go SDK)")
	case bools["share"]:
		f = walrusBadRequest("UNSUPPORTED_PARAMETER", walrusWeftDomain, "share: weft has no shared blob objects; the blob object is the client token's")
	case q.Has("encoding_type") && q.Get("encoding_type") != walrusEncodingType:
		f = walrusBadRequest("UNSUPPORTED_PARAMETER", walrusWeftDomain,
			"encoding_type %q: weft stores blobs in its network's encoding (rs8 up to 256 shards, lanes16 above); give %s or nothing",
			q.Get("encoding_type"), walrusEncodingType)
	default:
		return nil
	}
	return &f
}

// walrusPutBlob is the publisher's PUT /v1/blobs: weft's PUT (putBlob,
// step for step) answered with Walrus's BlobStoreResult. The request's
// Content-Type is not recorded, as Walrus's publisher ignores it too (curl
// -d sends a form type); X-Weft-Attr-Content-Type sets one.
func (g *Gateway) walrusPutBlob(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	if f := walrusStoreParams(r.URL.Query()); f != nil {
		refuseBody(w, r)
		ww.fail(*f)
		return
	}
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	epochs, ok := g.putParams(w, r)
	if !ok {
		return
	}
	obj, ok := putObjectParams(w, r, "")
	if !ok {
		return
	}
	sf, ctx, done, ok := g.storeBody(w, r, token, epochs, obj)
	if !ok {
		return
	}
	defer done()
	res, err := g.walrusStoreResult(ctx, sf, epochs)
	if err != nil {
		code := errorStatus(err)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeErrorID(w, r, code, fmt.Errorf("stored, but reading back its registry entry or object failed (the same PUT again answers alreadyCertified): %w", err), sf.ID)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// The JSON of Walrus's BlobStoreResult: one of its variants.
type walrusStoreResultBody struct {
	NewlyCreated     *walrusNewlyCreated     `json:"newlyCreated,omitempty"`
	AlreadyCertified *walrusAlreadyCertified `json:"alreadyCertified,omitempty"`
}

type walrusNewlyCreated struct {
	BlobObject        walrusBlobObject        `json:"blobObject"`
	ResourceOperation walrusResourceOperation `json:"resourceOperation"`
	Cost              uint64                  `json:"cost"` // no payments: 0
}

type walrusBlobObject struct {
	ID              string        `json:"id"`              // the caller's object (walrusObjectID)
	RegisteredEpoch uint64        `json:"registeredEpoch"` // the object's creation
	BlobID          string        `json:"blobId"`
	Size            uint64        `json:"size"`         // the content's bytes (a file's, not its manifest's)
	EncodingType    string        `json:"encodingType"` // weft's: rs8, leopard16 or lanes16
	CertifiedEpoch  uint64        `json:"certifiedEpoch"`
	Storage         walrusStorage `json:"storage"`
	Deletable       bool          `json:"deletable"`
}

// walrusStorage is Walrus's storage resource, a Sui object of its own;
// weft has none apart from the blob object, whose ID and lifetime it
// takes.
type walrusStorage struct {
	ID          string `json:"id"`
	StartEpoch  uint64 `json:"startEpoch"`
	EndEpoch    uint64 `json:"endEpoch"` // exclusive, as weft's
	StorageSize uint64 `json:"storageSize"`
}

type walrusResourceOperation struct {
	RegisterFromScratch walrusRegisterFromScratch `json:"registerFromScratch"`
}

type walrusRegisterFromScratch struct {
	EncodedLength uint64 `json:"encodedLength"`
	EpochsAhead   uint64 `json:"epochsAhead"`
}

type walrusAlreadyCertified struct {
	BlobID string `json:"blobId"`
	// Object is the caller's object of the blob (made or reused by this
	// store): Walrus's variant for a blob "deletable, already certified,
	// and owned by the client"; weft has no Sui events to name instead.
	Object   string `json:"object"`
	EndEpoch uint64 `json:"endEpoch"` // the blob's, exclusive
}

// walrusStoreResult describes what a store did as Walrus's BlobStoreResult:
// alreadyCertified when every part (the blob, or a file's chunks and
// manifest) was certified before it, else newlyCreated, with the caller's
// object as the blob object and the bytes stored over all shards (a file's
// chunks included) as its encoded length. It asks the control plane for
// the blob's entry and the object: Walrus's answer says more than weft's.
func (g *Gateway) walrusStoreResult(ctx context.Context, sf *client.StoredFile, epochs uint64) (*walrusStoreResultBody, error) {
	st, err := g.cl.Status(ctx, sf.ID)
	if err != nil {
		return nil, err
	}
	parts := 1
	if sf.Manifest != nil {
		parts += len(sf.Manifest.Chunks)
	}
	if sf.Reused == parts {
		return &walrusStoreResultBody{AlreadyCertified: &walrusAlreadyCertified{
			BlobID: sf.ID.String(), Object: walrusObjectID(sf.Object), EndEpoch: st.EndEpoch,
		}}, nil
	}
	obj, err := g.cl.Object(ctx, sf.Object)
	if err != nil {
		return nil, err
	}
	encoded := obj.StoredBytes
	if sf.Manifest != nil {
		params, err := coding.NewParams(int(st.Shards), coding.WithEncoding(st.Encoding))
		if err != nil {
			return nil, err
		}
		for _, ch := range sf.Manifest.Chunks {
			n, err := params.EncodedSize(ch.Length)
			if err != nil {
				return nil, err
			}
			encoded += n
		}
	}
	oid := walrusObjectID(sf.Object)
	return &walrusStoreResultBody{NewlyCreated: &walrusNewlyCreated{
		BlobObject: walrusBlobObject{
			ID: oid, RegisteredEpoch: obj.CreatedEpoch, BlobID: sf.ID.String(), Size: sf.Length,
			EncodingType: st.Encoding.String(), CertifiedEpoch: st.CertifiedEpoch,
			Storage:   walrusStorage{ID: oid, StartEpoch: obj.CreatedEpoch, EndEpoch: obj.EndEpoch, StorageSize: encoded},
			Deletable: obj.Deletable,
		},
		ResourceOperation: walrusResourceOperation{RegisterFromScratch: walrusRegisterFromScratch{EncodedLength: encoded, EpochsAhead: epochs}},
	}}, nil
}

// walrusReadParams checks the aggregator's consistency flags. weft always
// makes its consistent-read check (a range: each sliver's), so both
// change nothing; both at once is 400, as Walrus answers it.
func walrusReadParams(q url.Values) *walrusFailure {
	strict, err1 := walrusQueryBool(q, "strict_consistency_check")
	skip, err2 := walrusQueryBool(q, "skip_consistency_check")
	var f walrusFailure
	switch {
	case err1 != nil || err2 != nil:
		f = walrusBadRequest("MALFORMED_REQUEST", walrusDaemonDomain, "the request is malformed: %v", errors.Join(err1, err2))
	case strict && skip:
		f = walrusBadRequest("INVALID_CONSISTENCY_CHECK", walrusWeftDomain, "strict_consistency_check and skip_consistency_check cannot both be true")
	default:
		return nil
	}
	return &f
}

// walrusGetBlob is the aggregator's GET /v1/blobs/{blob_id}: weft's.
func (g *Gateway) walrusGetBlob(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	if f := walrusReadParams(r.URL.Query()); f != nil {
		ww.fail(*f)
		return
	}
	g.getBlob(w, r)
}

// walrusGetObject is the aggregator's GET /v1/blobs/by-object-id/{id}:
// weft's GET /v1/objects/{object}, its served attributes as headers.
func (g *Gateway) walrusGetObject(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	oid, err := parseWalrusObjectID(r.PathValue("sub"))
	if err != nil {
		ww.fail(walrusBadRequest("INVALID_ID_FORMAT", walrusDaemonDomain, "%v", err))
		return
	}
	if f := walrusReadParams(r.URL.Query()); f != nil {
		ww.fail(*f)
		return
	}
	obj, err := g.cl.Object(r.Context(), oid)
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	g.serveContent(w, r, obj.BlobID, servedAttributes(obj.Attributes))
}

// walrusGetQuiltPatch is the aggregator's GET
// /v1/blobs/by-quilt-patch-id/{id}, for weft's quilt file IDs.
func (g *Gateway) walrusGetQuiltPatch(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	id, err := client.ParseQuiltFileID(r.PathValue("sub"))
	if err != nil {
		ww.fail(walrusBadRequest("MALFORMED_REQUEST", walrusDaemonDomain, "%v (a weft quilt file ID, from PUT /v1/quilts)", err))
		return
	}
	g.getQuiltFile(w, r, id)
}

// walrusGetQuiltFileByName is the aggregator's GET
// /v1/blobs/by-quilt-id/{quilt_id}/{identifier}: the file of that name in
// a weft quilt, named in X-Quilt-Patch-Identifier as Walrus does.
func (g *Gateway) walrusGetQuiltFileByName(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	quilt, err := crypto.ParseBlobID(r.PathValue("quilt"))
	if err != nil {
		ww.fail(walrusBadRequest("MALFORMED_REQUEST", walrusDaemonDomain, "malformed quilt ID %q: %v", r.PathValue("quilt"), err))
		return
	}
	name := r.PathValue("identifier")
	id, err := g.cl.QuiltFileByName(r.Context(), quilt, name, client.ReadOptions{NoChallengeWait: true})
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	w.Header().Set("X-Quilt-Patch-Identifier", name)
	g.getQuiltFile(w, r, id)
}

// walrusRangeParams reads the byte-range route's start and length, both
// required: length at least 1, start + length within 2^63.
func walrusRangeParams(q url.Values) (start, length int64, err error) {
	parse := func(name string) (int64, error) {
		if !q.Has(name) {
			return 0, fmt.Errorf("missing query parameter %s", name)
		}
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s must be a non-negative integer, got %q", name, q.Get(name))
		}
		return n, nil
	}
	if start, err = parse("start"); err != nil {
		return 0, 0, err
	}
	if length, err = parse("length"); err != nil {
		return 0, 0, err
	}
	switch {
	case length == 0:
		return 0, 0, errors.New("length must be greater than 0")
	case start > math.MaxInt64-length:
		return 0, 0, errors.New("start + length overflows")
	}
	return start, length, nil
}

// walrusGetByteRange is the aggregator's GET
// /v1/blobs/{blob_id}/byte-range?start=S&length=L: weft's GET of the one
// range bytes=S-(S+L−1) (the slivers that hold it; a file's chunks that
// do), answered 200 as Walrus does (so that caches keep it), with an ETag
// of its own. Bytes [S, S+L) not all in the blob are 400: a range reaching
// past the end is seen from the Content-Range of weft's 206 before any
// byte goes out (weft would cut it to the end), one starting past it is
// weft's 416, the empty blob weft's 200.
func (g *Gateway) walrusGetByteRange(w http.ResponseWriter, r *http.Request, ww *walrusWriter) {
	id, ok := blobIDParam(w, r)
	if !ok {
		return
	}
	start, length, err := walrusRangeParams(r.URL.Query())
	if err != nil {
		ww.fail(walrusBadRequest("INVALID_BYTE_RANGE", walrusDaemonDomain, "invalid byte range parameters: %v", err))
		return
	}
	last := start + length - 1
	ww.check = func(code int, h http.Header) (int, *walrusFailure) {
		var first, end, size int64
		if code == http.StatusPartialContent {
			if _, err := fmt.Sscanf(h.Get("Content-Range"), "bytes %d-%d/%d", &first, &end, &size); err == nil && first == start && end == last {
				h.Del("Content-Range")
				h.Set("ETag", fmt.Sprintf(`"%s-%d-%d"`, id, start, length))
				return http.StatusOK, nil
			}
		}
		// A 206 cut short at the blob's end, or the empty blob's 200.
		f := walrusBadRequest("INVALID_BYTE_RANGE", walrusDaemonDomain,
			"invalid byte range parameters: bytes %d to %d are not all in blob %s (%d bytes)", start, last, id, size)
		return 0, &f
	}
	// A HEAD is answered as the GET would be (net/http sends no body).
	rr := r.Clone(r.Context())
	rr.Method = http.MethodGet
	rr.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, last))
	rr.Header.Del("If-Range")
	rr.Header.Del("If-None-Match")
	g.serveContent(w, rr, id, nil)
}
