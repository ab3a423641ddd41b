package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// putBlob stores the request body, charged to the caller's own client
// token, as the caller's blob object (deletable unless ?permanent=true;
// attributes from X-Weft-Attr-<key> headers and the Content-Type). The
// token is checked with the control plane before any of the body is read,
// and the SDK reads the whole body before it registers anything, so a
// body that is too large or cut short changes nothing.
func (g *Gateway) putBlob(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	epochs, ok := g.putParams(w, r)
	if !ok {
		return
	}
	contentType, ok := putContentType(w, r)
	if !ok {
		return
	}
	obj, ok := putObjectParams(w, r, contentType)
	if !ok {
		return
	}
	sf, _, done, ok := g.storeBody(w, r, token, epochs, obj)
	if !ok {
		return
	}
	defer done()
	id, cert := sf.ID, sf.Certificate
	raw, err := cert.MarshalBinary()
	if err != nil {
		writeErrorID(w, r, http.StatusInternalServerError, fmt.Errorf("encoding the certificate: %w", err), id)
		return
	}
	resp := storeResponse{
		BlobID: id.String(), Certificate: base64.StdEncoding.EncodeToString(raw),
		Epoch: cert.Epoch, Size: sf.Length, Reused: sf.Reused, ObjectID: sf.Object,
	}
	parts := 1
	if sf.Manifest != nil {
		resp.Chunks = len(sf.Manifest.Chunks)
		parts += resp.Chunks
	}
	code := http.StatusCreated
	if sf.Reused == parts {
		// The same bytes were stored before: nothing new was created,
		// the existing certificate is returned (its lifetime extended
		// to cover this request's epochs).
		code = http.StatusOK
	}
	w.Header().Set("Location", "/v1/blobs/"+id.String())
	writeJSON(w, code, resp)
}

// storeBody stores a PUT's body as a file of the caller's (putBlob and
// Walrus's PUT): it checks the token with the control plane before reading
// any of the body, holds the PUT's share of memory, and answers a failed
// store itself (ok false). Otherwise it returns the stored file, the
// write's context (a caller that half-closed its connection still waits
// for the answer) and done, which the caller runs once it has answered.
func (g *Gateway) storeBody(w http.ResponseWriter, r *http.Request, token string, epochs uint64, obj objectParams) (sf *client.StoredFile, ctx context.Context, done func(), ok bool) {
	ctx, cancel := g.writeContext(r, token, g.putTimeout())
	if !g.authorize(ctx, w, r) {
		cancel()
		return nil, nil, nil, false
	}
	release := g.holdPut(r.ContentLength)
	done = func() { release(); cancel() }
	body := g.putBody(w, r)
	opts := client.FileOptions{
		Epochs: epochs, ContentType: obj.contentType, ChunkSize: g.cfg.ChunkSize,
		Permanent: obj.permanent, Attributes: obj.attrs,
	}
	if r.ContentLength > 0 {
		opts.Size = r.ContentLength
	}
	sf, err := g.cl.StoreFile(ctx, body, opts)
	if rec := recorderOf(w); rec != nil {
		rec.bodyRead = body.n
	}
	if err != nil {
		g.storeFailed(w, r, body, failedBlobID(err), err)
		done()
		return nil, nil, nil, false
	}
	return sf, ctx, done, true
}

// putParams reads ?epochs= and refuses a declared length over the limit,
// before any byte of the body is read (a client sending Expect:
// 100-continue never uploads it).
func (g *Gateway) putParams(w http.ResponseWriter, r *http.Request) (epochs uint64, ok bool) {
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

// failedBlobID is the ID a failed plain store got far enough to know (a
// retry of the same PUT resumes it); zero for a file, whose ID comes last
// (a retry resumes it too: its certified chunks are not sent again).
func failedBlobID(err error) crypto.BlobID {
	var qe *client.QuorumError
	var ce *client.ChunkError
	if errors.As(err, &qe) && !errors.As(err, &ce) {
		return qe.BlobID
	}
	return crypto.BlobID{}
}

// putContentType is the request's Content-Type, if it is printable ASCII
// of at most client.MaxContentType bytes (400 otherwise). Unless it is
// application/octet-stream, it becomes the object's "content-type"
// attribute and is recorded in a file's manifest (a PUT of one chunk or
// less is a plain blob, which has none).
func putContentType(w http.ResponseWriter, r *http.Request) (string, bool) {
	ct := r.Header.Get("Content-Type")
	if err := printableContentType(ct); err != nil {
		refuseBody(w, r)
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("Content-Type: %w", err))
		return "", false
	}
	return ct, true
}

