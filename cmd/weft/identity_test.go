package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
)

// A node ID is bound to the key that registered it: a second `weft node`
// started under that ID with another key exits with both fingerprints,
// `weft admin node list` shows the registered one, and a stake pinned to
// the wrong fingerprint is refused while the right one is taken.
func TestNodeIdentityCLI(t *testing.T) {
	const token = "identity-token"
	dir := t.TempDir()
	control := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 2)
	o := controlOptions{id: "solo", dataDir: filepath.Join(dir, "control"), raftAddr: freePort(t), grpcAddr: control,
		bootstrapExpect: 1, shards: 10, tokens: tokenFlags{token: token}}
	go func() { stopped <- runControl(ctx, o) }()
	keyA, keyB := writeKey(t, dir, "a.key"), writeKey(t, dir, "b.key")
	nodeA := nodeOptions{id: "node-x", dataDir: filepath.Join(dir, "a"), keyFile: keyA.file, control: []string{control},
		listen: freePort(t), recoveryWorkers: 1} // scrubInterval 0: no scrub
	go func() { stopped <- runNode(ctx, nodeA) }()
	t.Cleanup(func() { cancel(); <-stopped; <-stopped })

	admin := func(args ...string) (string, error) {
		return runWeft(t, append(append([]string{"admin"}, args...), "--control", control, "--token", token)...)
	}
	listed := waitListed(t, admin, "node-x")
	if listed.fingerprint != keyA.fp {
		t.Fatalf("node-x listed with fingerprint %q, its key's is %s", listed.fingerprint, keyA.fp)
	}

	// The squatter's twin: same ID, another key. It must stop, not run on.
	runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	root := newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"node", "--id", "node-x", "--key-file", keyB.file, "--data-dir", filepath.Join(dir, "b"),
		"--control", control, "--listen", freePort(t)})
	err := root.ExecuteContext(runCtx)
	if err == nil || runCtx.Err() != nil {
		t.Fatalf("a node with another key under a registered ID ran on: %v (context: %v)", err, runCtx.Err())
	}
	t.Logf("exit error: %v", err)
	for _, want := range []string{"node ID node-x is registered to key fingerprint " + keyA.fp, "this registration's key is " + keyB.fp, "--key-file " + keyB.file} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("exit error %q does not say %q", err, want)
		}
	}

	// Stakes pinned to the wrong key are refused and change nothing.
	out, err := admin("node", "stake", "node-x", "10", "--key-fingerprint", keyB.fp)
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), keyA.fp) || !strings.Contains(err.Error(), keyB.fp) {
		t.Fatalf("stake pinned to the wrong key: %v\n%s", err, out)
	}
	if n := waitListed(t, admin, "node-x"); n.Stake != "" && n.Stake != "0" {
		t.Fatalf("a refused stake set node-x's stake to %s", n.Stake)
	}
	if out, err := admin("node", "stake", "node-x", "10", "--key-fingerprint", strings.ToUpper(keyA.fp)); err != nil {
		t.Fatalf("stake pinned to the registered key: %v\n%s", err, out)
	}
	if n := waitListed(t, admin, "node-x"); n.Stake != "10" {
		t.Fatalf("node-x's stake is %q after the pinned stake", n.Stake)
	}
}

type testKey struct{ file, fp string }

func writeKey(t *testing.T, dir, name string) testKey {
	sk, err := crypto.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	if err := crypto.WriteKeyFile(file, sk); err != nil {
		t.Fatal(err)
	}
	return testKey{file: file, fp: sk.PublicKey().Fingerprint()}
}

type listedNode struct {
	Stake       string // protojson writes uint64 as a string
	fingerprint string // from the table's last column
}

// waitListed waits for id in `weft admin node list` and returns its stake
// (JSON) and the fingerprint the table shows.
func waitListed(t *testing.T, admin func(...string) (string, error), id string) listedNode {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		table, err := admin("node", "list")
		for _, line := range strings.Split(table, "\n") {
			if f := strings.Fields(line); err == nil && len(f) > 0 && f[0] == id {
				n := listedNode{fingerprint: f[len(f)-1]}
				var list struct{ Nodes []struct{ Id, Stake string } }
				out, _ := admin("node", "list", "-o", "json")
				if err := json.Unmarshal([]byte(out), &list); err != nil {
					t.Fatal(err, out)
				}
				for _, ln := range list.Nodes {
					if ln.Id == id {
						n.Stake = ln.Stake
					}
				}
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed: %v\n%s", id, err, table)
		}
	}
}
