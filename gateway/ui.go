package gateway

import (
	"errors"
	"net/http"

	"github.com/weftstore/weft/netview"
)

// The live status page (issue #22, package netview), with Config.UI: GET
// /v1/network serves the network's snapshot as JSON (what the page polls
// and scripts read), GET /ui redirects to /ui/, which serves the page and
// its embedded assets. The collector dials Config.Control itself and asks
// the network at most once per netview.DefaultInterval however many
// pages poll. netview/DESIGN.md has the JSON schema and the page's rules.
//
// Its errors are netview's JSON, {"error": {"code", "status",
// "message"}}: a 503 when no voter answers, 405 for a method other than
// GET or HEAD, 404 for an asset that does not exist.

// newStatusPage makes the collector of the status page, nil without
// Config.UI.
func newStatusPage(cfg Config) (*netview.Collector, error) {
	if !cfg.UI {
		return nil, nil
	}
	if len(cfg.Control) == 0 {
		return nil, errors.New("gateway: the status page (Config.UI) needs Config.Control: its collector dials the voters itself")
	}
	return netview.New(netview.Config{Control: cfg.Control, DialOptions: cfg.DialOptions, Logger: cfg.Logger})
}

func init() { routeSets = append(routeSets, (*Gateway).uiRoutes) }

// uiRoutes are the status page's routes when it is on (in the route
// table: documented in openapi.json, with CORS preflights and JSON 405s
// like the rest).
func (g *Gateway) uiRoutes() []route {
	if g.view == nil {
		return nil
	}
	json, page := g.view.JSONHandler(), netview.UIHandler()
	return []route{
		{http.MethodGet, netview.JSONPath, json.ServeHTTP},
		{http.MethodGet, netview.UIPath, page.ServeHTTP},
		{http.MethodGet, netview.UIPrefix + "{asset...}", page.ServeHTTP},
	}
}

// closeStatusPage closes the collector's connections.
func (g *Gateway) closeStatusPage() error {
	if g.view == nil {
		return nil
	}
	return g.view.Close()
}
