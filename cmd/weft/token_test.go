package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `weft admin token init`: a random token, written and printed once; a
// second run keeps it and does not show it; a given token replaces it.
func TestAdminTokenInit(t *testing.T) {
	t.Setenv("WEFT_TOKEN", "")
	file := filepath.Join(t.TempDir(), "operator-token")
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	out, err := runWeft(t, "admin", "token", "init", "--out", file)
	if err != nil {
		t.Fatal(err, out)
	}
	first := read()
	if len(first) < 32 || !strings.Contains(out, first) {
		t.Fatalf("made token %q, printed:\n%s", first, out)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", info.Mode(), err)
	}
	out, err = runWeft(t, "admin", "token", "init", "--out", file)
	if err != nil || read() != first || strings.Contains(out, first) || !strings.Contains(out, "kept") {
		t.Fatalf("second run: %v, file %q (was %q), printed:\n%s", err, read(), first, out)
	}
	out, err = runWeft(t, "admin", "token", "init", "--out", file, "--token", "given-token")
	if err != nil || read() != "given-token" || strings.Contains(out, "given-token") {
		t.Fatalf("a given token: %v, file %q, printed:\n%s", err, read(), out)
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
