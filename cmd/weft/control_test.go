package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/shardmap"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// freePort returns a loopback address for a server to listen on later
// (devnet.FreeAddr says why it is safe to).
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := devnet.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Three `weft control` voters bootstrapped with --bootstrap-expect and
// --join, then driven with `weft admin`: status, peers, node registration
// and stake, epoch advance, clients, snapshot save, leadership transfer.
func TestControlAndAdminCLI(t *testing.T) {
	const token = "cli-test-token"
	dir := t.TempDir()
	var grpcs, rafts []string
	metricsAddr := freePort(t)
	for range 3 {
		grpcs, rafts = append(grpcs, freePort(t)), append(rafts, freePort(t))
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 4)
	var started atomic.Int32
	for i := range 3 {
		o := controlOptions{
			id: fmt.Sprintf("v%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("v%d", i+1)),
			raftAddr: rafts[i], grpcAddr: grpcs[i], bootstrapExpect: 3, join: grpcs, shards: 20,
			tokens: tokenFlags{token: token},
		}
		if i == 0 {
			o.metrics.addr, o.ui = metricsAddr, true
		}
		started.Add(1)
		go func() { stopped <- runControl(ctx, o) }()
	}
	t.Cleanup(func() {
		cancel()
		for range started.Load() {
			<-stopped
		}
	})
	admin := func(args ...string) string {
		t.Helper()
		var out string
		var err error
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err = runWeft(t, append(append([]string{"admin"}, args...), "--control", grpcs[0], "--token", token)...)
			if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "Unavailable") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("weft admin %v: %v\n%s", args, err, out)
		}
		return out
	}
	// Wait for a leader that has announced itself.
	var peers struct {
		Peers []struct{ Id, GrpcAddr string }
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if err := json.Unmarshal([]byte(admin("peers", "list", "-o", "json")), &peers); err != nil {
			t.Fatal(err)
		}
		announced := 0
		for _, p := range peers.Peers {
			if p.GrpcAddr != "" {
				announced++
			}
		}
		if len(peers.Peers) == 3 && announced == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers: %+v", peers)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Storage nodes register themselves (signed); the operator stakes them.
	conn, err := grpc.NewClient(grpcs[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 4 {
		id := shardmap.NodeID(fmt.Sprintf("storage-%d", i))
		sk, _ := crypto.GenerateKey(nil)
		req := &weftv1.RegisterNodeRequest{PublicKey: sk.PublicKey().Bytes(), ProofOfPossession: sk.ProvePossession().Bytes(), Address: "s:1"}
		_ = control.Sign(req, sk, id, 0, 1)
		if _, err := weftv1.NewNodeClient(conn).RegisterNode(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		admin("node", "stake", string(id), "10")
	}
	if out := admin("epoch", "advance"); !strings.Contains(out, "epoch 1 started") {
		t.Fatalf("advance: %s", out)
	}
	var nodes struct {
		Nodes []struct{ ShardsOwned uint32 }
	}
	json.Unmarshal([]byte(admin("node", "list", "-o", "json")), &nodes)
	if len(nodes.Nodes) != 4 {
		t.Fatalf("node list: %+v", nodes)
	}
	if out := admin("client", "add", "app", "--quota", "1000"); !strings.Contains(out, "token") {
		t.Fatalf("client add: %s", out)
	}
	snap := filepath.Join(dir, "state.snap")
	if out := admin("snapshot", "save", snap); !strings.Contains(out, "saved to") {
		t.Fatalf("snapshot save: %s", out)
	}
	if out := admin("leader", "transfer"); !strings.Contains(out, "leader is now v") {
		t.Fatalf("leader transfer: %s", out)
	}
	if out, err := runWeft(t, "admin", "status", "--control", grpcs[0], "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("wrong token: %v %s", err, out)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"weft_control_epoch 1", "weft_control_raft_term", "weft_control_apply_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	// --ui: the status page beside /metrics, asking this voter first. The
	// registered nodes' address (s:1) answers nothing: down.
	resp, err = http.Get("http://" + metricsAddr + "/v1/network")
	if err != nil {
		t.Fatal(err)
	}
	var network struct {
		Voter string `json:"voter"`
		Epoch uint64 `json:"epoch"`
		Nodes []struct {
			ID, Health string
		} `json:"nodes"`
	}
	err = json.NewDecoder(resp.Body).Decode(&network)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || network.Voter != "v1" || network.Epoch != 1 || len(network.Nodes) != 4 || network.Nodes[0].Health != "down" {
		t.Fatalf("--ui: GET /v1/network: %s %v %+v", resp.Status, err, network)
	}
	resp, err = http.Get("http://" + metricsAddr + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" || !strings.Contains(string(body), `id="shard-map"`) {
		t.Fatalf("--ui: GET /ui: %s at %s", resp.Status, resp.Request.URL.Path)
	}

	// Restore: changes made after the snapshot are gone on every voter.
	admin("node", "stake", "storage-0", "99")
	admin("client", "add", "later", "--quota", "1")
	out, err := runWeft(t, "admin", "snapshot", "restore", snap, "--control", grpcs[2], "--token", token)
	if err != nil || !strings.Contains(out, "state restored") {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	for _, addr := range grpcs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := runWeft(t, "admin", "client", "list", "--control", addr, "--token", token)
			if err == nil && strings.Contains(out, "app") && !strings.Contains(out, "later") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("voter at %s after restore: %v\n[%s]", addr, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A fourth voter joins with --join alone.
	o := controlOptions{
		id: "v4", dataDir: filepath.Join(dir, "v4"), raftAddr: freePort(t), grpcAddr: freePort(t),
		join: grpcs, shards: 20, tokens: tokenFlags{token: token},
	}
	started.Add(1)
	go func() { stopped <- runControl(ctx, o) }()
	for deadline := time.Now().Add(15 * time.Second); ; {
		json.Unmarshal([]byte(admin("peers", "list", "-o", "json")), &peers)
		if len(peers.Peers) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the joining voter never appeared: %+v", peers)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Disaster recovery: a backup of one cluster restored into a new, empty
// one. The new cluster's log is far behind the backup's index, and the
// restored state must still take writes at once — its indices continue
// above the backup's, so nothing is mistaken for an already-applied entry.
func TestSnapshotRestoreIntoANewCluster(t *testing.T) {
	const token = "dr-token"
	dir := t.TempDir()
	start := func(name string) (string, func()) {
		addr := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		o := controlOptions{id: name, dataDir: filepath.Join(dir, name), raftAddr: freePort(t), grpcAddr: addr,
			bootstrapExpect: 1, shards: 10, tokens: tokenFlags{token: token}}
		go func() { stopped <- runControl(ctx, o) }()
		return addr, func() { cancel(); <-stopped }
	}
	admin := func(addr string, args ...string) string {
		t.Helper()
		var out string
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err = runWeft(t, append(append([]string{"admin"}, args...), "--control", addr, "--token", token)...)
			if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "Unavailable") {
				break
			}
		}
		if err != nil {
			t.Fatalf("weft admin %v: %v\n%s", args, err, out)
		}
		return out
	}
	applied := func(addr string) uint64 {
		var st struct{ AppliedIndex string } // protojson writes uint64 as a string
		json.Unmarshal([]byte(admin(addr, "status", "-o", "json")), &st)
		n, _ := strconv.ParseUint(st.AppliedIndex, 10, 64)
		return n
	}

	old, stopOld := start("old")
	for i := range 30 {
		admin(old, "client", "add", fmt.Sprintf("app-%d", i), "--quota", "1000")
	}
	snap := filepath.Join(dir, "backup.snap")
	admin(old, "snapshot", "save", snap)
	backupIndex := applied(old)
	stopOld() // the old cluster is lost

	fresh, stopFresh := start("fresh")
	defer stopFresh()
	admin(fresh, "snapshot", "restore", snap)
	admin(fresh, "client", "add", "after-restore", "--quota", "1000")
	list := admin(fresh, "client", "list")
	if !strings.Contains(list, "app-29") || !strings.Contains(list, "after-restore") {
		t.Fatalf("after restoring into a new cluster, the backup's clients and a new one should be listed:\n%s", list)
	}
	if got := applied(fresh); got <= backupIndex {
		t.Fatalf("restored cluster's applied index %d is not above the backup's %d", got, backupIndex)
	}
}

// soloWithNode starts one voter with o's other settings and registers one
// storage node, and returns `weft admin` against it.
func soloWithNode(t *testing.T, o controlOptions) func(args ...string) (string, error) {
	const token = "solo-token"
	grpcAddr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	o.id, o.dataDir, o.raftAddr, o.grpcAddr = "solo", t.TempDir(), freePort(t), grpcAddr
	o.bootstrapExpect, o.shards, o.tokens = 1, 10, tokenFlags{token: token}
	go func() { stopped <- runControl(ctx, o) }()
	t.Cleanup(func() { cancel(); <-stopped })
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	sk, _ := crypto.GenerateKey(nil)
	req := &weftv1.RegisterNodeRequest{PublicKey: sk.PublicKey().Bytes(), ProofOfPossession: sk.ProvePossession().Bytes(), Address: "s:1"}
	_ = control.Sign(req, sk, "storage", 0, 1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := weftv1.NewNodeClient(conn).RegisterNode(context.Background(), req); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	return func(args ...string) (string, error) {
		return runWeft(t, append(append([]string{"admin"}, args...), "--control", grpcAddr, "--token", token)...)
	}
}

// `weft admin challenge start|status|close` and the challenge column of
// `node list`, against one voter with one storage node in the committee.
func TestChallengeCLI(t *testing.T) {
	admin := soloWithNode(t, controlOptions{})
	if out, err := admin("challenge", "start"); err == nil || !strings.Contains(err.Error(), "no committee yet") {
		t.Fatalf("a round before epoch 1: %v %s", err, out)
	}
	for _, args := range [][]string{{"node", "stake", "storage", "5"}, {"epoch", "advance"}} {
		if out, err := admin(args...); err != nil {
			t.Fatal(err, out)
		}
	}
	if out, err := admin("challenge", "start"); err != nil || !strings.Contains(out, "challenge round 1 started") {
		t.Fatalf("start: %v %s", err, out)
	}
	out, err := admin("challenge", "status", "-o", "json")
	var st struct {
		Round, Epoch string // protojson writes uint64 as a string
		Open         bool
		Nodes        []struct{ Node, Outcome string }
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Round != "1" || !st.Open || len(st.Nodes) != 1 || st.Nodes[0].Outcome != "open" {
		t.Fatalf("status: %v %s", err, out)
	}
	if out, err := admin("challenge", "close"); err != nil || !strings.Contains(out, "closed") {
		t.Fatalf("close: %v %s", err, out)
	}
	if out, err := admin("node", "list"); err != nil || !strings.Contains(out, "FLAGGED missed") {
		t.Fatalf("node list after a missed round: %v\n%s", err, out)
	}
	if _, err := admin("challenge", "status", "7"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("status of an unknown round: %v", err)
	}
}

// --epoch-duration and --challenge-window reach the leader's timers
// (committee.Scheduler, whose tests cover what the timers do): the epoch
// advances on its own while Stable, and a challenge round opens.
func TestControlTimers(t *testing.T) {
	admin := soloWithNode(t, controlOptions{epochDuration: 300 * time.Millisecond, challengeWindow: time.Second})
	if out, err := admin("node", "stake", "storage", "5"); err != nil {
		t.Fatal(err, out)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := admin("status", "-o", "json")
		var st struct{ Epoch string } // protojson writes uint64 as a string
		json.Unmarshal([]byte(out), &st)
		if e, _ := strconv.Atoi(st.Epoch); e >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("epoch never advanced on its own: %s", out)
		}
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := admin("challenge", "status", "-o", "json")
		var st struct{ Round string }
		if err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Round != "" && st.Round != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no challenge round opened on its own: %v %s", err, out)
		}
	}
}

// Raft without TLS off loopback takes log entries from anyone: `weft
// control` refuses to start so unless --insecure-raft says the network is
// private, and starts with it. With TLS, the voter's certificate must name
// it.
func TestControlRaftSecurity(t *testing.T) {
	ip := nonLoopbackIP(t)
	o := controlOptions{
		id: "v1", dataDir: t.TempDir(), raftAddr: net.JoinHostPort(ip, "0"), grpcAddr: freePort(t),
		bootstrapExpect: 1, shards: 10, tokens: tokenFlags{token: "raft-security-token"},
	}
	err := runControl(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "--insecure-raft") || !strings.Contains(err.Error(), o.raftAddr) {
		t.Fatalf("plaintext Raft on %s without --insecure-raft: %v", o.raftAddr, err)
	}

	// A free port on that address, and the voter serves with the flag.
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	o.raftAddr = l.Addr().String()
	l.Close()
	o.insecureRaft = true
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- runControl(ctx, o) }()
	defer func() { cancel(); <-stopped }()
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, err := runWeft(t, "admin", "status", "--control", o.grpcAddr, "--token", "raft-security-token")
		if err == nil && strings.Contains(out, "Leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the voter with --insecure-raft on %s: %v\n%s", o.raftAddr, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ca, err := wire.NewDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for voter, want := range map[string]string{"": "names no voter", "v2": `names voter "v2", not this voter "v1"`} {
		files, err := ca.Issue("cert"+voter, voter, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		tlsCtx := context.WithValue(context.Background(), tlsKey{}, &files)
		o := controlOptions{id: "v1", dataDir: t.TempDir(), raftAddr: freePort(t), grpcAddr: freePort(t), tokens: tokenFlags{token: "t"}}
		if err := runControl(tlsCtx, o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a voter with certificate %s: %v, want %q", files.Cert, err, want)
		}
	}
}

// nonLoopbackIP is an IPv4 address of one of the machine's interfaces
// other than loopback.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no address off loopback")
	return ""
}

// `weft admin` waits out a control plane that is not up yet (or is
// electing a leader) within --timeout instead of failing at once with
// Unavailable (issue #23), and a write retried meanwhile applies once.
func TestAdminRetriesUntilItsTimeout(t *testing.T) {
	const token = "late-token"
	grpcAddr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	o := controlOptions{id: "late", dataDir: t.TempDir(), raftAddr: freePort(t), grpcAddr: grpcAddr,
		bootstrapExpect: 1, shards: 10, tokens: tokenFlags{token: token}}
	time.AfterFunc(2*time.Second, func() { go func() { stopped <- runControl(ctx, o) }() })
	t.Cleanup(func() { cancel(); <-stopped })
	admin := func(args ...string) (string, error) {
		return runWeft(t, append(append([]string{"admin"}, args...), "--control", grpcAddr, "--token", token, "--timeout", "30s")...)
	}
	start := time.Now()
	if out, err := admin("client", "add", "app", "--quota", "1000"); err != nil {
		t.Fatalf("weft admin client add, started before the control plane: %v\n%s", err, out)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("the command returned after %v, before the control plane started", waited)
	}
	out, err := admin("client", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `"client":"app"`) + strings.Count(out, `"client": "app"`); n != 1 {
		t.Fatalf("client list after one retried add: %s", out)
	}
}

// The Raft timeout flags are checked before anything starts.
func TestControlRaftTimeoutFlags(t *testing.T) {
	for _, r := range []raftTimeouts{{heartbeat: time.Second, lease: 2 * time.Second}, {election: time.Microsecond}, {heartbeat: -time.Second}} {
		o := controlOptions{id: "v", dataDir: t.TempDir(), raft: r, tokens: tokenFlags{token: "t"}}
		if err := runControl(context.Background(), o); err == nil || !strings.Contains(err.Error(), "raft") {
			t.Fatalf("raft timeouts %+v: %v", r, err)
		}
	}
	if out, err := runWeft(t, "control", "--help"); err != nil || !strings.Contains(out, "--raft-lease-timeout") {
		t.Fatalf("control --help: %v\n%s", err, out)
	}
}
