package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/gateway/gatewaytest"
)

// gwShards is the n of the networks these tests run `weft gateway` in
// front of, as a command and as a process of its own. What the gateway
// answers is package gateway's tests'.
const gwShards = 8

// storedBlob is what these tests read of a PUT's answer.
type storedBlob struct {
	BlobID string `json:"blob_id"`
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
	nw := gatewaytest.Network(t, nctx, gwShards)
	listen, metrics := freePort(t), freePort(t)
	t.Setenv("WEFT_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv("GOMEMLIMIT", "") // the gateway sets the soft memory limit itself
	limitBefore := debug.SetMemoryLimit(-1)
	root := newRootCommand()
	root.SetArgs([]string{"gateway", "--listen", listen, "--control", nw.ControlAddr,
		"--max-blob-size", "2048", "--epochs", "2", "--metrics-addr", metrics, "--cache-size", "1000000",
		"--read-timeout", gwCommandReadTimeout.String(), "--write-timeout", "30s",
		"--cors-origin", "https://a.example,https://b.example", "--cors-origin", "http://localhost:3000"})
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

	// Idle, the limit is the gateway's base and its cache (gateway memory.go).
	if got, want := debug.SetMemoryLimit(-1), int64(128<<20+1000000); got != want {
		t.Errorf("soft memory limit of the idle gateway: %d, want %d", got, want)
	}
	blob := gatewaytest.RandomBlob(t, 2048)
	sr := gatewaytest.Put[storedBlob](t, base, nw.ClientToken, blob, http.StatusCreated)
	resp, body := gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, blob) {
		t.Fatal("read other bytes through the command")
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID+"/status", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
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
	resp, body = gatewaytest.Do(t, http.MethodPut, base+"/v1/blobs", bytes.NewReader(gatewaytest.RandomBlob(t, 2049)), gatewaytest.Bearer(nw.ClientToken)...)
	gatewaytest.Want(t, resp, body, http.StatusRequestEntityTooLarge)

	// --cors-origin, repeated and comma-separated: each origin's pages may
	// call the API, no other's.
	for _, origin := range []string{"https://a.example", "https://b.example", "http://localhost:3000"} {
		resp, body = gatewaytest.Do(t, http.MethodOptions, base+"/v1/blobs", nil, "Origin", origin, "Access-Control-Request-Method", "PUT")
		gatewaytest.Want(t, resp, body, http.StatusNoContent)
		if resp.Header.Get("Access-Control-Allow-Origin") != origin || resp.Header.Get("Access-Control-Allow-Methods") != "PUT" {
			t.Errorf("preflight from %s: %v", origin, resp.Header)
		}
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/blobs/"+sr.BlobID, nil, "Origin", "https://b.example")
	gatewaytest.Want(t, resp, body, http.StatusOK)
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://b.example" {
		t.Errorf("GET from an allowed origin: %v", resp.Header)
	}
	resp, body = gatewaytest.Do(t, http.MethodOptions, base+"/v1/blobs", nil, "Origin", "https://c.example", "Access-Control-Request-Method", "PUT")
	gatewaytest.Want(t, resp, body, http.StatusForbidden)

	resp, body = gatewaytest.Do(t, http.MethodGet, "http://"+metrics+"/metrics", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	for _, want := range []string{
		`weft_gateway_requests_total{code="201",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_requests_total{code="413",method="PUT",route="PUT /v1/blobs"} 1`,
		`weft_gateway_bytes_total{direction="in"} 2048`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The status page, on by default.
	resp, body = gatewaytest.Do(t, http.MethodGet, base+"/v1/network", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)
	var network struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal(body, &network); err != nil || len(network.Nodes) != 4 {
		t.Fatalf("GET /v1/network: %v %s", err, body)
	}
	resp, body = gatewaytest.Do(t, http.MethodGet, base+"/ui/", nil)
	gatewaytest.Want(t, resp, body, http.StatusOK)

	// --read-timeout reaches the server.
	t.Run("trickled body", func(t *testing.T) { gatewaytest.CheckTrickle(t, listen, nw.ClientToken, gwCommandReadTimeout) })

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
	if got := debug.SetMemoryLimit(-1); got != limitBefore {
		t.Errorf("soft memory limit after the gateway stopped: %d, want the one before, %d", got, limitBefore)
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
		{[]string{"--cors-origin", "https://a.example,a.example"}, "CORS origin"},
	} {
		root := newRootCommand()
		root.SetArgs(append([]string{"gateway"}, c.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("gateway %v: %v, want an error about %s", c.args, err, c.want)
		}
	}
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
	nw := gatewaytest.Network(t, ctx, gwShards)
	base, pid := startGatewayProcess(t, nw, "--max-inflight", strconv.Itoa(inflight), "--cache-size", "0",
		"--max-blob-size", strconv.Itoa(2*blobSize))
	var blobs [][]byte
	var ids []string
	for range 4 {
		b := gatewaytest.RandomBlob(t, blobSize)
		blobs, ids = append(blobs, b), append(ids, gatewaytest.Put[storedBlob](t, base, nw.ClientToken, b, http.StatusCreated).BlobID)
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
