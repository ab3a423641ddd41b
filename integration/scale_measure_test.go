//go:build scale && linux

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// What the scale harness reads from outside the processes it measures:
// /proc for CPU, memory and the harness's own socket traffic, the
// processes' Prometheus endpoints for what they count themselves, and the
// file system for bytes on disk. Nothing here changes what it measures.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports (the kernel exports it to
// user space as a constant, whatever CONFIG_HZ is).
const clockTicks = 100

// cpuSeconds is a process's user + system CPU so far, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the
	// fields are counted from the last ')'. utime and stime are fields 14
	// and 15 of the whole line, 12 and 13 after the ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, b)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(fields))
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, fields[11], fields[12])
	}
	return (utime + stime) / clockTicks, nil
}

// rssBytes is a process's resident set (VmRSS), from /proc/PID/status.
func rssBytes(pid int) (float64, error) {
	return procStatusField(pid, "VmRSS:")
}

func procStatusField(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// selfIO is this process's rchar and wchar from /proc/self/io: every byte
// read and written through read/write system calls, sockets included. The
// harness is the only client, writes no files while it measures, and
// reads nothing else during a measured store or read, so their deltas
// around a store or read are the bytes the SDK put on and took off the wire
// (gRPC payloads and framing; TCP/IP headers are not counted).
func selfIO() (rchar, wchar float64, err error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			rchar, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			wchar, _ = strconv.ParseFloat(v, 64)
		}
	}
	return rchar, wchar, nil
}

// scrape reads every sample of a Prometheus text endpoint, keyed by the
// series as written (name{labels}). With a hundred processes on a few
// cores, one may answer late: it is asked up to three times, 30 s each.
func scrape(addr string) (out map[string]float64, err error) {
	for range 3 {
		if out, err = scrapeOnce(addr); err == nil {
			return out, nil
		}
	}
	return nil, err
}

func scrapeOnce(addr string) (map[string]float64, error) {
	hc := http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// sumMetric adds one series over several endpoints; found says whether any
// endpoint exports it.
func sumMetric(addrs []string, series string) (total float64, found bool, err error) {
	for _, a := range addrs {
		m, err := scrape(a)
		if err != nil {
			return 0, false, fmt.Errorf("scraping %s: %w", a, err)
		}
		if v, ok := m[series]; ok {
			total, found = total+v, true
		}
	}
	return total, found, nil
}

// diskBytes is what a directory tree occupies on disk (allocated blocks,
// not apparent sizes: bbolt files and the value log are what they
// allocate).
func diskBytes(dir string) (float64, error) {
	var total float64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += float64(st.Blocks) * 512
		}
		return nil
	})
	return total, err
}

// rssSampler keeps each process's peak RSS while it runs: "under load" is
// the peak over the blob writes and reads.
type rssSampler struct {
	mu   sync.Mutex
	peak map[int]float64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pids []int, every time.Duration) *rssSampler {
	s := &rssSampler{peak: map[int]float64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, pid := range pids {
				if v, err := rssBytes(pid); err == nil {
					s.mu.Lock()
					s.peak[pid] = max(s.peak[pid], v)
					s.mu.Unlock()
				}
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns each process's peak.
func (s *rssSampler) Stop() map[int]float64 {
	close(s.stop)
	<-s.done
	return s.peak
}
