package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sample is go test output cut from a real run, with a result line split by
// stray output, a failed benchmark and a package that did not build added.
const sample = `goos: linux
goarch: amd64
pkg: github.com/weftstore/weft/crypto
cpu: AMD EPYC
BenchmarkSign-2                  	       1	   1010346 ns/op
BenchmarkCertificateVerify/shards=1000/nodes=100-2         	       1	   1981614 ns/op	         1.024 x-verify
PASS
ok  	github.com/weftstore/weft/crypto	1.624s
pkg: github.com/weftstore/weft/committee
BenchmarkRegistrations-2   	time=2026-01-01 level=INFO msg="leader elected"
    2000	    274207 ns/op	      3646 registrations/s
BenchmarkIdleWatchers-2   	--- FAIL: BenchmarkIdleWatchers-2
    bench_test.go:125: 999 of 1000 watchers woke
FAIL
FAIL	github.com/weftstore/weft/committee	5.959s
# github.com/weftstore/weft/client
client/x.go:1:1: syntax error
FAIL	github.com/weftstore/weft/client [build failed]
pkg: github.com/weftstore/weft/storage
BenchmarkHandover/outgoing-alive-2         	       1	13928470847 ns/op	        13.73 handover-s	        93.12 held-MB	         1.000 received-x-held
BenchmarkHandover/outgoing-dead-2          	       1	19000000000 ns/op	        19.00 handover-s	        93.12 held-MB	         1.250 received-x-held
`

func TestReport(t *testing.T) {
	p, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Results) != 5 {
		t.Fatalf("%d results, want 5: %+v", len(p.Results), p.Results)
	}
	if r := p.Results[2]; r.Pkg != "committee" || r.Name != "BenchmarkRegistrations" || r.Procs != 2 || r.Iters != 2000 || r.Metrics[1].Value != 3646 {
		t.Errorf("split line parsed as %+v", r)
	}
	if len(p.Failures) != 3 {
		t.Errorf("failures %q, want the FAIL lines of committee and client", p.Failures)
	}

	rep := build(p)
	met := map[string]string{}
	for _, r := range rep.Targets {
		met[r.Bench+" "+r.Metric] = r.Met
	}
	for key, want := range map[string]string{
		"BenchmarkCertificateVerify/shards=1000/nodes=100 x-verify": "yes",
		"BenchmarkRegistrations registrations/s":                    "**no**",
		"BenchmarkIdleWatchers cpu-ns/watcher/s":                    "— (missing)",
		"BenchmarkStoreRead store-x-floor":                          "**no** (missing)",
		"BenchmarkHandover/outgoing-alive received-x-held":          "yes",
		"BenchmarkHandover/outgoing-dead received-x-held":           "**no**",
		"BenchmarkEncode/n=1000/64MiB x-hashlimit":                  "**no** (missing)",
	} {
		if met[key] != want {
			t.Errorf("%s: met %q, want %q", key, met[key], want)
		}
	}
	targets := 0
	for _, g := range goals {
		if g.Op != "" {
			targets++
		}
	}
	if rep.Met != 2 || rep.Of != targets {
		t.Errorf("targets met %d of %d, want 2 of %d", rep.Met, rep.Of, targets)
	}
	missing := strings.Join(rep.Missing, "\n")
	for _, want := range []string{"client BenchmarkStoreRead: not in the output", "committee BenchmarkIdleWatchers: not in the output", "crypto BenchmarkVerify: not in the output"} {
		if !strings.Contains(missing, want) {
			t.Errorf("missing list lacks %q:\n%s", want, missing)
		}
	}

	var out bytes.Buffer
	write(&out, rep, machine(p.CPU), time.Unix(0, 0), sample, false)
	for _, want := range []string{
		"| committee BenchmarkRegistrations | registrations/s | 3646 | ≥ 5000 | **no** | #4 |",
		"| crypto | BenchmarkSign | ns/op | 1010346 | report only | — |",
		"**Incomplete run: `make bench` failed.**",
		"```text\n" + sample + "```\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestMissedTargetFails: a complete run whose only fault is a missed target
// fails, unless it is report-only; a run meeting every target passes.
func TestMissedTargetFails(t *testing.T) {
	complete := func(registrations string) string {
		var b strings.Builder
		pkg := ""
		for _, id := range expected() {
			if id.Pkg != pkg {
				pkg = id.Pkg
				b.WriteString("pkg: github.com/weftstore/weft/" + pkg + "\n")
			}
			b.WriteString(id.Name + "-2 \t 1\t 100 ns/op")
			for _, g := range goals {
				if g.Pkg != id.Pkg || g.Bench != id.Name {
					continue
				}
				value := g.Limit // exactly at the limit: met
				if g.Metric == "registrations/s" {
					value, _ = strconv.ParseFloat(registrations, 64)
				}
				b.WriteString("\t" + strconv.FormatFloat(value, 'g', -1, 64) + " " + g.Metric)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	for _, tc := range []struct {
		registrations string
		reportOnly    bool
		fails         bool
		status        string
	}{
		{"9000", false, false, ""},
		{"10", false, true, "**`make bench` failed: targets missed.**"},
		{"10", true, false, "Run with `-report-only`"},
	} {
		p, err := parse(strings.NewReader(complete(tc.registrations)))
		if err != nil {
			t.Fatal(err)
		}
		rep := build(p)
		if len(rep.Missing) > 0 || len(rep.Failures) > 0 {
			t.Fatalf("complete run: missing %q, failures %q", rep.Missing, rep.Failures)
		}
		if got := rep.fails(tc.reportOnly); got != tc.fails {
			t.Errorf("registrations %s, report-only %v: fails %v, want %v (missed %q)", tc.registrations, tc.reportOnly, got, tc.fails, rep.Missed)
		}
		var out bytes.Buffer
		write(&out, rep, nil, time.Unix(0, 0), "", tc.reportOnly)
		if tc.status != "" && !strings.Contains(out.String(), tc.status) {
			t.Errorf("report lacks %q", tc.status)
		}
		if tc.fails && !strings.Contains(out.String(), "- missed: committee BenchmarkRegistrations: registrations/s 10") {
			t.Errorf("report does not list the missed target:\n%s", out.String())
		}
	}
}
