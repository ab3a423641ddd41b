package storage

import (
	"errors"
	"io"
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

// writeVectors writes bufs back to back at off, as few system calls as
// pwritev takes (each buffer aligned and a multiple of valueAlign long, as
// O_DIRECT wants).
func writeVectors(f *os.File, bufs [][]byte, off int64) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxVectors)]
		var n int
		var werr error
		if err := conn.Write(func(fd uintptr) bool {
			n, werr = unix.Pwritev(int(fd), batch, off)
			return !errors.Is(werr, syscall.EAGAIN)
		}); err != nil {
			return err
		}
		if errors.Is(werr, syscall.EINTR) {
			continue
		}
		if werr != nil {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: werr}
		}
		if n == 0 {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: io.ErrShortWrite}
		}
		off += int64(n)
		bufs = skipWritten(bufs, n)
	}
	return nil
}

// maxVectors is Linux's IOV_MAX: the most buffers one pwritev takes.
const maxVectors = 1024
