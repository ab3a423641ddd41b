package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/devnet"
)

// gwShards is the n of the networks these tests run `weft gateway` in
// front of, as a command and as a process of its own. What the gateway
// answers is package gateway's tests'.
const gwShards = 8

// gwDo sends one request and returns the response with its body read.
func gwDo(t *testing.T, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
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

// gwWant checks an answer's status and, for errors, that the body is the
// JSON error object.
func gwWant(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, code, body)
	}
	if code >= 400 {
		t.Logf("%s %s → %d %s", resp.Request.Method, resp.Request.URL.Path, code, bytes.TrimSpace(body))
	}
	if code >= 400 && resp.Request.Method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("error with Content-Type %q, want application/json", ct)
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Fatalf("error body %q is not {\"error\": ...} (%v)", body, err)
		}
	}
	if code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
}

// bearer is the header pair that sends a client token.
func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// gwPut stores blob through the gateway, charged to token.
func gwPut(t *testing.T, base, token string, blob []byte, wantCode int) (sr struct {
	BlobID string `json:"blob_id"`
}) {
	t.Helper()
	resp, body := gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(blob), bearer(token)...)
	gwWant(t, resp, body, wantCode)
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatalf("store answer %q: %v", body, err)
	}
	return sr
}

func randomBlob(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// gwNetwork starts the in-process network the gateway tests stand in
// front of: a Raft control plane and 4 storage nodes, n = gwShards.
func gwNetwork(t *testing.T, ctx context.Context) *devnet.Network {
	t.Helper()
	nw, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: 4, Shards: gwShards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return nw
}

// gwCommandReadTimeout is the --read-timeout testGatewayCommand gives:
// short, to see a trickled body cut off at it.
const gwCommandReadTimeout = 2 * time.Second

// TestGatewayCommand runs `weft gateway` as the binary would (flags,
// listener, timeouts, metrics, graceful shutdown) against a devnet. It
// has no client token of its own: PUTs send theirs. (The gateway's own
// behaviour is package gateway's tests'.)
func TestGatewayCommand(t *testing.T) {
	nctx, ncancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ncancel()
	nw := gwNetwork(t, nctx)
	listen, metrics := freePort(t), freePort(t)
	t.Setenv("WEFT_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCommand()
	root.SetArgs([]string{"gateway", "--listen", listen, "--control", nw.ControlAddr,
		"--max-blob-size", "2048", "--epochs", "2", "--metrics-addr", metrics,
		"--read-timeout", gwCommandReadTimeout.String(), "--write-timeout", "30s"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	base := "http://" + listen
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/blobs/x")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the gateway exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	blob := randomBlob(t, 2048)
	sr := gwPut(t, base, nw.ClientToken, blob, http.StatusCreated)
	resp, body := gwDo(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
	gwWant(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, blob) {
		t.Fatal("read other bytes through the command")
	}
	resp, body = gwDo(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID+"/status", nil)
	gwWant(t, resp, body, http.StatusOK)
	var st struct {
		RegisteredEpoch uint64 `json:"registered_epoch"`
		EndEpoch        uint64 `json:"end_epoch"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.EndEpoch != st.RegisteredEpoch+2 {
		t.Fatalf("--epochs 2 gave end epoch %d, registered in %d", st.EndEpoch, st.RegisteredEpoch)
	}
	resp, body = gwDo(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(randomBlob(t, 2049)), bearer(nw.ClientToken)...)
	gwWant(t, resp, body, http.StatusRequestEntityTooLarge)

	resp, body = gwDo(t, http.MethodGet, "http://"+metrics+"/metrics", nil)
	gwWant(t, resp, body, http.StatusOK)
	for _, want := range []string{
		`weft_gateway_requests_total{code="201",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_requests_total{code="413",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_bytes_total{direction="in"} 2048`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// --read-timeout reaches the server.
	t.Run("trickled body", func(t *testing.T) { testGatewayTrickle(t, listen, nw.ClientToken) })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the gateway stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	if _, err := http.Get(base + "/v1/blobs/x"); err == nil {
		t.Fatal("the gateway still answers after stopping")
	}
}

func TestGatewayCommandFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-blob-size", "0"}, "--max-blob-size"},
		{[]string{"--epochs", "0"}, "--epochs"},
		{[]string{"--cache-size", "-1"}, "--cache-size"},
		{[]string{"--control", ""}, "--control"},
		{[]string{"--max-inflight", "0"}, "--max-inflight"},
		{[]string{"--read-timeout", "0s"}, "--read-timeout"},
		{[]string{"--write-timeout", "-1s"}, "--write-timeout"},
		{[]string{"--listen", "127.0.0.1:99999"}, "99999"},
	} {
		root := newRootCommand()
		root.SetArgs(append([]string{"gateway"}, c.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("gateway %v: %v, want an error about %s", c.args, err, c.want)
		}
	}
}

// rawExchange sends head (request line and headers, without the blank
// line) and body over a fresh connection to addr, half-closes it
// (CloseWrite: the caller still reads) if halfClose, and reads the
// answer. It returns the response, its body, and how long it took; a
// connection closed without an answer is an error.
func rawExchange(t *testing.T, addr, head string, body []byte, halfClose bool) (*http.Response, []byte, time.Duration, error) {
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

func putHead(token string, header string) string {
	return "PUT /v1/blobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + token + "\r\n" + header
}

// A PUT that sends its headers and a few bytes of the body, then nothing,
// is cut off at --read-timeout (408, connection closed) rather than hold
// a connection, a --max-inflight slot and its bytes for good.
func testGatewayTrickle(t *testing.T, addr, token string) {
	resp, body, took, err := rawExchange(t, addr, putHead(token, "Content-Length: 1000"), []byte("0123456789"), false)
	if err != nil {
		t.Fatalf("the trickled PUT got no answer after %v: %v", took, err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("the trickled PUT: %s (close %v) %s", resp.Status, resp.Close, body)
	}
	if took < gwCommandReadTimeout-200*time.Millisecond || took > gwCommandReadTimeout+5*time.Second {
		t.Fatalf("the trickled PUT was cut off after %v, --read-timeout is %v", took, gwCommandReadTimeout)
	}
	t.Logf("trickled PUT: %s after %v (--read-timeout %v): %s", resp.Status, took.Round(time.Millisecond), gwCommandReadTimeout, bytes.TrimSpace(body))
}

// TestMain lets a test run this test binary as the weft command itself
// (WEFT_TEST_MAIN=1), to watch a real gateway process from outside.
func TestMain(m *testing.M) {
	if os.Getenv("WEFT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startGatewayProcess runs `weft gateway args…` as a process of its own
// against nw and waits until it answers. Its log goes to the test's on
// failure.
func startGatewayProcess(t *testing.T, nw *devnet.Network, args ...string) (base string, pid int) {
	t.Helper()
	listen := freePort(t)
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{"gateway", "--listen", listen, "--control", nw.ControlAddr}, args...)...)
	cmd.Env = append(os.Environ(), "WEFT_TEST_MAIN=1", "WEFT_TOKEN=")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("gateway log:\n%s", b)
		}
	})
	base = "http://" + listen
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/v1/blobs/x/status")
		if err == nil {
			resp.Body.Close()
			return base, cmd.Process.Pid
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logFile)
			t.Fatalf("the gateway exited: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up: %v", err)
		}
	}
}

// peakRSS is a process's peak resident memory (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to measure memory with: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// 1,000 concurrent GETs against a gateway process with --max-inflight 32
// (no cache: every one that is let in reads from the storage nodes) get
// the blob or 429 with Retry-After at once, and the gateway's peak
// memory stays far under 2 GiB.
func TestGatewayMaxInflight(t *testing.T) {
	const (
		clients  = 1000
		inflight = 32
		blobSize = 4 << 20
		memLimit = 2 << 30
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := gwNetwork(t, ctx)
	base, pid := startGatewayProcess(t, nw, "--max-inflight", strconv.Itoa(inflight), "--cache-size", "0",
		"--max-blob-size", strconv.Itoa(2*blobSize))
	var blobs [][]byte
	var ids []string
	for range 4 {
		b := randomBlob(t, blobSize)
		blobs, ids = append(blobs, b), append(ids, gwPut(t, base, nw.ClientToken, b, http.StatusCreated).BlobID)
	}
	t.Logf("gateway peak RSS after storing 4 × %d MiB: %d MiB", blobSize>>20, peakRSS(t, pid)>>20)

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	codes := make([]int, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			resp, err := hc.Get(base + "/v1/blobs/" + ids[i%len(ids)])
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			codes[i], errs[i] = resp.StatusCode, err
			switch {
			case err != nil:
			case resp.StatusCode == http.StatusOK && !bytes.Equal(body, blobs[i%len(blobs)]):
				errs[i] = fmt.Errorf("200 with %d other bytes", len(body))
			case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "":
				errs[i] = errors.New("429 without Retry-After")
			case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests:
				errs[i] = fmt.Errorf("%s: %s", resp.Status, body)
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	count := map[int]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		count[codes[i]]++
	}
	rss := peakRSS(t, pid)
	t.Logf("%d concurrent GETs of 4 blobs of %d MiB in %v: %d × 200, %d × 429; gateway peak RSS %d MiB",
		clients, blobSize>>20, took.Round(time.Millisecond), count[http.StatusOK], count[http.StatusTooManyRequests], rss>>20)
	if count[http.StatusTooManyRequests] == 0 || count[http.StatusOK] == 0 {
		t.Fatalf("want both blobs served and 429s past --max-inflight %d: %v", inflight, count)
	}
	if rss >= memLimit {
		t.Fatalf("the gateway's peak RSS is %d MiB, want under %d", rss>>20, memLimit>>20)
	}
}
