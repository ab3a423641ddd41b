package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/client"
)

// Blob objects (issue #21) through the gateway: a PUT makes the caller's
// object of the blob it stores (?permanent=true, X-Weft-Attr-<key>
// headers, the request's Content-Type as "content-type"); GET
// /v1/objects/{id} serves its blob's bytes with its served attributes as
// headers, …/info the object itself; DELETE and PUT …/attributes are its
// owner's, checked by the control plane against the caller's token.

// attrHeaderPrefix starts the request headers that set a PUT's object
// attributes: X-Weft-Attr-Cache-Control: max-age=60 sets "cache-control".
const attrHeaderPrefix = "X-Weft-Attr-"

// maxAttributesBody bounds the JSON body of PUT …/attributes: the
// attributes themselves are at most control.MaxAttributesBytes, but JSON
// may escape every byte of a value six times over.
const maxAttributesBody = 64 << 10

// representation is what the headers of a blob's bytes say beyond its ID:
// a content type — the object's served one, else the one the blob's
// objects agree on (client.BlobStatus.ContentType) — and, for GET
// /v1/objects/{id}, the object's other served attributes.
type representation struct {
	contentType  string            // a media type, or "" (a file's manifest's, else octet-stream)
	cacheControl string            // unless headers has one
	headers      map[string]string // header name → value
}

// newRepresentation describes a blob's bytes from its registry's content
// type and an object's served attributes (nil: none, a blob's GET). A
// content type that is not a media type is not answered.
//
// A blob's bytes are cached for a year (cacheImmutable): its ID names
// them. An object's are revalidated (cacheRevalidate: a 304 costs the
// object's and the registry's lookups) unless its "cache-control"
// attribute says otherwise, as its owner may edit its other served
// attributes or delete it, and a cache must not keep serving either.
func newRepresentation(blobContentType string, served map[string]string) representation {
	rep := representation{contentType: mediaType(blobContentType), cacheControl: cacheImmutable}
	if served != nil {
		rep.cacheControl = cacheRevalidate
	}
	if ct := mediaType(served[control.ContentTypeAttribute]); ct != "" {
		rep.contentType = ct
	}
	for k, v := range served {
		if k != control.ContentTypeAttribute {
			if rep.headers == nil {
				rep.headers = make(map[string]string, len(served))
			}
			rep.headers[http.CanonicalHeaderKey(k)] = v
		}
	}
	return rep
}

// set writes rep's headers; fallback is the content type when rep names
// none ("" for octet-stream).
func (rep representation) set(h http.Header, fallback string) {
	ct := "application/octet-stream"
	switch {
	case rep.contentType != "":
		ct = rep.contentType
	case fallback != "":
		ct = fallback
	}
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", rep.cacheControl)
	for k, v := range rep.headers {
		h.Set(k, v)
	}
}

// mediaType is ct if it is a media type (RFC 9110 §8.3.1), else "".
func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return ""
	}
	return ct
}

// servedAttributes are an object's attributes the gateway answers as
// headers of its bytes (control.ServedAttributes), each only if it is a
// valid attribute value (no control characters): the control plane
// checked them when they were set.
func servedAttributes(attrs map[string]string) map[string]string {
	served := map[string]string{}
	for _, k := range control.ServedAttributes {
		if v, ok := attrs[k]; ok && v != "" && control.ValidateAttributeValue(k, v) == nil {
			served[k] = v
		}
	}
	return served
}

// servedHeaders are the header names of control.ServedAttributes but
// Content-Type: an error answer drops them, as they describe bytes it
// does not carry (a Content-Encoding would garble the JSON).
var servedHeaders = func() []string {
	var hs []string
	for _, k := range control.ServedAttributes {
		if k != control.ContentTypeAttribute {
			hs = append(hs, http.CanonicalHeaderKey(k))
		}
	}
	return hs
}()

// objectParams is what a PUT asks of the object it makes.
type objectParams struct {
	permanent   bool
	attrs       map[string]string // without "content-type": that is contentType
	contentType string            // recorded as "content-type" (and in a file's manifest)
}

// putObjectParams reads a PUT's ?permanent= and X-Weft-Attr-<key>
// headers, with contentType (the request's, "" for none) as the
// "content-type" attribute unless it is application/octet-stream, which
// says nothing. An X-Weft-Attr-Content-Type must agree with the request's
// Content-Type. Anything malformed, or attributes out of
// control.ValidateAttributes' bounds, is 400 before any byte of the body
// is read: nothing is stored.
func putObjectParams(w http.ResponseWriter, r *http.Request, contentType string) (objectParams, bool) {
	p, err := parseObjectParams(r, contentType)
	if err != nil {
		refuseBody(w, r)
		writeError(w, r, http.StatusBadRequest, err)
		return objectParams{}, false
	}
	return p, true
}

