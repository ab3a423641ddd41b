package client

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
)

// quiltBenchFiles is how many 4 KiB files BenchmarkQuiltStore stores
// ($WEFT_QUILT_FILES, default 10,000: issue #20's figure).
func quiltBenchFiles(b *testing.B) int {
	if s := os.Getenv("WEFT_QUILT_FILES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("WEFT_QUILT_FILES=%q", s)
		}
		return n
	}
	return 10_000
}

func nodesStored(net *devnet.Network) int64 {
	var sum int64
	for i := range net.Nodes() {
		if n := net.Node(i); n != nil {
			sum += n.Stats().BytesStored
		}
	}
	return sum
}

// BenchmarkQuiltStore stores 4 KiB files as quilts of 1,000 on a devnet
// of ten nodes at n = $WEFT_QUILT_SHARDS (default 100; above 256 the
// quilts are stored in lanes16) — real gRPC, Raft, bbolt — and reports
// (issue #20):
//
//	files/s             files stored per second, quilts one after another
//	stored-x-user       sliver bytes the nodes stored ÷ the files' bytes
//	n1000-stored-x-user the same quilts' bytes over all shards at n = 1000
//	                    in lanes16 (coding.Params.EncodedSize)
//	plain-n1000-x-user  each file as a blob of its own at n = 1000, lanes16
func BenchmarkQuiltStore(b *testing.B) {
	const size, perQuilt = 4 << 10, 1000
	count := quiltBenchFiles(b)
	shards := 100
	if s := os.Getenv("WEFT_QUILT_SHARDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WEFT_QUILT_SHARDS=%q", s)
		}
		shards = n
	}
	net := startNet(b, 10, shards, nil)
	c := newClient(b, net, func(cfg *Config) {
		cfg.NodeTimeout = 5 * time.Minute
		if shards > coding.MaxShardsRS8 {
			cfg.Encoding = coding.Lanes16
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	p1000, err := coding.NewParams(1000, coding.WithEncoding(coding.Lanes16))
	if err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	var user, stored, at1000 int64
	b.ResetTimer()
	for iter := range b.N {
		before := nodesStored(net)
		start := time.Now()
		for first := 0; first < count; first += perQuilt {
			var files []QuiltInput
			for i := first; i < min(first+perQuilt, count); i++ {
				files = append(files, QuiltInput{Name: fmt.Sprintf("f-%06d", i), Data: randomBlob(uint64(iter)<<32|uint64(i), size)})
			}
			sq, err := c.StoreQuilt(ctx, files, StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			enc, _ := p1000.EncodedSize(sq.Length)
			at1000 += int64(enc)
			user += int64(len(files) * size)
		}
		took += time.Since(start)
		stored += nodesStored(net) - before
	}
	b.StopTimer()
	plain, _ := p1000.EncodedSize(size)
	b.ReportMetric(float64(count*b.N)/took.Seconds(), "files/s")
	b.ReportMetric(float64(stored)/float64(user), "stored-x-user")
	b.ReportMetric(float64(at1000)/float64(user), "n1000-stored-x-user")
	b.ReportMetric(float64(plain)/float64(size), "plain-n1000-x-user")
}

// BenchmarkQuiltRead reads one 4 KiB file out of a quilt of
// $WEFT_QUILT_MB MiB (default 100, issue #20's) of 4 KiB files at n = 100
// over ten nodes, and reports slivers-received: the sliver bytes received
// ÷ one systematic sliver (target ≤ 2: the index's and the file's); then
// the same read with that sliver's owner stopped (fallback-x-quilt: bytes
// received ÷ the quilt's size, ≈ 1 for the whole read it falls back to).
func BenchmarkQuiltRead(b *testing.B) {
	mb := 100
	if s := os.Getenv("WEFT_QUILT_MB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			mb = n
		}
	}
	const size = 4 << 10
	net := startNet(b, 10, 100, nil)
	c := newClient(b, net, func(cfg *Config) { cfg.NodeTimeout = 5 * time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var files []QuiltInput
	for i := range mb << 20 / size {
		files = append(files, QuiltInput{Name: fmt.Sprintf("f-%06d", i), Data: randomBlob(uint64(5000+i), size)})
	}
	sq, err := c.StoreQuilt(ctx, files, StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := coding.NewParams(100)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := p.SymbolSize(sq.Length)
	row, _ := p.SystematicLayout(s)
	target := sq.Files[len(files)/2]
	var received int64
	b.ResetTimer()
	for range b.N {
		var st ReadStats
		fresh := newClient(b, net)
		if _, _, err := fresh.ReadQuiltFile(ctx, target, ReadOptions{Stats: &st}); err != nil {
			b.Fatal(err)
		}
		received += st.ReceivedBytes
	}
	b.StopTimer()
	b.ReportMetric(float64(received)/float64(b.N)/float64(row), "slivers-received")

	idx, _ := sq.Index.MarshalBinary()
	off := int64(len(idx)) + int64(sq.Index.Files[target.Index].Offset)
	stopNodes(b, net, ownerOf(b, net, p, sq.ID, uint32(off/int64(row))))
	var st ReadStats
	got, _, err := newClient(b, net).ReadQuiltFile(ctx, target, ReadOptions{Stats: &st})
	if err != nil || string(got) != string(files[target.Index].Data) || st.RangeFallback == nil {
		b.Fatalf("with the file's sliver's owner stopped: %d bytes, %v, fallback %v", len(got), err, st.RangeFallback)
	}
	b.ReportMetric(float64(st.ReceivedBytes)/float64(sq.Length), "fallback-x-quilt")
}
