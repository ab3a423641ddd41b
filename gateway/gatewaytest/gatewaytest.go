// Package gatewaytest holds what tests of the HTTP gateway share — its
// own package's and the `weft gateway` command's: requests and the checks
// of their answers, a network to stand in front of, and raw connections
// for what net/http will not send (a trickled or half-closed request).
package gatewaytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/devnet"
)

// Do sends one request and returns the response with its body read;
// header is name, value pairs.
func Do(t *testing.T, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, b
}

// Want checks an answer's status and, for errors, that the body is the
// JSON error object — {"error": {"code": <the status>, "status":
// "NOT_FOUND", "message": "…"}} — that no cache may keep (Cache-Control:
// no-store), and that a 503 says when to retry.
func Want(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, code, body)
	}
	if code >= 400 {
		t.Logf("%s %s → %d %s", resp.Request.Method, resp.Request.URL.Path, code, bytes.TrimSpace(body))
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("error %d with Cache-Control %q, want no-store", code, cc)
		}
	}
	if code >= 400 && resp.Request.Method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("error with Content-Type %q, want application/json", ct)
		}
		e, err := DecodeError(body)
		if err != nil {
			t.Fatal(err)
		}
		if e.Code != code {
			t.Fatalf("error body %s: code %d, the answer's status is %d", body, e.Code, code)
		}
	}
	if code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
}

// Error is the error object of an error answer's body.
type Error struct {
	Code    int    `json:"code"`    // the HTTP status
	Status  string `json:"status"`  // its name, as google.rpc.Code's: NOT_FOUND
	Message string `json:"message"` // what went wrong
	Details []any  `json:"details"` // always present, empty
	BlobID  string `json:"blob_id"` // a failed PUT's blob, once known
}

// DecodeError decodes an error answer's body, {"error": {…}}, refusing
// one without a code, an UPPER_SNAKE_CASE status, a message or details.
func DecodeError(body []byte) (Error, error) {
	var e struct {
		Error *Error `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		return Error{}, fmt.Errorf("error body %q is not {\"error\": {…}} (%v)", body, err)
	}
	got := *e.Error
	if got.Code < 400 || got.Code > 599 || got.Message == "" || got.Details == nil || got.Status == "" ||
		strings.Trim(got.Status, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		return Error{}, fmt.Errorf("error body %s: want a code, an UPPER_SNAKE_CASE status, a message and details", body)
	}
	return got, nil
}

// Bearer is the header pair that sends a client token.
func Bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// Put stores blob through the gateway at base, charged to token, checks
// the status and decodes the answer into a T.
func Put[T any](t *testing.T, base, token string, blob []byte, wantCode int) T {
	t.Helper()
	resp, body := Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(blob), Bearer(token)...)
	Want(t, resp, body, wantCode)
	var out T
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("store answer %q: %v", body, err)
	}
	return out
}

// RandomBlob is n random bytes.
func RandomBlob(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Network starts the in-process network a gateway test stands in front
// of: a Raft control plane and 4 storage nodes, n = shards. It is closed
// when the test ends.
func Network(t *testing.T, ctx context.Context, shards int) *devnet.Network {
	t.Helper()
	nw, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: 4, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return nw
}

// RawExchange sends head (request line and headers, without the blank
// line) and body over a fresh connection to addr, half-closes it
// (CloseWrite: the caller still reads) if halfClose, and reads the
// answer. It returns the response, its body, and how long it took; a
// connection closed without an answer is an error.
func RawExchange(t *testing.T, addr, head string, body []byte, halfClose bool) (*http.Response, []byte, time.Duration, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write(append([]byte(head+"\r\n\r\n"), body...)); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, time.Since(start), err
}

// PutHead is the head of a raw PUT of a blob, charged to token, with
// header (one or more "Name: value" lines, CRLF-separated) added.
func PutHead(token string, header string) string {
	return "PUT /v1/blobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + token + "\r\n" + header
}

// CheckTrickle: a PUT that sends its headers and a few bytes of the body,
// then nothing, is cut off at the gateway's read timeout (408, connection
// closed) rather than hold a connection, an in-flight slot and its bytes
// for good.
func CheckTrickle(t *testing.T, addr, token string, readTimeout time.Duration) {
	t.Helper()
	resp, body, took, err := RawExchange(t, addr, PutHead(token, "Content-Length: 1000"), []byte("0123456789"), false)
	if err != nil {
		t.Fatalf("the trickled PUT got no answer after %v: %v", took, err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("the trickled PUT: %s (close %v) %s", resp.Status, resp.Close, body)
	}
	if took < readTimeout-200*time.Millisecond || took > readTimeout+5*time.Second {
		t.Fatalf("the trickled PUT was cut off after %v, the read timeout is %v", took, readTimeout)
	}
	t.Logf("trickled PUT: %s after %v (read timeout %v): %s", resp.Status, took.Round(time.Millisecond), readTimeout, bytes.TrimSpace(body))
}
