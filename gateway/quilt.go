package gateway

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/weftstore/weft/client"
)

// quiltResponse answers PUT /v1/quilts: the quilt's blob ID and each
// file's ID, in the order of the parts.
type quiltResponse struct {
	QuiltID string              `json:"quilt_id"`
	Size    uint64              `json:"size"`
	Epoch   uint64              `json:"certified_epoch"`
	Files   []quiltFileResponse `json:"files"`
	// ObjectID is the caller's blob object of the quilt (its files'
	// lifetime and deletion are the quilt's).
	ObjectID uint64 `json:"object_id"`
}

type quiltFileResponse struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Length uint64 `json:"length"`
}

// putQuilt stores the parts of a multipart/form-data body as one quilt
// (client.StoreQuilt): each part is a file, named by its filename (or its
// form name), typed by its Content-Type. The quilt is held whole, so the
// body is bounded by MaxBlobSize and MaxWholeBlob; a bad index (two parts
// of one name) is 400 and stores nothing. The caller's object of the quilt
// takes ?permanent= and X-Weft-Attr-<key> headers, as a PUT of a blob's.
func (g *Gateway) putQuilt(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	epochs, ok := g.putParams(w, r)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		writeError(w, r, http.StatusUnsupportedMediaType, errors.New("a quilt is a multipart/form-data body: one part per file"))
		return
	}
	// The request's Content-Type is the body's framing, not the quilt's:
	// only X-Weft-Attr-Content-Type types the quilt's object.
	obj, ok := putObjectParams(w, r, "")
	if !ok {
		return
	}
	ctx, cancel := g.writeContext(r, token, g.putTimeout())
	defer cancel()
	if !g.authorize(ctx, w, r) {
		return
	}
	limit := min(g.cfg.MaxBlobSize, MaxWholeBlob)
	defer g.holdPut(min(r.ContentLength, limit))()
	r.Body = http.MaxBytesReader(baseWriter(w), r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("reading the multipart body: %w", err))
		return
	}
	var files []client.QuiltInput
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			writeError(w, r, bodyErrorStatus(err), fmt.Errorf("reading part %d of the body: %w", len(files)+1, err))
			return
		}
		name := part.FileName()
		if name == "" {
			name = part.FormName()
		}
		data, err := io.ReadAll(part)
		if err != nil {
			writeError(w, r, bodyErrorStatus(err), fmt.Errorf("reading part %d (%q) of the body: %w", len(files)+1, name, err))
			return
		}
		files = append(files, client.QuiltInput{Name: name, Data: data, ContentType: part.Header.Get("Content-Type")})
	}
	sq, err := g.cl.StoreQuilt(ctx, files, client.StoreOptions{Epochs: epochs, Permanent: obj.permanent, Attributes: objectAttributes(obj)})
	if err != nil {
		code := errorStatus(err)
		if errors.Is(err, client.ErrInvalidQuilt) {
			code = http.StatusBadRequest
		}
		writeError(w, r, code, err)
		return
	}
	resp := quiltResponse{QuiltID: sq.ID.String(), Size: sq.Length, Epoch: sq.Certificate.Epoch, ObjectID: sq.Object}
	for i, id := range sq.Files {
		resp.Files = append(resp.Files, quiltFileResponse{ID: id.String(), Name: sq.Index.Files[i].Name, Length: sq.Index.Files[i].Length})
	}
	code := http.StatusCreated
	if sq.AlreadyCertified {
		code = http.StatusOK
	}
	writeJSON(w, code, resp)
}

// bodyErrorStatus is 413 for a body over the limit, else 400.
func bodyErrorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// getQuiltFile answers GET /v1/blobs/{id} for a quilt file's ID: the
// file's bytes (read by range from its quilt, verified), typed by its
// content type. The ETag is the file ID, and the bytes are cached for a
// year: a quilt never changes. A conditional GET (If-None-Match,
// If-Match) needs only the quilt's registry entry.
func (g *Gateway) getQuiltFile(w http.ResponseWriter, r *http.Request, id client.QuiltFileID) {
	tag := `"` + id.String() + `"`
	h := w.Header()
	if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != "" {
		st, err := g.cl.Status(r.Context(), id.Quilt)
		if err == nil {
			err = st.Err()
		}
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		h.Set("ETag", tag)
		h.Set("Cache-Control", cacheImmutable)
		if !checkPreconditions(w, r, tag) {
			return
		}
	}
	data, f, err := g.cl.ReadQuiltFile(r.Context(), id, client.ReadOptions{NoChallengeWait: true})
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	ct := f.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("ETag", tag)
	h.Set("Cache-Control", cacheImmutable)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}
