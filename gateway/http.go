package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftstore/weft/crypto"
)

// recordingWriter remembers what was answered, for the request log.
type recordingWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
	err         error // the error behind an error answer
	bodyRead    int64 // request body bytes the handler consumed (PUT)
	// abort: the answer failed after its status and some of its body went
	// out (a file's later chunk): the connection is to be cut short of
	// Content-Length, never ended as if the body were whole.
	abort bool
	// held: an error status written without a JSON body (net/http's
	// http.Error, which http.ServeContent calls), kept from the caller
	// with its text until the handler returns, then answered as every
	// other error is (answerHeldError).
	held     bool
	heldText []byte
}

// maxHeldText bounds the text of a held error kept for its message.
const maxHeldText = 1 << 10

func (w *recordingWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 400 && !isJSON(w.Header().Get("Content-Type")) {
		w.status, w.wroteHeader, w.held = code, true, true
		return
	}
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	if !w.held {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.held {
		w.heldText = append(w.heldText, b[:min(len(b), maxHeldText-len(w.heldText))]...)
		return len(b), nil
	}
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// answerHeldError answers a held error (see held) as JSON, its text the
// message. Nothing of it reached the connection.
func (w *recordingWriter) answerHeldError(r *http.Request) {
	if !w.held {
		return
	}
	code, text := w.status, strings.TrimSpace(string(w.heldText))
	w.held, w.heldText, w.wroteHeader = false, nil, false
	if text == "" {
		text = http.StatusText(code)
	}
	writeError(w, r, code, errors.New(text))
}

// isJSON reports whether a Content-Type is application/json.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recordingWriter) bodyIn(r *http.Request) int64 {
	if r.Method == http.MethodPut {
		return w.bodyRead
	}
	return 0
}

// baseWriter is the server's own ResponseWriter under our wrapper.
// MaxBytesReader tells it, through an unexported method it finds with a
// type assertion (no Unwrap), to close the connection after a body that
// ran over the limit instead of draining the rest of it.
func baseWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// recorderOf finds the recordingWriter under w (nil if there is none, as
// when a handler is called directly).
func recorderOf(w http.ResponseWriter) *recordingWriter {
	rec, _ := w.(*recordingWriter)
	return rec
}

// storeResponse is the answer to a PUT.
type storeResponse struct {
	BlobID      string `json:"blob_id"`
	Certificate string `json:"certificate"` // standard base64 of Certificate.MarshalBinary
	Epoch       uint64 `json:"epoch"`       // the epoch the certificate is for
	Size        uint64 `json:"size"`        // blob (or file) bytes
	// Chunks is a file's chunk count (absent: a plain blob); Reused the
	// parts that were certified before this PUT (a retried upload's).
	Chunks int `json:"chunks,omitempty"`
	Reused int `json:"reused_parts,omitempty"`
	// ObjectID is the caller's blob object of it (GET, DELETE
	// /v1/objects/{object_id}): made by this PUT, or one of the same kind
	// and lifetime the caller owned already.
	ObjectID uint64 `json:"object_id"`
}

// statusResponse is the answer to GET …/status.
type statusResponse struct {
	BlobID          string `json:"blob_id"`
	Status          string `json:"status"` // registered, certified, invalid, expired or deleted
	Length          uint64 `json:"length"`
	Shards          uint32 `json:"shards"`
	Encoding        uint8  `json:"encoding"`
	RegisteredEpoch uint64 `json:"registered_epoch"`
	CertifiedEpoch  uint64 `json:"certified_epoch"` // 0 until certified
	EndEpoch        uint64 `json:"end_epoch"`       // the blob lives through end_epoch−1
	Certificate     string `json:"certificate,omitempty"`
	// Objects counts the live blob objects that keep it; past
	// permanent_end_epoch only deletable ones do. Deleting: none keeps it
	// any more, and the nodes drop it at end_epoch. ContentType is the
	// one its objects agree on (what GET /v1/blobs/{id} answers).
	Objects           int    `json:"objects"`
	PermanentEndEpoch uint64 `json:"permanent_end_epoch,omitempty"`
	Deleting          bool   `json:"deleting,omitempty"`
	ContentType       string `json:"content_type,omitempty"`
}

// errorResponse is every error's body: {"error": {"code": 404, "status":
// "NOT_FOUND", "message": "…"}}, the shape of Google's APIs (AIP-193) that
// Walrus's aggregator and publisher answer too.
type errorResponse struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	// Code is the answer's HTTP status; Status its name (statusName).
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
	// Details is always empty: AIP-193's list of machine-readable
	// details, which Walrus's clients require to be present.
	Details []struct{} `json:"details"`
	// BlobID is set when a failed PUT got far enough to know the blob's
	// ID: its status says whether it was registered, and the same PUT
	// again resumes it without paying twice.
	BlobID string `json:"blob_id,omitempty"`
}

