package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// The Walrus dialect's tests replay Walrus's own descriptions and
// examples (testdata/walrus/README.md says where each comes from): every
// answer is checked against the schema the OpenAPI description gives for
// its route and status, and against the documentation's example of it —
// each field a client reads there, by the same name and JSON type.

const walrusTestdata = "testdata/walrus"

// walrusSpec is one of Walrus's OpenAPI descriptions, parsed.
type walrusSpec struct {
	file string
	doc  map[string]any
}

func loadWalrusSpec(t *testing.T, file string) *walrusSpec {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(walrusTestdata, file))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &walrusSpec{file: file, doc: doc}
}

// fixEventID corrects the description's EventID (testdata/walrus/README.md):
// it gives txDigest as an array of bytes, but Sui writes a transaction
// digest as Base58 text, as the documentation's example and the
// description's own example of EventID do. The gateway never answers an
// event (weft has none: alreadyCertified names the object); only the
// documentation's example of alreadyCertified has one.
func (o *walrusSpec) fixEventID(t *testing.T) {
	t.Helper()
	props, ok := dig(o.doc, "components", "schemas", "EventID", "properties").(map[string]any)
	if !ok || dig(props, "txDigest", "type") != "array" {
		t.Fatalf("%s: EventID.txDigest is not the array the fix is for: %v", o.file, props)
	}
	props["txDigest"] = map[string]any{"type": "string"}
}

func loadWalrusExample(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(walrusTestdata, "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// dig walks nested maps by their keys; nil where one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// operation is the description of method (lower case, as OpenAPI writes
// it) on path: the route must be one the description has.
func (o *walrusSpec) operation(t *testing.T, method, path string) map[string]any {
	t.Helper()
	op, ok := dig(o.doc, "paths", path, method).(map[string]any)
	if !ok {
		t.Fatalf("%s describes no %s %s", o.file, strings.ToUpper(method), path)
	}
	return op
}

// response is the media type and schema an operation documents for an
// answer of code (no schema: none documented, as for the publisher's 413).
func (o *walrusSpec) response(t *testing.T, op map[string]any, code int) (mediaType string, schema any) {
	t.Helper()
	resp, ok := dig(op, "responses", strconv.Itoa(code)).(map[string]any)
	if !ok {
		t.Fatalf("%s: operation %v documents no %d answer", o.file, op["operationId"], code)
	}
	content, _ := resp["content"].(map[string]any)
	for mt, c := range content {
		return mt, dig(c, "schema")
	}
	return "", nil
}

// queryParam is an operation's query parameter called name.
func (o *walrusSpec) queryParam(t *testing.T, op map[string]any, name string) map[string]any {
	t.Helper()
	params, _ := op["parameters"].([]any)
	for _, p := range params {
		if pm, ok := p.(map[string]any); ok && pm["in"] == "query" && pm["name"] == name {
			return pm
		}
	}
	t.Fatalf("%s: operation %v has no query parameter %q", o.file, op["operationId"], name)
	return nil
}

// walrusCamelSchemas are the schemas whose variants' fields serde writes
// in camelCase though the description spells them in snake_case
// (testdata/walrus/README.md: rename_all_fields, which the generator
// ignores).
var walrusCamelSchemas = map[string]bool{"BlobStoreResult": true, "RegisterBlobOp": true}

func camelCase(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// jsonType names a decoded JSON value's type as JSON Schema does (a whole
// number is an "integer").
func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// sameShape reports whether s is written as the schema's example ex is:
// a Sui ID (0x and hex digits) or base64url (a blob ID), of the same
// length. Other examples say nothing of the shape.
func sameShape(ex, s string) bool {
	isHex := func(s string) bool {
		return s != "" && strings.Trim(s, "0123456789abcdefABCDEF") == ""
	}
	isB64 := func(s string) bool {
		return s != "" && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
	}
	switch {
	case strings.HasPrefix(ex, "0x") && isHex(ex[2:]):
		return len(s) == len(ex) && strings.HasPrefix(s, "0x") && isHex(s[2:])
	case isB64(ex):
		return len(s) == len(ex) && isB64(s)
	}
	return true
}

// conform checks a decoded JSON value against a schema of the
// description: $ref, allOf, oneOf (at least one variant), type, required
// and present properties (camelCase in walrusCamelSchemas' variants),
// array items, minimum, and the shape of a string schema's example.
func (o *walrusSpec) conform(schema, v any, at string, camel bool) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return nil // no schema, or `true`: anything
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		target := dig(o.doc, "components", "schemas", name)
		if target == nil {
			return fmt.Errorf("%s: %s names no schema of %s", at, ref, o.file)
		}
		return o.conform(target, v, at, walrusCamelSchemas[name])
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if err := o.conform(sub, v, at, camel); err != nil {
				return err
			}
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		var errs []error
		for _, sub := range one {
			err := o.conform(sub, v, at, camel)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err)
		}
		if errs != nil {
			return fmt.Errorf("%s: no variant of oneOf fits: %w", at, errors.Join(errs...))
		}
	}
	var types []string
	switch ty := s["type"].(type) {
	case string:
		types = []string{ty}
	case []any:
		for _, x := range ty {
			types = append(types, fmt.Sprint(x))
		}
	}
	got := jsonType(v)
	if len(types) > 0 && !slices.Contains(types, got) && (got != "integer" || !slices.Contains(types, "number")) {
		return fmt.Errorf("%s: a JSON %s (%v), the description says %v", at, got, v, types)
	}
	wire := func(name string) string {
		if camel {
			return camelCase(name)
		}
		return name
	}
	switch x := v.(type) {
	case map[string]any:
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := x[wire(fmt.Sprint(r))]; !ok {
				return fmt.Errorf("%s: no %q, which the description requires", at, wire(fmt.Sprint(r)))
			}
		}
		props, _ := s["properties"].(map[string]any)
		for name, ps := range props {
			if fv, ok := x[wire(name)]; ok {
				if err := o.conform(ps, fv, at+"."+wire(name), camel); err != nil {
					return err
				}
			}
		}
	case []any:
		for i, e := range x {
			if err := o.conform(s["items"], e, fmt.Sprintf("%s[%d]", at, i), camel); err != nil {
				return err
			}
		}
	case float64:
		if m, ok := s["minimum"].(int); ok && x < float64(m) {
			return fmt.Errorf("%s: %v, below the minimum %d", at, x, m)
		}
	case string:
		if ex, ok := s["examples"].([]any); ok && len(ex) > 0 {
			if exs, ok := ex[0].(string); ok && !sameShape(exs, x) {
				return fmt.Errorf("%s: %q is not written as the description's example %q", at, x, exs)
			}
		}
	}
	return nil
}

