package coding

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/weftstore/weft/crypto"
)

// Benchmarks report ratios against baselines measured in the same run, so
// they mean the same on any machine:
//
//	x-rs1d       encode time / a plain 1-D klauspost encode of the blob (k = nP, n shards)
//	x-hashlimit  encode time / the commitment work alone: n² one-symbol leaf
//	             hashes and 2n(n−1) inner hashes on all cores, reused buffers;
//	             the median over ≥ minPairs (encode, baseline) pairs of the
//	             ratio within each pair (x-rs1d likewise). Each encode's
//	             output is released after it is timed ((*Encoded).Release,
//	             WithBufferPool), as a client storing blob after blob does,
//	             so the next encode writes that memory, not fresh pages
//	             (-bench.nopool: fresh memory every time)
//	x-hashlimit-cpu the same pairs' ratio of process CPU time (user and
//	             system, all goroutines): the work an encode does over the
//	             baseline's, which a neighbour competing for the cores
//	             inflates far less than wall time
//	peak-heap-x  bytes allocated by one encode / blob size: an upper bound on
//	             the peak live heap beyond the input (every buffer of an
//	             encode lives until it returns); the first encode of a
//	             codec, whose buffer pool is empty
//	faults/encode the page faults the process took during an encode (the
//	             median over the same pairs): first touches of fresh memory,
//	             which the kernel must map in
//	warm-heap-x  the same for an encode after one was released
//	             ((*Encoded).Release), as a client storing blob after
//	             blob encodes
//	repair-ratio bytes a node receives to rebuild a lost pair / the pair's size,
//	             its peers answering in batches (batchPeers: 100 nodes)
//	repair-ratio-v2 the same with every symbol sent alone in version 2
//	             (what a peer of the previous release answers; report only)
//	repair-ratio-proofs the same symbols with their Merkle proofs, batched

var benchShards = []int{10, 100, 1000}

// benchBufferPool is BenchmarkEncode's codec's buffer pool: room for one
// released encode of the largest blob benchmarked.
const benchBufferPool = 1 << 30

// -bench.nopool runs BenchmarkEncode with a codec without a buffer pool,
// every encode into fresh memory as before Release existed: the A side of
// an A/B of the pool in one binary.
var benchNoPool = flag.Bool("bench.nopool", false, "BenchmarkEncode: no buffer pool (every encode writes fresh memory)")

var benchSizes = []struct {
	name  string
	bytes int
}{{"1MiB", 1 << 20}, {"16MiB", 16 << 20}, {"64MiB", 64 << 20}}

func forEachBenchCase(b *testing.B, run func(b *testing.B, n, size int)) {
	for _, n := range benchShards {
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("n=%d/%s", n, sz.name), func(b *testing.B) { run(b, n, sz.bytes) })
		}
	}
}

// meanTime runs f reps times and returns the mean duration.
func meanTime(reps int, f func()) time.Duration {
	start := time.Now()
	for range reps {
		f()
	}
	return time.Since(start) / time.Duration(reps)
}

// minPairs is the fewest paired runs a ratio metric is the median of,
// however few iterations -benchtime asks for.
const minPairs = 10

func perOp(b *testing.B) time.Duration { return b.Elapsed() / time.Duration(b.N) }

