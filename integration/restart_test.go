package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// devnetRestart restarts a process of a `weft devnet` network with `weft
// devnet restart` (same flags, same data directory). A process just sent
// SIGKILL can still be alive for a moment, and the command refuses to start
// a second copy ("is running"): that answer is tried again for up to 10 s;
// any other failure fails the test.
func devnetRestart(t *testing.T, bin, readyPath, id string) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err = exec.Command(bin, "devnet", "restart", id, "--ready-file", readyPath).CombinedOutput()
		if err == nil {
			return
		}
		if !strings.Contains(string(out), "is running") || time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("devnet restart %s: %v\n%s", id, err, out)
}
