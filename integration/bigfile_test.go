//go:build bigfile && linux

package integration

// Issue #19's big-file runs (`make bigfile`, build tag bigfile, never
// part of `make test`): BenchmarkBigFile stores and reads files of
// BIGFILE_SIZES through `weft store|read` and through `weft gateway`,
// each a child process whose peak RSS is sampled from /proc; then a store
// SIGKILLed half way is run again, counting the bytes the nodes receive
// the second time. The network is an in-process devnet (its memory is not
// the children's), a fresh one for each round (CLI, gateway, resume).

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
)

// bigfileSizes reads BIGFILE_SIZES ("64MiB,1GiB"; units KiB, MiB, GiB),
// as given (the sub-benchmarks' names) and in bytes.
func bigfileSizes(t testing.TB) (names []string, sizes []int64) {
	spec := os.Getenv("BIGFILE_SIZES")
	if spec == "" {
		spec = "64MiB,1GiB"
	}
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		s, mult := name, int64(1)
		for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
			if strings.HasSuffix(s, suffix) {
				s, mult = strings.TrimSuffix(s, suffix), m
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("BIGFILE_SIZES %q: %q is not a size", spec, name)
		}
		names, sizes = append(names, name), append(sizes, n*mult)
	}
	return names, sizes
}

// writeRandomFile writes size pseudo-random bytes (seeded) to path and
// returns their SHA-256, in bounded memory.
func writeRandomFile(t testing.TB, path string, size int64, seed uint64) [32]byte {
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

func fileSHA(t testing.TB, path string) [32]byte {
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
func runMeasured(t testing.TB, bin string, env []string, args ...string) (string, int64, time.Duration) {
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

// bigfileNet starts a devnet for one round (4 nodes, n = 10, in this
// process) and the environment that points `weft` at it. stop closes it
// and removes its data (a 6 GiB file is 24 GiB on the nodes' disks, so
// each round frees its own before the next); it runs at the end of the
// benchmark anyway.
func bigfileNet(b *testing.B, ctx context.Context) (net *devnet.Network, env []string, stop func()) {
	dir, err := os.MkdirTemp("", "weft-bigfile-")
	if err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if net != nil {
				_ = net.Close()
			}
			_ = os.RemoveAll(dir)
		})
	}
	b.Cleanup(stop)
	net, err = devnet.Start(ctx, devnet.Config{Dir: dir, Nodes: 4, Shards: 10})
	if err != nil {
		b.Fatal(err)
	}
	return net, []string{"WEFT_CONTROL=" + net.ControlAddr, "WEFT_TOKEN=" + net.ClientToken}, stop
}