// likeExample checks that got has every field of a documentation example,
// by the same name and with the same JSON type (numbers of either kind
// alike), recursively; arrays by their first element. alternatives maps a
// field to another the description allows in its place (oneOf); opaque
// names paths whose contents are the error's own (ErrorInfo metadata).
func likeExample(ex, got any, at string, alternatives map[string]string, opaque map[string]bool) error {
	kind := func(v any) string {
		if k := jsonType(v); k != "integer" {
			return k
		}
		return "number"
	}
	if kind(ex) != kind(got) {
		return fmt.Errorf("%s: a JSON %s (%v), the example has a %s (%v)", at, kind(got), got, kind(ex), ex)
	}
	if opaque[at] {
		return nil
	}
	switch e := ex.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, ev := range e {
			gv, ok := g[k]
			if !ok {
				if alt, isAlt := alternatives[k]; isAlt {
					if _, ok := g[alt]; ok {
						continue // the description's other variant, which conform checks
					}
				}
				return fmt.Errorf("%s: no %q, which the example has", at, k)
			}
			if err := likeExample(ev, gv, at+"."+k, alternatives, opaque); err != nil {
				return err
			}
		}
	case []any:
		g := got.([]any)
		if len(e) > 0 {
			if len(g) == 0 {
				return fmt.Errorf("%s: empty, the example is not", at)
			}
			return likeExample(e[0], g[0], at+"[0]", alternatives, opaque)
		}
	}
	return nil
}

