package faultnet

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends a line and waits up to wait for it to come back.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestPassForwards(t *testing.T) {
	p := startProxy(t)
	c, r := dial(t, p)
	for _, line := range []string{"one", "two", strings.Repeat("x", 100_000)} {
		got, err := roundTrip(c, r, line, 5*time.Second)
		if err != nil || got != line {
			t.Fatalf("round trip of %d bytes: got %d bytes, %v", len(line), len(got), err)
		}
	}
	// The proxy counts a chunk once its write returned, which can be after
	// the client read it: the count catches up within moments.
	deadline := time.Now().Add(5 * time.Second)
	s := p.Stats()
	for s.Bytes < 2*100_000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		s = p.Stats()
	}
	if s.Accepted != 1 || s.Dropped != 0 || s.Bytes < 2*100_000 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCutResetsOpenConnectionsAndRefusesNew(t *testing.T) {
	p := startProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Cut)
	if got, err := roundTrip(c, r, "during", 5*time.Second); err == nil {
		t.Fatalf("an open connection still answered %q through a cut link", got)
	}
	c2, r2 := dial(t, p) // the listener accepts, then closes at once
	if got, err := roundTrip(c2, r2, "new", 5*time.Second); err == nil {
		t.Fatalf("a new connection answered %q through a cut link", got)
	}
	p.Heal()
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "after", 5*time.Second); err != nil || got != "after" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestHoldDeliversNothingUntilHealed(t *testing.T) {
	p := startProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Hold)
	if got, err := roundTrip(c, r, "held", 300*time.Millisecond); err == nil {
		t.Fatalf("a held link delivered %q", got)
	}
	p.Heal()
	// What was read while held is delivered once healed, as TCP would
	// retransmit it.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestDelaySlowsEveryChunk(t *testing.T) {
	p := startProxy(t)
	c, r := dial(t, p)
	const d = 100 * time.Millisecond
	p.SetDelay(d)
	start := time.Now()
	if _, err := roundTrip(c, r, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// There and back: two chunks, each delayed.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("a round trip through a %v link took %v", d, took)
	}
	p.SetDelay(0)
	if _, err := roundTrip(c, r, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestDropEveryOtherConnection(t *testing.T) {
	p := startProxy(t)
	p.DropEvery(2)
	var ok, failed int
	for i := 0; i < 6; i++ {
		c, r := dial(t, p)
		if _, err := roundTrip(c, r, "hello", 5*time.Second); err != nil {
			failed++
		} else {
			ok++
		}
	}
	if ok != 3 || failed != 3 {
		t.Fatalf("every other connection dropped: %d answered, %d failed", ok, failed)
	}
	if s := p.Stats(); s.Accepted != 6 || s.Dropped != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	p := startProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(c, r, "after", 5*time.Second); err == nil {
		t.Fatalf("a closed proxy answered %q", got)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
