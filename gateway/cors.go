package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Cross-origin requests (CORS), for web pages that call the API from a
// browser: Config.CORSOrigins (`weft gateway --cors-origin`) names the
// origins allowed, "*" any.
//
//   - Every answer to an allowed origin — errors, 304s and 429s too —
//     carries Access-Control-Allow-Origin and -Expose-Headers (the
//     headers a page may read: corsExposedHeaders). With a list of
//     origins it is the request's Origin echoed, and every answer says
//     Vary: Origin (a shared cache must not hand one origin's answer to
//     another); with "*" it is "*" on every answer, Origin or not, so one
//     cached copy serves all.
//   - A preflight (OPTIONS with Access-Control-Request-Method) of any
//     route's path, from an allowed origin, is 204 with
//     Access-Control-Allow-Methods (the path's methods), -Allow-Headers
//     (those of Access-Control-Request-Headers the API reads:
//     corsAllowedHeaders, X-Weft-Attr-*) and -Max-Age. From an origin
//     not allowed (or with none configured) it is 403, without CORS
//     headers. It takes no MaxInflight slot.
//   - No Access-Control-Allow-Credentials: the API authenticates with a
//     bearer token the page sends in Authorization (an allowed request
//     header), never with cookies or HTTP authentication, so a page
//     needs no credentialed requests — and "*" could not be used with
//     them.
//
// An OPTIONS that is not a preflight is 204 with Allow.

// corsMaxAge is how long, in seconds, a browser may keep a preflight's
// answer (browsers cap it: Chromium at 2 hours).
const corsMaxAge = "86400"

// corsAllowedHeaders are the request headers the API reads that a
// preflight allows (lower-case), besides corsAllowedHeaderPrefixes'.
// Another file of the package may add its own in an init function.
var corsAllowedHeaders = map[string]bool{
	"authorization": true, "content-type": true, "range": true,
	"if-match": true, "if-none-match": true, "if-range": true,
}

// corsAllowedHeaderPrefixes start request headers a preflight allows:
// X-Weft-Attr-<key>, a PUT's object attributes.
var corsAllowedHeaderPrefixes = []string{strings.ToLower(attrHeaderPrefix)}

// corsExposedHeaders are the response headers a page may read beyond the
// CORS-safelisted ones (Cache-Control, Content-Language, Content-Type,
// Expires, Last-Modified, Pragma). Another file of the package may add
// its own in an init function.
var corsExposedHeaders = []string{
	"ETag", "Content-Length", "Content-Range", "Accept-Ranges", "Content-Disposition", "Content-Encoding",
	"Location", "Retry-After", "WWW-Authenticate", "Allow",
}

// corsPolicy is the origins allowed to call the API from a browser. A nil
// policy allows none and sets no header.
type corsPolicy struct {
	any     bool            // "*"
	origins map[string]bool // canonical origins (canonicalOrigin)
}

// newCORSPolicy reads Config.CORSOrigins: each "*" or an origin
// "scheme://host[:port]" (a trailing "/" is allowed; commas separate
// several in one element). None: nil.
func newCORSPolicy(origins []string) (*corsPolicy, error) {
	p := &corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		for _, o := range strings.Split(o, ",") {
			switch o = strings.TrimSpace(o); o {
			case "":
			case "*":
				p.any = true
			default:
				c, err := canonicalOrigin(o)
				if err != nil {
					return nil, fmt.Errorf("gateway: CORS origin %q: %w", o, err)
				}
				p.origins[c] = true
			}
		}
	}
	if !p.any && len(p.origins) == 0 {
		return nil, nil
	}
	return p, nil
}

// canonicalOrigin is an origin as browsers send it: lower-case scheme and
// host, the scheme's default port left out.
func canonicalOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil {
		return "", err
	}
	if u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New(`an origin is "*" or scheme://host[:port], as a browser sends it in Origin (no path)`)
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if port := u.Port(); scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return scheme + "://" + host, nil
}

// allowed reports whether origin (a request's Origin) may call the API.
func (p *corsPolicy) allowed(origin string) bool {
	if p == nil || origin == "" {
		return false
	}
	if p.any {
		return true
	}
	c, err := canonicalOrigin(origin)
	return err == nil && p.origins[c]
}

// setHeaders sets the CORS headers of every answer to r.
func (p *corsPolicy) setHeaders(h http.Header, r *http.Request) {
	if p == nil {
		return
	}
	origin := r.Header.Get("Origin")
	switch {
	case p.any:
		h.Set("Access-Control-Allow-Origin", "*")
	case p.allowed(origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	default:
		h.Add("Vary", "Origin")
		return
	}
	h.Set("Access-Control-Expose-Headers", strings.Join(corsExposedHeaders, ", "))
}

// options answers OPTIONS on a route's path, whose methods are allow: a
// preflight as cors.go's comment says, any other OPTIONS 204 with Allow.
func (g *Gateway) options(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			w.Header().Set("Allow", allow)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !g.cors.allowed(origin) {
			why := "it is not one of --cors-origin"
			if g.cors == nil {
				why = "this gateway allows no cross-origin requests (--cors-origin)"
			}
			writeError(w, r, http.StatusForbidden, fmt.Errorf("cross-origin requests from %q are not allowed: %s", origin, why))
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", allow)
		if hs := allowedRequestHeaders(r.Header.Values("Access-Control-Request-Headers")); hs != "" {
			h.Set("Access-Control-Allow-Headers", hs)
		}
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	}
}

// allowedRequestHeaders is the list of those of a preflight's
// Access-Control-Request-Headers that the API reads, as they were named
// (browsers send them lower-case). A header it does not read is left
// out: the browser then refuses the request itself.
func allowedRequestHeaders(requested []string) string {
	var ok []string
	for _, line := range requested {
		for _, name := range strings.Split(line, ",") {
			name = strings.TrimSpace(name)
			if name != "" && requestHeaderAllowed(strings.ToLower(name)) {
				ok = append(ok, name)
			}
		}
	}
	return strings.Join(ok, ", ")
}

func requestHeaderAllowed(lower string) bool {
	if corsAllowedHeaders[lower] {
		return true
	}
	for _, p := range corsAllowedHeaderPrefixes {
		if strings.HasPrefix(lower, p) && len(lower) > len(p) {
			return true
		}
	}
	return false
}
