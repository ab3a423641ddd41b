//go:build !linux

package storage

import (
	"errors"
	"os"
	"syscall"
)

// directIO is Linux-only; elsewhere segments go through the page cache.
const directIO = 0

func isInvalidFlag(error) bool { return false }

// punchHole is a no-op where hole punching is not available: the space
// comes back when the segment is removed.
func punchHole(*os.File, int64, int64) error { return nil }

// isNoSpace reports a file system out of space.
func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

// diskFree is unknown here: only a declared capacity limits the store.
func diskFree(string) (int64, bool) { return 0, false }

// writeVectors writes bufs back to back at off.
func writeVectors(f *os.File, bufs [][]byte, off int64) error {
	for _, b := range bufs {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
