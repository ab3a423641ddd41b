package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// fullReady is the part of `weft devnet`'s ready file these scenarios use.
type fullReady struct {
	Control       []string `json:"control"`
	OperatorToken string   `json:"operator_token"`
	ClientToken   string   `json:"client_token"`
	Processes     []struct {
		Role string `json:"role"`
		ID   string `json:"id"`
		PID  int    `json:"pid"`
	} `json:"processes"`
}

// startDevnet runs `weft devnet` (with args) and returns its ready file's
// contents.
func startDevnet(t *testing.T, bin string, nodes, shards int, args ...string) (fullReady, string) {
	t.Helper()
	_, ready := launchDevnet(t, bin, t.TempDir(), append([]string{"--nodes", itoa(nodes), "--shards", itoa(shards)}, args...)...)
	var r fullReady
	b, _ := os.ReadFile(ready)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r, ready
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// peer is a voter as `weft admin peers list -o json` shows it.
type peer struct {
	ID    string `json:"id"`
	Lag   string `json:"lag"`
	Error string `json:"error"`
}

// caughtUp: the voter answers and has applied what the leader has.
func (p peer) caughtUp() bool { return p.Error == "" && (p.Lag == "" || p.Lag == "0") }

// listPeers lists the devnet's voters; false if the answer did not come.
func listPeers(t *testing.T, bin string, r fullReady) ([]peer, bool) {
	out, err := adminAt(t, bin, r, "peers", "list", "-o", "json")
	var list struct {
		Peers []peer `json:"peers"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil {
		return nil, false
	}
	return list.Peers, true
}

// adminAt runs `weft admin` against the devnet's voters as the operator.
func adminAt(t *testing.T, bin string, r fullReady, args ...string) (string, error) {
	cmd := exec.Command(bin, append(append([]string{"admin"}, args...), "--control", strings.Join(r.Control, ","), "--token", r.OperatorToken)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The control-plane leader is SIGKILLed in the middle of a handover: the
// other two voters elect a new one, the handover completes, the killed
// voter comes back with the same command and catches up, and every blob
// reads back.
func TestLeaderLostDuringEpochChange(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, 5, 15)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: r.Control, Token: r.ClientToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ids []crypto.BlobID
	var blobs [][]byte
	for range 30 {
		blob := make([]byte, 50_000)
		rand.Read(blob)
		id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
		if err != nil {
			t.Fatal(err)
		}
		ids, blobs = append(ids, id), append(blobs, blob)
	}
	var status struct {
		LeaderID string `json:"leaderId"`
	}
	out, err := adminAt(t, bin, r, "status", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &status) != nil || status.LeaderID == "" {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := adminAt(t, bin, r, "node", "stake", "node-0", "0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := adminAt(t, bin, r, "epoch", "advance"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range r.Processes {
		if p.ID == status.LeaderID {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	var st struct {
		Epoch uint64 `json:"epoch"`
		Phase string `json:"phase"`
	}
	waitFor(t, 90*time.Second, "Stable under the new leader", func() bool {
		out, err := adminAt(t, bin, r, "epoch", "status", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Epoch == 2 && st.Phase == "stable"
	})
	devnetRestart(t, bin, readyPath, status.LeaderID)
	waitFor(t, 60*time.Second, status.LeaderID+" back and caught up", func() bool {
		peers, _ := listPeers(t, bin, r)
		for _, p := range peers {
			if p.ID == status.LeaderID {
				return p.caughtUp()
			}
		}
		return false
	})
	for i, id := range ids {
		got, err := c.Read(ctx, id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("read %s: %v", id, err)
		}
	}
}

// Five epochs of storage-node churn (nodes leave and come back) with
// writes and reads running throughout, and a voter or a storage node
// SIGKILLed and restarted at each change: every blob that was certified
// reads back at the end.
func TestChurnOverFiveEpochsWithKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, 6, 18)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: r.Control, Token: r.ClientToken, NodeTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type stored struct {
		id   crypto.BlobID
		blob []byte
	}
	var mu sync.Mutex
	var certified []stored
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				blob := make([]byte, 40_000)
				rand.Read(blob)
				id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 30})
				if err != nil {
					t.Logf("store: %v", err)
					continue // a kill can fail a write; only certified blobs must survive
				}
				mu.Lock()
				certified = append(certified, stored{id, blob})
				mu.Unlock()
				if got, err := c.Read(ctx, id, client.ReadOptions{}); err == nil && !bytes.Equal(got, blob) {
					t.Errorf("read %s: other bytes", id)
				}
			}
		})
	}
	victims := []string{"node-1", "control-2", "node-4", "control-1", "node-2"}
	for e, stakes := range []map[string]string{
		{"node-0": "0"},
		{"node-0": "100", "node-5": "0"},
		{"node-5": "100", "node-3": "300"},
		{"node-3": "100", "node-1": "0"},
		{"node-1": "100"},
	} {
		time.Sleep(time.Second) // traffic in the stable epoch
		for node, stake := range stakes {
			if out, err := adminAt(t, bin, r, "node", "stake", node, stake); err != nil {
				t.Fatalf("epoch %d: %v\n%s", e+2, err, out)
			}
		}
		var rr fullReady
		b, _ := os.ReadFile(readyPath)
		json.Unmarshal(b, &rr)
		for _, p := range rr.Processes {
			if p.ID == victims[e] {
				syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
		waitFor(t, 30*time.Second, "the epoch advance", func() bool {
			_, err := adminAt(t, bin, r, "epoch", "advance")
			return err == nil
		})
		time.Sleep(500 * time.Millisecond)
		devnetRestart(t, bin, readyPath, victims[e])
		var st struct {
			Epoch uint64 `json:"epoch"`
			Phase string `json:"phase"`
		}
		waitFor(t, 90*time.Second, "Stable", func() bool {
			out, err := adminAt(t, bin, r, "epoch", "status", "-o", "json")
			return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Epoch == uint64(e+2) && st.Phase == "stable"
		})
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d blobs certified through five epochs with kills", len(certified))
	if len(certified) == 0 {
		t.Fatal("nothing was certified")
	}
	for _, s := range certified {
		got, err := c.Read(ctx, s.id, client.ReadOptions{})
		if err != nil || !bytes.Equal(got, s.blob) {
			t.Fatalf("certified blob %s lost: %v", s.id, err)
		}
	}
}