// statusName names an HTTP error status as google.rpc.Code does (the
// status of an error's JSON): the code whose HTTP mapping it is where
// there is one (INVALID_ARGUMENT 400, NOT_FOUND 404, ABORTED 409,
// RESOURCE_EXHAUSTED 429, CANCELLED 499, UNAVAILABLE 503, …), else the
// code nearest in meaning (405 UNIMPLEMENTED, 410 NOT_FOUND, 412
// FAILED_PRECONDITION, 413 RESOURCE_EXHAUSTED as gRPC's message-size
// limit, 416 OUT_OF_RANGE, 502 UNKNOWN, 507 RESOURCE_EXHAUSTED: the
// caller's quota). The code field keeps the exact HTTP status.
func statusName(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound, http.StatusGone:
		return "NOT_FOUND"
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusPreconditionFailed:
		return "FAILED_PRECONDITION"
	case http.StatusRequestedRangeNotSatisfiable:
		return "OUT_OF_RANGE"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusInsufficientStorage:
		return "RESOURCE_EXHAUSTED"
	case statusClientClosed:
		return "CANCELLED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	if code >= 500 {
		return "UNKNOWN" // 502: an answer of the network's the gateway did not expect
	}
	return "INVALID_ARGUMENT"
}

// countingReader counts the body bytes read and keeps the first read
// error, so that a failed store can be blamed on the request body (413,
// 408, 400) without depending on how the SDK wraps it. atEOF, if set, is
// called once the whole body is in.
type countingReader struct {
	r     io.Reader
	n     int64
	err   error
	atEOF func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF && c.atEOF != nil {
		c.atEOF()
		c.atEOF = nil
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// blobIDParam parses the {id} path segment, answering 400 when it is not
// a blob ID.
func blobIDParam(w http.ResponseWriter, r *http.Request) (crypto.BlobID, bool) {
	raw := r.PathValue("id")
	id, err := crypto.ParseBlobID(raw)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("malformed blob ID %q: %w", raw, err))
		return crypto.BlobID{}, false
	}
	return id, true
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, http.StatusMethodNotAllowed, fmt.Errorf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}

func writeError(w http.ResponseWriter, r *http.Request, code int, err error) {
	writeErrorID(w, r, code, err, crypto.BlobID{})
}

func writeErrorID(w http.ResponseWriter, r *http.Request, code int, err error, id crypto.BlobID) {
	if rec := recorderOf(w); rec != nil {
		rec.err = err
	}
	// 499 too is written: a caller that only half-closed its connection
	// still reads it, and would otherwise get an empty 200.
	resp := errorResponse{Error: errorObject{Code: code, Status: statusName(code), Message: err.Error(), Details: []struct{}{}}}
	if id != (crypto.BlobID{}) {
		resp.Error.BlobID = id.String()
	}
	// Headers meant for a blob must not describe the error.
	h := w.Header()
	for _, k := range []string{"ETag", "Content-Length", "Accept-Ranges", "Location"} {
		h.Del(k)
	}
	for _, k := range servedHeaders {
		h.Del(k)
	}
	if code != http.StatusRequestedRangeNotSatisfiable {
		h.Del("Content-Range") // a 416's says the size; any other's would describe a range not sent
	}
	// An error is never kept: the blob may be stored, certified or come
	// back (503) a moment later, and a blob's year-long caching must not
	// stick to it.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	writeJSON(w, code, resp)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and numbers come here.
		panic(err)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
