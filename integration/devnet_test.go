package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

type readyFile struct {
	Gateway       string   `json:"gateway"`
	ClientToken   string   `json:"client_token"`
	Control       []string `json:"control"`
	OperatorToken string   `json:"operator_token"`
	Processes     []struct {
		Role    string `json:"role"`
		ID      string `json:"id"`
		Address string `json:"address"`
		PID     int    `json:"pid"`
	} `json:"processes"`
}

// `weft devnet` starts 3 voters, nodes and a gateway as child processes
// and writes its ready file within 60 s; a blob stored through the gateway
// still reads with a node SIGKILLed; `weft devnet restart` brings the node
// back; SIGTERM stops every process, the restarted one included.
func TestDevnetProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	dir := t.TempDir()
	dn, ready := launchDevnet(t, bin, dir, "--nodes", "4", "--shards", "12")
	var r readyFile
	b, _ := os.ReadFile(ready)
	if err := json.Unmarshal(b, &r); err != nil || len(r.Processes) != 8 || r.Gateway == "" {
		t.Fatalf("ready file: %v\n%s", err, b)
	}

	blob := make([]byte, 80_000)
	rand.Read(blob)
	req, _ := http.NewRequest(http.MethodPut, r.Gateway+"/v1/blobs", bytes.NewReader(blob))
	req.Header.Set("Authorization", "Bearer "+r.ClientToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var put struct {
		BlobID string `json:"blob_id"`
	}
	json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || put.BlobID == "" {
		gw, _ := os.ReadFile(filepath.Join(dir, "data", "gateway.log"))
		t.Fatalf("PUT: %s\n%s", resp.Status, gw)
	}
	node := r.Processes[4] // a storage node
	if node.Role != "node" {
		t.Fatalf("process 4 is a %s", node.Role)
	}
	if err := syscall.Kill(node.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(r.Gateway + "/v1/blobs/" + put.BlobID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("GET with %s killed: %s, %d bytes", node.ID, resp.Status, len(got))
	}
	devnetRestart(t, bin, ready, node.ID)
	b, _ = os.ReadFile(ready)
	json.Unmarshal(b, &r)
	conn, err := grpc.NewClient(node.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, 30*time.Second, node.ID+" serving again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := weftv1.NewStorageClient(conn).NodeStatus(ctx, &weftv1.NodeStatusRequest{})
		return err == nil
	})

	// A node added to the running devnet gets shards at the next epoch,
	// and is stopped with the rest.
	if out, err := exec.Command(bin, "devnet", "add-node", "--ready-file", ready, "--stake", "100").CombinedOutput(); err != nil {
		t.Fatalf("add-node: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(ready)
	json.Unmarshal(b, &r)
	added := r.Processes[len(r.Processes)-1]
	if added.ID != "node-4" || added.Role != "node" {
		t.Fatalf("added %+v", added)
	}
	if out, err := exec.Command(bin, "admin", "epoch", "advance", "--control", strings.Join(r.Control, ","), "--token", r.OperatorToken).CombinedOutput(); err != nil {
		t.Fatalf("advance: %v\n%s", err, out)
	}
	control, err := grpc.NewClient(r.Control[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer control.Close()
	waitFor(t, 60*time.Second, added.ID+" owning shards in a Stable epoch", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := weftv1.NewWatchClient(control).WatchState(ctx, &weftv1.WatchStateRequest{})
		return err == nil && st.Phase == "stable" && slices.Contains(st.Owners, added.ID)
	})

	if err := dn.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := dn.Wait(); err != nil {
		t.Fatalf("devnet exit: %v", err)
	}
	for _, p := range r.Processes {
		waitFor(t, 5*time.Second, p.ID+" gone", func() bool { return syscall.Kill(p.PID, 0) != nil })
	}
}

// launchDevnet runs `weft devnet` with args in dir (its log in
// devnet.log), stopped with SIGTERM at the test's end, and returns it once
// its ready file is written.
func launchDevnet(t *testing.T, bin, dir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return launchDevnetWithin(t, 60*time.Second, bin, dir, args...)
}

// launchDevnetWithin is launchDevnet waiting up to timeout for the ready
// file.
func launchDevnetWithin(t *testing.T, timeout time.Duration, bin, dir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	ready := filepath.Join(dir, "ready.json")
	dn := exec.Command(bin, append([]string{"devnet", "--data-dir", filepath.Join(dir, "data"), "--ready-file", ready}, args...)...)
	log, _ := os.Create(filepath.Join(dir, "devnet.log"))
	dn.Stdout, dn.Stderr = log, log
	if err := dn.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dn.Process.Signal(syscall.SIGTERM); dn.Wait() })
	start := time.Now()
	waitFor(t, timeout, "the ready file", func() bool { _, err := os.Stat(ready); return err == nil })
	t.Logf("ready in %v", time.Since(start))
	return dn, ready
}
