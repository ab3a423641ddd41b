package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
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
// voters have elected another, that one is SIGKILLed too while the store
// is still running. The store succeeds within its timeout, and the file
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

		first := killLeader(t, bin, r, readyPath, "")
		second := killLeader(t, bin, r, readyPath, first)
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

// killLeader waits for a leader other than not, SIGKILLs it and starts it
// again (its data kept), and returns its ID.
func killLeader(t *testing.T, bin string, r fullReady, readyPath, not string) string {
	t.Helper()
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool {
		var st struct {
			LeaderID string `json:"leaderId"`
		}
		out, err := adminAt(t, bin, r, "status", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.LeaderID == "" || st.LeaderID == not {
			return false
		}
		leader = st.LeaderID
		return true
	})
	var rr fullReady
	b, _ := os.ReadFile(readyPath)
	if err := json.Unmarshal(b, &rr); err != nil {
		t.Fatal(err)
	}
	for _, p := range rr.Processes {
		if p.ID == leader {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, leader+" restarted", func() bool {
		out, err := exec.Command(bin, "devnet", "restart", leader, "--ready-file", readyPath).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "is running") {
			t.Fatalf("restart %s: %v\n%s", leader, err, out)
		}
		return err == nil
	})
	return leader
}
