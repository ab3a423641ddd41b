package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// metric reads one counter from a node's /metrics.
func metric(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s at %s", name, addr)
}

type epochStatus struct {
	Phase string `json:"phase"`
	Nodes []struct {
		Node   string `json:"node"`
		Copied uint64 `json:"bytes_copied"`
	} `json:"nodes"`
}

// A node joins a running network of `weft node` processes and is
// SIGKILLed in the middle of its sync: restarted with the same command it
// resumes — what it had verified is not fetched again — and the epoch
// becomes Stable; the bytes it copied match the moved shards' slivers, and
// every blob still reads back.
func TestJoiningNodeSurvivesSIGKILLMidSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	codec, err := coding.New(12)
	if err != nil {
		t.Fatal(err)
	}
	stored := storeBlobs(ctx, t, c, codec, 150, 40_000, 10)
	before, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}

	// The joining node, with a metrics endpoint to watch its sync.
	base := t.TempDir()
	key := filepath.Join(base, "node-4.key")
	run(t, n.bin, "key", "generate", "--out", key)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	joining := &process{name: "node-4", log: filepath.Join(base, "node-4.log"), args: []string{"node", "--id", "node-4",
		"--data-dir", filepath.Join(base, "node-4"), "--key-file", key, "--control", n.control, "--listen", addr, "--metrics-addr", metricsAddr}}
	joining.start(t, n.bin)
	n.nodes = append(n.nodes, joining)
	n.admin("node", "stake", "node-4", "100")
	n.admin("epoch", "advance")
	after, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for shard, owner := range after.Owners {
		if owner != before.Owners[shard] {
			if owner != "node-4" {
				t.Fatalf("shard %d moved to %s", shard, owner)
			}
			want += stored.shardBytes(codec, shard)
		}
	}
	var copiedBefore float64
	waitFor(t, 60*time.Second, "node-4 to start copying", func() bool {
		copiedBefore, _ = metric(metricsAddr, "weft_storage_handover_bytes_copied_total")
		return copiedBefore > 0
	})
	joining.stop(syscall.SIGKILL)
	if copiedBefore >= float64(want) {
		t.Skipf("the sync was done (%v bytes) before the kill", copiedBefore)
	}
	joining.start(t, n.bin)
	n.awaitStable("Stable", 90*time.Second)
	copiedAfter, err := metric(metricsAddr, "weft_storage_handover_bytes_copied_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved shards hold %d bytes of slivers: copied %.0f before the kill (last look), %.0f after the restart", want, copiedBefore, copiedAfter)
	if copiedAfter >= float64(want) || copiedBefore+copiedAfter > 1.05*float64(want) {
		t.Fatalf("copied %.0f + %.0f bytes for %d: the restart fetched again what it had", copiedBefore, copiedAfter, want)
	}
	stored.readBack(ctx, t, c)
}

// received is what node i fetched for handovers and recovery so far.
func (n *network) received(i int) float64 {
	copied, err1 := metric(n.metrics[i], "weft_storage_handover_bytes_copied_total")
	fetched, err2 := metric(n.metrics[i], "weft_storage_recovery_bytes_fetched_total")
	if err1 != nil || err2 != nil {
		n.t.Fatalf("node-%d metrics: %v %v", i, err1, err2)
	}
	return copied + fetched
}

