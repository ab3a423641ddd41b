package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// The gateway's defaults. A blob is held in memory whole, both to encode
// it on a store and to check it on a read, so the size limit is also the
// gateway's memory per request.
const (
	defaultGatewayMaxBlob int64 = 1 << 30
	// defaultGatewayCache keeps a few hundred MB of popular blobs: each
	// GET of one that is not kept costs a fetch, a decode and a re-encode.
	defaultGatewayCache int64 = 256 << 20
	// defaultGatewayMaxInflight bounds the requests served at once. Each
	// PUT or GET of a blob not cached holds it whole, and ~5× that while
	// coding it, so memory is bounded by about this × 5 × --max-blob-size
	// (plus the cache): lower it for large blobs on a small machine.
	defaultGatewayMaxInflight = 64
	// The default timeouts. A PUT's body may take --read-timeout: 10
	// minutes uploads a 1 GiB blob at 2 MB/s. An answer may take
	// --write-timeout from when the gateway starts on it, the network read
	// or store included (a PUT: both, from its first byte).
	defaultGatewayReadTimeout       = 10 * time.Minute
	defaultGatewayWriteTimeout      = 10 * time.Minute
	defaultGatewayReadHeaderTimeout = 10 * time.Second
	defaultGatewayIdleTimeout       = 2 * time.Minute
	// gatewayBusyRetryAfter is the Retry-After, in seconds, of a 429: a
	// slot frees as soon as any request in flight ends.
	gatewayBusyRetryAfter = "1"
	// gatewayRetryAfter is the Retry-After, in seconds, sent with a 503:
	// long enough for a restarting node or a control-plane election, short
	// enough that a client does not give up on a blob that comes back.
	gatewayRetryAfter = "5"
	// statusClientClosed (nginx's convention) answers a request whose
	// caller went away, or half-closed its connection (net/http cannot
	// tell the two apart), before the answer was ready: it keeps the log
	// and the metrics apart from the gateway's own errors, and is written
	// like any other status — a handler that wrote none would have
	// net/http send an empty 200.
	statusClientClosed = 499
	// maxRequestEpochs bounds ?epochs= so that the end epoch the SDK
	// computes (current + epochs) cannot overflow.
	maxRequestEpochs = 1 << 32
)

// gatewayConfig configures the HTTP handler.
type gatewayConfig struct {
	// MaxBlobSize is the largest PUT body accepted (413 beyond it). The
	// client given to newGateway should read no more either
	// (client.Config.MaxBlobLength), as a GET spools the blob.
	MaxBlobSize int64
	// Epochs is a stored blob's lifetime unless the PUT says ?epochs=N.
	Epochs uint64
	Logger *slog.Logger
	// Metrics, if set, receives the gateway's Prometheus metrics.
	Metrics prometheus.Registerer
	// CacheSize bounds the bytes of recently read blobs kept for later
	// GETs (0: none).
	CacheSize int64
	// MaxInflight bounds the requests served at once; more are answered
	// 429 at once, their bodies unread (0: defaultGatewayMaxInflight).
	MaxInflight int
	// ReadTimeout bounds the reading of a PUT's body (0: none; the
	// http.Server's own ReadTimeout should be the same). WriteTimeout
	// bounds each answer from when the gateway starts on it; a PUT gets
	// ReadTimeout + WriteTimeout in all (0: none).
	ReadTimeout, WriteTimeout time.Duration
}

// gateway is the HTTP face of the Go SDK (DESIGN §8) for non-Go users.
type gateway struct {
	cl      *client.Client
	cfg     gatewayConfig
	mux     *http.ServeMux
	cache   *blobCache
	metrics *gatewayMetrics // nil when not configured
	slots   chan struct{}   // one per request in flight
}

