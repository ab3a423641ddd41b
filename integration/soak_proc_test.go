//go:build soak && linux

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What the soak reads from outside the processes: their resident set
// (VmRSS in /proc/PID/status) and their goroutine count (go_goroutines on
// the Prometheus endpoint `weft devnet --metrics` gives each of them).

// soakProc is one process of the devnet, as the ready file lists it now.
type soakProc struct {
	Role    string `json:"role"`
	ID      string `json:"id"`
	Address string `json:"address"`
	PID     int    `json:"pid"`
	Log     string `json:"log"`
	Metrics string `json:"metrics"`
}

type soakReady struct {
	Control       []string   `json:"control"`
	Gateway       string     `json:"gateway"`
	OperatorToken string     `json:"operator_token"`
	ClientToken   string     `json:"client_token"`
	Processes     []soakProc `json:"processes"`
}

func readSoakReady(path string) (soakReady, error) {
	var r soakReady
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	return r, err
}

// soakSample is one process measured once.
type soakSample struct {
	ID, Role   string
	PID        int
	RSS        float64 // bytes; 0 if unknown
	Goroutines float64 // -1 if unknown
}

// soakRSS is VmRSS of pid, in bytes.
func soakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// soakGoroutines reads go_goroutines from a metrics endpoint.
func soakGoroutines(addr string) (float64, error) {
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s serves no go_goroutines", addr)
}

// sampleProcs measures every running process of the ready file, and the
// test process itself (role "soak", the SDK's and the harness's
// goroutines).
func sampleProcs(r soakReady) []soakSample {
	var out []soakSample
	for _, p := range r.Processes {
		if !soakRunning(p.PID) {
			continue
		}
		s := soakSample{ID: p.ID, Role: p.Role, PID: p.PID, Goroutines: -1}
		s.RSS, _ = soakRSS(p.PID)
		if p.Metrics != "" {
			if g, err := soakGoroutines(p.Metrics); err == nil {
				s.Goroutines = g
			}
		}
		out = append(out, s)
	}
	self := soakSample{ID: "soak (test process)", Role: "soak", PID: os.Getpid(), Goroutines: float64(runtime.NumGoroutine())}
	self.RSS, _ = soakRSS(os.Getpid())
	return append(out, self)
}

// soakRunning: the process exists and is no zombie (a process `weft
// devnet restart` started is reaped late, if at all).
func soakRunning(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		switch b[i+2] {
		case 'Z', 'X':
			return false
		}
	}
	return true
}

// roleStat is the median and maximum of one figure over a role's
// processes in one sample.
type roleStat struct{ med, max float64 }

func roleStats(samples []soakSample, role string, field func(soakSample) float64) (roleStat, bool) {
	var v []float64
	for _, s := range samples {
		if s.Role == role && field(s) >= 0 {
			v = append(v, field(s))
		}
	}
	if len(v) == 0 {
		return roleStat{}, false
	}
	slices.Sort(v)
	return roleStat{med: v[len(v)/2], max: v[len(v)-1]}, true
}

// soakMachine describes the machine for the report.
func soakMachine() [][2]string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	ram := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				ram = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	kernel := runtime.GOOS
	if out, err := exec.Command("uname", "-srm").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return [][2]string{
		{"CPU", cpu},
		{"Cores (nproc)", fmt.Sprintf("%d, shared with other work on this machine during the run", runtime.NumCPU())},
		{"Memory", ram},
		{"Go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH},
		{"Kernel", kernel},
		{"Commit", commit},
	}
}

func soakLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
