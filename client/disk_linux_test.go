//go:build linux

package client

import (
	"os"
	"path/filepath"
	"syscall"
)

// valueLogDisk is the disk space a storage node's value log occupies: the
// blocks the file system has allocated to its segment files
// (storage.values/*.seg in the node's directory; st_blocks × 512). Large
// slivers' bytes live there; a deletion punches their records out as
// holes (the files keep their size, so their length would not show it)
// and removes a sealed segment left empty. ok is false where the block
// count is not known.
func valueLogDisk(nodeDir string) (bytes int64, ok bool) {
	segs, _ := filepath.Glob(filepath.Join(nodeDir, "storage.values", "*.seg"))
	for _, p := range segs {
		fi, err := os.Stat(p)
		if err != nil {
			continue // removed meanwhile
		}
		st, known := fi.Sys().(*syscall.Stat_t)
		if !known {
			return 0, false
		}
		bytes += int64(st.Blocks) * 512
	}
	return bytes, true
}