func newGateway(cl *client.Client, cfg gatewayConfig) (*gateway, error) {
	if cl == nil {
		return nil, errors.New("gateway: a client is required")
	}
	if cfg.MaxBlobSize <= 0 {
		return nil, fmt.Errorf("gateway: the maximum blob size must be positive, got %d", cfg.MaxBlobSize)
	}
	if cfg.Epochs == 0 || cfg.Epochs > maxRequestEpochs {
		return nil, fmt.Errorf("gateway: epochs must be between 1 and %d, got %d", uint64(maxRequestEpochs), cfg.Epochs)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = defaultGatewayMaxInflight
	}
	g := &gateway{
		cl: cl, cfg: cfg, mux: http.NewServeMux(), cache: newBlobCache(cfg.CacheSize),
		slots: make(chan struct{}, cfg.MaxInflight),
	}
	if cfg.Metrics != nil {
		m, err := newGatewayMetrics(cfg.Metrics, g.cache)
		if err != nil {
			return nil, err
		}
		g.metrics = m
	}
	g.mux.HandleFunc("PUT /v1/blobs", g.putBlob)
	// GET patterns also match HEAD.
	g.mux.HandleFunc("GET /v1/blobs/{id}", g.getBlob)
	g.mux.HandleFunc("GET /v1/blobs/{id}/status", g.getStatus)
	g.mux.HandleFunc("POST /v1/blobs/{id}/extend", g.extendBlob)
	// The method-less patterns are less specific than the ones above, so
	// they only catch other methods: ServeMux's own 405 is plain text,
	// and every error of this API is JSON.
	g.mux.HandleFunc("/v1/blobs", methodNotAllowed("PUT"))
	g.mux.HandleFunc("/v1/blobs/{id}", methodNotAllowed("GET, HEAD"))
	g.mux.HandleFunc("/v1/blobs/{id}/status", methodNotAllowed("GET, HEAD"))
	g.mux.HandleFunc("/v1/blobs/{id}/extend", methodNotAllowed("POST"))
	g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (the API is PUT /v1/blobs, GET /v1/blobs/{id}, GET /v1/blobs/{id}/status, POST /v1/blobs/{id}/extend)", r.Method, r.URL.Path))
	})
	return g, nil
}

// ServeHTTP serves the API, logging every request and counting it.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	g.serve(rec, r)
	if !rec.wroteHeader {
		// Every path answers explicitly; were one to forget, net/http
		// would send an empty 200, which a PUT's caller takes for success.
		writeError(rec, r, http.StatusInternalServerError, errors.New("the gateway wrote no answer (a bug)"))
	}
	g.log(rec, r, time.Since(start))
}

// serve answers one request if a slot is free, and 429 if none is.
func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		// The body is not read: closing the connection afterwards spares
		// the server draining it.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", gatewayBusyRetryAfter)
		writeError(w, r, http.StatusTooManyRequests, fmt.Errorf("the gateway serves %d requests at once (--max-inflight) and is busy; try again after Retry-After", g.cfg.MaxInflight))
		return
	}
	g.setDeadlines(w, r)
	g.mux.ServeHTTP(w, r)
}

// setDeadlines bounds how long the answer may take. The server's own
// ReadTimeout stays on the connection after a request is read, where the
// read that watches for the caller hanging up would hit it and cancel a
// request still being served: a request without a body has nothing more
// to read, so its read deadline is lifted (a PUT's once its body is in).
func (g *gateway) setDeadlines(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if g.cfg.WriteTimeout > 0 {
		d := g.cfg.WriteTimeout
		if r.Method == http.MethodPut {
			d += g.cfg.ReadTimeout // the body first, then the store
		}
		_ = rc.SetWriteDeadline(time.Now().Add(d)) // not supported: no deadline
	}
	if r.ContentLength == 0 {
		_ = rc.SetReadDeadline(time.Time{})
	}
}

// log writes the request log line and counts the request in the metrics.
func (g *gateway) log(rec *recordingWriter, r *http.Request, elapsed time.Duration) {
	// ServeMux has set r.Pattern by now: a route label of bounded
	// cardinality, unlike the path with its blob ID.
	route := r.Pattern
	if route == "" {
		route = "none"
	}
	level := slog.LevelInfo
	if rec.status >= 500 && rec.status != statusClientClosed {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.status),
		slog.Int64("bytes_in", rec.bodyIn(r)), slog.Int64("bytes_out", rec.written),
		slog.Duration("duration", elapsed), slog.String("remote", r.RemoteAddr),
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("err", rec.err.Error()))
	}
	g.cfg.Logger.LogAttrs(r.Context(), level, "http request", attrs...)
	if g.metrics != nil {
		g.metrics.observe(route, r.Method, rec.status, elapsed, rec.bodyIn(r), rec.written)
	}
}

// recordingWriter remembers what was answered, for the request log.
type recordingWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
	err         error // the error behind an error answer
	bodyRead    int64 // request body bytes the handler consumed (PUT)
}

