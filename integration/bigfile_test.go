//go:build bigfile && linux

package integration

// Issue #19's big-file runs (`make bigfile`, never part of `make test`):
// files of BIGFILE_SIZES stored and read back through `weft store|read`
// and through `weft gateway`, each a child process whose peak RSS is its
// rusage's ru_maxrss; and a store SIGKILLed half way, then run again,
// counting the bytes the nodes received the second time. The network is
// an in-process devnet (its memory is not the children's).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
)

// bigfileSizes reads BIGFILE_SIZES ("64MiB,1GiB"; units KiB, MiB, GiB).
func bigfileSizes(t *testing.T) []int64 {
	spec := os.Getenv("BIGFILE_SIZES")
	if spec == "" {
		spec = "64MiB,1GiB"
	}
	var out []int64
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		mult := int64(1)
		for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
			if strings.HasSuffix(s, suffix) {
				s, mult = strings.TrimSuffix(s, suffix), m
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("BIGFILE_SIZES %q: %v", spec, err)
		}
		out = append(out, n*mult)
	}
	return out
}

// writeRandomFile writes size pseudo-random bytes (seeded) to path and
// returns their SHA-256, in bounded memory.
func writeRandomFile(t *testing.T, path string, size int64, seed uint64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, 19))
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := r.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := w.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// vmHWM is a live process's peak resident set so far (VmHWM in
// /proc/PID/status), in bytes; 0 once it has exited. Not rusage's
// ru_maxrss: Go starts a child sharing this process's memory until it
// execs (CLONE_VM), and Linux records that memory's peak — this test's,
// with its in-process nodes — as the child's own at exec.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// watchPeak samples pid's VmHWM every 10 ms until stop is closed and
// returns the largest (the peak is monotonic, so only growth in a
// child's last 10 ms can be missed).
func watchPeak(pid int, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, vmHWM(pid))
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// runMeasured runs the weft binary to completion and returns its stdout
// and peak RSS.
func runMeasured(t *testing.T, bin string, env []string, args ...string) (string, int64, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	peak := watchPeak(cmd.Process.Pid, stop)
	err := cmd.Wait()
	close(stop)
	if err != nil {
		t.Fatalf("weft %v: %v\n%s", args, err, errOut.String())
	}
	return out.String(), <-peak, time.Since(start)
}

func nodesReceived(net *devnet.Network) int64 {
	var sum int64
	for i := range net.Nodes() {
		sum += net.Node(i).Stats().BytesStored
	}
	return sum
}

const mib = float64(1 << 20)

