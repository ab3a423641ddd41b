package coding

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/weftstore/weft/crypto"
)

// checkTarget validates a sliver to be rebuilt.
func (p Params) checkTarget(target SliverRef) error {
	if !target.Axis.Valid() || int64(target.Index) >= int64(p.Shards) {
		return fmt.Errorf("coding: cannot recover %s of a %d-shard blob", target, p.Shards)
	}
	return nil
}

// checkSymbol checks that a symbol is shaped for target: from a sliver of
// the other axis, at the target's position, of the blob's symbol size.
func (p Params) checkSymbol(sym RecoverySymbol, target SliverRef, s int) error {
	switch {
	case sym.TargetRef() != target:
		return fmt.Errorf("symbol is for %s", sym.TargetRef())
	case int64(sym.Source) >= int64(p.Shards):
		return fmt.Errorf("source index %d out of range", sym.Source)
	case len(sym.Data) != s:
		return fmt.Errorf("%d bytes, the blob's symbols have %d", len(sym.Data), s)
	}
	return nil
}

// rebuild decodes target from symbols at distinct source positions (at
// least as many as the target's sliver has symbols) and returns the sliver
// and the Merkle root over its extended line.
func (c *Codec) rebuild(target SliverRef, s int, symbols []RecoverySymbol) (Sliver, crypto.Digest, error) {
	n, k := c.params.Shards, c.params.SliverSymbols(target.Axis)
	line := make([]byte, n*s)
	have := make([]bool, n)
	for _, sym := range symbols {
		copy(line[int(sym.Source)*s:], sym.Data)
		have[sym.Source] = true
	}
	shards := lineShards(line, n, s, func(x int) bool { return have[x] })
	if err := c.reconstructLine(c.lineCode(target.Axis), shards, s); err != nil {
		return Sliver{}, crypto.Digest{}, fmt.Errorf("coding: rebuilding %s: %w", target, err)
	}
	root := crypto.MerkleRoot(c.lineLeaves(lineShards(line, n, s, func(int) bool { return true })), nil)
	data := slices.Clone(line[:k*s])
	return Sliver{SliverRef: target, SymbolSize: s, Data: data}, root, nil
}

// RecoverSliver rebuilds target from symbols that carry Merkle proofs
// (primary sliver i from nS symbols M[i][j], secondary sliver j from nP
// symbols M[i][j]). Symbols whose proof fails are set aside; if the
// verified ones rebuild a sliver that does not match the metadata, the
// error is an *InconsistencyError holding the proof of it.
func (c *Codec) RecoverSliver(meta *crypto.Metadata, target SliverRef, symbols []RecoverySymbol) (Sliver, error) {
	s, err := c.checkMetadata(meta)
	if err != nil {
		return Sliver{}, err
	}
	if err := c.params.checkTarget(target); err != nil {
		return Sliver{}, err
	}
	set := newSymbolSet(c.params, meta, target, s)
	for _, sym := range symbols {
		set.add(sym, true)
	}
	return c.finishVerified(meta, target, s, set)
}

// finishVerified rebuilds from a set of verified symbols.
func (c *Codec) finishVerified(meta *crypto.Metadata, target SliverRef, s int, set *symbolSet) (Sliver, error) {
	k := c.params.SliverSymbols(target.Axis)
	if len(set.order) < k {
		return Sliver{}, &NotEnoughSymbolsError{Target: target, Need: k, Have: len(set.order), Rejected: set.rejected}
	}
	used := set.first(k)
	sl, root, err := c.rebuild(target, s, used)
	if err != nil {
		return Sliver{}, err
	}
	want, _ := meta.SliverHash(target.Axis, target.Index)
	if root != want {
		proof := &InconsistencyProof{BlobID: meta.BlobID(), Metadata: meta, Target: target, Symbols: used}
		return Sliver{}, &InconsistencyError{Proof: proof, Rebuilt: root, Committed: want}
	}
	return sl, nil
}

// symbolSet collects the symbols for one target, one per source, in
// arrival order, and what was rejected.
type symbolSet struct {
	params   Params
	meta     *crypto.Metadata
	target   SliverRef
	s        int
	bySource map[uint32]RecoverySymbol
	order    []uint32
	rejected []*SymbolError
}