func (w *recordingWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
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
	Size        uint64 `json:"size"`        // blob bytes
}

// statusResponse is the answer to GET …/status.
type statusResponse struct {
	BlobID          string `json:"blob_id"`
	Status          string `json:"status"` // registered, certified, invalid or expired
	Length          uint64 `json:"length"`
	Shards          uint32 `json:"shards"`
	Encoding        uint8  `json:"encoding"`
	RegisteredEpoch uint64 `json:"registered_epoch"`
	CertifiedEpoch  uint64 `json:"certified_epoch"` // 0 until certified
	EndEpoch        uint64 `json:"end_epoch"`       // the blob lives through end_epoch−1
	Certificate     string `json:"certificate,omitempty"`
}

// errorResponse is every error's body.
type errorResponse struct {
	Error string `json:"error"`
	// BlobID is set when a failed PUT got far enough to know the blob's
	// ID: its status says whether it was registered, and the same PUT
	// again resumes it without paying twice.
	BlobID string `json:"blob_id,omitempty"`
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

// putBlob stores the request body, charged to the caller's own client
// token. The token is checked with the control plane before any of the
// body is read, and the SDK reads the whole body before it registers
// anything, so a body that is too large or cut short changes nothing.
func (g *gateway) putBlob(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	epochs, ok := g.putParams(w, r)
	if !ok {
		return
	}
	ctx, cancel := g.writeContext(r, token, g.putTimeout())
	defer cancel()
	if !g.authorize(ctx, w, r) {
		return
	}
	body := g.putBody(w, r)
	var stats client.StoreStats
	id, cert, err := g.cl.Store(ctx, body, client.StoreOptions{Epochs: epochs, Stats: &stats})
	if rec := recorderOf(w); rec != nil {
		rec.bodyRead = body.n
	}
	if err != nil {
		g.storeFailed(w, r, body, id, err)
		return
	}
	raw, err := cert.MarshalBinary()
	if err != nil {
		writeErrorID(w, r, http.StatusInternalServerError, fmt.Errorf("encoding the certificate: %w", err), id)
		return
	}
	code := http.StatusCreated
	if stats.AlreadyCertified {
		// The same bytes were stored before: nothing new was created,
		// the existing certificate is returned (its lifetime extended
		// to cover this request's epochs).
		code = http.StatusOK
	}
	w.Header().Set("Location", "/v1/blobs/"+id.String())
	writeJSON(w, code, storeResponse{
		BlobID: id.String(), Certificate: base64.StdEncoding.EncodeToString(raw),
		Epoch: cert.Epoch, Size: stats.Length,
	})
}

// putParams reads ?epochs= and refuses a declared length over the limit,
// before any byte of the body is read (a client sending Expect:
// 100-continue never uploads it).
func (g *gateway) putParams(w http.ResponseWriter, r *http.Request) (epochs uint64, ok bool) {
	epochs = g.cfg.Epochs
	if q := r.URL.Query(); q.Has("epochs") {
		var err error
		if epochs, err = queryCount(q, "epochs", maxRequestEpochs); err != nil {
			refuseBody(w, r)
			writeError(w, r, http.StatusBadRequest, err)
			return 0, false
		}
	}
	if r.ContentLength > g.cfg.MaxBlobSize {
		refuseBody(w, r)
		writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("the blob has %d bytes, this gateway stores at most %d", r.ContentLength, g.cfg.MaxBlobSize))
		return 0, false
	}
	return epochs, true
}

// putTimeout bounds a whole PUT: its body, then the store (0: none).
func (g *gateway) putTimeout() time.Duration {
	if g.cfg.ReadTimeout <= 0 || g.cfg.WriteTimeout <= 0 {
		return 0
	}
	return g.cfg.ReadTimeout + g.cfg.WriteTimeout
}

// putBody is the PUT's body, at most MaxBlobSize bytes. Once it is all in,
// the read deadline (--read-timeout) is lifted: the store that follows
// may outlast it, and net/http's read that watches for the caller hanging
// up would hit it.
func (g *gateway) putBody(w http.ResponseWriter, r *http.Request) *countingReader {
	rc := http.NewResponseController(w)
	return &countingReader{
		r:     http.MaxBytesReader(baseWriter(w), r.Body, g.cfg.MaxBlobSize),
		atEOF: func() { _ = rc.SetReadDeadline(time.Time{}) },
	}
}