// bigfileChunk is BIGFILE_CHUNK (bytes), else the SDK's default.
func bigfileChunk(b *testing.B) int64 {
	s := os.Getenv("BIGFILE_CHUNK")
	if s == "" {
		return client.DefaultChunkSize
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// The bounds on peak RSS (issue #19), checked here and named in
// BENCHMARKS.md (.ci/benchreport's goals).
const (
	storeRSSBound   = 1536 << 20
	readRSSBound    = 1024 << 20
	gatewayRSSBound = 1536 << 20
)

// BenchmarkBigFile stores and reads one file per BIGFILE_SIZES entry
// through `weft store|read` and through `weft gateway` (one PUT, one
// GET), each size on a devnet of its own, and reports each process's peak
// RSS per request (VmHWM) and its throughput; then, at the largest size,
// a store SIGKILLed half way and run again (resume-x-bound: what the nodes
// received the second time ÷ the chunks left plus one chunk, ≤ 1). It
// fails if a copy differs or a bound of the issue is missed. Run with
// -benchtime 1x (each iteration stores the whole file again, fresh).
func BenchmarkBigFile(b *testing.B) {
	bin := buildWeft(b)
	chunk := bigfileChunk(b)
	names, sizes := bigfileSizes(b)
	for k, size := range sizes {
		b.Run("size="+names[k], func(b *testing.B) { bigfileRoundTrips(b, bin, size, chunk) })
	}
	b.Run("resume/size="+names[len(names)-1], func(b *testing.B) {
		for range b.N {
			resumeAfterKill(b, bin, sizes[len(sizes)-1], chunk)
		}
	})
}

// bigfileRoundTrips is one size's CLI and gateway round trips.
func bigfileRoundTrips(b *testing.B, bin string, size, chunk int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	dir := b.TempDir()
	chunkFlag := "--chunk-size=" + strconv.FormatInt(chunk, 10)
	var storeRSS, readRSS, putRSS, getRSS int64
	var storeTook, readTook, putTook, getTook time.Duration
	for i := range b.N {
		_, env, stop := bigfileNet(b, ctx)
		in := filepath.Join(dir, "in")
		want := writeRandomFile(b, in, size, uint64(i))
		out, rss, took := runMeasured(b, bin, env, "store", in, chunkFlag, "-o", "json")
		storeRSS, storeTook = max(storeRSS, rss), storeTook+took
		var rep struct {
			BlobID string `json:"blob_id"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			b.Fatalf("store report %q: %v", out, err)
		}
		copyPath := filepath.Join(dir, "out")
		_, rss, took = runMeasured(b, bin, env, "read", rep.BlobID, "--out", copyPath)
		readRSS, readTook = max(readRSS, rss), readTook+took
		if fileSHA(b, copyPath) != want {
			b.Fatalf("%d bytes: the copy read back differs", size)
		}
		os.Remove(copyPath)
		stop()

		// Through a gateway of its own, on a devnet of its own, fresh
		// content (so that the PUT stores rather than finds every chunk
		// certified).
		net, _, stop := bigfileNet(b, ctx)
		gwant := writeRandomFile(b, in, size, uint64(1000+i))
		put, get, pt, gt := gatewayRoundTrip(b, bin, net, chunkFlag, in, size, gwant)
		stop()
		putRSS, getRSS, putTook, getTook = max(putRSS, put), max(getRSS, get), putTook+pt, getTook+gt
		os.Remove(in)
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(float64(storeRSS)/mib, "store-peak-rss-MiB")
	b.ReportMetric(float64(readRSS)/mib, "read-peak-rss-MiB")
	b.ReportMetric(float64(putRSS)/mib, "gw-put-peak-rss-MiB")
	b.ReportMetric(float64(getRSS)/mib, "gw-get-peak-rss-MiB")
	b.ReportMetric(mbps(storeTook), "store-MB/s")
	b.ReportMetric(mbps(readTook), "read-MB/s")
	b.ReportMetric(mbps(putTook), "gw-put-MB/s")
	b.ReportMetric(mbps(getTook), "gw-get-MB/s")
	for _, c := range []struct {
		what       string
		got, bound int64
	}{{"weft store", storeRSS, storeRSSBound}, {"weft read", readRSS, readRSSBound}, {"the gateway's PUT", putRSS, gatewayRSSBound}, {"the gateway's GET", getRSS, gatewayRSSBound}} {
		if c.got > c.bound {
			b.Errorf("%s of %d bytes peaked at %.0f MiB RSS, over the bound of %.0f MiB", c.what, size, float64(c.got)/mib, float64(c.bound)/mib)
		}
	}
}

// gatewayRoundTrip starts `weft gateway` as shipped (without GOMEMLIMIT it
// keeps its soft memory limit at what its requests in flight hold;
// BIGFILE_GATEWAY_GOMEMLIMIT sets an operator's instead, "off" none), PUTs
// the file at in and GETs it back, and returns
// the gateway's peak RSS during each request (its VmHWM reset between
// them through /proc/PID/clear_refs) and each request's time.
func gatewayRoundTrip(b *testing.B, bin string, net *devnet.Network, chunkFlag, in string, size int64, want [32]byte) (putRSS, getRSS int64, putTook, getTook time.Duration) {
	gwAddr := freeAddr(b)
	gw := exec.Command(bin, "gateway", "--listen", gwAddr, "--control", net.ControlAddr, chunkFlag, "--cache-size", "0",
		"--read-timeout", "1h", "--write-timeout", "1h")
	gw.Stderr = io.Discard
	gw.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") })
	if limit := os.Getenv("BIGFILE_GATEWAY_GOMEMLIMIT"); limit != "" {
		gw.Env = append(gw.Env, "GOMEMLIMIT="+limit)
	}
	if err := gw.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = gw.Process.Signal(syscall.SIGTERM)
		_ = gw.Wait()
	}()
	base := "http://" + gwAddr
	waitHTTP(b, base+"/v1/blobs/x")
	request := func(do func()) (int64, time.Duration) {
		resetPeak(b, gw.Process.Pid)
		stop := make(chan struct{})
		peak := watchPeak(gw.Process.Pid, stop)
		start := time.Now()
		do()
		took := time.Since(start)
		close(stop)
		return <-peak, took
	}
	var id string
	putRSS, putTook = request(func() { id = gatewayPutFile(b, base, net.ClientToken, in, size) })
	getRSS, getTook = request(func() {
		if got := gatewayGetSHA(b, base, id); got != want {
			b.Fatalf("%d bytes through the gateway: the copy differs", size)
		}
	})
	return putRSS, getRSS, putTook, getTook
}

// resetPeak sets a process's VmHWM back to its current RSS (Linux's
// clear_refs, value 5), so that the next peak is one request's.
func resetPeak(b *testing.B, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatalf("resetting the gateway's peak RSS: %v", err)
	}
}

// resumeAfterKill SIGKILLs a store once the nodes have received half the
// file's encoded bytes, runs it again, and compares what the nodes
// received the second time with the share of the chunks left.
func resumeAfterKill(b *testing.B, bin string, size, chunk int64) {
	if size < 4*chunk {
		b.Skipf("%d bytes are fewer than 4 chunks of %d", size, chunk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	net, env, _ := bigfileNet(b, ctx)
	chunkFlag := "--chunk-size=" + strconv.FormatInt(chunk, 10)
	in := filepath.Join(b.TempDir(), "killed")
	writeRandomFile(b, in, size, 999)
	params, err := coding.NewParams(10)
	if err != nil {
		b.Fatal(err)
	}
	perChunk, _ := params.EncodedSize(uint64(chunk))
	chunks := (size + chunk - 1) / chunk
	total := int64(perChunk) * chunks

	start := nodesReceived(net)
	cmd := exec.Command(bin, "store", in, chunkFlag, "-o", "json")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Half way, and past three chunks' share: with two chunks stored at
	// once, a kill any earlier may find none certified yet.
	killAt := max(total/2, 3*int64(perChunk))
	for nodesReceived(net)-start < killAt {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		b.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := nodesReceived(net) - start
	time.Sleep(time.Second) // let the nodes finish what was in flight

	before := nodesReceived(net)
	out, _, _ := runMeasured(b, bin, env, "store", in, chunkFlag, "-o", "json")
	received := nodesReceived(net) - before
	var rep struct {
		Chunks int `json:"chunks"`
		Reused int `json:"reused_parts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		b.Fatalf("store report %q: %v", out, err)
	}
	remaining := int64(rep.Chunks-rep.Reused) * int64(perChunk)
	ratio := float64(received) / float64(remaining+int64(perChunk))
	b.Logf("killed after %.0f of %.0f MiB sent; the second run reused %d of %d chunks and the nodes received %.0f MiB (the chunks left: %.0f MiB, one chunk %.0f MiB)",
		float64(killedAt)/mib, float64(total)/mib, rep.Reused, rep.Chunks, float64(received)/mib, float64(remaining)/mib, float64(perChunk)/mib)
	b.ReportMetric(ratio, "resume-x-bound")
	b.ReportMetric(float64(rep.Reused)/float64(rep.Chunks), "reused-x-chunks")
	if received > remaining+int64(perChunk) {
		b.Fatalf("the second run made the nodes receive %d bytes, more than the remaining chunks' %d + one chunk %d", received, remaining, perChunk)
	}
	if rep.Reused == 0 {
		b.Fatal("the killed store left no chunk certified")
	}
}

func waitHTTP(t testing.TB, url string) {
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

func gatewayPutFile(t testing.TB, base, token, path string, size int64) string {
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

func gatewayGetSHA(t testing.TB, base, id string) [32]byte {
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
