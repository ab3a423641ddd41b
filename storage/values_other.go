//go:build !linux

package storage

import "os"

// directIO is Linux-only; elsewhere segments go through the page cache.
const directIO = 0

func isInvalidFlag(error) bool { return false }

// punchHole is a no-op where hole punching is not available: the space
// comes back when the segment is removed.
func punchHole(*os.File, int64, int64) error { return nil }