// Rotation with every node alive, through `weft node` processes: a node
// joins, a node leaves, a stake changes. Each time the bytes a node
// receives are its gained shards' slivers (within 5 %) and a node that
// gains nothing receives nothing.
func TestRotationMovesOnlyChangedShards(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	codec, err := coding.New(12)
	if err != nil {
		t.Fatal(err)
	}
	stored := storeBlobs(ctx, t, c, codec, 20, 30_000, 20)
	// Stragglers cut off by the writer are recovered first.
	n.awaitRecoverySettled()
	rotate := func(what string, change func()) {
		t.Helper()
		before, err := c.CommitteeInfo(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		change()
		received := make([]float64, len(n.nodes))
		for i := range received {
			received[i] = n.received(i)
		}
		n.admin("epoch", "advance")
		n.awaitStable(what+": Stable", 60*time.Second)
		after, err := c.CommitteeInfo(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n.nodes {
			name := shardmap.NodeID(fmt.Sprintf("node-%d", i))
			var want int64
			for shard, owner := range after.Owners {
				if owner == name && before.Owners[shard] != name {
					want += stored.shardBytes(codec, shard)
				}
			}
			got := n.received(i) - received[i]
			t.Logf("%s: %s received %.0f bytes for %d bytes of gained slivers", what, name, got, want)
			if (want == 0 && got != 0) || got < float64(want) || got > 1.05*float64(want) {
				t.Fatalf("%s: %s received %.0f bytes, its gained shards hold %d", what, name, got, want)
			}
		}
	}
	rotate("a node joins", func() {
		i := n.addNode()
		n.admin("node", "stake", fmt.Sprintf("node-%d", i), "100")
	})
	rotate("a node leaves", func() { n.admin("node", "stake", "node-0", "0") })
	rotate("a stake changes", func() { n.admin("node", "stake", "node-1", "300") })
}

// The node leaving is SIGKILLed before the change: the new owners of its
// shards rebuild them by recovery, receiving at most 1.2× what they
// rebuild.
func TestHandoverFromAKilledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	codec, err := coding.New(12)
	if err != nil {
		t.Fatal(err)
	}
	stored := storeBlobs(ctx, t, c, codec, 20, 30_000, 20)
	n.awaitRecoverySettled()
	before, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	received := make([]float64, 4)
	for i := 1; i < 4; i++ {
		received[i] = n.received(i)
	}
	n.admin("node", "stake", "node-0", "0")
	n.nodes[0].stop(syscall.SIGKILL)
	n.admin("epoch", "advance")
	n.awaitStable("Stable", 90*time.Second)
	after, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rebuilt int64
	var got float64
	for i := 1; i < 4; i++ {
		name := shardmap.NodeID(fmt.Sprintf("node-%d", i))
		for shard, owner := range after.Owners {
			if owner == name && before.Owners[shard] == "node-0" {
				rebuilt += stored.shardBytes(codec, shard)
			}
		}
		got += n.received(i) - received[i]
	}
	t.Logf("rebuilt %d bytes of slivers, received %.0f (%.3fx)", rebuilt, got, got/float64(rebuilt))
	if rebuilt == 0 || got > 1.2*float64(rebuilt) {
		t.Fatalf("received %.0f bytes to rebuild %d", got, rebuilt)
	}
	stored.readBack(ctx, t, c)
}

// Stores and reads run without pause through three epoch changes that
// replace every node of epoch 1: no operation fails or returns other
// bytes, and a blob stored in epoch 1 still reads once all of its epoch-1
// holders are gone (SIGKILLed).
func TestTrafficThroughChurnOfProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := make([]byte, 200_000)
	rand.Read(first)
	firstID, _, err := c.Store(ctx, bytes.NewReader(first), client.StoreOptions{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var ops, failures atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				blob := make([]byte, 30_000)
				rand.Read(blob)
				id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
				if err == nil {
					var got []byte
					if got, err = c.Read(ctx, id, client.ReadOptions{}); err == nil && !bytes.Equal(got, blob) {
						err = fmt.Errorf("read %s: other bytes", id)
					}
				}
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("operation during churn: %v", err)
				}
			}
		})
	}
	change := func(join int, leave ...int) {
		t.Helper()
		for range join {
			i := n.addNode()
			n.admin("node", "stake", fmt.Sprintf("node-%d", i), "100")
		}
		for _, i := range leave {
			n.admin("node", "stake", fmt.Sprintf("node-%d", i), "0")
		}
		n.admin("epoch", "advance")
		n.awaitStable("Stable", 90*time.Second)
	}
	change(2, 0, 1)
	change(2, 2, 3)
	n.admin("node", "stake", "node-4", "300")
	change(0)
	close(stop)
	wg.Wait()
	for i := range 4 {
		n.nodes[i].stop(syscall.SIGKILL)
	}
	got, err := c.Read(ctx, firstID, client.ReadOptions{})
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the epoch-1 blob after all its epoch-1 holders left: %v", err)
	}
	t.Logf("%d store+read operations through three epoch changes, %d failed", ops.Load(), failures.Load())
	if ops.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d operations, %d failed", ops.Load(), failures.Load())
	}
}

