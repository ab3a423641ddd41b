package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `weft admin events` shows the audit trail: a store's object-created
// event names the storing client, its object and the blob; filters keep
// only what was asked for.
func TestAdminEventsCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cliDevnet(t, ctx, 4, 8)
	in := filepath.Join(t.TempDir(), "in.bin")
	writeRandomFile(t, in, 5_000, 9)
	stdout, stderr, err := runWeftSplit(t, nil, "store", in)
	if err != nil {
		t.Fatal(err, stderr)
	}
	blob := strings.TrimSpace(stdout)

	stdout, stderr, err = runWeftSplit(t, nil, "admin", "events", "--kind", "object-created", "-o", "json")
	if err != nil {
		t.Fatal(err, stderr)
	}
	var page struct {
		Events []struct {
			Kind   string `json:"kind"`
			Object string `json:"object"` // protojson writes uint64 as a string
			Client string `json:"client"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(stdout), &page); err != nil || len(page.Events) != 1 {
		t.Fatalf("events: %v\n%s", err, stdout)
	}
	if e := page.Events[0]; e.Kind != "object-created" || e.Object == "" || e.Object == "0" || e.Client == "" {
		t.Fatalf("object-created event: %+v", e)
	}
	stdout, _, err = runWeftSplit(t, nil, "admin", "events", "--object", page.Events[0].Object)
	if err != nil || !strings.Contains(stdout, "object-created") || !strings.Contains(stdout, "blob "+blob) ||
		!strings.Contains(stdout, "client "+page.Events[0].Client) || strings.Contains(stdout, "epoch-started") {
		t.Fatalf("events of the object: %v\n%s", err, stdout)
	}
	if _, _, err := runWeftSplit(t, nil, "admin", "events", "--limit", "0"); err == nil {
		t.Fatal("--limit 0 accepted")
	}
}
