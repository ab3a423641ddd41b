package gateway

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"
)

// route is one endpoint of the API: a method and a net/http.ServeMux path
// pattern ("/v1/blobs/{id}"), served by handler. A GET route answers HEAD
// too (ServeMux's rule).
type route struct {
	method  string
	pattern string
	handler http.HandlerFunc
}

// routeTable is every endpoint of the API, in one table that routes()
// serves and the tests hold against openapi.json (each route documented,
// each documented path and method a route): the core API's, then those of
// routeSets.
func (g *Gateway) routeTable() []route {
	rs := []route{
		{http.MethodPut, "/v1/blobs", g.putBlob},
		{http.MethodPut, "/v1/quilts", g.putQuilt},
		{http.MethodGet, "/v1/blobs/{id}", g.getBlob},
		{http.MethodGet, "/v1/blobs/{id}/status", g.getStatus},
		{http.MethodPost, "/v1/blobs/{id}/extend", g.extendBlob},
		{http.MethodGet, "/v1/objects/{object}", g.getObject},
		{http.MethodDelete, "/v1/objects/{object}", g.deleteObject},
		{http.MethodGet, "/v1/objects/{object}/info", g.getObjectInfo},
		{http.MethodPut, "/v1/objects/{object}/attributes", g.putAttributes},
		{http.MethodGet, "/v1/api", g.getAPI},
	}
	for _, more := range routeSets {
		rs = append(rs, more(g)...)
	}
	return rs
}

// routeSets add routes to the core API's: a file of this package that
// serves more (another API under a prefix of its own) registers its
// table in an init function, and documents its paths in openapi.json:
//
//	func init() { routeSets = append(routeSets, (*Gateway).adminRoutes) }
//
// Its routes then get what every route gets: OPTIONS (CORS preflights),
// a JSON 405 for other methods, the request log and metrics.
var routeSets []func(*Gateway) []route

// routes serves the route table. For each pattern it adds an OPTIONS
// route (preflights; cors.go) and a method-less one: less specific than
// the others, it catches only other methods, with a JSON 405 (ServeMux's
// own is plain text, and every error of this API is JSON). Paths no
// pattern matches are the JSON 404 of noSuchEndpoint.
func (g *Gateway) routes() {
	var patterns []string
	methods := map[string][]string{} // pattern → its methods, HEAD after GET
	for _, rt := range g.routeTable() {
		g.mux.HandleFunc(rt.method+" "+rt.pattern, rt.handler)
		if methods[rt.pattern] == nil {
			patterns = append(patterns, rt.pattern)
		}
		methods[rt.pattern] = append(methods[rt.pattern], rt.method)
		if rt.method == http.MethodGet {
			methods[rt.pattern] = append(methods[rt.pattern], http.MethodHead)
		}
	}
	for _, p := range patterns {
		allow := strings.Join(methods[p], ", ")
		g.mux.HandleFunc(http.MethodOptions+" "+p, g.options(allow))
		g.mux.HandleFunc(p, methodNotAllowed(allow))
	}
	g.mux.HandleFunc("/", noSuchEndpoint)
	// Walrus's HTTP dialect under /walrus (walrus.go): its routes are
	// Walrus's, described by Walrus's own OpenAPI files, not openapi.json.
	g.walrusRoutes()
}

// noSuchEndpoint answers a path no route has: 404.
func noSuchEndpoint(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (GET /v1/api describes the API: PUT /v1/blobs, "+
		"GET /v1/blobs/{id}, …/status, POST …/extend, PUT /v1/quilts, GET|DELETE /v1/objects/{object}, …/info, PUT …/attributes; "+
		"the status page: GET /ui and /v1/network; Walrus's dialect under /walrus)", r.Method, r.URL.Path))
}

// openAPI is the API's OpenAPI 3.0 description, served at GET /v1/api.
//
//go:embed openapi.json
var openAPI []byte

// getAPI serves the API's OpenAPI description.
func (g *Gateway) getAPI(w http.ResponseWriter, r *http.Request) {
	writeBodyTagged(w, r, openAPI, "application/json", cacheAPI)
}