// storeFailed answers a failed store, always with a status of its own:
// nothing was stored, and no 2xx may say otherwise.
func (g *gateway) storeFailed(w http.ResponseWriter, r *http.Request, body *countingReader, id crypto.BlobID, err error) {
	code := storeErrorStatus(body, err)
	if body.err != nil {
		// The body, not the network, is what failed.
		err = fmt.Errorf("reading the request body (%d bytes in): %w", body.n, body.err)
	}
	switch code {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", gatewayRetryAfter)
	case http.StatusRequestTimeout:
		w.Header().Set("Connection", "close")
	}
	writeErrorID(w, r, code, err, id)
}

// storeErrorStatus maps a failed store to an HTTP status.
func storeErrorStatus(body *countingReader, err error) int {
	var tooBig *http.MaxBytesError
	var quorum *client.QuorumError
	var netErr net.Error
	switch {
	case errors.As(body.err, &tooBig), errors.Is(err, client.ErrBlobTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(body.err, &netErr) && netErr.Timeout():
		// Not all of it within --read-timeout.
		return http.StatusRequestTimeout
	case body.err != nil:
		// Cut short (fewer bytes than Content-Length, or no last chunk),
		// or the connection broke: nothing was registered.
		return http.StatusBadRequest
	case errors.Is(err, client.ErrInvalidBlob), errors.Is(err, client.ErrExpired):
		// The registry changed under the store (the content was found
		// invalid, or expired, meanwhile).
		return http.StatusConflict
	case errors.As(err, &quorum):
		return http.StatusServiceUnavailable
	case callerRefused(err) != 0:
		// (Nodes' answers are inside a QuorumError, matched above.)
		return callerRefused(err)
	case hasCode(err, codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.FailedPrecondition),
		errors.Is(err, context.DeadlineExceeded):
		// Unreachable control plane or nodes, or an epoch change that
		// outran the store's rounds: trying again later can succeed.
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// bearerToken is the caller's client token, from "Authorization: Bearer
// <token>". Without one the answer is 401 with the challenge RFC 6750
// asks for: the gateway spends no quota but its callers' own.
func bearerToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if strings.EqualFold(scheme, "Bearer") && token != "" {
		return token, true
	}
	refuseBody(w, r)
	w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
	writeError(w, r, http.StatusUnauthorized, errors.New("a client token is required: send Authorization: Bearer <token> (weft admin client add); stores and extensions are charged to it"))
	return "", false
}

// writeContext is the context of a write charged to token. It is not
// cancelled when the caller hangs up: a request that arrived whole is
// carried out (net/http cannot tell a half-closed connection, whose
// caller still waits for the answer, from a closed one), its caller's
// quota pays for it, and the same request again finds it done. timeout
// bounds it instead (0: the SDK's own timeouts only).
func (g *gateway) writeContext(r *http.Request, token string, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx := client.WithToken(context.WithoutCancel(r.Context()), token)
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// authorize asks the control plane whether ctx's token is a client's
// before a PUT's body is read, so that a stranger cannot make the gateway
// hold and encode a blob that registration then refuses: 403 if not.
func (g *gateway) authorize(ctx context.Context, w http.ResponseWriter, r *http.Request) bool {
	_, err := g.cl.Quota(ctx)
	if err == nil {
		return true
	}
	refuseBody(w, r)
	code := callerRefused(err)
	switch {
	case code == http.StatusForbidden:
		w.Header().Set("WWW-Authenticate", `Bearer realm="weft", error="invalid_token"`)
	case code == 0:
		code = errorStatus(err)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", gatewayRetryAfter)
		}
	}
	writeError(w, r, code, fmt.Errorf("checking the client token: %w", err))
	return false
}

// refuseBody closes the connection after an answer given without reading
// the request's body, rather than have the server drain (or wait for) it.
func refuseBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}

// getBlob serves a blob's bytes, or (HEAD) only its headers.
//
// The SDK's Read returns the bytes only after the consistent-read check
// (DESIGN §3: they re-encode to the blob ID), so the blob is spooled in
// memory whole and sent afterwards; streaming while decoding could hand
// out bytes of an inconsistently encoded blob before the check fails.
// Spooling also lets http.ServeContent answer Range requests.
func (g *gateway) getBlob(w http.ResponseWriter, r *http.Request) {
	id, ok := blobIDParam(w, r)
	if !ok {
		return
	}
	// HEAD, and a conditional GET that the client's copy satisfies, need
	// only the registry: a blob ID names its bytes forever, so the ETag
	// cannot go stale while the blob is readable.
	if r.Method == http.MethodHead || etagMatches(r.Header.Get("If-None-Match"), id) {
		st, err := g.cl.Status(r.Context(), id)
		if err == nil {
			err = st.Err()
		}
		if err == nil && st.Length > uint64(g.cfg.MaxBlobSize) {
			err = fmt.Errorf("%w: blob %s has %d bytes, this gateway serves at most %d", client.ErrBlobTooLarge, id, st.Length, g.cfg.MaxBlobSize)
		}
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		setBlobHeaders(w, id)
		if r.Method != http.MethodHead {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatUint(st.Length, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	// A blob under a storage challenge is a 503 with Retry-After, not a
	// request held open until the round closes.
	blob, cached, err := g.cache.load(r.Context(), id, func(ctx context.Context) ([]byte, error) {
		return g.cl.Read(ctx, id, client.ReadOptions{NoChallengeWait: true})
	})
	if err == nil && cached {
		// The bytes are the blob's for good; whether they may still be
		// served is the registry's to say.
		var st *client.BlobStatus
		if st, err = g.cl.Status(r.Context(), id); err == nil {
			err = st.Err()
		}
	}
	if g.metrics != nil {
		g.metrics.cacheResult(cached)
	}
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	setBlobHeaders(w, id)
	// ServeContent sets Content-Length, answers Range and If-None-Match
	// (against the ETag set above); a zero modtime sends no Last-Modified.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

func setBlobHeaders(w http.ResponseWriter, id crypto.BlobID) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff") // arbitrary bytes must not be sniffed into HTML
	h.Set("ETag", etag(id))
	h.Set("Accept-Ranges", "bytes")
}

// getStatus serves a blob's registry entry.
func (g *gateway) getStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := blobIDParam(w, r)
	if !ok {
		return
	}
	st, err := g.cl.Status(r.Context(), id)
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	resp := statusResponse{
		BlobID: id.String(), Status: st.Status, Length: st.Length, Shards: st.Shards, Encoding: uint8(st.Encoding),
		RegisteredEpoch: st.RegisteredEpoch, CertifiedEpoch: st.CertifiedEpoch, EndEpoch: st.EndEpoch,
	}
	if st.Certificate != nil {
		raw, err := st.Certificate.MarshalBinary()
		if err != nil {
			writeError(w, r, http.StatusInternalServerError, fmt.Errorf("encoding the certificate: %w", err))
			return
		}
		resp.Certificate = base64.StdEncoding.EncodeToString(raw)
	}
	// The entry changes (certification, expiry): never cached.
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// extendResponse is the answer to POST …/extend.
type extendResponse struct {
	BlobID           string `json:"blob_id"`
	PreviousEndEpoch uint64 `json:"previous_end_epoch"`
	EndEpoch         uint64 `json:"end_epoch"` // the blob lives through end_epoch−1
	Charged          uint64 `json:"charged"`   // the caller's quota drawn: encoded bytes × epochs added
}

// extendBlob extends a blob's lifetime, charged to the caller's own client
// token: ?epochs=N adds N epochs to its end, ?end_epoch=E makes it live
// at least until E.
func (g *gateway) extendBlob(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	id, ok := blobIDParam(w, r)
	if !ok {
		return
	}
	opts, err := extendParams(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := g.writeContext(r, token, g.cfg.WriteTimeout)
	defer cancel()
	if !g.authorize(ctx, w, r) {
		return
	}
	ext, err := g.cl.Extend(ctx, id, opts)
	if err != nil {
		code := errorStatus(err)
		switch {
		case callerRefused(err) != 0:
			code = callerRefused(err)
		case hasCode(err, codes.InvalidArgument):
			code = http.StatusConflict // another extension moved the end epoch meanwhile
		}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", gatewayRetryAfter)
		}
		writeError(w, r, code, err)
		return
	}
	writeJSON(w, http.StatusOK, extendResponse{
		BlobID: id.String(), PreviousEndEpoch: ext.PreviousEndEpoch, EndEpoch: ext.Status.EndEpoch, Charged: ext.Charged,
	})
}

// extendParams reads ?epochs=N or ?end_epoch=E (exactly one).
func extendParams(r *http.Request) (client.ExtendOptions, error) {
	q := r.URL.Query()
	if q.Has("epochs") == q.Has("end_epoch") {
		return client.ExtendOptions{}, errors.New("give one of ?epochs=N (epochs to add) or ?end_epoch=E")
	}
	name := "epochs"
	if q.Has("end_epoch") {
		name = "end_epoch"
	}
	if name == "end_epoch" {
		n, err := queryCount(q, name, math.MaxUint64)
		return client.ExtendOptions{EndEpoch: n}, err
	}
	n, err := queryCount(q, name, maxRequestEpochs) // the SDK adds it to the end epoch
	return client.ExtendOptions{Epochs: n}, err
}

// queryCount reads query parameter name as an integer from 1 to limit.
func queryCount(q url.Values, name string, limit uint64) (uint64, error) {
	n, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil || n == 0 || n > limit {
		return 0, fmt.Errorf("%s must be an integer from 1 to %d, got %q", name, limit, q.Get(name))
	}
	return n, nil
}

// callerRefused maps the control plane's refusals of the caller's client
// token, for stores and extensions alike: the token is no client's (403),
// or its quota (bytes × epochs) is used up (507). 0: neither.
func callerRefused(err error) int {
	switch {
	case hasCode(err, codes.Unauthenticated, codes.PermissionDenied):
		return http.StatusForbidden
	case hasCode(err, codes.ResourceExhausted):
		return http.StatusInsufficientStorage
	}
	return 0
}

// writeReadError answers a failed read or status lookup.
func writeReadError(w http.ResponseWriter, r *http.Request, err error) {
	code := readErrorStatus(r, err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", gatewayRetryAfter)
	}
	writeError(w, r, code, err)
}

// readErrorStatus maps a failed read to an HTTP status: 499 if the caller
// went away first (its context is what failed the read).
func readErrorStatus(r *http.Request, err error) int {
	if r.Context().Err() != nil {
		return statusClientClosed
	}
	return errorStatus(err)
}

// errorStatus maps the SDK's error to an HTTP status.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, client.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, client.ErrInvalidBlob), errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrInconsistentBlob):
		// None of these will ever read: an inconsistently encoded blob
		// is on its way to being marked invalid, and every reader gets
		// the same error whichever slivers it fetched.
		return http.StatusGone
	case errors.Is(err, client.ErrNotCertified):
		// Registered, but no availability certificate yet (a store in
		// progress, or abandoned): there is nothing to read until there
		// is one. 409, as the resource's state is what conflicts; 425
		// Too Early is about TLS early data.
		return http.StatusConflict
	case errors.Is(err, client.ErrBlobTooLarge):
		// The blob exists, but this gateway would have to hold more
		// than --max-blob-size in memory to check it.
		return http.StatusInsufficientStorage
	case errors.Is(err, client.ErrNotEnoughSlivers), errors.Is(err, client.ErrUnderChallenge),
		hasCode(err, codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted),
		errors.Is(err, context.DeadlineExceeded):
		// Too few nodes (or no control-plane voter) answered, or a
		// storage-challenge round keeps the blob from being served.
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// hasCode reports whether any error in err's tree is a gRPC status with
// one of the codes. status.Code looks at the first one errors.As finds,
// but the SDK joins the errors of several nodes, and the answer should
// not depend on which node came first.
func hasCode(err error, cs ...codes.Code) bool {
	if err == nil {
		return false
	}
	if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		for _, c := range cs {
			if s.GRPCStatus().Code() == c {
				return true
			}
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return hasCode(u.Unwrap(), cs...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if hasCode(e, cs...) {
				return true
			}
		}
	}
	return false
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

func etag(id crypto.BlobID) string { return `"` + id.String() + `"` }

// etagMatches reports whether an If-None-Match header names the blob
// (weak comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(header string, id crypto.BlobID) bool {
	if header == "" {
		return false
	}
	want := etag(id)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == want || t == "*" {
			return true
		}
	}
	return false
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
	resp := errorResponse{Error: err.Error()}
	if id != (crypto.BlobID{}) {
		resp.BlobID = id.String()
	}
	// Headers meant for a blob must not describe the error.
	for _, h := range []string{"ETag", "Content-Length", "Accept-Ranges", "Location"} {
		w.Header().Del(h)
	}
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

// gatewayMetrics are the gateway's Prometheus metrics.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	cache    *prometheus.CounterVec
}

func newGatewayMetrics(reg prometheus.Registerer, cache *blobCache) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_requests_total", Help: "HTTP requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_gateway_request_duration_seconds", Help: "Time to answer an HTTP request, by route.",
			// Stores and reads of large blobs take seconds to minutes.
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_bytes_total", Help: "Blob bytes received (in) and sent (out).",
		}, []string{"direction"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_cache_reads_total", Help: "GETs of a blob's bytes, by whether the blob cache had them (hit) or the network was read (miss).",
		}, []string{"result"}),
	}
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_gateway_cache_bytes", Help: "Bytes of blobs in the blob cache (--cache-size bounds them).",
	}, func() float64 { b, _ := cache.size(); return float64(b) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bytes, m.cache, cached} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *gatewayMetrics) cacheResult(hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(result).Inc()
}

