package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
)

// A storage node whose wall clock steps back an hour keeps making signed
// requests and serving. The node is SIGKILLed after it has synced shards
// (signed sync requests to its peers, signed "shard synced" reports the
// control plane took with nonces from its clock), then started again with
// its wall clock an hour behind (`--clock-offset -1h`): it registers
// again, gains shards in the next handover — syncs them and reports them
// synced — and stores and reads go on. Nonces from the clock alone would
// be an hour below the ones the control plane took: every request refused
// as a replay, the node unable even to register.
func TestNodeClockSteppedBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, 4, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: r.Control, Token: r.ClientToken, NodeTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	store := func(what string) ([]byte, func()) {
		t.Helper()
		blob := make([]byte, 50_000)
		rand.Read(blob)
		id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
		if err != nil {
			t.Fatalf("store %s: %v", what, err)
		}
		return blob, func() {
			t.Helper()
			if got, err := c.Read(ctx, id, client.ReadOptions{}); err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read of the blob stored %s: %v", what, err)
			}
		}
	}
	_, readFirst := store("before")
	stakeAndAdvance := func(node, stake string, epoch uint64) {
		t.Helper()
		if out, err := adminAt(t, bin, r, "node", "stake", node, stake); err != nil {
			t.Fatalf("stake %s %s: %v\n%s", node, stake, err, out)
		}
		waitFor(t, 30*time.Second, "the epoch advance", func() bool {
			_, err := adminAt(t, bin, r, "epoch", "advance")
			return err == nil
		})
		awaitStableEpoch(t, bin, r, epoch, 90*time.Second)
	}
	// node-3 gains some of node-0's shards: it signs sync requests and
	// "shard synced" reports with nonces from its clock.
	stakeAndAdvance("node-0", "0", 2)

	// node-3 dies, and comes back with its clock an hour behind.
	var ready map[string]any
	b, err := os.ReadFile(readyPath)
	if err != nil || json.Unmarshal(b, &ready) != nil {
		t.Fatalf("ready file: %v", err)
	}
	found := false
	for _, p := range ready["processes"].([]any) {
		p := p.(map[string]any)
		if p["id"] != "node-3" {
			continue
		}
		found = true
		syscall.Kill(int(p["pid"].(float64)), syscall.SIGKILL)
		p["args"] = append(p["args"].([]any), "--clock-offset=-1h")
	}
	if !found {
		t.Fatal("no node-3 in the ready file")
	}
	b, _ = json.Marshal(ready)
	if err := os.WriteFile(readyPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	devnetRestart(t, bin, readyPath, "node-3")

	// node-3 gains node-1's shards in the next handover: the epoch turns
	// Stable only once it has synced them and said so, signed.
	stakeAndAdvance("node-1", "0", 3)
	var nodes struct {
		Nodes []struct {
			ID     string `json:"id"`
			Shards int    `json:"shardsOwned"`
		} `json:"nodes"`
	}
	out, err := adminAt(t, bin, r, "node", "list", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &nodes) != nil {
		t.Fatalf("node list: %v\n%s", err, out)
	}
	for _, n := range nodes.Nodes {
		if n.ID == "node-3" && n.Shards == 0 {
			t.Fatalf("node-3 owns no shards after the handover: %s", out)
		}
	}
	_, readSecond := store("after the step")
	readFirst()
	readSecond()
}

// awaitStableEpoch waits until the devnet's epoch is epoch and Stable.
func awaitStableEpoch(t *testing.T, bin string, r fullReady, epoch uint64, d time.Duration) {
	t.Helper()
	var st struct {
		Epoch uint64 `json:"epoch"`
		Phase string `json:"phase"`
	}
	waitFor(t, d, "Stable", func() bool {
		out, err := adminAt(t, bin, r, "epoch", "status", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Epoch == epoch && st.Phase == "stable"
	})
}
