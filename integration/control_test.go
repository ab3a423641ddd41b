// Package integration runs weft's real binary as separate processes.
package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/devnet"
)

// buildWeft compiles the binary once per test run.
func buildWeft(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weft")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/weft")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address for a process to listen on later
// (devnet.FreeAddr says why it is safe to).
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := devnet.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

type voter struct {
	id, dir, raft, grpc string
	cmd                 *exec.Cmd
}

const token = "integration-token"

func (v *voter) start(t *testing.T, bin string, join []string) {
	t.Helper()
	v.cmd = exec.Command(bin, "control", "--id", v.id, "--data-dir", v.dir, "--raft-addr", v.raft, "--grpc-addr", v.grpc,
		"--bootstrap-expect", "3", "--join", strings.Join(join, ","), "--shards", "20")
	v.cmd.Env = append(os.Environ(), "WEFT_TOKEN="+token)
	log, err := os.OpenFile(filepath.Join(filepath.Dir(v.dir), v.id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = log, log
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (v *voter) kill(t *testing.T) {
	t.Helper()
	if err := v.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
}

// admin runs `weft admin` against a voter, retrying while the cluster
// elects a leader.
func admin(t *testing.T, bin, addr string, args ...string) (string, error) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		cmd := exec.Command(bin, append(append([]string{"admin"}, args...), "--control", addr)...)
		cmd.Env = append(os.Environ(), "WEFT_TOKEN="+token)
		out, err = cmd.CombinedOutput()
		if err == nil || time.Now().After(deadline) || !strings.Contains(string(out), "Unavailable") {
			return string(out), err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Three `weft control` processes; the leader is SIGKILLed: a new leader
// takes writes; the killed voter, restarted with the very same command,
// rejoins without being bootstrapped again and catches up.
func TestControlPlaneSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	base := t.TempDir()
	var voters []*voter
	var grpcs []string
	for i := range 3 {
		v := &voter{id: fmt.Sprintf("v%d", i+1), dir: filepath.Join(base, fmt.Sprintf("v%d", i+1)), raft: freeAddr(t), grpc: freeAddr(t)}
		voters = append(voters, v)
		grpcs = append(grpcs, v.grpc)
	}
	for _, v := range voters {
		v.start(t, bin, grpcs)
	}
	t.Cleanup(func() {
		for _, v := range voters {
			if v.cmd.ProcessState == nil {
				v.cmd.Process.Signal(syscall.SIGTERM)
				v.cmd.Wait()
			}
		}
	})
	status := func(addr string) (leader string, index uint64) {
		out, err := admin(t, bin, addr, "status", "-o", "json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		var st struct {
			LeaderID     string `json:"leaderId"`
			AppliedIndex string `json:"appliedIndex"`
		}
		json.Unmarshal([]byte(out), &st)
		fmt.Sscan(st.AppliedIndex, &index)
		return st.LeaderID, index
	}
	var leader string
	for deadline := time.Now().Add(20 * time.Second); leader == ""; time.Sleep(200 * time.Millisecond) {
		if leader, _ = status(grpcs[0]); time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
	if out, err := admin(t, bin, grpcs[0], "client", "add", "before", "--quota", "1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	var killed *voter
	for _, v := range voters {
		if v.id == leader {
			killed = v
		}
	}
	killed.kill(t)
	var alive string
	for _, v := range voters {
		if v != killed {
			alive = v.grpc
		}
	}
	if out, err := admin(t, bin, alive, "client", "add", "after", "--quota", "1"); err != nil {
		t.Fatalf("write after the leader's SIGKILL: %v\n%s", err, out)
	}
	if newLeader, _ := status(alive); newLeader == leader || newLeader == "" {
		t.Fatalf("leader %q after killing %q", newLeader, leader)
	}

	killed.start(t, bin, grpcs)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := admin(t, bin, killed.grpc, "client", "list")
		if err == nil && strings.Contains(out, "before") && strings.Contains(out, "after") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted voter did not catch up: %v\n%s", err, out)
		}
	}
	out, err := admin(t, bin, killed.grpc, "peers", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var peers struct{ Peers []struct{ ID string } }
	json.Unmarshal([]byte(out), &peers)
	if len(peers.Peers) != 3 {
		t.Fatalf("configuration after the restart: %s", out)
	}
}