func (m *gatewayMetrics) observe(route, method string, code int, d time.Duration, in, out int64) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	m.bytes.WithLabelValues("in").Add(float64(in))
	m.bytes.WithLabelValues("out").Add(float64(out))
}

type gatewayOptions struct {
	listen          string
	control         []string
	token, file     string // deprecated, unused: callers send their own
	maxBlobSize     int64
	cacheSize       int64
	epochs          uint64
	metricsAddr     string
	shutdownTimeout time.Duration
	maxInflight     int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	headerTimeout   time.Duration
	idleTimeout     time.Duration
}

// check refuses flag values the gateway cannot run with.
func (o *gatewayOptions) check() error {
	switch {
	case o.maxBlobSize <= 0:
		return fmt.Errorf("--max-blob-size must be positive, got %d", o.maxBlobSize)
	case o.epochs == 0:
		return errors.New("--epochs must be at least 1")
	case o.cacheSize < 0:
		return fmt.Errorf("--cache-size must be 0 or more, got %d", o.cacheSize)
	case o.maxInflight < 1:
		return fmt.Errorf("--max-inflight must be at least 1, got %d", o.maxInflight)
	}
	for name, d := range map[string]time.Duration{
		"--read-timeout": o.readTimeout, "--write-timeout": o.writeTimeout,
		"--read-header-timeout": o.headerTimeout, "--idle-timeout": o.idleTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	return nil
}

func newGatewayCommand() *cobra.Command {
	var o gatewayOptions
	control := []string{"127.0.0.1:7001"}
	if env := os.Getenv("WEFT_CONTROL"); env != "" {
		control = strings.Split(env, ",")
	}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve blobs over HTTP for non-Go users (PUT /v1/blobs, GET /v1/blobs/{id}, GET …/status, POST …/extend)",
		Long: "Runs an HTTP gateway in front of a weft network. PUT /v1/blobs stores the request body\n" +
			"and answers its blob ID and availability certificate; GET /v1/blobs/{id} answers the\n" +
			"blob's bytes once they have passed the consistent-read check; GET /v1/blobs/{id}/status\n" +
			"answers its registry entry; POST /v1/blobs/{id}/extend?epochs=N (or ?end_epoch=E)\n" +
			"extends its lifetime. A PUT or extend must carry the caller's own client token\n" +
			"(Authorization: Bearer <token>, from `weft admin client add`) and is charged to it:\n" +
			"401 without one, 403 if the control plane refuses it. Reads need no token.\n" +
			"Past --max-inflight requests at once the gateway answers 429 with Retry-After;\n" +
			"a PUT's body must arrive within --read-timeout, and every answer within\n" +
			"--write-timeout of the gateway starting on it (a PUT: --read-timeout + --write-timeout\n" +
			"in all). A PUT or extend that arrived whole is carried out even if its caller hangs up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runGateway(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	f.StringSliceVar(&o.control, "control", control, "gRPC addresses of control-plane voters ($WEFT_CONTROL, comma-separated)")
	f.StringVar(&o.token, "token", "", "unused: a PUT or extend is charged to the caller's own token (Authorization: Bearer)")
	f.StringVar(&o.file, "token-file", "", "unused, as --token")
	_ = f.MarkDeprecated("token", "the gateway no longer stores with a token of its own: callers send theirs (Authorization: Bearer <token>)")
	_ = f.MarkDeprecated("token-file", "the gateway no longer stores with a token of its own: callers send theirs (Authorization: Bearer <token>)")
	f.Int64Var(&o.maxBlobSize, "max-blob-size", defaultGatewayMaxBlob, "largest blob stored or served, in bytes (each is held in memory whole)")
	f.Uint64Var(&o.epochs, "epochs", client.DefaultEpochs, "lifetime in epochs of a stored blob (a PUT may ask for another with ?epochs=N)")
	f.Int64Var(&o.cacheSize, "cache-size", defaultGatewayCache, "bytes of recently read blobs kept in memory for later GETs (0: none; a blob over a quarter of it is not kept)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, https:// when the gateway serves HTTPS (empty: off)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
	f.IntVar(&o.maxInflight, "max-inflight", defaultGatewayMaxInflight, "requests served at once; more get 429 with Retry-After (memory: about this × 5 × --max-blob-size, plus the cache)")
	f.DurationVar(&o.readTimeout, "read-timeout", defaultGatewayReadTimeout, "time a request, a PUT's whole body included, may take to arrive (size it for the largest blob at the slowest caller's rate)")
	f.DurationVar(&o.writeTimeout, "write-timeout", defaultGatewayWriteTimeout, "time an answer may take from when the gateway starts on it: the read or store and the sending (a PUT gets --read-timeout + this in all)")
	f.DurationVar(&o.headerTimeout, "read-header-timeout", defaultGatewayReadHeaderTimeout, "time a request's headers may take to arrive")
	f.DurationVar(&o.idleTimeout, "idle-timeout", defaultGatewayIdleTimeout, "time a keep-alive connection may wait for its next request")
	return cmd
}

func runGateway(ctx context.Context, o gatewayOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	var control []string
	for _, a := range o.control {
		if a = strings.TrimSpace(a); a != "" {
			control = append(control, a)
		}
	}
	if len(control) == 0 {
		return errors.New("--control (or $WEFT_CONTROL) must name at least one control-plane voter")
	}
	log := slog.Default().With("component", "gateway")
	creds, err := dialCredentials(ctx)
	if err != nil {
		return err
	}
	// No Token: every write names its caller's (client.WithToken), and
	// one that did not would be refused rather than charged to anyone.
	cl, err := client.New(client.Config{
		Control: control, MaxBlobLength: uint64(o.maxBlobSize), Logger: log,
		DialOptions: []grpc.DialOption{creds},
	})
	if err != nil {
		return err
	}
	defer cl.Close()

	var reg *prometheus.Registry
	if o.metricsAddr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	cfg := gatewayConfig{
		MaxBlobSize: o.maxBlobSize, Epochs: o.epochs, Logger: log, CacheSize: o.cacheSize,
		MaxInflight: o.maxInflight, ReadTimeout: o.readTimeout, WriteTimeout: o.writeTimeout,
	}
	if reg != nil {
		// Only a non-nil registry: a nil *Registry in the interface
		// would not compare equal to nil.
		cfg.Metrics = reg
	}
	g, err := newGateway(cl, cfg)
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: g,
		// Headers are small and come at once; a PUT's body gets
		// --read-timeout, so a trickled one is cut off rather than hold
		// a connection (and a --max-inflight slot) for good. The write
		// deadline is the handler's (setDeadlines): a PUT's answer
		// comes after its body and the store.
		ReadHeaderTimeout: o.headerTimeout,
		ReadTimeout:       o.readTimeout,
		IdleTimeout:       o.idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests in flight get their own context, cancelled only when
		// the caller goes away, so Shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	// HTTPS with the process's certificate (and client certificates
	// required with --tls-client-ca).
	if srv.TLSConfig, err = tlsOf(ctx).ServerConfig(); err != nil {
		lis.Close()
		return err
	}
	if srv.TLSConfig != nil {
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	go func() { errc <- srv.Serve(lis) }()

	if reg != nil {
		metrics, err := startMetrics(ctx, o.metricsAddr, reg, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer metrics.Close() // after the requests in flight (Shutdown below)
	}
	log.Info("gateway listening", "addr", lis.Addr().String(), "control", control, "max_blob_size", o.maxBlobSize, "epochs", o.epochs,
		"max_inflight", o.maxInflight, "read_timeout", o.readTimeout, "write_timeout", o.writeTimeout)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// The server stopped by itself.
	}
	log.Info("gateway stopping: finishing requests in flight", "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	var errs []error
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, serveErr)
	}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shutting down: %w", err))
		srv.Close()
	}
	return errors.Join(errs...)
}