// putTimeout bounds a whole PUT: its body, then the store (0: none).
func (g *Gateway) putTimeout() time.Duration {
	if g.cfg.ReadTimeout <= 0 || g.cfg.WriteTimeout <= 0 {
		return 0
	}
	return g.cfg.ReadTimeout + g.cfg.WriteTimeout
}

// putBody is the PUT's body, at most MaxBlobSize bytes. Once it is all in,
// the read deadline (--read-timeout) is lifted: the store that follows
// may outlast it, and net/http's read that watches for the caller hanging
// up would hit it.
func (g *Gateway) putBody(w http.ResponseWriter, r *http.Request) *countingReader {
	rc := http.NewResponseController(w)
	return &countingReader{
		r:     http.MaxBytesReader(baseWriter(w), r.Body, g.cfg.MaxBlobSize),
		atEOF: func() { _ = rc.SetReadDeadline(time.Time{}) },
	}
}

// storeFailed answers a failed store, always with a status of its own:
// nothing was stored, and no 2xx may say otherwise.
func (g *Gateway) storeFailed(w http.ResponseWriter, r *http.Request, body *countingReader, id crypto.BlobID, err error) {
	code := storeErrorStatus(body, err)
	if body.err != nil {
		// The body, not the network, is what failed.
		err = fmt.Errorf("reading the request body (%d bytes in): %w", body.n, body.err)
	}
	switch code {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfter)
	case http.StatusRequestTimeout:
		w.Header().Set("Connection", "close")
	}
	writeErrorID(w, r, code, err, id)
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
func (g *Gateway) writeContext(r *http.Request, token string, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx := client.WithToken(context.WithoutCancel(r.Context()), token)
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// authorize asks the control plane whether ctx's token is a client's
// before a PUT's body is read, so that a stranger cannot make the gateway
// hold and encode a blob that registration then refuses: 403 if not.
func (g *Gateway) authorize(ctx context.Context, w http.ResponseWriter, r *http.Request) bool {
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
			w.Header().Set("Retry-After", retryAfter)
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

// getBlob serves a file's or a blob's bytes, or (HEAD) only its headers.
//
// A plain blob is spooled whole: the SDK's Read returns the bytes only
// after the consistent-read check (DESIGN §3: they re-encode to the blob
// ID), so streaming while decoding could hand out bytes of an
// inconsistently encoded blob before the check fails; spooling also lets
// http.ServeContent answer requests for several ranges (one range is
// read on its own: getRange). A file is streamed chunk by
// chunk, each after its own check (getFile). Whether an ID names a file
// takes its registry length and, if that is small enough for a manifest,
// its first bytes (client.MightBeManifest: one sliver) and, only if they
// are the manifest magic, its bytes, which the cache keeps.
func (g *Gateway) getBlob(w http.ResponseWriter, r *http.Request) {
	if fileID, err := client.ParseQuiltFileID(r.PathValue("id")); err == nil {
		g.getQuiltFile(w, r, fileID)
		return
	}
	id, ok := blobIDParam(w, r)
	if !ok {
		return
	}
	g.serveContent(w, r, id, nil)
}

// serveContent serves blob id's bytes — a file's, if it is a manifest —
// or (HEAD) only its headers: GET /v1/blobs/{id}, and GET
// /v1/objects/{id} for the object's blob, whose served attributes come in
// served (nil for a blob).
func (g *Gateway) serveContent(w http.ResponseWriter, r *http.Request, id crypto.BlobID, served map[string]string) {
	st, err := g.cl.Status(r.Context(), id)
	if err == nil {
		err = st.Err()
	}
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	rep := newRepresentation(st.ContentType, served)
	defer g.holdRead(st.Length)() // a plain blob is held whole
	if st.Length <= uint64(client.MaxManifestLength) {
		// A GET of the whole content reads it whole anyway; a range,
		// HEAD or conditional GET need only know whether it is a file.
		whole := r.Method == http.MethodGet && r.Header.Get("Range") == "" && r.Header.Get("If-None-Match") == ""
		blob, err := g.smallBlob(r.Context(), id, st, whole)
		if err == nil && client.IsManifest(blob) {
			g.getFile(w, r, id, blob, rep)
			return
		}
		g.serveBlob(w, r, id, st, rep, blob, err)
		return
	}
	g.serveBlob(w, r, id, st, rep, nil, nil)
}

// smallBlob returns the bytes of a blob short enough to be a manifest if
// they are at hand or needed: kept in the cache, wanted whole by the
// request, or starting with the manifest magic (then read whole through
// the cache). nil: a plain blob that was not read (its bytes, or a range
// of them, are read as any plain blob's).
func (g *Gateway) smallBlob(ctx context.Context, id crypto.BlobID, st *client.BlobStatus, whole bool) ([]byte, error) {
	if blob, hit := g.cache.get(id); hit {
		if g.metrics != nil {
			g.metrics.cacheResult(true)
		}
		return blob, nil
	}
	if whole {
		return g.loadBlob(ctx, id)
	}
	maybe, err := g.cl.MightBeManifest(ctx, id, st.Length, client.ReadOptions{NoChallengeWait: true})
	if err != nil || !maybe {
		return nil, err
	}
	return g.loadBlob(ctx, id)
}

// loadBlob reads a plain blob through the cache. A blob under a storage
// challenge is a 503 with Retry-After, not a request held open until the
// round closes.
func (g *Gateway) loadBlob(ctx context.Context, id crypto.BlobID) ([]byte, error) {
	blob, cached, err := g.cache.load(ctx, id, func(ctx context.Context) ([]byte, error) {
		return g.cl.Read(ctx, id, client.ReadOptions{NoChallengeWait: true})
	})
	if g.metrics != nil {
		g.metrics.cacheResult(cached)
	}
	return blob, err
}

// serveBlob answers for a plain blob whose registry entry st allows it to
// be served, described by rep. blob is its bytes if loaded already (with
// loadErr).
func (g *Gateway) serveBlob(w http.ResponseWriter, r *http.Request, id crypto.BlobID, st *client.BlobStatus, rep representation, blob []byte, loadErr error) {
	if st.Length > uint64(g.cfg.MaxBlobSize) {
		writeReadError(w, r, fmt.Errorf("%w: blob %s has %d bytes, this gateway serves at most %d", client.ErrBlobTooLarge, id, st.Length, g.cfg.MaxBlobSize))
		return
	}
	// HEAD, and a conditional GET (If-Match, If-None-Match), need only
	// the registry: a blob ID names its bytes forever, so the ETag
	// cannot go stale while the blob is readable.
	setBlobHeaders(w, id, rep)
	if !checkPreconditions(w, r, etag(id)) {
		return
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.FormatUint(st.Length, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	// One byte range is read from the slivers that hold it (or cut from
	// the bytes in hand); several are cut from the whole blob below by
	// http.ServeContent.
	if r.Method == http.MethodGet {
		if kind, rng, err := rangeOf(r, id); kind == rangeSingle || kind == rangeMalformed {
			g.getRange(w, r, id, rep, rng, err, blob)
			return
		}
	}
	if blob == nil && loadErr == nil {
		blob, loadErr = g.loadBlob(r.Context(), id)
	}
	// A kept blob's bytes are the blob's for good; whether they may still
	// be served was the registry's to say, asked above.
	if loadErr != nil {
		writeReadError(w, r, loadErr)
		return
	}
	// ServeContent sets Content-Length and answers several ranges; the
	// preconditions it checks again (against the ETag set above) were
	// met. A zero modtime sends no Last-Modified. Its own errors (416
	// when no range overlaps) are text, answered as JSON by
	// recordingWriter.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

// getFile answers for a file whose manifest's bytes are raw, described by
// rep (its Content-Type, if rep names none, the manifest's). Its bytes go
// out chunk by chunk, each after its own consistent-read check, up to the
// SDK's ReadAhead chunks fetched at once. Headers wait for the first
// chunk, so a file whose first chunk cannot be read gets an error status;
// a later chunk that fails aborts the response (the connection is closed
// short of Content-Length), so a caller never takes a partial file for a
// whole one. Range is not served for files yet (200, whole).
func (g *Gateway) getFile(w http.ResponseWriter, r *http.Request, id crypto.BlobID, raw []byte, rep representation) {
	m, err := client.ParseManifest(raw)
	if err == nil && m.Length > uint64(g.cfg.MaxBlobSize) {
		err = fmt.Errorf("%w: file %s has %d bytes, this gateway serves at most %d", client.ErrBlobTooLarge, id, m.Length, g.cfg.MaxBlobSize)
	}
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	setFileHeaders(w, id, m, rep)
	if !checkPreconditions(w, r, etag(id)) {
		return
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	var largest uint64
	for _, ch := range m.Chunks {
		largest = max(largest, ch.Length)
	}
	defer g.holdRead(largest)()
	info := &client.FileInfo{ID: id, Length: m.Length, ContentType: m.ContentType, Manifest: m}
	out := &streamWriter{w: w, rc: http.NewResponseController(w), timeout: g.cfg.WriteTimeout, status: http.StatusOK}
	if kind, rng, rerr := rangeOf(r, id); kind == rangeSingle || kind == rangeMalformed {
		off, n, err := fileRange(id, m, rng, rerr)
		if err != nil {
			w.Header().Del("Content-Length")
			writeUnsatisfiable(w, r, int64(m.Length), err)
			return
		}
		// One byte range: 206, streamed from the chunks it touches, each
		// part written after its own check.
		h := w.Header()
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, m.Length))
		h.Set("Content-Length", strconv.FormatInt(n, 10))
		out.status = http.StatusPartialContent
		err = g.cl.StreamRangeTo(r.Context(), info, off, n, out, client.ReadOptions{NoChallengeWait: true})
	} else {
		err = g.cl.StreamTo(r.Context(), info, out, client.ReadOptions{NoChallengeWait: true})
	}
	switch {
	case err == nil:
	case out.started:
		if rec := recorderOf(w); rec != nil {
			rec.err, rec.abort = err, true
		}
	default:
		writeReadError(w, r, err)
	}
}

// setFileHeaders describes a file's bytes: its length, and rep's content
// type, else the one its manifest records if it is a media type (else
// octet-stream).
func setFileHeaders(w http.ResponseWriter, id crypto.BlobID, m *client.Manifest, rep representation) {
	rep.set(w.Header(), mediaType(m.ContentType))
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", etag(id))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatUint(m.Length, 10))
}

// fileRange resolves a GET's one byte range against a file's length; an
// error (malformed, or no byte selected) is answered 416.
func fileRange(id crypto.BlobID, m *client.Manifest, rng client.ByteRange, malformed error) (off, n int64, err error) {
	if malformed != nil {
		return 0, 0, malformed
	}
	if off, n, err = rng.Resolve(int64(m.Length)); err != nil {
		return 0, 0, fmt.Errorf("file %s: %w", id, err)
	}
	return off, n, nil
}

// streamWriter writes a file's chunks to the answer: the status goes out
// with the first chunk, and each chunk moves the write deadline on, so
// WriteTimeout bounds a stall rather than a whole large file.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	status  int // sent with the first bytes: 200, or 206 for a range
	started bool
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.WriteHeader(s.status)
	}
	if s.timeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	return s.w.Write(p)
}

// setBlobHeaders describes a plain blob's bytes: rep's content type (else
// octet-stream) and served headers.
func setBlobHeaders(w http.ResponseWriter, id crypto.BlobID, rep representation) {
	rep.set(w.Header(), "")
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff") // arbitrary bytes must not be sniffed into HTML
	h.Set("ETag", etag(id))
	h.Set("Accept-Ranges", "bytes")
}

// getStatus serves a blob's registry entry.
func (g *Gateway) getStatus(w http.ResponseWriter, r *http.Request) {
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
		Objects: st.Objects, PermanentEndEpoch: st.PermanentEndEpoch, Deleting: st.Deleting, ContentType: st.ContentType,
	}
	if st.Certificate != nil {
		raw, err := st.Certificate.MarshalBinary()
		if err != nil {
			writeError(w, r, http.StatusInternalServerError, fmt.Errorf("encoding the certificate: %w", err))
			return
		}
		resp.Certificate = base64.StdEncoding.EncodeToString(raw)
	}
	// The entry changes (certification, expiry, objects): revalidated.
	writeJSONTagged(w, r, resp, cacheRevalidate)
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
func (g *Gateway) extendBlob(w http.ResponseWriter, r *http.Request) {
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
	ext, err := g.cl.ExtendFile(ctx, id, opts)
	if err != nil {
		code := errorStatus(err)
		switch {
		case callerRefused(err) != 0:
			code = callerRefused(err)
		case hasCode(err, codes.InvalidArgument):
			code = http.StatusConflict // another extension moved the end epoch meanwhile
		}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfter)
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