// eventOrObject are the fields the description's EventOrObjectId allows
// in each other's place (alreadyCertified names the certification event,
// or the caller's object of the blob).
func (o *walrusSpec) eventOrObject(t *testing.T) map[string]string {
	t.Helper()
	variants, _ := dig(o.doc, "components", "schemas", "EventOrObjectId", "oneOf").([]any)
	var names []string
	for _, v := range variants {
		req, _ := dig(v, "required").([]any)
		for _, r := range req {
			names = append(names, fmt.Sprint(r))
		}
	}
	if len(names) != 2 {
		t.Fatalf("EventOrObjectId's variants require %v, want two fields", names)
	}
	return map[string]string{names[0]: names[1], names[1]: names[0]}
}

// The documentation's examples fit the descriptions once the variants'
// fields are read in camelCase, and do not as the descriptions spell them:
// the rule the gateway's answers are checked under is Walrus's own.
func TestWalrusDescriptions(t *testing.T) {
	pub := loadWalrusSpec(t, "publisher_openapi.yaml")
	agg := loadWalrusSpec(t, "aggregator_openapi.yaml")
	_, store := pub.response(t, pub.operation(t, "put", "/v1/blobs"), 200)
	cert := loadWalrusExample(t, "already-certified.json")
	err := pub.conform(store, cert, "already-certified.json", false)
	if err == nil || !strings.Contains(err.Error(), "alreadyCertified.event.txDigest: a JSON string") {
		t.Fatalf("already-certified.json against the description's EventID: %v; want its txDigest refused", err)
	}
	pub.fixEventID(t)
	for _, name := range []string{"newly-created.json", "already-certified.json"} {
		ex := loadWalrusExample(t, name)
		if err := pub.conform(store, ex, name, false); err != nil {
			t.Fatalf("the documentation's example does not fit the description: %v", err)
		}
		saved := walrusCamelSchemas
		walrusCamelSchemas = nil
		err := pub.conform(store, ex, name, false)
		walrusCamelSchemas = saved
		if err == nil {
			t.Fatalf("%s fits the description's snake_case spelling too: the camelCase rule is not needed", name)
		}
		t.Logf("%s as the description spells it: %v", name, err)
	}
	_, status := agg.response(t, agg.operation(t, "get", "/v1/blobs/{blob_id}"), 404)
	if err := agg.conform(status, loadWalrusExample(t, "error.json"), "error.json", false); err != nil {
		t.Fatalf("the error example does not fit the description's Status: %v", err)
	}
}

// walrusClient replays requests against a gateway's Walrus dialect and
// checks the answers against the descriptions and examples.
type walrusClient struct {
	pub, agg       *walrusSpec
	base, token    string
	newlyCreated   map[string]any
	alreadyCert    map[string]any
	errorExample   map[string]any
	alternatives   map[string]string
	errorOpaque    map[string]bool
	storeOperation map[string]any
}