func parseObjectParams(r *http.Request, contentType string) (objectParams, error) {
	var p objectParams
	q := r.URL.Query()
	if vs := q["permanent"]; len(vs) > 0 {
		b, err := strconv.ParseBool(vs[0])
		if err != nil || len(vs) > 1 {
			return p, fmt.Errorf("permanent must be given once, true or false, got %q", vs)
		}
		p.permanent = b
	}
	attrs, err := attributeHeaders(r.Header)
	if err != nil {
		return p, err
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "application/octet-stream" {
		contentType = ""
	}
	if ct, ok := attrs[control.ContentTypeAttribute]; ok {
		if contentType != "" && ct != contentType {
			return p, fmt.Errorf("%scontent-type %q and Content-Type %q disagree: give one", attrHeaderPrefix, ct, contentType)
		}
		if err := printableContentType(ct); err != nil {
			return p, fmt.Errorf("%scontent-type: %w", attrHeaderPrefix, err)
		}
		contentType = ct
		delete(attrs, control.ContentTypeAttribute)
	}
	p.attrs, p.contentType = attrs, contentType
	if err := control.ValidateAttributes(objectAttributes(p)); err != nil {
		return objectParams{}, fmt.Errorf("the object's attributes (%s<key> headers and Content-Type): %w", attrHeaderPrefix, err)
	}
	return p, nil
}

// objectAttributes is every attribute of p's object, its content type
// included (for a store that records it nowhere else: a quilt's).
func objectAttributes(p objectParams) map[string]string {
	if p.contentType == "" {
		return p.attrs
	}
	all := maps.Clone(p.attrs)
	if all == nil {
		all = map[string]string{}
	}
	all[control.ContentTypeAttribute] = p.contentType
	return all
}

// attributeHeaders collects the X-Weft-Attr-<key> headers, keys
// lower-cased. A key given twice (in any case: net/http joins the
// spellings of one header name) is refused, not resolved.
func attributeHeaders(h http.Header) (map[string]string, error) {
	var attrs map[string]string
	for name, values := range h {
		if len(name) < len(attrHeaderPrefix) || !strings.EqualFold(name[:len(attrHeaderPrefix)], attrHeaderPrefix) {
			continue
		}
		key := strings.ToLower(name[len(attrHeaderPrefix):])
		if _, dup := attrs[key]; dup || len(values) != 1 {
			return nil, fmt.Errorf("attribute %q is given more than once (%s%s headers)", key, attrHeaderPrefix, key)
		}
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs[key] = values[0]
	}
	return attrs, nil
}

// printableContentType checks a content type as a file's manifest records
// it: printable ASCII of at most client.MaxContentType bytes.
func printableContentType(ct string) error {
	if len(ct) > client.MaxContentType || strings.IndexFunc(ct, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
		return fmt.Errorf("a content type must be printable ASCII of at most %d bytes", client.MaxContentType)
	}
	return nil
}

// objectIDParam parses the {object} path segment: a decimal object ID,
// written as the gateway writes it (no sign, no leading zero; 0 names no
// object). Anything else is 400.
func objectIDParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	raw := r.PathValue("object")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 || strconv.FormatUint(id, 10) != raw {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("malformed object ID %q: a decimal integer from 1 to %d", raw, uint64(math.MaxUint64)))
		return 0, false
	}
	return id, true
}

// getObject serves an object's blob's bytes, as GET /v1/blobs/{blob}
// would (Range, HEAD, If-None-Match, If-Match, files), with the object's
// served attributes as headers.
func (g *Gateway) getObject(w http.ResponseWriter, r *http.Request) {
	oid, ok := objectIDParam(w, r)
	if !ok {
		return
	}
	obj, err := g.cl.Object(r.Context(), oid)
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	g.serveContent(w, r, obj.BlobID, servedAttributes(obj.Attributes))
}

