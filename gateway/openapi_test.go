package gateway

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// openAPIMethods are the operations a path item of OpenAPI 3 may have.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIDoc is what the tests read of openapi.json.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type openAPIOperation struct {
	OperationID string            `json:"operationId"`
	Parameters  []json.RawMessage `json:"parameters"`
	Responses   map[string]any    `json:"responses"`
}

type openAPIParameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json is OpenAPI %q, want 3.x", doc.OpenAPI)
	}
	return doc
}

// wildcard matches a ServeMux pattern's wildcard ({id}, {rest...}).
var wildcard = regexp.MustCompile(`\{([^{}.]+)(\.\.\.)?\}`)

// openAPIPath is a ServeMux pattern's path as OpenAPI writes it: the
// same, "{rest...}" written "{rest}".
func openAPIPath(pattern string) string { return wildcard.ReplaceAllString(pattern, "{$1}") }

// routeOperations are the gateway's routes as "method path" (OpenAPI's
// lower-case method and path), a GET route's HEAD included.
func routeOperations(g *Gateway) map[string]bool {
	ops := map[string]bool{}
	for _, rt := range g.routeTable() {
		p := openAPIPath(rt.pattern)
		ops[strings.ToLower(rt.method)+" "+p] = true
		if rt.method == http.MethodGet {
			ops["head "+p] = true
		}
	}
	return ops
}

// documentedOperations are openapi.json's operations, as routeOperations.
func documentedOperations(t *testing.T, doc openAPIDoc) map[string]json.RawMessage {
	t.Helper()
	ops := map[string]json.RawMessage{}
	for path, item := range doc.Paths {
		for key, op := range item {
			if slices.Contains(openAPIMethods, key) {
				ops[key+" "+path] = op
			}
		}
	}
	return ops
}

// The API's routes and openapi.json's paths and methods are the same,
// both ways; each documented operation is well formed (a unique
// operationId, responses, its path's parameters declared, every $ref
// found); the error schema's statuses are those writeError answers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	g, err := New(Config{Control: []string{"127.0.0.1:1"}, MaxBlobSize: 1, Epochs: 1, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	doc := loadOpenAPI(t)
	routes, documented := routeOperations(g), documentedOperations(t, doc)
	for _, op := range slices.Sorted(maps.Keys(routes)) {
		if documented[op] == nil {
			t.Errorf("route %s is not in openapi.json", op)
		}
	}
	for _, op := range slices.Sorted(maps.Keys(documented)) {
		if !routes[op] {
			t.Errorf("openapi.json documents %s, which is no route of the gateway", op)
		}
	}

	ids := map[string]string{}
	for name, raw := range documented {
		var op openAPIOperation
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if op.OperationID == "" || ids[op.OperationID] != "" {
			t.Errorf("%s: operationId %q missing or also %s's", name, op.OperationID, ids[op.OperationID])
		}
		ids[op.OperationID] = name
		if len(op.Responses) == 0 {
			t.Errorf("%s documents no response", name)
		}
		declared := map[string]bool{}
		for _, raw := range op.Parameters {
			var p openAPIParameter
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			if p.Ref != "" {
				target := resolveRef(t, doc, p.Ref)
				if err := json.Unmarshal(target, &p); err != nil {
					t.Fatal(err)
				}
			}
			if p.In == "path" {
				declared[p.Name] = true
			}
		}
		_, path, _ := strings.Cut(name, " ")
		var want []string
		for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		if got := slices.Sorted(maps.Keys(declared)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("%s declares path parameters %v, its path has %v", name, got, want)
		}
	}

	// Every $ref anywhere points at something.
	var whole any
	if err := json.Unmarshal(openAPI, &whole); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				resolveRef(t, doc, r)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(whole)

	// The error schema names every status writeError can answer.
	var errSchema struct {
		Properties struct {
			Error struct {
				Properties struct {
					Status struct {
						Enum []string `json:"enum"`
					} `json:"status"`
				} `json:"properties"`
			} `json:"error"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(resolveRef(t, doc, "#/components/schemas/Error"), &errSchema); err != nil {
		t.Fatal(err)
	}
	for code := 400; code < 600; code++ {
		if s := statusName(code); !slices.Contains(errSchema.Properties.Error.Properties.Status.Enum, s) {
			t.Errorf("statusName(%d) = %s, which the Error schema does not list", code, s)
		}
	}
}

// resolveRef is the JSON a local $ref ("#/components/kind/name") names.
func resolveRef(t *testing.T, doc openAPIDoc, ref string) json.RawMessage {
	t.Helper()
	parts := strings.Split(ref, "/")
	if len(parts) != 4 || parts[0] != "#" || parts[1] != "components" {
		t.Fatalf("$ref %q: want #/components/<kind>/<name>", ref)
	}
	target := doc.Components[parts[2]][parts[3]]
	if target == nil {
		t.Fatalf("$ref %q names nothing", ref)
	}
	return target
}

// Each documented path and method, sent to a real gateway in front of a
// real network, reaches its route: never the no-such-endpoint 404 nor a
// 405. No request carries a token or a body, so none changes anything.
// GET /v1/api serves openapi.json itself, cacheable.
func TestOpenAPIRoutesAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := gatewaytest.Network(t, ctx, gwShards)
	g, err := New(Config{Client: gwClient(t, nw, ""), Control: []string{nw.ControlAddr}, MaxBlobSize: gwMaxBlob, Epochs: gwEpochs, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)

	unknown := crypto.BlobID{9, 9, 9}.String()
	examples := map[string]string{"id": unknown, "object": "1"}
	doc := loadOpenAPI(t)
	for _, op := range slices.Sorted(maps.Keys(documentedOperations(t, doc))) {
		method, path, _ := strings.Cut(op, " ")
		url := wildcard.ReplaceAllStringFunc(path, func(w string) string {
			if v, ok := examples[wildcard.FindStringSubmatch(w)[1]]; ok {
				return v
			}
			return "x"
		})
		resp, body := gatewaytest.Do(t, strings.ToUpper(method), srv.URL+url, nil)
		if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotFound && strings.Contains(string(body), "no such endpoint") {
			t.Errorf("%s %s (%s): %s %s", strings.ToUpper(method), url, path, resp.Status, body)
			continue
		}
		if resp.StatusCode >= 400 {
			gatewaytest.Want(t, resp, body, resp.StatusCode) // the JSON error
		}
		t.Logf("%s %s → %s", strings.ToUpper(method), path, resp.Status)
	}

	// The description itself.
	resp, body := gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/api", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	if string(body) != string(openAPI) || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != cacheAPI {
		t.Fatalf("GET /v1/api: %d bytes, headers %v", len(body), resp.Header)
	}
	tag := resp.Header.Get("ETag")
	resp, body = gatewaytest.Do(t, http.MethodGet, srv.URL+"/v1/api", nil, "If-None-Match", tag)
	gatewaytest.Want(t, resp, body, http.StatusNotModified)
	if resp.Header.Get("ETag") != tag || resp.Header.Get("Cache-Control") != cacheAPI || len(body) != 0 {
		t.Fatalf("304 of /v1/api: headers %v, %d bytes", resp.Header, len(body))
	}
}