// store replays a publisher PUT (query appended to /v1/blobs) of body and
// checks its answer: 200, a BlobStoreResult of the variant want, with
// every field of the documentation's example of it.
func (c *walrusClient) store(t *testing.T, query string, body []byte, want string, header ...string) map[string]any {
	t.Helper()
	resp, b := gatewaytest.Do(t, http.MethodPut, c.base+"/v1/blobs"+query, bytes.NewReader(body), append(gatewaytest.Bearer(c.token), header...)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/blobs%s: %s %s", query, resp.Status, b)
	}
	mt, schema := c.pub.response(t, c.storeOperation, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != mt {
		t.Fatalf("PUT: Content-Type %q, the description says %q", ct, mt)
	}
	v := decodeJSON[map[string]any](t, b)
	if err := c.pub.conform(schema, v, "BlobStoreResult", false); err != nil {
		t.Fatalf("PUT answer %s: %v", b, err)
	}
	ex := c.newlyCreated
	if want == "alreadyCertified" {
		ex = c.alreadyCert
	}
	if err := likeExample(ex, v, "", c.alternatives, nil); err != nil {
		t.Fatalf("PUT answer %s, against the documentation's example: %v", b, err)
	}
	if _, ok := v[want].(map[string]any); !ok || len(v) != 1 {
		t.Fatalf("PUT answer %s: want %s", b, want)
	}
	return v[want].(map[string]any)
}

// wantError checks a Walrus error answer: status code, the Status schema
// (the operation's for that code where the description documents it), the
// documentation's example of an error, and the reason.
func (c *walrusClient) wantError(t *testing.T, spec *walrusSpec, op map[string]any, resp *http.Response, b []byte, code int, reason string) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %s %s, want %d", resp.Request.Method, resp.Request.URL, resp.Status, b, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q", ct)
	}
	schema := any(map[string]any{"$ref": "#/components/schemas/Status"})
	if _, ok := dig(op, "responses", strconv.Itoa(code)).(map[string]any); !ok {
		t.Logf("(%s documents no %d answer for %v: checked against its Status schema)", spec.file, code, op["operationId"])
	} else if mt, s := spec.response(t, op, code); s == nil {
		t.Logf("(%s documents a %d answer for %v without a body: checked against its Status schema)", spec.file, code, op["operationId"])
	} else if mt != "application/json" {
		t.Fatalf("the description documents a %d answer of %q", code, mt)
	} else {
		schema = s
	}
	v := decodeJSON[map[string]any](t, b)
	if err := spec.conform(schema, v, "Status", false); err != nil {
		t.Fatalf("error %s: %v", b, err)
	}
	if err := likeExample(c.errorExample, v, "", nil, c.errorOpaque); err != nil {
		t.Fatalf("error %s, against the documentation's example: %v", b, err)
	}
	e := v["error"].(map[string]any)
	info := e["details"].([]any)[0].(map[string]any)
	if e["code"] != float64(code) || info["@type"] != "ErrorInfo" || info["reason"] != reason {
		t.Fatalf("error %s: want code %d, reason %s", b, code, reason)
	}
	t.Logf("%s %s → %d %s", resp.Request.Method, resp.Request.URL.Path, code, bytes.TrimSpace(b))
}

func num(t *testing.T, m map[string]any, keys ...string) uint64 {
	t.Helper()
	f, ok := dig(m, keys...).(float64)
	if !ok || f < 0 || f != math.Trunc(f) {
		t.Fatalf("%v in %v: not a count", keys, m)
	}
	return uint64(f)
}

func str(t *testing.T, m map[string]any, keys ...string) string {
	t.Helper()
	s, ok := dig(m, keys...).(string)
	if !ok {
		t.Fatalf("%v in %v: not a string", keys, m)
	}
	return s
}