func newSymbolSet(p Params, meta *crypto.Metadata, target SliverRef, s int) *symbolSet {
	return &symbolSet{params: p, meta: meta, target: target, s: s, bySource: map[uint32]RecoverySymbol{}}
}

// add takes a symbol if it is well formed, new, and — when verify is set —
// its proof checks out; otherwise it records why not.
func (set *symbolSet) add(sym RecoverySymbol, verify bool) bool {
	err := set.params.checkSymbol(sym, set.target, set.s)
	if err == nil {
		if _, dup := set.bySource[sym.Source]; dup {
			err = fmt.Errorf("a second symbol from the same source")
		}
	}
	if err == nil && verify {
		err = sym.Verify(set.meta)
	}
	if err != nil {
		set.rejected = append(set.rejected, &SymbolError{Source: sym.SourceRef(), Target: set.target, Err: err})
		return false
	}
	set.bySource[sym.Source] = sym
	set.order = append(set.order, sym.Source)
	return true
}

// first returns the first k symbols, sorted by source for a canonical proof.
func (set *symbolSet) first(k int) []RecoverySymbol {
	out := make([]RecoverySymbol, 0, k)
	for _, src := range set.order[:k] {
		out = append(out, set.bySource[src])
	}
	slices.SortFunc(out, func(a, b RecoverySymbol) int { return int(a.Source) - int(b.Source) })
	return out
}

// SymbolFetcher gets recovery symbols from peers; it is the only I/O that
// recovery needs, and the caller supplies it.
type SymbolFetcher interface {
	// FetchSymbols asks the holders of the listed source slivers (all of
	// the axis opposite to target) for their symbol at position
	// target.Index, with Merkle proofs if withProofs. It returns what it
	// got, in any order: a holder that is down, slow or refuses is simply
	// absent. An error (such as a cancelled context) ends the recovery.
	FetchSymbols(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error)
}

// CountingFetcher is a SymbolFetcher that also says how many bytes arrived
// for what it returns. Recovery counts a plain fetcher's symbols at their
// own encoded length, which is what travels when peers answer symbol by
// symbol; when they answer in batches (SymbolBatch) the bytes on the wire
// are the batches', shared by their symbols, and only the fetcher saw
// them — and bytes of answers it had to drop, too.
type CountingFetcher interface {
	SymbolFetcher
	// FetchSymbolsCounted is FetchSymbols that also returns the bytes
	// received from peers for the call: the encoded length of every answer
	// that arrived, whether or not its symbols were usable.
	FetchSymbolsCounted(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) (symbols []RecoverySymbol, received int64, err error)
}

// SymbolFetcherFunc adapts a function to SymbolFetcher.
type SymbolFetcherFunc func(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error)

// FetchSymbols calls f.
func (f SymbolFetcherFunc) FetchSymbols(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error) {
	return f(ctx, target, sources, withProofs)
}

// RecoveryStats counts what a recovery received.
type RecoveryStats struct {
	Requests        int   // FetchSymbols calls
	SymbolsReceived int   // symbols the fetcher returned, good or bad
	BytesReceived   int64 // their encoded size: data, headers and proofs (a CountingFetcher's count)
	ProofBytes      int64 // the part of BytesReceived that was proofs
	UsedProofs      bool  // the optimistic attempt failed and proofs were fetched
	// Faulty names sources whose symbol failed its proof or was malformed.
	Faulty []SliverRef
}

func (st *RecoveryStats) add(o RecoveryStats) {
	st.Requests += o.Requests
	st.SymbolsReceived += o.SymbolsReceived
	st.BytesReceived += o.BytesReceived
	st.ProofBytes += o.ProofBytes
	st.UsedProofs = st.UsedProofs || o.UsedProofs
	st.Faulty = append(st.Faulty, o.Faulty...)
}

// RecoverOption configures Recover.
type RecoverOption func(*recoverConfig)