func ratio(a, base time.Duration) float64 { return float64(a) / float64(base) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// allocatedBy returns the bytes f allocates.
func allocatedBy(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// rs1D is the baseline a plain 1-D Reed-Solomon code pays: the blob copied
// into nP data shards of a reused buffer, n−nP parity shards computed, byte
// ranges spread over all cores exactly like the codec's own calls
// (codeLine).
type rs1D struct {
	codec *Codec
	enc   reedsolomon.Encoder
	k, n  int
	size  int    // shard size
	buf   []byte // reused: the baseline pays no allocation
}

func newRS1D(tb testing.TB, c *Codec, blobLen int) *rs1D {
	p := c.Params()
	align := p.Encoding.symbolAlignment()
	if p.Shards > MaxShardsRS8 {
		// klauspost's own code there is Leopard GF(2^16), whose shards are
		// whole 64-byte blocks whatever the encoding's symbols (lanes16's
		// are any even size).
		align = Leopard16.symbolAlignment()
	}
	size := max((blobLen+p.NP-1)/p.NP, 1)
	size = (size + align - 1) / align * align
	enc, err := reedsolomon.New(p.NP, p.Shards-p.NP)
	if err != nil {
		tb.Fatal(err)
	}
	return &rs1D{codec: c, enc: enc, k: p.NP, n: p.Shards, size: size, buf: make([]byte, p.Shards*size)}
}

func (r *rs1D) encode(blob []byte) [][]byte {
	clear(r.buf[copy(r.buf, blob) : r.k*r.size])
	shards := make([][]byte, r.n)
	for i := range shards {
		shards[i] = r.buf[i*r.size : (i+1)*r.size]
	}
	if err := r.codec.codeLine(shards, r.size, r.size, plainCode{r.enc}.Encode); err != nil {
		panic(err)
	}
	return shards
}

// decode rebuilds the data shards of a 1-D codeword from its last nP
// shards (all parity, like BenchmarkDecode's primaries).
func (r *rs1D) decode(encoded [][]byte) {
	shards := make([][]byte, r.n)
	copy(shards[r.n-r.k:], encoded[r.n-r.k:])
	if err := r.codec.codeLine(shards, r.size, r.size, plainCode{r.enc}.ReconstructData); err != nil {
		panic(err)
	}
}

// The benchmarks' 1-D baseline codes a blob at every n they run, in the
// default encoding's codec (a test, so that a change of default that
// breaks it fails here and not only in make bench).
func TestRS1DBaseline(t *testing.T) {
	for _, n := range benchShards {
		c := mustCodec(t, n)
		blob := randomBlob(int64(n), 1<<20+3)
		base := newRS1D(t, c, len(blob))
		encoded := base.encode(blob)
		if got := slices.Concat(encoded[:base.k]...); !bytes.Equal(got[:len(blob)], blob) {
			t.Fatalf("n=%d: the data shards do not hold the blob", n)
		}
		base.decode(encoded) // panics on a codec error
	}
}

// hashLimit does exactly the hashing DESIGN §3 fixes for a blob, and nothing
// else: n² leaf hashes of one symbol each and 2n(n−1) inner hashes, on all
// cores, over one reused line of symbols per core (so memory never limits
// it).
func hashLimit(n, s, workers int) {
	_ = forEach(workers, n, func() *hashLimitWorker {
		return &hashLimitWorker{line: make([]byte, n*s), leaves: make([]crypto.Digest, n)}
	}, func(w *hashLimitWorker, _ int) error {
		for j := range n {
			w.leaves[j] = w.leaf.Sum(w.line[j*s : (j+1)*s])
		}
		for x := 0; x < 2*(n-1); x++ { // this row's share of the 2n(n−1) inner hashes
			w.leaves[x%n] = crypto.InnerHash(w.leaves[x%n], w.leaves[(x+1)%n])
		}
		return nil
	})
}

type hashLimitWorker struct {
	line   []byte
	leaves []crypto.Digest
	leaf   crypto.LeafHasher
}

func BenchmarkEncode(b *testing.B) {
	forEachBenchCase(b, func(b *testing.B, n, size int) {
		// Each encode's output is released once it is timed, as a client
		// with an encode buffer pool does once its slivers are sent
		// (client.Config.EncodeBufferPool, off by default): a steady-state
		// encode writes into the memory of the one before (WithBufferPool)
		// instead of fresh pages the kernel must fault in.
		pool := int64(benchBufferPool)
		if *benchNoPool {
			pool = 0
		}
		c := mustCodec(b, n, WithBufferPool(pool))
		blob := randomBlob(int64(size), size)
		s, _ := c.Params().SymbolSize(uint64(size))
		base := newRS1D(b, c, size)
		base.encode(blob) // warm up
		var keep *Encoded
		alloc := allocatedBy(func() { keep = mustEncode(b, c, blob) })
		keep.Release()
		warm := allocatedBy(func() { keep = mustEncode(b, c, blob) })
		keep.Release()
		keep = nil
		// Each encode is paired with its baselines, run right after it with
		// the timer stopped, so that both see the same state of the
		// machine; a ratio is taken per pair and the median over at least
		// minPairs pairs is reported, robust to a noisy neighbour slowing
		// a few runs. Pairs beyond b.N are run untimed.
		var toRS1D, toLimit, toLimitCPU, faults []float64
		pair := func(timed bool) {
			start, cpu, faulted := time.Now(), cpuTime(), pageFaults()
			enc := mustEncode(b, c, blob)
			took, tookCPU := time.Since(start), cpuTime()-cpu
			faults = append(faults, float64(pageFaults()-faulted))
			if timed {
				b.StopTimer()
				defer b.StartTimer()
			}
			enc.Release()
			toRS1D = append(toRS1D, ratio(took, meanTime(1, func() { base.encode(blob) })))
			cpu = cpuTime()
			toLimit = append(toLimit, ratio(took, meanTime(1, func() { hashLimit(n, s, c.workers) })))
			toLimitCPU = append(toLimitCPU, ratio(tookCPU, cpuTime()-cpu))
		}
		b.SetBytes(int64(size))
		b.ResetTimer()
		for b.Loop() {
			pair(true)
		}
		for len(toLimit) < minPairs {
			pair(false)
		}
		b.ReportMetric(median(toRS1D), "x-rs1d")
		b.ReportMetric(median(toLimit), "x-hashlimit")
		b.ReportMetric(median(toLimitCPU), "x-hashlimit-cpu")
		b.ReportMetric(float64(alloc)/float64(size), "peak-heap-x")
		b.ReportMetric(float64(warm)/float64(size), "warm-heap-x")
		b.ReportMetric(median(faults), "faults/encode")
		b.ReportMetric(float64(s), "symbol-bytes")
	})
}

// BenchmarkDecode decodes from nP parity primary slivers (so the column code
// has every data row to rebuild) including the consistent-read check, which
// re-encodes the blob. x-encode compares it with an encode, x-rs1d with a
// 1-D decode of the same blob from nP parity shards, rs-decode-x-encode
// is the Reed-Solomon part alone over an encode.
func BenchmarkDecode(b *testing.B) {
	forEachBenchCase(b, func(b *testing.B, n, size int) {
		c := mustCodec(b, n)
		p := c.Params()
		blob := randomBlob(int64(size), size)
		enc := mustEncode(b, c, blob)
		var slivers []Sliver
		for i := n - p.NP; i < n; i++ {
			slivers = append(slivers, enc.Pairs[i].Primary)
		}
		base := newRS1D(b, c, size)
		encoded1D := base.encode(blob)
		encodeTime := meanTime(2, func() { mustEncode(b, c, blob) })
		decode1D := meanTime(3, func() { base.decode(encoded1D) })
		decodeOnly := meanTime(2, func() {
			if _, err := c.decodePrimaries(slivers, enc.SymbolSize); err != nil {
				b.Fatal(err)
			}
		})
		b.SetBytes(int64(size))
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.Decode(enc.Metadata, slivers); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(ratio(perOp(b), encodeTime), "x-encode")
		b.ReportMetric(ratio(perOp(b), decode1D), "x-rs1d")
		b.ReportMetric(ratio(decodeOnly, encodeTime), "rs-decode-x-encode")
	})
}

// symbolTable holds precomputed symbols, so the timed part of
// BenchmarkRecoverPair is the recovering node's work.
type symbolTable map[bool]map[SliverRef]map[uint32]RecoverySymbol // withProof → target → source

// benchNodes is how many nodes the n shards are spread over: 100, as in a
// network of 100 nodes (10 shards each at n = 1000), or one per shard when
// there are fewer shards (n = 10: 10 nodes of one shard; n = 100: 100).
func benchNodes(n int) int { return min(n, 100) }

// batchPeers answers FetchSymbols as the storage network answers a node
// that asks for SymbolVersionBatch (storage/recovery.go): the requests are
// grouped by the node holding their source sliver (pair p on shard
// ShardForPair(p), shards spread over benchNodes(n) nodes in contiguous
// blocks), and each node answers its requests of the call with one
// SymbolBatch, which the recovering node decodes against its request list.
// Bytes counted are the batches' encoded lengths; v2Bytes counts the same
// symbols as the version 2 encoding would send them one by one (report
// only). The recovering node's own other shards count as remote peers: a
// node that missed a blob misses it on every shard it holds. The timed
// part includes the peers' encoding of their batches (copies of the
// symbols): in a CPU profile at n = 1000, 1 and 16 MiB, ≈ 6 % of
// RecoverPair, and the whole fetcher (grouping, encoding, decoding) ≈ 16 %.
type batchPeers struct {
	p       Params
	id      crypto.BlobID
	s       int
	table   symbolTable
	v2Bytes int64
}

func (bp *batchPeers) nodeOf(src SliverRef) int {
	pair := bp.p.PairSliver(int(src.Index), src.Axis) // an involution: primary i ↔ pair i, secondary j ↔ pair n−1−j
	return bp.p.ShardForPair(pair, bp.id) * benchNodes(bp.p.Shards) / bp.p.Shards
}

func (bp *batchPeers) FetchSymbols(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error) {
	got, _, err := bp.FetchSymbolsCounted(ctx, target, sources, withProofs)
	return got, err
}

func (bp *batchPeers) FetchSymbolsCounted(_ context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, int64, error) {
	byNode := map[int][]SymbolRequest{}
	var nodes []int
	for _, src := range sources {
		ref := SliverRef{target.Axis.Other(), src}
		node := bp.nodeOf(ref)
		if _, ok := byNode[node]; !ok {
			nodes = append(nodes, node)
		}
		byNode[node] = append(byNode[node], SymbolRequest{Source: ref, Target: target.Index})
	}
	var out []RecoverySymbol
	var received int64
	for _, node := range nodes {
		asked := byNode[node]
		answer := SymbolBatch{Asked: asked, SymbolSize: bp.s, Proofs: withProofs}
		for _, q := range asked {
			if sym, ok := bp.table[withProofs][target][q.Source.Index]; ok {
				answer.Symbols = append(answer.Symbols, sym)
				bp.v2Bytes += int64(sym.EncodedLen())
			}
		}
		raw, err := answer.MarshalBinary()
		if err != nil {
			return nil, 0, err
		}
		received += int64(len(raw))
		got := SymbolBatch{Asked: asked, SymbolSize: bp.s, Proofs: withProofs}
		if err := got.UnmarshalBinary(raw); err != nil {
			return nil, 0, err
		}
		out = append(out, got.Symbols...)
	}
	return out, received, nil
}

func BenchmarkRecoverPair(b *testing.B) {
	forEachBenchCase(b, func(b *testing.B, n, size int) {
		c := mustCodec(b, n)
		p := c.Params()
		blob := randomBlob(int64(size), size)
		enc := mustEncode(b, c, blob)
		pair := n / 3
		secondary := SliverRef{crypto.Secondary, uint32(n - 1 - pair)}
		primary := SliverRef{crypto.Primary, uint32(pair)}
		table := symbolTable{false: {}, true: {}}
		for _, proofs := range []bool{false, true} {
			table[proofs][secondary] = map[uint32]RecoverySymbol{}
			table[proofs][primary] = map[uint32]RecoverySymbol{}
		}
		for x := range n {
			for _, tc := range []struct{ src, target SliverRef }{
				{SliverRef{crypto.Primary, uint32(x)}, secondary},
				{SliverRef{crypto.Secondary, uint32(x)}, primary},
			} {
				if tc.src == primary || tc.src == secondary {
					continue // lost with the pair
				}
				ext, err := c.Extend(enc.Metadata, sliverOf(enc, tc.src))
				if err != nil {
					b.Fatal(err)
				}
				for _, proofs := range []bool{false, true} {
					sym, err := ext.Symbol(int(tc.target.Index), proofs)
					if err != nil {
						b.Fatal(err)
					}
					// Compact: v2Bytes counts version 2, what a node
					// asking for SymbolVersionCompact gets.
					table[proofs][tc.target][uint32(x)] = sym.Compact()
				}
			}
		}
		peers := &batchPeers{p: p, id: enc.ID, s: enc.SymbolSize, table: table}
		pairBytes := float64((p.NP + p.NS) * enc.SymbolSize)
		var stats RecoveryStats
		b.SetBytes(int64(pairBytes))
		b.ResetTimer()
		for b.Loop() {
			var err error
			peers.v2Bytes = 0
			if _, stats, err = c.RecoverPair(context.Background(), enc.Metadata, pair, peers); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if stats.UsedProofs {
			b.Fatal("honest peers, yet proofs were fetched")
		}
		v2Bytes := peers.v2Bytes
		// The path with proofs: as many symbols from randomly chosen peers,
		// each with its Merkle proof, batched per node likewise (what
		// recovery costs when the optimistic attempt fails or is skipped).
		var withProofs int64
		rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
		for _, target := range []SliverRef{secondary, primary} {
			k := p.SliverSymbols(target.Axis)
			if target == primary {
				k-- // its own recovered secondary supplies one symbol
			}
			sources := slices.Collect(maps.Keys(table[true][target]))
			slices.Sort(sources)
			rng.Shuffle(len(sources), func(i, j int) { sources[i], sources[j] = sources[j], sources[i] })
			_, received, err := peers.FetchSymbolsCounted(context.Background(), target, sources[:k], true)
			if err != nil {
				b.Fatal(err)
			}
			withProofs += received
		}
		rs1dShard := (size + p.NP - 1) / p.NP
		b.ReportMetric(float64(stats.BytesReceived)/pairBytes, "repair-ratio")
		b.ReportMetric(float64(v2Bytes)/pairBytes, "repair-ratio-v2")
		b.ReportMetric(float64(withProofs)/pairBytes, "repair-ratio-proofs")
		b.ReportMetric(float64(size)/float64(rs1dShard), "repair-ratio-rs1d")
	})
}

// BenchmarkLineCodePath extends a 64 MiB blob's primary slivers (n = 100)
// with the codec's cached encoder, and reports x-one-goroutine-options: the
// same work with an encoder built WithMaxGoroutines(1), which keeps
// klauspost/reedsolomon on its AVX2 path for codes of more than 10 inputs
// even on CPUs with GFNI (cachedEncoder says why ours gets two). Below 1
// means the cached encoder is faster; on a CPU without GFNI both are ≈ 1.
func BenchmarkLineCodePath(b *testing.B) {
	c := mustCodec(b, 100)
	p := c.Params()
	s, _ := p.SymbolSize(64 << 20)
	k := p.SliverSymbols(crypto.Primary)
	line := make([]byte, p.Shards*s)
	for i := range line[:k*s] {
		line[i] = byte(i * 7)
	}
	shards := lineShards(line, p.Shards, s, func(int) bool { return true })
	single, err := reedsolomon.New(k, p.Shards-k, reedsolomon.WithMaxGoroutines(1), reedsolomon.WithInversionCache(false))
	if err != nil {
		b.Fatal(err)
	}
	cached := c.lineCode(crypto.Primary)
	var toSingle []float64
	b.SetBytes(int64(k * s))
	for b.Loop() {
		start := time.Now()
		if err := c.codeLine(shards, s, s, cached.Encode); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		toSingle = append(toSingle, ratio(took, meanTime(1, func() { _ = c.codeLine(shards, s, s, plainCode{single}.Encode) })))
		b.StartTimer()
	}
	b.ReportMetric(median(toSingle), "x-one-goroutine-options")
}

// BenchmarkEncodeReuse times encodes whose output is released and reused
// (WithBufferPool) against encodes into fresh memory, alternating one of
// each in the same process: x-fresh and x-fresh-cpu are the medians of the
// pairs' ratios (reused ÷ fresh) in wall and process CPU time, and
// faults/encode and fresh-faults/encode the page faults each took.
func BenchmarkEncodeReuse(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("n=%d/64MiB", n), func(b *testing.B) {
			size := 64 << 20
			pooled := mustCodec(b, n, WithBufferPool(benchBufferPool))
			fresh := mustCodec(b, n)
			blob := randomBlob(int64(size), size)
			mustEncode(b, pooled, blob).Release()
			mustEncode(b, fresh, blob)
			type took struct {
				wall, cpu time.Duration
				faults    int64
			}
			encode := func(c *Codec) took {
				start, cpu, faulted := time.Now(), cpuTime(), pageFaults()
				enc := mustEncode(b, c, blob)
				t := took{time.Since(start), cpuTime() - cpu, pageFaults() - faulted}
				enc.Release()
				return t
			}
			var wall, cpu, faults, freshFaults []float64
			pair := func(i int) {
				var p, f took
				if i%2 == 0 {
					p, f = encode(pooled), encode(fresh)
				} else {
					f, p = encode(fresh), encode(pooled)
				}
				wall = append(wall, ratio(p.wall, f.wall))
				cpu = append(cpu, ratio(p.cpu, f.cpu))
				faults = append(faults, float64(p.faults))
				freshFaults = append(freshFaults, float64(f.faults))
			}
			b.SetBytes(int64(2 * size))
			i := 0
			for b.Loop() {
				pair(i)
				i++
			}
			for ; i < minPairs; i++ {
				pair(i)
			}
			b.ReportMetric(median(wall), "x-fresh")
			b.ReportMetric(median(cpu), "x-fresh-cpu")
			b.ReportMetric(median(faults), "faults/encode")
			b.ReportMetric(median(freshFaults), "fresh-faults/encode")
		})
	}
}
