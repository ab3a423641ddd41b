package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// process is one `weft` process with a log file beside its data.
type process struct {
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	attr *syscall.SysProcAttr // e.g. Pdeathsig on Linux (the scale harness)
}

func (p *process) start(t *testing.T, bin string) {
	t.Helper()
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Env = append(os.Environ(), "WEFT_TOKEN="+token)
	p.cmd.SysProcAttr = p.attr
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *process) stop(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(sig)
		p.cmd.Wait()
	}
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WEFT_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// network is a control-plane process and storage-node processes.
type network struct {
	t       *testing.T
	bin     string
	base    string
	control string
	nodes   []*process
	addrs   []string
	metrics []string // each node's /metrics address
}

// addNode starts node-<i> (a new key, its own data directory, a metrics
// endpoint); the caller stakes it.
func (n *network) addNode(extra ...string) int {
	i := len(n.nodes)
	name := fmt.Sprintf("node-%d", i)
	key := filepath.Join(n.base, name+".key")
	run(n.t, n.bin, "key", "generate", "--out", key)
	addr, metrics := freeAddr(n.t), freeAddr(n.t)
	p := &process{name: name, log: filepath.Join(n.base, name+".log"), args: append([]string{"node", "--id", name,
		"--data-dir", filepath.Join(n.base, name), "--key-file", key, "--control", n.control, "--listen", addr,
		"--metrics-addr", metrics}, extra...)}
	p.start(n.t, n.bin)
	n.nodes = append(n.nodes, p)
	n.addrs = append(n.addrs, addr)
	n.metrics = append(n.metrics, metrics)
	return i
}

func startProcessNetwork(t *testing.T, nodes, shards int, nodeArgs ...string) *network {
	return startProcessNetworkWith(t, nodes, shards, nil, nodeArgs...)
}

// startProcessNetworkWith is startProcessNetwork with more `weft control`
// flags.
func startProcessNetworkWith(t *testing.T, nodes, shards int, controlArgs []string, nodeArgs ...string) *network {
	bin := buildWeft(t)
	base := t.TempDir()
	n := &network{t: t, bin: bin, control: freeAddr(t)}
	cp := &process{name: "control", log: filepath.Join(base, "control.log"), args: append([]string{"control", "--id", "cp",
		"--data-dir", filepath.Join(base, "cp"), "--raft-addr", freeAddr(t), "--grpc-addr", n.control,
		"--bootstrap-expect", "1", "--shards", fmt.Sprint(shards), "--challenge-window", "10s"}, controlArgs...)}
	cp.start(t, bin)
	t.Cleanup(func() {
		for _, p := range n.nodes {
			p.stop(syscall.SIGTERM)
		}
		cp.stop(syscall.SIGTERM)
		if t.Failed() {
			for _, p := range append(n.nodes, cp) {
				b, _ := os.ReadFile(p.log)
				t.Logf("--- %s log (tail) ---\n%s", p.name, tail(string(b), 3000))
			}
		}
	})
	n.base = base
	for range nodes {
		n.addNode(nodeArgs...)
	}
	for i := range nodes {
		n.admin("node", "stake", fmt.Sprintf("node-%d", i), "100")
	}
	n.admin("epoch", "advance")
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// admin retries while the control plane elects itself or nodes register.
func (n *network) admin(args ...string) string {
	n.t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err = admin(n.t, n.bin, n.control, args...)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("weft admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// clientToken adds a client credential and returns its token.
func (n *network) clientToken() string {
	out := n.admin("client", "add", "it", "--quota", "1000000000000000", "-o", "json")
	i := strings.Index(out, `"token"`)
	if i < 0 {
		n.t.Fatalf("no token in %s", out)
	}
	rest := out[i+len(`"token"`):]
	rest = rest[strings.Index(rest, `"`)+1:]
	return rest[:strings.Index(rest, `"`)]
}

// confirms asks node i for its confirmation of a blob in an epoch.
func confirms(ctx context.Context, addr string, id crypto.BlobID, epoch uint64) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = weftv1.NewStorageClient(conn).GetConfirmation(cctx, &weftv1.GetConfirmationRequest{BlobId: id[:], Epoch: epoch})
	return err
}

// SIGKILL a storage node while writes are in flight: every blob it signed
// for is still on its disk when it comes back (it signs only over durable
// pairs), and once it recovers it holds every certified blob; every blob
// reads back.
func TestStorageNodeSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	// Recovery held off for the first restart, so what the node has then
	// is what survived the kill.
	n := startProcessNetwork(t, 4, 12, "--recovery-delay", "1h")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken(), NodeTimeout: 5 * time.Second, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type stored struct {
		id   crypto.BlobID
		cert *crypto.Certificate
		blob []byte
	}
	var (
		mu     sync.Mutex
		blobs  []stored
		failed int
		wg     sync.WaitGroup
	)
	writeCtx, stopWriting := context.WithCancel(ctx)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; writeCtx.Err() == nil; i++ {
				blob := make([]byte, 20_000+(w*7919+i*104729)%200_000)
				rand.Read(blob)
				id, cert, err := c.Store(writeCtx, bytes.NewReader(blob), client.StoreOptions{})
				mu.Lock()
				if err == nil {
					blobs = append(blobs, stored{id, cert, blob})
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 60*time.Second, "the first stores", func() bool { mu.Lock(); defer mu.Unlock(); return len(blobs) >= 5 })
	victim := n.nodes[0]
	victim.stop(syscall.SIGKILL)
	time.Sleep(time.Second)
	stopWriting()
	wg.Wait()
	t.Logf("%d blobs certified, %d stores cut off", len(blobs), failed)

	committee, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	index, ok := committee.Index("node-0")
	if !ok {
		t.Fatal("node-0 is not in the committee")
	}
	victim.start(t, n.bin)
	signedByVictim := 0
	for _, b := range blobs {
		if !signed(b.cert, index) {
			continue
		}
		signedByVictim++
		var err error
		waitFor(t, 30*time.Second, "node-0 back up", func() bool {
			err = confirms(ctx, n.addrs[0], b.id, b.cert.Epoch)
			return err == nil || !strings.Contains(err.Error(), "Unavailable")
		})
		if err != nil {
			t.Fatalf("node-0 signed %s before the kill but lost its slivers: %v", b.id, err)
		}
	}
	t.Logf("node-0 signed %d certified blobs before the kill; all still on its disk", signedByVictim)

	// Restarted with recovery on, it rebuilds every certified blob it lacks.
	victim.stop(syscall.SIGTERM)
	victim.args = append(victim.args[:len(victim.args)-2], "--recovery-delay", "100ms")
	victim.start(t, n.bin)
	for _, b := range blobs {
		waitFor(t, 60*time.Second, "node-0 recovering "+b.id.String(), func() bool {
			return confirms(ctx, n.addrs[0], b.id, b.cert.Epoch) == nil
		})
	}
	for _, b := range blobs {
		got, err := c.Read(ctx, b.id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, b.blob) {
			t.Fatalf("read %s: %v", b.id, err)
		}
	}
}

func signed(cert *crypto.Certificate, member int) bool {
	for _, i := range cert.SignerIndices() {
		if i == member {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