// A blob that one owner never received (it was down; recovery held off)
// is still handed over when that owner leaves: its shards' new owners
// rebuild it, and the epoch is Stable only once they have it.
func TestHandoverOfABlobTheHolderNeverHad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12, "--recovery-delay", "1h")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken(), NodeTimeout: 5 * time.Second, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n.nodes[0].stop(syscall.SIGKILL)
	blob := make([]byte, 60_000)
	rand.Read(blob)
	id, cert, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	n.nodes[0].start(t, n.bin)
	waitFor(t, 30*time.Second, "node-0 back", func() bool {
		err := confirms(ctx, n.addrs[0], id, cert.Epoch)
		return err != nil && strings.Contains(err.Error(), "lacks the slivers")
	})
	before, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.admin("node", "stake", "node-0", "0")
	n.admin("epoch", "advance")
	n.awaitStable("Stable", 90*time.Second)
	after, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for shard, owner := range after.Owners {
		if before.Owners[shard] != "node-0" {
			continue
		}
		var addr string
		for i := range n.nodes {
			if fmt.Sprintf("node-%d", i) == string(owner) {
				addr = n.addrs[i]
			}
		}
		// A confirmation in the new epoch needs every owned shard's pair.
		if err := confirms(ctx, addr, id, after.Epoch); err != nil {
			t.Fatalf("%s (new owner of shard %d) after Stable: %v", owner, shard, err)
		}
	}
}

// An incoming node that never comes up keeps the epoch in Handover while
// reads and writes go on; the operator zeroes its stake and forces the
// next epoch; its shards go to nodes that sync them.
func TestForcedAdvancePastANodeThatNeverCameUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken(), NodeTimeout: 5 * time.Second, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	old := make([]byte, 50_000)
	rand.Read(old)
	oldID, _, err := c.Store(ctx, bytes.NewReader(old), client.StoreOptions{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	i := n.addNode()
	name := fmt.Sprintf("node-%d", i)
	n.admin("node", "stake", name, "100")
	n.nodes[i].stop(syscall.SIGKILL)
	n.admin("epoch", "advance")
	out, err := admin(t, n.bin, n.control, "epoch", "status", "-o", "json")
	var st epochStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Phase != "handover" {
		t.Fatalf("epoch status with %s down: %v\n%s", name, err, out)
	}
	if !strings.Contains(out, "does not answer") {
		t.Fatalf("the stuck shards are not named:\n%s", out)
	}
	// Reads and writes go on.
	blob := make([]byte, 50_000)
	rand.Read(blob)
	id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		id   crypto.BlobID
		data []byte
	}{{oldID, old}, {id, blob}} {
		if got, err := c.Read(ctx, b.id, client.ReadOptions{}); err != nil || !bytes.Equal(got, b.data) {
			t.Fatalf("read %s during the stuck handover: %v", b.id, err)
		}
	}
	if out, err := admin(t, n.bin, n.control, "epoch", "advance"); err == nil {
		t.Fatalf("a plain advance during a handover was accepted: %s", out)
	}
	n.admin("node", "stake", name, "0")
	n.admin("epoch", "advance", "--force")
	n.awaitStable("Stable after the forced advance", 90*time.Second)
	for _, b := range []struct {
		id   crypto.BlobID
		data []byte
	}{{oldID, old}, {id, blob}} {
		if got, err := c.Read(ctx, b.id, client.ReadOptions{}); err != nil || !bytes.Equal(got, b.data) {
			t.Fatalf("read %s after the forced advance: %v", b.id, err)
		}
	}
}

