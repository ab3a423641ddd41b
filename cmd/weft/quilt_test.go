package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// weft store --quilt stores a directory's files and a loose file as one
// quilt and prints "FILE_ID NAME" per file; weft read FILE_ID reads each
// back; a quilt with two files of one name is refused.
func TestStoreQuiltCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cliDevnet(t, ctx, 4, 8)
	dir := t.TempDir()
	tree := filepath.Join(dir, "site")
	if err := os.MkdirAll(filepath.Join(tree, "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"index.html":   writeRandomFile(t, filepath.Join(tree, "index.html"), 2000, 41),
		"css/main.css": writeRandomFile(t, filepath.Join(tree, "css", "main.css"), 300, 42),
		"empty.txt":    writeRandomFile(t, filepath.Join(tree, "empty.txt"), 0, 43),
		"loose.bin":    writeRandomFile(t, filepath.Join(dir, "loose.bin"), 5000, 44),
	}
	stdout, stderr, err := runWeftSplit(t, nil, "store", "--quilt", tree, filepath.Join(dir, "loose.bin"))
	if err != nil {
		t.Fatal(err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(want) || !strings.Contains(stderr, "stored 4 files") {
		t.Fatalf("store --quilt printed %q (stderr %q)", stdout, stderr)
	}
	for _, line := range lines {
		id, name, ok := strings.Cut(line, " ")
		if !ok || want[name] == nil && name != "empty.txt" {
			t.Fatalf("line %q", line)
		}
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(name, "/", "_"))
		if _, stderr, err := runWeftSplit(t, nil, "read", id, "--out", out); err != nil {
			t.Fatalf("read %s (%s): %v %s", id, name, err, stderr)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want[name]) {
			t.Fatalf("%s read back: %d bytes, %v", name, len(got), err)
		}
	}
	// Two files called loose.bin: refused, nothing stored.
	other := filepath.Join(t.TempDir(), "loose.bin")
	writeRandomFile(t, other, 10, 45)
	if _, stderr, err := runWeftSplit(t, nil, "store", "--quilt", filepath.Join(dir, "loose.bin"), other); err == nil || !strings.Contains(err.Error()+stderr, "both called") {
		t.Fatalf("duplicate names: %v %s", err, stderr)
	}
}
