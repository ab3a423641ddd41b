package main

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A killed process that nobody has reaped yet (a zombie) is not running:
// `weft devnet restart` right after a SIGKILL must not refuse it.
func TestRunningTreatsAZombieAsGone(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	if !running(pid) {
		t.Fatal("a live process is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not waited for: it stays a zombie, which kill(pid, 0) still finds.
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped process still counts as running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) != nil {
		t.Log("the process was reaped already; the zombie case was not exercised")
	}
}
