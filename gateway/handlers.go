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
// token. The token is checked with the control plane before any of the
// body is read, and the SDK reads the whole body before it registers
// anything, so a body that is too large or cut short changes nothing.
func (g *Gateway) putBlob(w http.ResponseWriter, r *http.Request) {
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

// getBlob serves a blob's bytes, or (HEAD) only its headers.
//
// The SDK's Read returns the bytes only after the consistent-read check
// (DESIGN §3: they re-encode to the blob ID), so the blob is spooled in
// memory whole and sent afterwards; streaming while decoding could hand
// out bytes of an inconsistently encoded blob before the check fails.
// Spooling also lets http.ServeContent answer requests for several
// ranges; one range is read on its own (getRange).
func (g *Gateway) getBlob(w http.ResponseWriter, r *http.Request) {
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
	// One byte range is read from the slivers that hold it; several are
	// cut from the whole blob below by http.ServeContent.
	if r.Method == http.MethodGet {
		if kind, rng, err := rangeOf(r, id); kind == rangeSingle || kind == rangeMalformed {
			g.getRange(w, r, id, rng, err)
			return
		}
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