type recoverConfig struct {
	exclude map[uint32]bool
	local   []RecoverySymbol
	rng     *rand.Rand
}

// ExcludeSources keeps recovery from asking the holders of these source
// slivers (for example the recovering node's own lost sliver).
func ExcludeSources(sources ...uint32) RecoverOption {
	return func(c *recoverConfig) {
		for _, s := range sources {
			c.exclude[s] = true
		}
	}
}

// WithLocalSymbols supplies symbols the caller computed itself from
// slivers it holds (with proofs); they count as verified and cost nothing.
func WithLocalSymbols(symbols ...RecoverySymbol) RecoverOption {
	return func(c *recoverConfig) { c.local = append(c.local, symbols...) }
}

// WithRand sets the source of the order in which peers are asked (spread
// load over peers); tests pass a seeded one.
func WithRand(r *rand.Rand) RecoverOption { return func(c *recoverConfig) { c.rng = r } }

// Recover rebuilds one sliver from its peers, optimistically (DESIGN §3):
// it fetches just enough symbols without proofs, rebuilds, and checks the
// result against the metadata. Only on a mismatch does it fetch proofs,
// drop the symbols that fail them, top up from other peers, and rebuild
// from verified symbols — which either matches or yields an
// *InconsistencyError carrying the proof that the blob is inconsistent.
func (c *Codec) Recover(ctx context.Context, meta *crypto.Metadata, target SliverRef, fetch SymbolFetcher, opts ...RecoverOption) (Sliver, RecoveryStats, error) {
	var stats RecoveryStats
	s, err := c.checkMetadata(meta)
	if err != nil {
		return Sliver{}, stats, err
	}
	if err := c.params.checkTarget(target); err != nil {
		return Sliver{}, stats, err
	}
	cfg := recoverConfig{exclude: map[uint32]bool{}}
	for _, o := range opts {
		o(&cfg)
	}
	r := &recovery{codec: c, meta: meta, target: target, s: s, fetch: fetch, stats: &stats}
	r.candidates = r.sourceOrder(cfg)

	// Optimistic attempt: no proofs.
	fast := newSymbolSet(c.params, meta, target, s)
	for _, sym := range cfg.local {
		fast.add(sym, true)
	}
	if err := r.collect(ctx, fast, false); err != nil {
		return Sliver{}, stats, err
	}
	k := c.params.SliverSymbols(target.Axis)
	if len(fast.order) < k {
		return Sliver{}, stats, &NotEnoughSymbolsError{Target: target, Need: k, Have: len(fast.order), Rejected: fast.rejected}
	}
	sl, root, err := c.rebuild(target, s, fast.first(k))
	if err != nil {
		return Sliver{}, stats, err
	}
	if want, _ := meta.SliverHash(target.Axis, target.Index); root == want {
		return sl, stats, nil
	}

	// Slow path: ask the same peers again, this time for proofs, then others.
	stats.UsedProofs = true
	verified := newSymbolSet(c.params, meta, target, s)
	local := map[uint32]bool{}
	for _, sym := range cfg.local {
		if verified.add(sym, true) {
			local[sym.Source] = true
		}
	}
	var again []uint32
	for _, src := range fast.order {
		if !local[src] {
			again = append(again, src)
		}
	}
	r.candidates = append(again, r.candidates...)
	if err := r.collect(ctx, verified, true); err != nil {
		return Sliver{}, stats, err
	}
	sl, err = c.finishVerified(meta, target, s, verified)
	return sl, stats, err
}

// recovery is the state of one Recover call.
type recovery struct {
	codec      *Codec
	meta       *crypto.Metadata
	target     SliverRef
	s          int
	fetch      SymbolFetcher
	stats      *RecoveryStats
	candidates []uint32 // sources not asked yet in this round, in order
}

