package gateway

import (
	"strings"
	"testing"
)

// FuzzParseWalrusObjectID: the by-object-id route's decoder of a caller's
// path never panics, takes only 0x and at most 64 hex digits naming 1 to
// 2^64−1, and reads back what walrusObjectID writes.
func FuzzParseWalrusObjectID(f *testing.F) {
	for _, s := range []string{"0x1", "0x" + strings.Repeat("0", 63) + "c", walrusObjectID(1 << 63), "0x", "0x0", "17", "0xg", "0x" + strings.Repeat("f", 17), "0x" + strings.Repeat("0", 65) + "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseWalrusObjectID(s)
		if err != nil {
			return
		}
		if id == 0 || !strings.HasPrefix(s, "0x") || len(s) > 66 {
			t.Fatalf("%q accepted as %d", s, id)
		}
		if back, err := parseWalrusObjectID(walrusObjectID(id)); err != nil || back != id {
			t.Fatalf("%d: written %s, read back %d, %v", id, walrusObjectID(id), back, err)
		}
	})
}
