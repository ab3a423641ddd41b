//go:build !linux

package client

// valueLogDisk: only Linux nodes punch holes (storage/values_linux.go),
// so only there does the disk usage show a deletion.
func valueLogDisk(string) (int64, bool) { return 0, false }
