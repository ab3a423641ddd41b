package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftstore/weft/internal/browser"
)

// updateDocs makes TestStatusPageHandover write its in-progress screenshot
// to docs/ui-handover.png (the one the README shows):
//
//	go test ./integration -run TestStatusPageHandover -args -update-docs
var updateDocs = flag.Bool("update-docs", false, "write docs/ui-handover.png from TestStatusPageHandover's screenshot of the handover in progress")

// devnetReadyFile is the part of `weft devnet`'s ready file these tests use.
type devnetReadyFile struct {
	Control       []string `json:"control"`
	Gateway       string   `json:"gateway"`
	OperatorToken string   `json:"operator_token"`
	ClientToken   string   `json:"client_token"`
	Processes     []struct {
		Role    string `json:"role"`
		ID      string `json:"id"`
		Address string `json:"address"`
		PID     int    `json:"pid"`
	} `json:"processes"`
}

func readDevnetReady(t *testing.T, path string) devnetReadyFile {
	t.Helper()
	var r devnetReadyFile
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &r) != nil {
		t.Fatalf("ready file %s: %v\n%s", path, err, b)
	}
	return r
}

// operatorCmd runs `weft admin …` against the devnet's voters with its
// operator token.
func operatorCmd(t *testing.T, bin string, r devnetReadyFile, args ...string) string {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cmd := exec.Command(bin, append(append([]string{"admin"}, args...), "--control", strings.Join(r.Control, ","))...)
		cmd.Env = append(os.Environ(), "WEFT_TOKEN="+r.OperatorToken)
		out, err = cmd.CombinedOutput()
		if err == nil {
			return string(out)
		}
		if time.Now().After(deadline) || !strings.Contains(string(out), "Unavailable") {
			t.Fatalf("weft admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// pageState is what the test reads of the rendered page.
type pageState struct {
	Rendered string         `json:"rendered"`
	Epoch    string         `json:"epoch"`
	Nodes    string         `json:"nodes"`
	Rows     int            `json:"rows"`
	Cells    int            `json:"cells"`
	Owned    int            `json:"owned"` // cells with a data-owner
	States   map[string]int `json:"states"`
	Handover string         `json:"handover"`
	Health   map[string]string
	Stale    bool `json:"stale"`
}

const readPage = `(() => {
  const cells = [...document.querySelectorAll(".shard-cell[data-shard][data-owner][data-state]")];
  const states = {};
  for (const c of cells) states[c.dataset.state] = (states[c.dataset.state] || 0) + 1;
  const health = {};
  for (const r of document.querySelectorAll(".node-row[data-node]")) health[r.dataset.node] = r.dataset.health;
  return {
    rendered: document.body.dataset.rendered || "",
    epoch: document.getElementById("epoch").textContent,
    nodes: document.getElementById("node-count").textContent,
    rows: document.querySelectorAll(".node-row[data-node]").length,
    cells: document.querySelectorAll(".shard-cell").length,
    owned: cells.filter((c) => c.dataset.owner !== "").length,
    states, health,
    handover: document.getElementById("handover-status").textContent,
    stale: document.body.dataset.stale === "true",
  };
})()`

// The status page in headless Chromium, in front of `weft devnet` (3
// voters, 7 node processes, n = 100, the gateway serving /ui by default):
// the node count, every shard's cell; then a handover the test holds up —
// node-6 is SIGSTOPped and, with node-5, given more stake, so the shards
// it gains cannot sync — shown in progress with stuck cells, and, once
// node-6 is SIGCONTed, done. Screenshots of each step are artifacts
// (internal/browser); -update-docs writes the handover's to docs/.
func TestStatusPageHandover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	b := browser.New(t, browser.Options{Width: 1400, Height: 1000}) // skips without Chromium
	start := time.Now()
	bin := buildWeft(t)
	dir := t.TempDir()
	_, readyPath := launchDevnet(t, bin, dir, "--nodes", "7", "--shards", "100", "--challenge-window", "20s")
	r := readDevnetReady(t, readyPath)
	if r.Gateway == "" {
		t.Fatalf("no gateway in the ready file")
	}
	pids := map[string]int{}
	for _, p := range r.Processes {
		pids[p.ID] = p.PID
	}

	// A few blobs, so that the moved shards have data to copy.
	for i := range 8 {
		blob := make([]byte, 30_000+i*20_000)
		rand.Read(blob)
		req, _ := http.NewRequest(http.MethodPut, r.Gateway+"/v1/blobs", bytes.NewReader(blob))
		req.Header.Set("Authorization", "Bearer "+r.ClientToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %s %s", resp.Status, body)
		}
	}

	// The JSON the page polls, as a script reads it.
	resp, err := http.Get(r.Gateway + "/v1/network")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
		t.Fatalf("GET /v1/network: %s %s", resp.Status, raw)
	}
	t.Logf("GET /v1/network: %d bytes", len(raw))

	b.Open(r.Gateway + "/ui")
	b.WaitFor(`document.body.dataset.rendered`, 30*time.Second)
	page := func() pageState {
		t.Helper()
		var p pageState
		b.Eval(readPage, &p)
		return p
	}
	p := page()
	if p.Nodes != "7" || p.Rows != 7 || p.Cells != 100 || p.Owned != 100 || p.States["none"] != 100 || p.Epoch != "1" {
		t.Fatalf("the stable network: %+v", p)
	}
	if !strings.HasPrefix(p.Handover, "stable") {
		t.Fatalf("handover status %q in epoch 1", p.Handover)
	}
	b.Screenshot("stable")

	// Hold node-6 (SIGSTOP): it answers nothing, syncs nothing.
	victim := pids["node-6"]
	if victim == 0 {
		t.Fatalf("no node-6 in %+v", r.Processes)
	}
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Let it go however the test ends: a stopped process takes no SIGTERM.
	t.Cleanup(func() { syscall.Kill(victim, syscall.SIGCONT) })
	operatorCmd(t, bin, r, "node", "stake", "node-5", "250")
	operatorCmd(t, bin, r, "node", "stake", "node-6", "250")
	operatorCmd(t, bin, r, "epoch", "advance")

	b.WaitFor(`(() => {
	  const s = document.getElementById("handover-status").textContent;
	  const row = document.querySelector('.node-row[data-node="node-6"]');
	  return s.startsWith("in progress") && row && row.dataset.health === "down" &&
	    document.querySelectorAll('.shard-cell[data-state="stuck"]').length > 0 &&
	    document.querySelectorAll('.shard-cell[data-owner="node-5"][data-state="synced"]').length > 0;
	})()`, 60*time.Second)
	// A refresh or two more, so that the challenge round and the
	// counts have caught up with the epoch in the picture.
	time.Sleep(3 * time.Second)
	p = page()
	if p.Nodes != "7" || p.Cells != 100 || p.Epoch != "2" || !strings.HasPrefix(p.Handover, "in progress") || p.Health["node-6"] != "down" {
		t.Fatalf("the handover in progress: %+v", p)
	}
	moved := 0
	for state, n := range p.States {
		if state != "none" {
			moved += n
		}
	}
	t.Logf("in progress: %s; cells by state %v", p.Handover, p.States)
	shot := b.Screenshot("in-progress")
	if *updateDocs {
		png, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		docs := filepath.Join(browser.RepoRoot(), "docs", "ui-handover.png")
		if err := os.WriteFile(docs, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", docs)
	}

	// Let node-6 go: it catches up, syncs, and the handover is done.
	if err := syscall.Kill(victim, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(`(() => {
	  const s = document.getElementById("handover-status").textContent;
	  const row = document.querySelector('.node-row[data-node="node-6"]');
	  return s.startsWith("done") && row && row.dataset.health === "up" &&
	    document.querySelectorAll('.shard-cell:not([data-state="none"]):not([data-state="synced"])').length === 0;
	})()`, 90*time.Second)
	p = page()
	if p.States["synced"] != moved || p.States["none"]+moved != 100 || p.Stale {
		t.Fatalf("the handover done: %+v (%d moved)", p, moved)
	}
	t.Logf("done: %s; cells by state %v", p.Handover, p.States)
	b.Screenshot("done")

	// The page loaded nothing it was not allowed to, and threw nothing.
	for _, m := range b.Console() {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, "exception") || strings.HasPrefix(m, "error") {
			t.Errorf("browser console: %s", m)
		}
	}
	t.Logf("%s in all", time.Since(start).Round(time.Second))
}
