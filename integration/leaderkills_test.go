package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A store started with a 60 s timeout survives two leader kills in a row
// (issue #23): `weft store` of a chunked file — a registration and a
// certification per chunk, so the control plane is needed throughout — is
// started, the leader is SIGKILLed (and restarted), and as soon as the
// voters have elected another — possibly the same voter, restarted: a
// process elected since — that one is SIGKILLed too while the store is
// still running. The store succeeds within its timeout, and the file
// reads back byte for byte. Were the client to give up after a few
// retries instead of spending its deadline, an election (a second or two
// on a loaded machine) would fail it.
func TestStoreSurvivesTwoLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, 4, 12)
	dir := t.TempDir()
	// Large enough that the store outlasts two elections; an attempt whose
	// store finished before the second kill is run again, larger.
	for attempt, size := range []int{24 << 20, 64 << 20, 128 << 20} {
		in := filepath.Join(dir, "in")
		data := make([]byte, size)
		rand.Read(data)
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		store := exec.Command(bin, "store", in, "--chunk-size", "1048576", "--timeout", "60s",
			"--control", strings.Join(r.Control, ","), "--token", r.ClientToken)
		var stdout, stderr bytes.Buffer
		store.Stdout, store.Stderr = &stdout, &stderr
		if err := store.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- store.Wait() }()
		time.Sleep(300 * time.Millisecond) // the store under way

		first, firstPID := killLeader(t, bin, readyPath, 0)
		second, _ := killLeader(t, bin, readyPath, firstPID)
		select {
		case err := <-done:
			// Finished before the second kill could land: not the test's
			// case. Try again with more to store.
			t.Logf("attempt %d (%d MiB): the store ended (%v) before the second kill", attempt, size>>20, err)
			continue
		default:
		}
		t.Logf("attempt %d: leaders %s then %s SIGKILLed during a store of %d MiB", attempt, first, second, size>>20)
		if err := <-done; err != nil {
			t.Fatalf("the store failed across two leader kills: %v\n%s", err, stderr.String())
		}
		id := strings.TrimSpace(stdout.String())
		out := filepath.Join(dir, "out")
		if got, err := exec.Command(bin, "read", id, "--out", out, "--control", strings.Join(r.Control, ",")).CombinedOutput(); err != nil {
			t.Fatalf("read %s: %v\n%s", id, err, got)
		}
		back, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("the file read back differs (%d bytes, %v)", len(back), err)
		}
		return
	}
	t.Fatal("no store lasted long enough to see two leader kills")
}

// killLeader waits for a voter that says it leads and is not the process
// notPID (a leader killed before: the one found must have been elected
// since, though it may be the same voter restarted), SIGKILLs it, starts
// it again (its data kept) and returns its ID and the PID killed.
func killLeader(t *testing.T, bin, readyPath string, notPID int) (string, int) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var rr struct {
			Control       []string `json:"control"`
			OperatorToken string   `json:"operator_token"`
			Processes     []struct {
				Role, ID, Address string
				PID               int
			} `json:"processes"`
		}
		b, _ := os.ReadFile(readyPath)
		if err := json.Unmarshal(b, &rr); err != nil {
			t.Fatal(err)
		}
		for _, p := range rr.Processes {
			if p.Role != "control" || p.PID == notPID {
				continue
			}
			out, err := exec.Command(bin, "admin", "status", "-o", "json", "--timeout", "5s",
				"--control", p.Address, "--token", rr.OperatorToken).CombinedOutput()
			last = fmt.Sprintf("%s: %v: %s", p.ID, err, out)
			var st struct {
				RaftState string `json:"raftState"`
			}
			if err != nil || json.Unmarshal(out, &st) != nil || st.RaftState != "Leader" {
				continue
			}
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			devnetRestart(t, bin, readyPath, p.ID)
			return p.ID, p.PID
		}
	}
	t.Fatalf("no voter leads (other than pid %d) within 60 s; the last answer: %s", notPID, last)
	return "", 0
}
