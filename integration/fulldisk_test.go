package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// refusals collects the client's "storage node did not confirm" warnings.
type refusals struct {
	mu   sync.Mutex
	errs []string // node: error
}

func (r *refusals) Enabled(context.Context, slog.Level) bool { return true }
func (r *refusals) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *refusals) WithGroup(string) slog.Handler            { return r }
func (r *refusals) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "storage node did not confirm" {
		return nil
	}
	var node, err string
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "node":
			node = a.Value.String()
		case "err":
			err = a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.errs = append(r.errs, node+": "+err)
	r.mu.Unlock()
	return nil
}

func (r *refusals) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// listedSpace is a node's line of `weft admin node list -o json`.
type listedSpace struct {
	ID            string `json:"id"`
	CapacityBytes string `json:"capacityBytes"`
	UsedBytes     string `json:"usedBytes"`
	FreeBytes     string `json:"freeBytes"`
	StatusError   string `json:"statusError"`
}

func (n *network) listSpace(id string) listedSpace {
	n.t.Helper()
	var list struct{ Nodes []listedSpace }
	out := n.admin("node", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		n.t.Fatalf("node list: %v\n%s", err, out)
	}
	for _, l := range list.Nodes {
		if l.ID == id {
			return l
		}
	}
	n.t.Fatalf("%s not in node list:\n%s", id, out)
	return listedSpace{}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

// A storage node whose capacity runs out (`weft node --capacity 1MiB`,
// one of five `weft node` processes): it refuses new writes with
// ResourceExhausted — stores keep being certified by the other four —,
// its recovery of the blobs it missed waits instead of fetching, it keeps
// serving reads, its scrub finds nothing corrupt, and `weft admin node
// list` shows its capacity and free space. Restarted with no capacity
// limit, it recovers every blob it missed from its peers and signs new
// stores again.
func TestFullDiskNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	const capacity = 1 << 20
	n := &network{t: t, bin: buildWeft(t), base: t.TempDir()}
	n.control = freeAddr(t)
	cp := &process{name: "control", log: filepath.Join(n.base, "control.log"), args: []string{"control", "--id", "cp",
		"--data-dir", filepath.Join(n.base, "cp"), "--raft-addr", freeAddr(t), "--grpc-addr", n.control,
		"--bootstrap-expect", "1", "--shards", "10",
		// A node missing blobs cannot prove them: a round closes at its
		// window's end, and until then peers embargo the sampled blobs'
		// symbols, so recovery waits for the close.
		"--challenge-window", "10s"}}
	cp.start(t, n.bin)
	t.Cleanup(func() {
		for _, p := range n.nodes {
			p.stop(syscall.SIGTERM)
		}
		cp.stop(syscall.SIGTERM)
		if t.Failed() {
			for _, p := range append(n.nodes, cp) {
				b, _ := os.ReadFile(p.log)
				t.Logf("--- %s log (tail) ---\n%s", p.name, tail(string(b), 4000))
			}
		}
	})
	common := []string{"--recovery-delay", "1s", "--scrub-interval", "2s"}
	n.addNode(append([]string{"--capacity", "1MiB"}, common...)...)
	for range 4 {
		n.addNode(common...)
	}
	for i := range n.nodes {
		n.admin("node", "stake", fmt.Sprintf("node-%d", i), "100")
	}
	n.admin("epoch", "advance")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	seen := &refusals{}
	// Stragglers are waited for (a node cut off after the quorum would
	// miss a blob for being slow, not full).
	c, err := client.New(client.Config{Control: []string{n.control}, Token: n.clientToken(), NodeTimeout: 5 * time.Second, Retries: 2,
		StragglerWait: 30 * time.Second, Logger: slog.New(seen)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	committee, err := c.CommitteeInfo(ctx, 0)
	for ; err == nil && len(committee.Members) < 5; committee, err = c.CommitteeInfo(ctx, 0) {
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	full, ok := committee.Index("node-0")
	if !ok {
		t.Fatal("node-0 is not in the committee")
	}

	type stored struct {
		id     crypto.BlobID
		cert   *crypto.Certificate
		blob   []byte
		object uint64
	}
	var blobs []stored
	store := func() stored {
		t.Helper()
		blob := make([]byte, 300_000)
		rand.Read(blob)
		var stats client.StoreStats
		id, cert, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Stats: &stats})
		if err != nil {
			t.Fatalf("store %d (with node-0 full, the others are a write quorum): %v", len(blobs), err)
		}
		if err := cert.VerifyAvailability(committee.View()); err != nil || cert.BlobID != id {
			t.Fatalf("certificate of %s: %v", id, err)
		}
		b := stored{id, cert, blob, stats.Object}
		blobs = append(blobs, b)
		return b
	}

	// Fill node-0: each blob puts about 240 KB on it (two pairs).
	signedByFull, refusedByFull := 0, 0
	for i := range 8 {
		b := store()
		if signed(b.cert, full) {
			signedByFull++
			if refusedByFull > 0 {
				t.Fatalf("blob %d: node-0 signed after it refused a write (no space was freed)", i)
			}
		} else {
			refusedByFull++
		}
	}
	t.Logf("node-0 signed %d of %d blobs, then refused", signedByFull, len(blobs))
	if signedByFull < 2 || refusedByFull < 3 {
		t.Fatalf("node-0 (capacity 1 MiB) signed %d blobs and refused %d of 8 × 300 kB", signedByFull, refusedByFull)
	}
	var noSpace []string
	for _, e := range seen.all() {
		if strings.HasPrefix(e, "node-0: ") && strings.Contains(e, "ResourceExhausted") && strings.Contains(e, "no room on node node-0") {
			noSpace = append(noSpace, e)
		} else if strings.HasPrefix(e, "node-0: ") {
			t.Errorf("node-0 failed a store otherwise than for space: %s", e)
		}
	}
	if len(noSpace) < refusedByFull {
		t.Fatalf("%d stores without node-0, %d refusals for space seen by the client: %v", refusedByFull, len(noSpace), seen.all())
	}
	t.Logf("the client was told: %s", noSpace[0])

	// Its status, its metrics and the operator's listing agree.
	st, err := storageNodeStatus(ctx, n.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.CapacityBytes != capacity || st.UsedBytes > capacity || st.UsedBytes+st.FreeBytes > capacity || st.WritesRefusedNoSpace < uint64(refusedByFull) {
		t.Fatalf("node-0's NodeStatus: capacity %d, used %d, free %d, refused %d", st.CapacityBytes, st.UsedBytes, st.FreeBytes, st.WritesRefusedNoSpace)
	}
	if v, err := metric(n.metrics[0], "weft_storage_capacity_bytes"); err != nil || v != capacity {
		t.Fatalf("weft_storage_capacity_bytes %v, %v", v, err)
	}
	if v, err := metric(n.metrics[0], "weft_storage_free_bytes"); err != nil || v >= 240_000 {
		t.Fatalf("weft_storage_free_bytes %v, %v", v, err)
	}
	listed := n.listSpace("node-0")
	if atoi(t, listed.CapacityBytes) != capacity || atoi(t, listed.FreeBytes) >= 240_000 || atoi(t, listed.UsedBytes) == 0 {
		t.Fatalf("admin node list: %+v", listed)
	}
	if other := n.listSpace("node-1"); other.CapacityBytes != "0" || atoi(t, other.FreeBytes) < 100<<20 {
		t.Fatalf("admin node list, a node without a capacity: %+v", other)
	}
	table := n.admin("node", "list")
	t.Logf("weft admin node list:\n%s", table)
	if !strings.Contains(table, "FREE") || !strings.Contains(table, "1.0 MiB") {
		t.Fatalf("the table shows no space:\n%s", table)
	}

	// Full, it serves: every blob reads back, the ones it holds included.
	for _, b := range blobs {
		got, err := c.Read(ctx, b.id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, b.blob) {
			t.Fatalf("read %s with node-0 full: %v", b.id, err)
		}
	}
	for _, b := range blobs[:signedByFull] {
		if err := confirms(ctx, n.addrs[0], b.id, b.cert.Epoch); err != nil {
			t.Fatalf("node-0 no longer confirms %s it signed: %v", b.id, err)
		}
	}
	// Its scrub read back everything it holds, after the refusals and its
	// recovery's attempts: nothing corrupt.
	passes, _ := metric(n.metrics[0], "weft_storage_scrub_passes_total")
	waitFor(t, 30*time.Second, "a scrub pass of node-0 after the refusals", func() bool {
		v, _ := metric(n.metrics[0], "weft_storage_scrub_passes_total")
		return v > passes
	})
	if v, err := metric(n.metrics[0], "weft_storage_corrupt_slivers_total"); err != nil || v != 0 {
		t.Fatalf("node-0 found %v corrupt slivers (%v)", v, err)
	}
	for _, b := range blobs[signedByFull:] {
		if err := confirms(ctx, n.addrs[0], b.id, b.cert.Epoch); err == nil {
			t.Fatalf("node-0 confirms %s, which it had no room for", b.id)
		}
	}

	// Room again, by deletion: two blobs it holds are deleted and the
	// epoch advances (their bytes go at its start); node-0 then writes
	// again — its recovery takes the room for blobs it missed (it owes
	// them), which it confirms.
	for _, b := range blobs[:2] {
		if _, err := c.Delete(ctx, b.object); err != nil {
			t.Fatalf("delete %s: %v", b.id, err)
		}
	}
	deleted := blobs[:2]
	blobs = blobs[2:]
	n.admin("epoch", "advance")
	epoch := func() uint64 {
		com, err := c.CommitteeInfo(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		return com.Epoch
	}
	waitFor(t, 30*time.Second, "epoch 2", func() bool { return epoch() == 2 })
	if committee, err = c.CommitteeInfo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if full, ok = committee.Index("node-0"); !ok {
		t.Fatal("node-0 left the committee")
	}
	missed := blobs[signedByFull-2:]
	recovered := func() int {
		k := 0
		for _, b := range missed {
			if confirms(ctx, n.addrs[0], b.id, 2) == nil {
				k++
			}
		}
		return k
	}
	waitFor(t, 90*time.Second, "node-0 writing again after the deletion: recovering a blob it had no room for", func() bool { return recovered() > 0 })
	t.Logf("after deleting 2 blobs node-0 recovered %d of the %d it had refused", recovered(), len(missed))
	for _, b := range deleted {
		if confirms(ctx, n.addrs[0], b.id, 2) == nil {
			t.Fatalf("node-0 still holds deleted %s", b.id)
		}
	}

	// Room again, by a larger capacity: restarted with no limit, it
	// recovers everything else it missed from its peers, and signs new
	// stores.
	p := n.nodes[0]
	p.stop(syscall.SIGTERM)
	p.args[slices.Index(p.args, "--capacity")+1] = "0"
	p.start(t, n.bin)
	for _, b := range blobs {
		waitFor(t, 90*time.Second, "node-0 recovering "+b.id.String(), func() bool {
			return confirms(ctx, n.addrs[0], b.id, 2) == nil
		})
	}
	for range 2 {
		if b := store(); !signed(b.cert, full) {
			t.Fatalf("node-0, with room again, did not sign %s", b.id)
		}
	}
	if l := n.listSpace("node-0"); l.CapacityBytes != "0" || atoi(t, l.FreeBytes) < 100<<20 {
		t.Fatalf("admin node list after the restart: %+v", l)
	}
	if v, err := metric(n.metrics[0], "weft_storage_corrupt_slivers_total"); err != nil || v != 0 {
		t.Fatalf("node-0 found %v corrupt slivers (%v)", v, err)
	}
	for _, b := range blobs {
		got, err := c.Read(ctx, b.id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, b.blob) {
			t.Fatalf("read %s: %v", b.id, err)
		}
	}
}
