package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// leftovers lists what is in dir besides the names given: a temporary file
// must never outlive the call that made it.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, w := range want {
		keep[w] = true
	}
	var extra []string
	for _, e := range ents {
		if !keep[e.Name()] {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := WriteFile(path, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "second" {
		t.Fatalf("read %q, %v; want \"second\"", got, err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if extra := leftovers(t, dir, "out"); len(extra) > 0 {
		t.Fatalf("left behind: %v", extra)
	}
}

func TestPermIgnoresUmask(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	path := filepath.Join(t.TempDir(), "out")
	if err := WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestLinkKeepsWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	for i, data := range []string{"first", "second"} {
		f, err := Create(path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		err = f.Link()
		f.Cleanup()
		if i == 0 && err != nil {
			t.Fatal(err)
		}
		if i == 1 && !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second link: %v, want fs.ErrExist", err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Fatalf("read %q, want the first file", got)
	}
	if extra := leftovers(t, dir, "token"); len(extra) > 0 {
		t.Fatalf("left behind: %v", extra)
	}
}

// A file abandoned half-written (the caller's stream failed) leaves the
// old file as it was and no temporary file.
func TestCleanupWithoutReplaceKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("half"); err != nil {
		t.Fatal(err)
	}
	f.Cleanup()
	if err := f.Replace(); err == nil {
		t.Fatal("Replace after Cleanup succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("read %q, want the old file", got)
	}
	if extra := leftovers(t, dir, "state"); len(extra) > 0 {
		t.Fatalf("left behind: %v", extra)
	}
}

// Close first, then Replace: the sync may be done before a lock is taken.
func TestCloseThenReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	f, err := Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Cleanup()
	if _, err := f.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("path exists before Replace: %v", err)
	}
	if err := f.Replace(); err != nil {
		t.Fatal(err)
	}
	f.Cleanup()
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Fatalf("read %q, want \"new\"", got)
	}
	if extra := leftovers(t, dir, "state"); len(extra) > 0 {
		t.Fatalf("left behind: %v", extra)
	}
}