// sourceOrder lists every source sliver index in random order, minus the
// excluded ones and those a local symbol already covers.
func (r *recovery) sourceOrder(cfg recoverConfig) []uint32 {
	skip := maps.Clone(cfg.exclude)
	for _, sym := range cfg.local {
		skip[sym.Source] = true
	}
	var out []uint32
	for x := range uint32(r.codec.params.Shards) {
		if !skip[x] {
			out = append(out, x)
		}
	}
	shuffle := rand.Shuffle
	if cfg.rng != nil {
		shuffle = cfg.rng.Shuffle
	}
	shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// collect asks candidates, as many at a time as are still missing, until
// set holds enough symbols or no candidate is left.
func (r *recovery) collect(ctx context.Context, set *symbolSet, withProofs bool) error {
	k := r.codec.params.SliverSymbols(r.target.Axis)
	for len(set.order) < k && len(r.candidates) > 0 {
		ask := r.candidates[:min(k-len(set.order), len(r.candidates))]
		r.candidates = r.candidates[len(ask):]
		got, received, err := r.fetchSymbols(ctx, slices.Clone(ask), withProofs)
		r.stats.Requests++
		r.stats.BytesReceived += received
		if err != nil {
			return fmt.Errorf("coding: fetching symbols for %s: %w", r.target, err)
		}
		asked := make(map[uint32]bool, len(ask))
		for _, x := range ask {
			asked[x] = true
		}
		for _, sym := range got {
			r.stats.SymbolsReceived++
			if sym.Proof != nil {
				r.stats.ProofBytes += int64(sym.Proof.EncodedLen())
			}
			if !asked[sym.Source] {
				set.rejected = append(set.rejected, &SymbolError{Source: sym.SourceRef(), Target: r.target, Err: fmt.Errorf("not asked for")})
				continue
			}
			delete(asked, sym.Source) // one answer per source counts
			if !set.add(sym, withProofs) && withProofs {
				r.stats.Faulty = append(r.stats.Faulty, sym.SourceRef())
			}
		}
	}
	return nil
}

// fetchSymbols asks the fetcher and returns the bytes received: a
// CountingFetcher's count, or else the symbols' own encoded lengths.
func (r *recovery) fetchSymbols(ctx context.Context, ask []uint32, withProofs bool) ([]RecoverySymbol, int64, error) {
	if cf, ok := r.fetch.(CountingFetcher); ok {
		return cf.FetchSymbolsCounted(ctx, r.target, ask, withProofs)
	}
	got, err := r.fetch.FetchSymbols(ctx, r.target, ask, withProofs)
	var received int64
	for _, sym := range got {
		received += int64(sym.EncodedLen())
	}
	return got, received, err
}

// RecoverPair rebuilds both slivers of a pair a node lost. The secondary
// sliver goes first: it needs only nP symbols. Its own symbol for the
// primary then counts as a source, so the primary needs nS−1 more — at n=4
// with one shard silent, that is the only order that finishes (DESIGN §3).
func (c *Codec) RecoverPair(ctx context.Context, meta *crypto.Metadata, pair int, fetch SymbolFetcher, opts ...RecoverOption) (SliverPair, RecoveryStats, error) {
	var total RecoveryStats
	if pair < 0 || pair >= c.params.Shards {
		return SliverPair{}, total, fmt.Errorf("coding: pair %d of a %d-shard blob", pair, c.params.Shards)
	}
	primary := uint32(pair)
	secondary := uint32(c.params.PairSliver(pair, crypto.Secondary))
	// The node's own primary is lost, so it is not a source for the secondary.
	sec, stats, err := c.Recover(ctx, meta, SliverRef{crypto.Secondary, secondary}, fetch,
		append(slices.Clone(opts), ExcludeSources(primary))...)
	total.add(stats)
	if err != nil {
		return SliverPair{}, total, err
	}
	ext, err := c.Extend(meta, sec)
	if err != nil {
		return SliverPair{}, total, err
	}
	own, err := ext.Symbol(int(primary), true)
	if err != nil {
		return SliverPair{}, total, err
	}
	pri, stats, err := c.Recover(ctx, meta, SliverRef{crypto.Primary, primary}, fetch,
		append(slices.Clone(opts), WithLocalSymbols(own))...)
	total.add(stats)
	if err != nil {
		return SliverPair{}, total, err
	}
	return SliverPair{Index: uint32(pair), Primary: pri, Secondary: sec}, total, nil
}