// objectResponse is an object, as GET /v1/objects/{id}/info answers it.
type objectResponse struct {
	ObjectID     uint64            `json:"object_id"`
	Owner        string            `json:"owner"`
	BlobID       string            `json:"blob_id"`
	EndEpoch     uint64            `json:"end_epoch"` // it lives through end_epoch−1
	Deletable    bool              `json:"deletable"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	CreatedEpoch uint64            `json:"created_epoch"`
	StoredBytes  uint64            `json:"stored_bytes"` // quota one epoch of it costs
}

// getObjectInfo serves an object's record.
func (g *Gateway) getObjectInfo(w http.ResponseWriter, r *http.Request) {
	oid, ok := objectIDParam(w, r)
	if !ok {
		return
	}
	obj, err := g.cl.Object(r.Context(), oid)
	if err != nil {
		writeReadError(w, r, err)
		return
	}
	// An object changes (extension, attributes, owner, deletion).
	writeJSONTagged(w, r, objectResponse{
		ObjectID: obj.ID, Owner: obj.Owner, BlobID: obj.BlobID.String(), EndEpoch: obj.EndEpoch, Deletable: obj.Deletable,
		Attributes: obj.Attributes, CreatedEpoch: obj.CreatedEpoch, StoredBytes: obj.StoredBytes,
	}, cacheRevalidate)
}

// deleteResponse answers DELETE /v1/objects/{id}.
type deleteResponse struct {
	ObjectID uint64 `json:"object_id"`
	Refund   uint64 `json:"refund"` // quota given back: stored bytes × the epochs after the current one
	// BlobEndsEpoch is the epoch at whose start the nodes drop the blob,
	// when this was its last object (reads then answer 410); 0 while
	// other objects keep it.
	BlobEndsEpoch uint64 `json:"blob_ends_epoch"`
}

// deleteObject deletes one of the caller's deletable objects: 403 for
// another client's, 409 for a permanent one, 404 for none.
func (g *Gateway) deleteObject(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	oid, ok := objectIDParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := g.writeContext(r, token, g.cfg.WriteTimeout)
	defer cancel()
	if !g.authorize(ctx, w, r) {
		return
	}
	d, err := g.cl.Delete(ctx, oid)
	if err != nil {
		writeObjectError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deleteResponse{ObjectID: oid, Refund: d.Refund, BlobEndsEpoch: d.BlobEndsEpoch})
}

// attributesRequest is the body of PUT /v1/objects/{id}/attributes.
type attributesRequest struct {
	Set    map[string]string `json:"set"`
	Remove []string          `json:"remove"`
}

// putAttributes changes one of the caller's objects' attributes: "set"
// adds or replaces, "remove" deletes (keys lower-cased; a key given twice,
// in any case, or both set and removed, is 400). 204 once changed; GET
// …/info shows the object.
func (g *Gateway) putAttributes(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(w, r)
	if !ok {
		return
	}
	oid, ok := objectIDParam(w, r)
	if !ok {
		return
	}
	if r.ContentLength > maxAttributesBody {
		refuseBody(w, r)
		writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("an attributes body is at most %d bytes", maxAttributesBody))
		return
	}
	set, remove, err := readAttributesRequest(http.MaxBytesReader(baseWriter(w), r.Body, maxAttributesBody))
	if err != nil {
		writeError(w, r, bodyErrorStatus(err), err)
		return
	}
	ctx, cancel := g.writeContext(r, token, g.cfg.WriteTimeout)
	defer cancel()
	if !g.authorize(ctx, w, r) {
		return
	}
	if err := g.cl.SetAttributes(ctx, oid, set, remove); err != nil {
		writeObjectError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readAttributesRequest decodes and checks an attributes body: one JSON
// object of "set" and "remove" only, keys lower-cased and checked as the
// control plane would (control.ValidateAttributes), at least one change.
func readAttributesRequest(body io.Reader) (set map[string]string, remove []string, err error) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req attributesRequest
	if err := dec.Decode(&req); err != nil {
		return nil, nil, fmt.Errorf(`the body must be one JSON object {"set": {key: value, …}, "remove": [key, …]}: %w`, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, nil, err
		}
		return nil, nil, errors.New(`the body must be one JSON object {"set": …, "remove": …}, with nothing after it`)
	}
	if len(req.Set)+len(req.Remove) == 0 {
		return nil, nil, errors.New(`no attribute to set or remove: give "set" or "remove"`)
	}
	if len(req.Set) > 0 {
		set = make(map[string]string, len(req.Set))
		for k, v := range req.Set {
			lk := strings.ToLower(k)
			if _, dup := set[lk]; dup {
				return nil, nil, fmt.Errorf("set: attribute %q is given more than once (keys are lower-cased)", lk)
			}
			set[lk] = v
		}
		if err := control.ValidateAttributes(set); err != nil {
			return nil, nil, fmt.Errorf("set: %w", err)
		}
	}
	if len(req.Remove) > control.MaxAttributes {
		return nil, nil, fmt.Errorf("remove: %d keys (at most %d)", len(req.Remove), control.MaxAttributes)
	}
	seen := map[string]bool{}
	for _, k := range req.Remove {
		lk := strings.ToLower(k)
		if err := control.ValidateAttributeKey(lk); err != nil {
			return nil, nil, fmt.Errorf("remove: %w", err)
		}
		if _, both := set[lk]; both {
			return nil, nil, fmt.Errorf("attribute %q is both set and removed", lk)
		}
		if !seen[lk] {
			seen[lk] = true
			remove = append(remove, lk)
		}
	}
	return set, remove, nil
}

// writeObjectError answers a failed object write (delete, attributes):
// the caller's token refused 403, an unknown object 404, another client's
// 403, a permanent one 409, attributes the control plane refuses (the
// object's whole set out of bounds) 400.
func writeObjectError(w http.ResponseWriter, r *http.Request, err error) {
	code := callerRefused(err)
	switch {
	case code != 0:
	case hasCode(err, codes.InvalidArgument):
		code = http.StatusBadRequest
	default:
		code = errorStatus(err)
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeError(w, r, code, err)
}
