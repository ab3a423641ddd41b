package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// rangeKind is what a GET's Range header asks of the gateway.
type rangeKind int

const (
	// rangeIgnored: no Range header, or one in a unit other than bytes,
	// which RFC 9110 §14.2 says to ignore: the whole blob, 200.
	rangeIgnored rangeKind = iota
	// rangeSingle: one byte range, served 206 from the slivers that hold
	// it (client.ReadRange).
	rangeSingle
	// rangeMulti: several byte ranges. The whole blob is read (and
	// checked) and net/http answers them (206 multipart/byteranges).
	rangeMulti
	// rangeMalformed: "bytes=" followed by something that is not a list
	// of byte ranges: 416, as net/http answers it.
	rangeMalformed
)

// parseRangeHeader reads a Range header. Only "bytes" ranges are
// understood (the unit compared without case); surrounding spaces and
// empty list elements are allowed, as the list syntax of RFC 9110 §5.6.1
// asks. It stops at the second range: how many more there are does not
// change the answer, so a huge header costs one pass.
func parseRangeHeader(h string) (rangeKind, client.ByteRange, error) {
	unit, set, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.Trim(unit, " \t"), "bytes") {
		return rangeIgnored, client.ByteRange{}, nil
	}
	var first string
	found := 0
	for rest := set; ; {
		var elem string
		elem, rest, ok = strings.Cut(rest, ",")
		if elem = strings.Trim(elem, " \t"); elem != "" {
			if found++; found == 2 {
				return rangeMulti, client.ByteRange{}, nil
			}
			first = elem
		}
		if !ok {
			break
		}
	}
	if found == 0 {
		return rangeMalformed, client.ByteRange{}, fmt.Errorf("range header %q names no byte range", h)
	}
	r, err := client.ParseByteRange(first)
	if err != nil {
		return rangeMalformed, client.ByteRange{}, err
	}
	return rangeSingle, r, nil
}

// rangeOf says how a GET's Range header is answered. A Range under an
// If-Range that does not name this blob's ETag (strongly) is ignored, as
// is one in another unit; both are then removed from the request, so that
// http.ServeContent serves the whole blob rather than answer them itself.
func rangeOf(r *http.Request, id crypto.BlobID) (rangeKind, client.ByteRange, error) {
	h := r.Header.Get("Range")
	if h == "" {
		return rangeIgnored, client.ByteRange{}, nil
	}
	if ir := r.Header.Get("If-Range"); ir != "" && strings.TrimSpace(ir) != etag(id) {
		r.Header.Del("Range")
		return rangeIgnored, client.ByteRange{}, nil
	}
	kind, rng, err := parseRangeHeader(h)
	if kind == rangeIgnored {
		r.Header.Del("Range")
	}
	return kind, rng, err
}

// getRange answers a GET of one byte range (or a malformed one): 206 with
// Content-Range from the slivers that hold it — or from the cache, which
// holds only blobs read whole — and 416 with "Content-Range: bytes */SIZE"
// when it selects no byte of the blob. The size is the registry's, asked
// first: a suffix range needs it, and an unknown or unreadable blob is
// answered as a whole GET would be (404, 410, …), not 416. The empty blob
// is answered 200 to any well-formed range, as net/http answers an empty
// file: clients that send Range with every GET get it, not an error.
// have is the blob's bytes if the caller holds them already; rep
// describes them.
func (g *Gateway) getRange(w http.ResponseWriter, r *http.Request, id crypto.BlobID, rep representation, rng client.ByteRange, malformed error, have []byte) {
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
	size := int64(st.Length)
	if malformed != nil {
		writeUnsatisfiable(w, r, size, malformed)
		return
	}
	if size == 0 {
		setBlobHeaders(w, id, rep)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	off, n, err := rng.Resolve(size)
	if err != nil {
		writeUnsatisfiable(w, r, size, fmt.Errorf("blob %s: %w", id, err))
		return
	}
	part, err := g.readRange(r, id, off, n, have)
	var re *client.RangeError
	switch {
	case errors.As(err, &re):
		writeUnsatisfiable(w, r, int64(re.Size), err)
		return
	case err != nil:
		writeReadError(w, r, err)
		return
	}
	setBlobHeaders(w, id, rep)
	h := w.Header()
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(part)
}

// readRange returns n bytes at off: from the cache if the blob is kept,
// else from the network. A blob under a storage challenge is a 503, as
// for a whole GET.
func (g *Gateway) readRange(r *http.Request, id crypto.BlobID, off, n int64, have []byte) ([]byte, error) {
	if have != nil {
		return have[off : off+n], nil
	}
	blob, hit := g.cache.get(id)
	if g.metrics != nil {
		g.metrics.cacheResult(hit)
	}
	if hit {
		return blob[off : off+n], nil
	}
	return g.cl.ReadRange(r.Context(), id, off, n, client.ReadOptions{NoChallengeWait: true})
}

// writeUnsatisfiable answers 416 with the blob's size in Content-Range,
// so that the caller can ask again for bytes it has.
func writeUnsatisfiable(w http.ResponseWriter, r *http.Request, size int64, err error) {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	writeError(w, r, http.StatusRequestedRangeNotSatisfiable, err)
}
