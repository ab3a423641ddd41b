package control

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// steppedClock is a wall clock the test sets.
type steppedClock struct{ t time.Time }

func (c *steppedClock) now() time.Time { return c.t }

func TestNoncesGrowWhenTheClockStepsBack(t *testing.T) {
	clock := &steppedClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	n := NewNonces(clock.now)
	var last uint64
	for i := range 100 {
		if i == 50 {
			clock.t = clock.t.Add(-time.Hour) // NTP steps the clock back
		}
		v, err := n.Next()
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Fatalf("nonce %d is %d, not above the previous %d", i, v, last)
		}
		last = v
		clock.t = clock.t.Add(time.Millisecond)
	}
}

func TestDurableNoncesGrowAcrossARestartWithTheClockBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nonce-ceiling")
	clock := &steppedClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	n, err := OpenNonces(path, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	var spent uint64
	for range 10 {
		if spent, err = n.Next(); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Second)
	}
	// The node restarts with its clock an hour behind.
	clock.t = clock.t.Add(-time.Hour)
	again, err := OpenNonces(path, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := again.Next()
	if err != nil {
		t.Fatal(err)
	}
	if v <= spent {
		t.Fatalf("after a restart with the clock an hour back the first nonce is %d, not above %d spent before", v, spent)
	}
	// In memory only, the same restart would go back: what the file is for.
	if mem, _ := NewNonces(clock.now).Next(); mem > spent {
		t.Fatalf("the test's clock is not behind: %d > %d", mem, spent)
	}
}

func TestDurableNoncesWriteTheCeilingRarely(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nonce-ceiling")
	clock := &steppedClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	n, err := OpenNonces(path, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	writes, ceiling := 0, uint64(0)
	for range 1000 {
		if _, err := n.Next(); err != nil {
			t.Fatal(err)
		}
		if n.ceiling != ceiling {
			writes, ceiling = writes+1, n.ceiling
			b, err := os.ReadFile(path)
			if err != nil || len(b) != 8 {
				t.Fatalf("ceiling file after a write: %d bytes, %v", len(b), err)
			}
		}
		clock.t = clock.t.Add(100 * time.Millisecond) // 100 s in all
	}
	// One write at the first nonce, then one per minute of clock.
	if writes > 3 {
		t.Fatalf("%d ceiling writes for 100 s of nonces", writes)
	}
}

func TestNoncesRefuseACorruptCeiling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nonce-ceiling")
	if err := os.WriteFile(path, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenNonces(path, nil); err == nil {
		t.Fatal("a 5-byte ceiling file was taken")
	}
}
