package coding

import (
	"flag"
	"os"
	"testing"
)

// TestMain poisons the encoder's uncleared buffers for every test (not for
// benchmarks, where filling them would be timed): a byte the encoder forgot
// to write then differs from the reference encoding however the allocator
// behaves.
func TestMain(m *testing.M) {
	flag.Parse()
	poisonUncleared = flag.Lookup("test.bench").Value.String() == ""
	os.Exit(m.Run())
}
