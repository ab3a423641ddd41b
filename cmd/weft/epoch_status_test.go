package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/devnet"
)

// `weft admin epoch status` during a handover whose incoming owner is
// down names its shards as stuck; once it is up and synced, it shows the
// shards synced and the bytes copied, and nothing stuck.
func TestEpochStatusShowsHandover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: 4, Shards: 12})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	c, err := client.New(client.Config{Control: []string{net.ControlAddr}, Token: net.ClientToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Store(ctx, bytes.NewReader(make([]byte, 100_000)), client.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	joined, err := net.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.SetStake(ctx, joined, 100); err != nil {
		t.Fatal(err)
	}
	if err := net.StopNode(joined); err != nil {
		t.Fatal(err)
	}
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	status := func() epochReport {
		t.Helper()
		out, stderr, err := runWeftSplit(t, nil, "admin", "epoch", "status", "-o", "json", "--control", net.ControlAddr, "--token", net.OperatorToken)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var r epochReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return r
	}
	r := status()
	var incoming nodeHandover
	for _, n := range r.Nodes {
		if n.Node == string(net.NodeID(joined)) {
			incoming = n
		}
	}
	if r.Phase != "handover" || len(incoming.Pending) == 0 || incoming.Error == "" || len(r.Stuck) != len(incoming.Pending) ||
		!strings.Contains(r.Stuck[0], "does not answer") {
		t.Fatalf("with the incoming owner down: %+v", r)
	}
	gained := len(incoming.Pending)
	if err := net.StartNode(ctx, joined); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r = status(); r.Phase == "stable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Stable: %+v", r)
		}
	}
	for _, n := range r.Nodes {
		if n.Node == string(net.NodeID(joined)) && (int(n.Synced) != gained || n.Copied == 0 || len(n.Pending) != 0) {
			t.Fatalf("after the sync: %+v", n)
		}
	}
	if len(r.Stuck) != 0 {
		t.Fatalf("stuck after Stable: %v", r.Stuck)
	}
	// The byte counts are this epoch's: the next epoch, moving nothing,
	// shows none (the node has not restarted, so its lifetime counters
	// still hold the last handover's).
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r = status(); r.Phase == "stable" && r.Epoch == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Stable epoch 3: %+v", r)
		}
	}
	for _, n := range r.Nodes {
		if n.Copied != 0 || n.Rebuilt != 0 {
			t.Fatalf("an epoch that moved nothing reports %+v", n)
		}
	}
	text, _, err := runWeftSplit(t, nil, "admin", "epoch", "status", "--control", net.ControlAddr, "--token", net.OperatorToken)
	if err != nil || !strings.Contains(text, "phase") || !strings.Contains(text, "COPIED") {
		t.Fatalf("text output: %v\n%s", err, text)
	}
}