// encodedSize is what weft stores of a blob of length bytes on the test
// network, over all shards.
func encodedSize(t *testing.T, length uint64) uint64 {
	t.Helper()
	p, err := coding.NewParams(gwShards)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.EncodedSize(length)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Walrus's HTTP dialect against a real network, replaying the requests of
// Walrus's documentation and checking each answer against the
// descriptions and the documentation's examples: a first store is
// newlyCreated, the same bytes again alreadyCertified; GET and the
// byte-range route return the bytes (a file's too); by-object-id serves
// the object's blob; quilt files read by patch ID and by name; errors are
// Walrus's Status.
func TestWalrusDialect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pub := loadWalrusSpec(t, "publisher_openapi.yaml")
	pub.fixEventID(t)
	agg := loadWalrusSpec(t, "aggregator_openapi.yaml")
	nw := gatewaytest.Network(t, ctx, gwShards)
	cl := gwClient(t, nw, "", func(cfg *client.Config) { cfg.ChunkSize = fileChunk })
	g, err := New(Config{Client: cl, MaxBlobSize: 1 << 20, Epochs: gwEpochs, WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	// The publisher's and the aggregator's URL.
	base := srv.URL + walrusPrefix
	c := &walrusClient{
		pub: pub, agg: agg, base: base, token: nw.ClientToken,
		newlyCreated: loadWalrusExample(t, "newly-created.json"), alreadyCert: loadWalrusExample(t, "already-certified.json"),
		errorExample: loadWalrusExample(t, "error.json"), alternatives: pub.eventOrObject(t),
		errorOpaque:    map[string]bool{".error.details[0].metadata": true},
		storeOperation: pub.operation(t, "put", "/v1/blobs"),
	}
	getBlobOp := agg.operation(t, "get", "/v1/blobs/{blob_id}")
	rangeOp := agg.operation(t, "get", "/v1/blobs/{blob_id}/byte-range")
	byObjectOp := agg.operation(t, "get", "/v1/blobs/by-object-id/{blob_object_id}")
	octets, _ := agg.response(t, getBlobOp, http.StatusOK)

	// read replays an aggregator GET and checks that it answers want.
	read := func(t *testing.T, op map[string]any, url string, want []byte, code int, header ...string) *http.Response {
		t.Helper()
		resp, b := gatewaytest.Do(t, http.MethodGet, url, nil, header...)
		if resp.StatusCode != code || !bytes.Equal(b, want) {
			t.Fatalf("GET %s: %s, %d bytes (want %d, %d bytes): %.200q", url, resp.Status, len(b), code, len(want), b)
		}
		if code == http.StatusOK {
			if mt, _ := agg.response(t, op, code); mt != octets {
				t.Fatalf("the description's %d answer is %q", code, mt)
			}
		}
		return resp
	}

	// The documentation's first store: curl -X PUT "$PUBLISHER/v1/blobs" -d "some other string"
	// (curl -d sends a form's Content-Type, which is not recorded).
	docBlob := []byte("some other string")
	var first map[string]any
	t.Run("newlyCreated", func(t *testing.T) {
		first = c.store(t, "", docBlob, "newlyCreated", "Content-Type", "application/x-www-form-urlencoded")
		obj := first["blobObject"].(map[string]any)
		id := str(t, obj, "blobId")
		if want := localID(t, docBlob); id != want.String() {
			t.Fatalf("blobId %s, want %s", id, want)
		}
		exampleSize := dig(c.newlyCreated, "newlyCreated", "blobObject", "size")
		if num(t, obj, "size") != uint64(len(docBlob)) || float64(len(docBlob)) != exampleSize {
			t.Fatalf("size %v for the documentation's %d bytes (its example says %v)", obj["size"], len(docBlob), exampleSize)
		}
		enc := encodedSize(t, uint64(len(docBlob)))
		start, end := num(t, obj, "storage", "startEpoch"), num(t, obj, "storage", "endEpoch")
		switch {
		case str(t, obj, "encodingType") != coding.DefaultEncoding(gwShards).String():
			t.Fatalf("encodingType %v", obj["encodingType"])
		case obj["deletable"] != true || num(t, first, "cost") != 0:
			t.Fatalf("deletable %v, cost %v: want a deletable blob, no cost", obj["deletable"], first["cost"])
		case end-start != gwEpochs || num(t, first, "resourceOperation", "registerFromScratch", "epochsAhead") != gwEpochs:
			t.Fatalf("epochs %d to %d, epochsAhead %v: want the gateway's default %d", start, end, dig(first, "resourceOperation"), gwEpochs)
		case num(t, obj, "storage", "storageSize") != enc || num(t, first, "resourceOperation", "registerFromScratch", "encodedLength") != enc:
			t.Fatalf("storageSize %v, encodedLength %v, want %d", dig(obj, "storage", "storageSize"), dig(first, "resourceOperation"), enc)
		case num(t, obj, "certifiedEpoch") < num(t, obj, "registeredEpoch") || obj["id"] != dig(obj, "storage", "id"):
			t.Fatalf("blob object %v", obj)
		}
		oid, err := parseWalrusObjectID(str(t, obj, "id"))
		if err != nil {
			t.Fatal(err)
		}
		info, b := gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/objects/"+strconv.FormatUint(oid, 10)+"/info", nil)
		if o := decodeJSON[objectResponse](t, b); info.StatusCode != http.StatusOK || o.BlobID != id || o.EndEpoch != end || !o.Deletable {
			t.Fatalf("weft's object %d: %s %s", oid, info.Status, b)
		}
		// curl "$AGGREGATOR/v1/blobs/<BLOB_ID>"
		resp := read(t, getBlobOp, base+"/v1/blobs/"+id, docBlob, http.StatusOK)
		if ct := resp.Header.Get("Content-Type"); ct != octets {
			t.Fatalf("GET: Content-Type %q, want %q (the PUT's form type is not the blob's)", ct, octets)
		}
	})
	if first == nil {
		t.FailNow()
	}
	firstObj := first["blobObject"].(map[string]any)
	firstID := str(t, firstObj, "blobId")

	t.Run("alreadyCertified", func(t *testing.T) {
		again := c.store(t, "", docBlob, "alreadyCertified")
		if again["blobId"] != firstID || again["object"] != firstObj["id"] || num(t, again, "endEpoch") < num(t, firstObj, "storage", "endEpoch") {
			t.Fatalf("alreadyCertified %v after %v", again, firstObj)
		}
	})

	blob := gatewaytest.RandomBlob(t, 5000)
	t.Run("epochs, permanent, byte ranges", func(t *testing.T) {
		// curl -X PUT "$PUBLISHER/v1/blobs?epochs=5" and ?permanent=true
		nc := c.store(t, "?epochs=5&permanent=true", blob, "newlyCreated")
		obj := nc["blobObject"].(map[string]any)
		if obj["deletable"] != false || num(t, obj, "storage", "endEpoch")-num(t, obj, "storage", "startEpoch") != 5 ||
			num(t, nc, "resourceOperation", "registerFromScratch", "epochsAhead") != 5 {
			t.Fatalf("a permanent store for 5 epochs: %v", nc)
		}
		id := str(t, obj, "blobId")
		// The byte-range route's parameters, as the description names them.
		for _, p := range []string{"start", "length"} {
			if c.agg.queryParam(t, rangeOp, p)["required"] != true {
				t.Fatalf("byte-range's %s is not required", p)
			}
		}
		rangeURL := func(start, length int) string {
			return fmt.Sprintf("%s/v1/blobs/%s/byte-range?start=%d&length=%d", base, id, start, length)
		}
		// curl "$AGGREGATOR/v1/blobs/{blob_id}/byte-range?start=0&length=1024"
		resp := read(t, rangeOp, rangeURL(0, 1024), blob[:1024], http.StatusOK)
		if resp.Header.Get("Content-Range") != "" || resp.Header.Get("ETag") != fmt.Sprintf(`"%s-0-1024"`, id) {
			t.Fatalf("byte-range headers %v", resp.Header)
		}
		read(t, rangeOp, rangeURL(4000, 1000), blob[4000:], http.StatusOK)
		for _, bad := range []string{rangeURL(4500, 1000), rangeURL(5000, 1), rangeURL(0, 0), base + "/v1/blobs/" + id + "/byte-range?start=1"} {
			resp, b := gatewaytest.Do(t, http.MethodGet, bad, nil)
			c.wantError(t, agg, rangeOp, resp, b, http.StatusBadRequest, "INVALID_BYTE_RANGE")
		}
		// curl -H "Range: bytes=0-999" "$AGGREGATOR/v1/blobs/{blob_id}"
		resp = read(t, getBlobOp, base+"/v1/blobs/"+id, blob[:1000], http.StatusPartialContent, "Range", "bytes=0-999")
		if resp.Header.Get("Content-Range") != "bytes 0-999/5000" {
			t.Fatalf("Range: Content-Range %q", resp.Header.Get("Content-Range"))
		}
		resp, b := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+id, nil, "Range", "bytes=5000-")
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusRequestedRangeNotSatisfiable, "INVALID_BYTE_RANGE")
		// HEAD of a byte range describes the GET's answer.
		resp, _ = gatewaytest.Do(t, http.MethodHead, rangeURL(10, 20), nil)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != 20 {
			t.Fatalf("HEAD of a byte range: %s, length %d", resp.Status, resp.ContentLength)
		}
	})

	t.Run("file", func(t *testing.T) {
		// The request's Content-Type is not recorded (as Walrus's
		// publisher ignores it); weft's attribute header is.
		content := gatewaytest.RandomBlob(t, 2*fileChunk+777)
		nc := c.store(t, "", content, "newlyCreated", "Content-Type", "text/plain", "X-Weft-Attr-Content-Type", "video/mp4")
		obj := nc["blobObject"].(map[string]any)
		id := str(t, obj, "blobId")
		st, err := cl.Status(ctx, mustParseID(t, id))
		if err != nil {
			t.Fatal(err)
		}
		want := encodedSize(t, st.Length) + 2*encodedSize(t, fileChunk) + encodedSize(t, 777)
		if num(t, obj, "size") != uint64(len(content)) || num(t, obj, "storage", "storageSize") != want {
			t.Fatalf("a file of 3 chunks: size %v, storageSize %v, want %d and %d", obj["size"], dig(obj, "storage", "storageSize"), len(content), want)
		}
		if resp := read(t, getBlobOp, base+"/v1/blobs/"+id, content, http.StatusOK); resp.Header.Get("Content-Type") != "video/mp4" {
			t.Fatalf("GET of the file: Content-Type %q", resp.Header.Get("Content-Type"))
		}
		read(t, byObjectOp, base+"/v1/blobs/by-object-id/"+str(t, obj, "id"), content, http.StatusOK)
		read(t, rangeOp, fmt.Sprintf("%s/v1/blobs/%s/byte-range?start=%d&length=100", base, id, fileChunk-10), content[fileChunk-10:fileChunk+90], http.StatusOK)
		// A range reaching past a file's end: refused before any byte.
		resp, b := gatewaytest.Do(t, http.MethodGet, fmt.Sprintf("%s/v1/blobs/%s/byte-range?start=%d&length=1000", base, id, len(content)-10), nil)
		c.wantError(t, agg, rangeOp, resp, b, http.StatusBadRequest, "INVALID_BYTE_RANGE")
		// (A file's manifest records its content type: the same one again.)
		c.store(t, "", content, "alreadyCertified", "X-Weft-Attr-Content-Type", "video/mp4")
	})

	t.Run("by-object-id", func(t *testing.T) {
		// curl "$AGGREGATOR/v1/blobs/by-object-id/<OBJECT_ID>"
		read(t, byObjectOp, base+"/v1/blobs/by-object-id/"+str(t, firstObj, "id"), docBlob, http.StatusOK)
		oid, _ := parseWalrusObjectID(str(t, firstObj, "id"))
		read(t, byObjectOp, base+"/v1/blobs/by-object-id/"+fmt.Sprintf("0x%x", oid), docBlob, http.StatusOK) // Sui's short form
		resp, b := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/by-object-id/"+walrusObjectID(1<<40), nil)
		c.wantError(t, agg, byObjectOp, resp, b, http.StatusNotFound, "BLOB_NOT_FOUND")
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/by-object-id/17", nil)
		c.wantError(t, agg, byObjectOp, resp, b, http.StatusBadRequest, "INVALID_ID_FORMAT")
	})

	t.Run("errors", func(t *testing.T) {
		unknown := crypto.BlobID{1, 2, 3}.String()
		resp, b := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+unknown, nil)
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusNotFound, "BLOB_NOT_FOUND")
		if e := decodeJSON[walrusStatusBody](t, b).Error; e.Status != "NOT_FOUND" || e.Details[0].Domain != walrusDaemonDomain {
			t.Fatalf("unknown blob: %+v", e)
		}
		resp, b = gatewaytest.Do(t, http.MethodHead, base+"/v1/blobs/"+unknown, nil)
		if resp.StatusCode != http.StatusNotFound || len(b) != 0 {
			t.Fatalf("HEAD of an unknown blob: %s %q", resp.Status, b)
		}
		resp, b = gatewaytest.Do(t, http.MethodGet, rangeURLFor(base, unknown), nil)
		c.wantError(t, agg, rangeOp, resp, b, http.StatusNotFound, "BLOB_NOT_FOUND")
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/not-a-blob-id", nil)
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusBadRequest, "MALFORMED_REQUEST")
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+firstID+"?strict_consistency_check=true&skip_consistency_check=true", nil)
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusBadRequest, "INVALID_CONSISTENCY_CHECK")
		read(t, getBlobOp, base+"/v1/blobs/"+firstID+"?strict_consistency_check=true", docBlob, http.StatusOK)

		put := func(query string, header ...string) (*http.Response, []byte) {
			return gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs"+query, strings.NewReader("refused"), header...)
		}
		resp, b = put("?deletable=true&permanent=true", gatewaytest.Bearer(c.token)...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusBadRequest, "INVALID_BLOB_PERSISTENCE")
		resp, b = put("?send_object_to=0x02a212de6a9dfa3a69e22387acfbafbb1a9e591bd9d636e7895dcfc8de0", gatewaytest.Bearer(c.token)...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusBadRequest, "UNSUPPORTED_PARAMETER")
		resp, b = put("?encoding_type=RS3", gatewaytest.Bearer(c.token)...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusBadRequest, "UNSUPPORTED_PARAMETER")
		resp, b = put("?epochs=0", gatewaytest.Bearer(c.token)...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusBadRequest, "MALFORMED_REQUEST")
		resp, b = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(make([]byte, 1<<20+1)), gatewaytest.Bearer(c.token)...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusRequestEntityTooLarge, "REQUEST_ENTITY_TOO_LARGE")
		resp, b = put("")
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusUnauthorized, "CLIENT_TOKEN_REQUIRED")
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without a challenge")
		}
		resp, b = put("", gatewaytest.Bearer("not-a-client")...)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusForbidden, "CLIENT_TOKEN_REFUSED")
		wantUnregistered(t, cl, localID(t, []byte("refused")))
		// encoding_type=RS2 (Walrus's only one) and the flags weft has no
		// use for are accepted.
		c.store(t, "?encoding_type=RS2&deletable=true&force=true&reuse_resources=true&quilt_version=v1", docBlob, "alreadyCertified")

		resp, b = gatewaytest.Do(t, http.MethodDelete, base+"/v1/blobs", nil)
		c.wantError(t, pub, c.storeOperation, resp, b, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
		if resp.Header.Get("Allow") != "PUT" {
			t.Fatalf("405 with Allow %q", resp.Header.Get("Allow"))
		}
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/nothing", nil)
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusNotFound, "NO_SUCH_ENDPOINT")
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+firstID+"/nothing", nil)
		c.wantError(t, agg, getBlobOp, resp, b, http.StatusNotFound, "NO_SUCH_ENDPOINT")
	})

	t.Run("quilts", func(t *testing.T) {
		quiltOp := agg.operation(t, "get", "/v1/blobs/by-quilt-patch-id/{quilt_patch_id}")
		byNameOp := agg.operation(t, "get", "/v1/blobs/by-quilt-id/{quilt_id}/{identifier}")
		parts := []quiltPart{{name: "my-file.txt", contentType: "text/plain", data: []byte("hello, quilt")}, {name: "b.bin", data: gatewaytest.RandomBlob(t, 300)}}
		body, ct := multipartBody(t, parts)
		resp, b := gatewaytest.Do(t, http.MethodPut, srv.URL+"/v1/quilts", body, append(gatewaytest.Bearer(c.token), "Content-Type", ct)...)
		gatewaytest.Want(t, resp, b, http.StatusCreated)
		qr := decodeJSON[quiltResponse](t, b)
		read(t, quiltOp, base+"/v1/blobs/by-quilt-patch-id/"+qr.Files[1].ID, parts[1].data, http.StatusOK)
		resp = read(t, byNameOp, base+"/v1/blobs/by-quilt-id/"+qr.QuiltID+"/my-file.txt", parts[0].data, http.StatusOK)
		if resp.Header.Get("X-Quilt-Patch-Identifier") != "my-file.txt" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("quilt file headers %v", resp.Header)
		}
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/by-quilt-id/"+qr.QuiltID+"/no-such-file", nil)
		c.wantError(t, agg, byNameOp, resp, b, http.StatusNotFound, "QUILT_PATCH_NOT_FOUND")
		if resp.Header.Get("X-Quilt-Patch-Identifier") != "" {
			t.Fatal("an error names a quilt file")
		}
		resp, b = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/by-quilt-patch-id/"+firstID, nil)
		c.wantError(t, agg, quiltOp, resp, b, http.StatusBadRequest, "MALFORMED_REQUEST")
	})

	t.Run("status", func(t *testing.T) {
		resp, b := gatewaytest.Do(t, http.MethodGet, base+"/status", nil)
		if resp.StatusCode != http.StatusOK || string(b) != "OK" {
			t.Fatalf("GET /status: %s %q", resp.Status, b)
		}
	})
}

func rangeURLFor(base, id string) string {
	return base + "/v1/blobs/" + id + "/byte-range?start=0&length=10"
}
