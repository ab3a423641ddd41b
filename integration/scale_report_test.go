//go:build scale && linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// scaleReport is SCALE.md: the machine, the configuration, then every
// figure with its target and whether it was met — or why the run could
// not produce it — the way .ci/benchreport writes BENCHMARKS.md.
type scaleReport struct {
	started  time.Time
	config   [][2]string
	sections []*reportSection
	notes    []string
}

type reportSection struct {
	title string
	text  []string // prose before the table
	rows  []reportRow
}

type reportRow struct {
	figure, measured, target, met string
}

func (r *scaleReport) section(title string, text ...string) *reportSection {
	s := &reportSection{title: title, text: text}
	r.sections = append(r.sections, s)
	return s
}

// add records a figure; met is "yes", "no", "—" (report only) or a reason
// it could not be judged.
func (s *reportSection) add(figure, measured, target, met string) {
	s.rows = append(s.rows, reportRow{figure, measured, target, met})
}

// judge is "yes" or "**no**" for a figure with a target.
func judge(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r *scaleReport) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *scaleReport) write(path string) error {
	var b strings.Builder
	b.WriteString("# Scale\n\n")
	b.WriteString("Written by `make scale` (`go test -tags scale -run TestScale ./integration`, integration/scale_test.go):\n")
	b.WriteString("`weft devnet` runs 3 voters and the storage nodes as separate processes, the harness drives them through\n")
	b.WriteString("the Go SDK and the admin RPCs and measures from outside (/proc, each process's /metrics, the data\n")
	b.WriteString("directories). Targets are issue #18's (`issues show 18`). integration/SCALE_DESIGN.md says how each figure is measured.\n\n")
	b.WriteString("| Machine | |\n|---|---|\n")
	for _, kv := range scaleMachine(r.started) {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], kv[1])
	}
	b.WriteString("\n## Configuration\n\n| | |\n|---|---|\n")
	for _, kv := range r.config {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], kv[1])
	}
	met, missed, other := r.tally()
	fmt.Fprintf(&b, "\n## Status\n\nTargets met: %d; missed: %d; figures without a target or not produced: %d.\n", met, missed, other)
	for _, s := range r.sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		for _, t := range s.text {
			b.WriteString(t + "\n")
		}
		if len(s.text) > 0 {
			b.WriteString("\n")
		}
		if len(s.rows) == 0 {
			continue
		}
		b.WriteString("| Figure | Measured | Target | Met? |\n|---|--:|---|---|\n")
		for _, row := range s.rows {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.figure, row.measured, row.target, row.met)
		}
	}
	if len(r.notes) > 0 {
		b.WriteString("\n## Notes from the run\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (r *scaleReport) tally() (met, missed, other int) {
	for _, s := range r.sections {
		for _, row := range s.rows {
			switch row.met {
			case "yes":
				met++
			case "**no**":
				missed++
			default:
				other++
			}
		}
	}
	return met, missed, other
}

func scaleMachine(started time.Time) [][2]string {
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
	if kb, err := procMeminfo("MemTotal:"); err == nil {
		ram = fmt.Sprintf("%.1f GiB", kb/(1<<20))
	}
	kernel := runtime.GOOS
	if out, err := exec.Command("uname", "-srm").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	return [][2]string{
		{"Date", started.UTC().Format("2006-01-02 15:04 UTC")},
		{"CPU", cpu},
		{"Cores", fmt.Sprintf("%d logical CPUs (shared with other work on this machine during the run)", runtime.NumCPU())},
		{"RAM", ram},
		{"Go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH},
		{"Kernel", kernel},
	}
}

func procMeminfo(field string) (float64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			return strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", field)
}

// Formatting.

func mibText(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
func gib(b float64) string     { return fmt.Sprintf("%.1f GiB", b/(1<<30)) }

func size(b int) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d B", b)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
