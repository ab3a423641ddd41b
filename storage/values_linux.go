package storage

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// directIO bypasses the page cache for segment files: a storage node
// writes far more than it reads back soon, and filling the cache with what
// it writes costs a copy and page allocation per byte.
const directIO = syscall.O_DIRECT

func isInvalidFlag(err error) bool { return errors.Is(err, syscall.EINVAL) }

// punchHole gives a range of a segment back to the file system; the file
// keeps its size and the range reads as zeros.
func punchHole(f *os.File, off, size int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return nil // the space comes back when the segment is removed
	}
	return err
}

// isNoSpace reports a file system out of space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFree is the space the file system holding dir has free for an
// unprivileged writer (what the node, not root, may still use).
func diskFree(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
