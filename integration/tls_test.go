package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `weft devnet --tls`: every endpoint speaks TLS — voters, nodes, the
// gateway (HTTPS) — and every connection is checked against the devnet's
// CA. The CLI stores and reads with WEFT_TLS_CA and is refused without it;
// a node killed during the write and restarted rebuilds its slivers from
// its peers over TLS (proved by a read that needs them).
func TestDevnetOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildWeft(t)
	dir := t.TempDir()
	_, readyPath := launchDevnet(t, bin, dir, "--tls", "--nodes", "4", "--shards", "12")
	var r struct {
		fullReady
		Gateway string `json:"gateway"`
		TLSCA   string `json:"tls_ca"`
	}
	b, _ := os.ReadFile(readyPath)
	if err := json.Unmarshal(b, &r); err != nil || r.TLSCA == "" || !strings.HasPrefix(r.Gateway, "https://") {
		t.Fatalf("ready file: %v\n%s", err, b)
	}
	weft := func(tlsCA string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "WEFT_CONTROL="+strings.Join(r.Control, ","), "WEFT_TOKEN="+r.ClientToken, "WEFT_TLS_CA="+tlsCA)
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), &exitError{err, string(ee.Stderr)}
		}
		return string(out), err
	}

	victim := r.Processes[6] // node-3: misses the write
	if victim.Role != "node" {
		t.Fatalf("process 6 is a %s", victim.Role)
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 300_000)
	rand.Read(blob)
	in := filepath.Join(dir, "in.bin")
	os.WriteFile(in, blob, 0o600)
	out, err := weft(r.TLSCA, "store", in, "--timeout", "60s")
	if err != nil {
		t.Fatalf("store over TLS with %s down: %v", victim.ID, err)
	}
	id := strings.TrimSpace(out)

	// No CA: the CLI speaks plaintext, and TLS servers refuse it.
	if _, err := weft("", "status", "--timeout", "5s", "--", id); err == nil {
		t.Fatal("a plaintext client was answered")
	}
	// The gateway: HTTPS with the devnet CA; plain HTTP is refused.
	pem, _ := os.ReadFile(r.TLSCA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := https.Get(r.Gateway + "/v1/blobs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("HTTPS GET: %s, %d bytes", resp.Status, len(got))
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(r.Gateway, "https://") + "/v1/blobs/" + id); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP was served")
	}

	// The victim comes back and rebuilds its slivers from its peers; with
	// two other nodes killed, a read needs them (nP = 6 primaries: two
	// nodes' worth).
	if out, err := exec.Command(bin, "devnet", "restart", victim.ID, "--ready-file", readyPath).CombinedOutput(); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	victimLog := filepath.Join(dir, "data", victim.ID+".log")
	waitFor(t, 60*time.Second, victim.ID+" rebuilding its 3 pairs", func() bool {
		b, _ := os.ReadFile(victimLog)
		return strings.Count(string(b), "recovered a sliver pair") >= 3
	})
	for _, p := range r.Processes[3:5] { // node-0, node-1
		if p.Role != "node" {
			t.Fatalf("%s is a %s", p.ID, p.Role)
		}
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	outFile := filepath.Join(dir, "out.bin")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		_, err := weft(r.TLSCA, "read", "--out", outFile, "--timeout", "10s", "--", id)
		if got, _ := os.ReadFile(outFile); err == nil && bytes.Equal(got, blob) {
			return
		}
		if time.Now().After(deadline) {
			nodeLog, _ := os.ReadFile(victimLog)
			t.Fatalf("a read that needs %s's rebuilt slivers: %v\n%s log:\n%s", victim.ID, err, victim.ID, tail(string(nodeLog), 3000))
		}
	}
}

type exitError struct {
	err    error
	stderr string
}

func (e *exitError) Error() string { return e.err.Error() + ": " + e.stderr }