// TestBigFiles: for each size, store and read through the CLI and the
// gateway, peak RSS of each process; then the SIGKILL resume run at the
// largest size.
func TestBigFiles(t *testing.T) {
	sizes := bigfileSizes(t)
	chunk := int64(client.DefaultChunkSize)
	if s := os.Getenv("BIGFILE_CHUNK"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		chunk = n
	}
	bin := buildWeft(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: 4, Shards: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	env := []string{"WEFT_CONTROL=" + net.ControlAddr, "WEFT_TOKEN=" + net.ClientToken}
	dir := t.TempDir()
	chunkFlag := "--chunk-size=" + strconv.FormatInt(chunk, 10)

	for i, size := range sizes {
		in := filepath.Join(dir, fmt.Sprintf("in-%d", i))
		want := writeRandomFile(t, in, size, uint64(i))
		out, storeRSS, storeTook := runMeasured(t, bin, env, "store", in, chunkFlag, "-o", "json")
		var rep struct {
			BlobID string `json:"blob_id"`
			Chunks int    `json:"chunks"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("store report %q: %v", out, err)
		}
		copyPath := filepath.Join(dir, fmt.Sprintf("out-%d", i))
		_, readRSS, readTook := runMeasured(t, bin, env, "read", rep.BlobID, "--out", copyPath)
		if fileSHA(t, copyPath) != want {
			t.Fatalf("%d bytes: the copy read back differs", size)
		}
		os.Remove(copyPath)
		t.Logf("BIGFILE cli size=%.0fMiB chunks=%d chunk=%.0fMiB store-peak-rss=%.0fMiB (%.1f MB/s) read-peak-rss=%.0fMiB (%.1f MB/s)",
			float64(size)/mib, rep.Chunks, float64(chunk)/mib, float64(storeRSS)/mib, float64(size)/1e6/storeTook.Seconds(),
			float64(readRSS)/mib, float64(size)/1e6/readTook.Seconds())

		// Through a gateway of its own (its peak RSS is this size's):
		// fresh content, so that the PUT stores rather than finds every
		// chunk certified.
		gwAddr := freeAddr(t)
		gw := exec.Command(bin, "gateway", "--listen", gwAddr, "--control", net.ControlAddr, chunkFlag, "--cache-size", "0",
			"--read-timeout", "1h", "--write-timeout", "1h")
		gw.Stderr = io.Discard
		// As an operator would: the collector's soft limit at what the
		// gateway is given (without one, Go lets the heap reach twice
		// what is live before collecting).
		gwLimit := os.Getenv("BIGFILE_GATEWAY_GOMEMLIMIT")
		if gwLimit == "" {
			gwLimit = "1GiB"
		}
		gw.Env = append(os.Environ(), "GOMEMLIMIT="+gwLimit)
		if err := gw.Start(); err != nil {
			t.Fatal(err)
		}
		gwStop := make(chan struct{})
		gwPeak := watchPeak(gw.Process.Pid, gwStop)
		waitHTTP(t, "http://"+gwAddr+"/v1/blobs/x")
		gin := filepath.Join(dir, fmt.Sprintf("gin-%d", i))
		gwant := writeRandomFile(t, gin, size, uint64(100+i))
		id := gatewayPutFile(t, "http://"+gwAddr, net.ClientToken, gin, size)
		if got := gatewayGetSHA(t, "http://"+gwAddr, id); got != gwant {
			t.Fatalf("%d bytes through the gateway: the copy differs", size)
		}
		os.Remove(gin)
		os.Remove(in)
		close(gwStop)
		if err := gw.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		_ = gw.Wait()
		t.Logf("BIGFILE gateway size=%.0fMiB peak-rss=%.0fMiB (one PUT, then one GET; GOMEMLIMIT=%s)", float64(size)/mib, float64(<-gwPeak)/mib, gwLimit)
	}

	resumeAfterKill(t, bin, env, net, dir, sizes[len(sizes)-1], chunk, chunkFlag)
}

// resumeAfterKill SIGKILLs a store once the nodes have received half the
// file's encoded bytes, runs it again, and compares what the nodes
// received the second time with the share of the chunks left.
func resumeAfterKill(t *testing.T, bin string, env []string, net *devnet.Network, dir string, size, chunk int64, chunkFlag string) {
	if size < 4*chunk {
		t.Logf("BIGFILE resume skipped: %d bytes are fewer than 4 chunks of %d", size, chunk)
		return
	}
	in := filepath.Join(dir, "killed")
	writeRandomFile(t, in, size, 999)
	params, err := coding.NewParams(10)
	if err != nil {
		t.Fatal(err)
	}
	perChunk, _ := params.EncodedSize(uint64(chunk))
	chunks := (size + chunk - 1) / chunk
	total := int64(perChunk) * chunks

	start := nodesReceived(net)
	cmd := exec.Command(bin, "store", in, chunkFlag, "-o", "json")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for nodesReceived(net)-start < total/2 {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := nodesReceived(net) - start
	time.Sleep(time.Second) // let the nodes finish what was in flight

	before := nodesReceived(net)
	out, _, _ := runMeasured(t, bin, env, "store", in, chunkFlag, "-o", "json")
	received := nodesReceived(net) - before
	var rep struct {
		Chunks int `json:"chunks"`
		Reused int `json:"reused_parts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("store report %q: %v", out, err)
	}
	remaining := int64(rep.Chunks-rep.Reused) * int64(perChunk)
	t.Logf("BIGFILE resume size=%.0fMiB killed-after=%.0fMiB-of-%.0fMiB reused=%d/%d second-run-received=%.0fMiB remaining-share=%.0fMiB one-chunk=%.0fMiB ratio=%.3f",
		float64(size)/mib, float64(killedAt)/mib, float64(total)/mib, rep.Reused, rep.Chunks, float64(received)/mib, float64(remaining)/mib,
		float64(perChunk)/mib, float64(received)/float64(remaining+int64(perChunk)))
	if received > remaining+int64(perChunk) {
		t.Fatalf("the second run made the nodes receive %d bytes, more than the remaining chunks' %d + one chunk %d", received, remaining, perChunk)
	}
	if rep.Reused == 0 {
		t.Fatal("the killed store left no chunk certified")
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func gatewayPutFile(t *testing.T, base, token, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req, err := http.NewRequest(http.MethodPut, base+"/v1/blobs", f)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("gateway PUT: %s %s", resp.Status, b)
	}
	var sr struct {
		BlobID string `json:"blob_id"`
	}
	if err := json.Unmarshal(b, &sr); err != nil {
		t.Fatal(err)
	}
	return sr.BlobID
}

func gatewayGetSHA(t *testing.T, base, id string) [32]byte {
	t.Helper()
	resp, err := http.Get(base + "/v1/blobs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway GET: %s", resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("gateway GET body: %v", err)
	}
	return [32]byte(h.Sum(nil))
}
