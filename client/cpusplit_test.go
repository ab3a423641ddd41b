package client

import (
	"bytes"
	"context"
	"debug/elf"
	"debug/gosym"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// asRole runs f with the pprof label role=role on this goroutine, and on
// every goroutine f starts (labels are inherited): the devnet labels its
// nodes and voters the same way, so a CPU profile splits by role.
func asRole(ctx context.Context, role string, f func()) {
	pprof.Do(ctx, pprof.Labels("role", role), func(context.Context) { f() })
}

// cpuSplit sums CPU-profile samples by role (the pprof label) and by
// stage (from the functions on each sample's stack).
type cpuSplit struct {
	profiles []*profile.Profile
	total    int64
	roles    map[string]int64
	stages   map[string]int64
}

// The stages a store's CPU is split into, and the roles; reported as
// cpu-stage-<name>-% and cpu-role-<name>-% (every name, zero or not, so a
// report parser always finds them).
var (
	cpuStages = []string{"encode", "verify", "hash", "grpc", "valuelog", "bls", "raft", "gc", "other"}
	cpuRoles  = []string{"client", "node", "voter", "runtime", "unlabelled"}
)

// add parses a CPU profile (runtime/pprof's output) and adds its samples.
func (s *cpuSplit) add(raw []byte) error {
	p, err := profile.Parse(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if s.roles == nil {
		s.roles, s.stages = map[string]int64{}, map[string]int64{}
	}
	s.profiles = append(s.profiles, p)
	cpu := len(p.SampleType) - 1 // nanoseconds, after the sample count
	for _, smp := range p.Sample {
		v := smp.Value[cpu]
		funcs := stackFuncs(smp)
		role := sampleRole(smp, funcs)
		s.total += v
		s.roles[role] += v
		s.stages[sampleStage(role, funcs)] += v
	}
	return nil
}

// write writes the profiles added, merged, to path (for go tool pprof).
func (s *cpuSplit) write(path string) error {
	p, err := profile.Merge(s.profiles)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := p.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// percent is a bucket's share of the samples.
func (s *cpuSplit) percent(m map[string]int64, name string) float64 {
	if s.total == 0 {
		return 0
	}
	return 100 * float64(m[name]) / float64(s.total)
}

// stackFuncs lists the function names of a sample's stack, leaf first
// (inlined functions included).
func stackFuncs(smp *profile.Sample) []string {
	var funcs []string
	for _, loc := range smp.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				funcs = append(funcs, l.Function.Name)
			}
		}
	}
	return funcs
}

// sampleRole is the sample's role label; unlabelled samples are the Go
// runtime's own goroutines (the collector's workers, the sweeper, the
// scavenger: nothing of ours on the stack) or "unlabelled".
func sampleRole(smp *profile.Sample, funcs []string) string {
	if r := smp.Label["role"]; len(r) > 0 {
		return r[0]
	}
	for _, f := range funcs {
		if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/runtime") && !strings.HasPrefix(f, "runtime/") {
			return "unlabelled"
		}
	}
	return "runtime"
}

// stageRules classify a sample by the first rule any function on its stack
// matches (prefixes of the function's full name); the order settles
// stacks that match several (a CRC under the value log is the value log's).
var stageRules = []struct {
	stage    string
	prefixes []string
}{
	{"gc", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.GC", "runtime.gcStart"}},
	{"verify", []string{"github.com/weftstore/weft/coding.(*Codec).VerifySliver", "github.com/weftstore/weft/coding.(*Codec).lineLeaves",
		"github.com/weftstore/weft/storage.(*Store).VerifyPair"}},
	{"encode", []string{"github.com/weftstore/weft/coding.", "github.com/klauspost/reedsolomon."}},
	{"bls", []string{"github.com/cloudflare/circl/"}},
	{"valuelog", []string{"github.com/weftstore/weft/storage.(*valueLog)", "github.com/weftstore/weft/storage.(*Store).Stage", "hash/crc32."}},
	{"raft", []string{"github.com/hashicorp/raft", "go.etcd.io/bbolt", "github.com/boltdb/bolt"}},
	{"hash", []string{"crypto/sha256", "crypto/internal/fips140/sha256", "github.com/weftstore/weft/crypto.(*LeafHasher)", "github.com/weftstore/weft/crypto.Merkle"}},
	{"gc", []string{"runtime.mallocgc", "runtime.makeslice", "runtime.newobject", "runtime.growslice"}},
	{"grpc", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "golang.org/x/net/http2", "github.com/weftstore/weft/api/",
		"github.com/weftstore/weft/storage.(*pairAssembler)", "github.com/weftstore/weft/storage.grow",
		"github.com/weftstore/weft/client.readBlob", "net.", "internal/poll.", "syscall.", "bufio."}},
}

// sampleStage classifies a sample. The codec's work is verification on a
// node (Reed-Solomon's own goroutines do not show who called them) and
// encoding on the client.
func sampleStage(role string, funcs []string) string {
	for _, r := range stageRules {
		for _, f := range funcs {
			for _, p := range r.prefixes {
				if strings.HasPrefix(f, p) {
					if r.stage == "encode" && role == "node" {
						return "verify"
					}
					return r.stage
				}
			}
		}
	}
	return "other"
}

// The stage rules name functions of ours by their full names; one renamed
// would silently move its CPU to "other". Every such name must still be a
// function (or method set) in this test binary, which links the devnet's
// nodes and voter.
func TestStageRulesNameRealFunctions(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Skipf("not an ELF binary (%v): the rules are checked on Linux", err)
	}
	defer f.Close()
	// The function table every Go binary keeps (go test strips the ELF
	// symbols, not this).
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Fatal("no .gopclntab or .text section")
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatal(err)
	}
	const ours = "github.com/weftstore/weft/"
	for _, r := range stageRules {
		for _, p := range r.prefixes {
			// A whole package ("…/coding.", "…/api/") is not a name that
			// can go stale; a function or type in one is.
			if !strings.HasPrefix(p, ours) || strings.HasSuffix(p, ".") || strings.HasSuffix(p, "/") {
				continue
			}
			if !slices.ContainsFunc(table.Funcs, func(fn gosym.Func) bool { return strings.HasPrefix(fn.Name, p) }) {
				t.Errorf("stage %q: no function named %s… in the binary (renamed?)", r.stage, p)
			}
		}
	}
}