// A node process serves shard sync only to the shard's owner, on a request
// it signed for the current epoch, once; everything else is
// PermissionDenied (or InvalidArgument for what is no sync request at all)
// and nothing is sent.
func TestSyncShardRefusedToOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	n := startProcessNetwork(t, 4, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Store(ctx, bytes.NewReader(make([]byte, 10_000)), client.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	com, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) *crypto.SecretKey {
		sk, err := crypto.ReadKeyFile(filepath.Join(n.base, fmt.Sprintf("node-%d.key", i)))
		if err != nil {
			t.Fatal(err)
		}
		return sk
	}
	shard := com.OwnedBy("node-0")[0]
	conn, err := grpc.NewClient(n.addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := weftv1.NewStorageClient(conn)
	request := func(node string, sk *crypto.SecretKey, epoch, nonce uint64) *weftv1.SyncShardRequest {
		msg, err := crypto.EncodeMessage(epoch, crypto.ShardSyncRequest{Shard: shard, Limit: 10, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return &weftv1.SyncShardRequest{Node: node, Message: msg, Signature: sk.Sign(msg).Bytes()}
	}
	served := func(req *weftv1.SyncShardRequest) (int, error) {
		stream, err := st.SyncShard(ctx, req)
		if err != nil {
			return 0, err
		}
		count := 0
		for {
			item, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				return count, err
			}
			if len(item.BlobId) != 0 {
				count++
			}
		}
	}
	for name, req := range map[string]*weftv1.SyncShardRequest{
		"a node not assigned the shard": request("node-1", key(1), com.Epoch, 1),
		"a bad signature":               request("node-0", key(1), com.Epoch, 2),
		"another epoch":                 request("node-0", key(0), com.Epoch+1, 3),
	} {
		if count, err := served(req); count != 0 || status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: %d blobs served, %v", name, count, err)
		}
	}
	good := request("node-0", key(0), com.Epoch, 10)
	if count, err := served(good); err != nil || count != 1 {
		t.Fatalf("the owner's own request: %d blobs, %v", count, err)
	}
	if count, err := served(good); count != 0 || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a replay: %d blobs, %v", count, err)
	}
}

// awaitStable waits until `weft admin epoch status` reports Stable.
func (n *network) awaitStable(what string, d time.Duration) {
	n.t.Helper()
	var st epochStatus
	waitFor(n.t, d, what, func() bool {
		out, err := admin(n.t, n.bin, n.control, "epoch", "status", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Phase == "stable"
	})
}

// awaitRecoverySettled waits until no node has blobs left to recover
// (stragglers a writer cut off catch up first).
func (n *network) awaitRecoverySettled() {
	n.t.Helper()
	n.awaitRecoverySettledExcept(30*time.Second, nil)
}

// awaitRecoverySettledExcept waits up to d until no node but those in
// skip has blobs left to recover.
func (n *network) awaitRecoverySettledExcept(d time.Duration, skip map[int]bool) {
	n.t.Helper()
	waitFor(n.t, d, "background recovery to settle", func() bool {
		for i := range n.nodes {
			if skip[i] {
				continue
			}
			if v, err := metric(n.metrics[i], "weft_storage_recovery_backlog"); err != nil || v != 0 {
				return false
			}
		}
		return true
	})
}

// storedBlobs are random blobs a test stored, with their encodings.
type storedBlobs struct {
	ids   []crypto.BlobID
	blobs [][]byte
	encs  []*coding.Encoded
}

// storeBlobs stores count random blobs of size bytes through the client
// and encodes them locally, to know what each shard holds.
func storeBlobs(ctx context.Context, t *testing.T, c *client.Client, codec *coding.Codec, count, size int, epochs uint64) storedBlobs {
	t.Helper()
	var s storedBlobs
	for range count {
		blob := make([]byte, size)
		rand.Read(blob)
		id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: epochs})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := codec.Encode(blob)
		if err != nil {
			t.Fatal(err)
		}
		s.ids, s.blobs, s.encs = append(s.ids, id), append(s.blobs, blob), append(s.encs, enc)
	}
	return s
}

// shardBytes is the size of the sliver pairs the blobs place on a shard.
func (s storedBlobs) shardBytes(codec *coding.Codec, shard int) int64 {
	var total int64
	for _, enc := range s.encs {
		pair := enc.PairOnShard(codec.Params(), shard)
		total += int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
	}
	return total
}

// readBack reads every blob and checks its bytes.
func (s storedBlobs) readBack(ctx context.Context, t *testing.T, c *client.Client) {
	t.Helper()
	for i, id := range s.ids {
		got, err := c.Read(ctx, id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, s.blobs[i]) {
			t.Fatalf("read %s: %v", id, err)
		}
	}
}
