//go:build !unix

package coding

import "time"

// cpuTime is not measured here; x-hashlimit-cpu reports NaN.
func cpuTime() time.Duration { return 0 }

// pageFaults is not counted here.
func pageFaults() int64 { return 0 }
