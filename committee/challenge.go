package committee

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Storage challenges (issue 8, DESIGN.md "Challenges"): the control plane
// commits a round — a seed nobody could know before, the blobs it samples
// and every committee member's held shards — collects the challengers'
// verdicts, and decides each node's outcome. Each node is judged only by
// its sample of challengers (challenge.Challengers: k stake-weighted draws
// from the seed, recomputed here, never stored): failed when a majority of
// the draws saw a bad proof, passed when a majority saw a good one, missed
// when the round closed with neither. A node with at most k peers is
// judged by all of them at f+1 shards, as before sampling. No clock
// decides an outcome.

// Challenge outcomes.
const (
	OutcomeOpen   = "open"
	OutcomePassed = "passed"
	OutcomeFailed = "failed"
	OutcomeMissed = "missed"
)

// Challenge commands.
const (
	KindStartChallenge  Kind = "start-challenge"
	KindCloseChallenge  Kind = "close-challenge"
	KindReportChallenge Kind = "report-challenge"
)

// StartChallenge opens a round; Fresh is the leader's random value for it.
type StartChallenge struct {
	Fresh [32]byte `json:"fresh"`
	// At is the leader's clock when it proposed the round (Unix ns): the
	// challenge window runs from here, whichever voter leads later.
	At int64 `json:"at,omitempty"`
	// Challengers is the draws per challenged node (challenge.Challengers);
	// 0 — as in commands logged before sampling — has every member judge
	// every node, so that replaying an old log rebuilds the same rounds.
	Challengers int `json:"challengers,omitempty"`
	// ShardsPerBlob is how many of a node's held shards are checked per
	// sampled blob (challenge.Positions); 0 — as in commands logged before
	// the bound — checks every held shard.
	ShardsPerBlob int `json:"shards_per_blob,omitempty"`
}

// CloseChallenge closes a round (if it is still open); round 0 is the latest.
type CloseChallenge struct {
	Round uint64 `json:"round"`
}

// ReportChallenge is a challenger's verdicts in a round.
type ReportChallenge struct {
	Round    uint64          `json:"round"`
	Reporter shardmap.NodeID `json:"reporter"`
	Verdicts []Verdict       `json:"verdicts"`
}

// Verdict is one challenger's judgement of one node's response.
type Verdict struct {
	Node   shardmap.NodeID `json:"node"`
	Passed bool            `json:"passed"`
	Reason string          `json:"reason,omitempty"`
}

// ChallengeRound is a round as committed.
type ChallengeRound struct {
	Round         uint64           `json:"round"`
	Epoch         uint64           `json:"epoch"`
	Seed          challenge.Seed   `json:"seed"`
	OpenedIndex   uint64           `json:"opened_index"`
	OpenedAt      int64            `json:"opened_at,omitempty"` // the proposing leader's clock, Unix ns
	Open          bool             `json:"open"`
	Challengers   int              `json:"challengers,omitempty"`     // draws per node; 0: everyone (rounds before sampling)
	ShardsPerBlob int              `json:"shards_per_blob,omitempty"` // held shards checked per blob; 0: all (rounds before the bound)
	Blobs         []crypto.BlobID  `json:"blobs"`
	Nodes         []ChallengedNode `json:"nodes"` // by node ID
}

// ChallengedNode is one committee member's part of a round.
type ChallengedNode struct {
	Node      shardmap.NodeID   `json:"node"`
	Shards    []uint32          `json:"shards"` // held: what it must prove
	Outcome   string            `json:"outcome"`
	Passed    uint64            `json:"passed_weight"` // votes: shards, or draws when sampled
	Failed    uint64            `json:"failed_weight"`
	Reporters []shardmap.NodeID `json:"reporters,omitempty"` // rounds recorded before sampling only
	// Reported is a bitmap over the node's sample (challenge.Sample order):
	// which challengers have reported, at most k bits, not one ID each.
	Reported []byte   `json:"reported,omitempty"`
	Reasons  []string `json:"reasons,omitempty"`
}

// reported tells whether a challenger (at position i of the node's sample)
// has reported on it already; rounds recorded before sampling list names.
func (n *ChallengedNode) reported(i int, reporter shardmap.NodeID) bool {
	return (i/8 < len(n.Reported) && n.Reported[i/8]&(1<<(i%8)) != 0) || slices.Contains(n.Reporters, reporter)
}

func (n *ChallengedNode) markReported(i, sampleSize int) {
	if len(n.Reported) < (sampleSize+7)/8 {
		n.Reported = append(n.Reported, make([]byte, (sampleSize+7)/8-len(n.Reported))...)
	}
	n.Reported[i/8] |= 1 << (i % 8)
}

func (r *ChallengeRound) node(id shardmap.NodeID) *ChallengedNode {
	i, ok := slices.BinarySearchFunc(r.Nodes, id, func(n ChallengedNode, id shardmap.NodeID) int { return cmp.Compare(n.Node, id) })
	if !ok {
		return nil
	}
	return &r.Nodes[i]
}

var (
	bucketCertified  = []byte("certified")  // u64 certification sequence → blob ID, live certified blobs
	bucketChallenges = []byte("challenges") // u64 round → ChallengeRound

	keyCertSeq      = []byte("cert-seq")       // next certification sequence number
	keyEpochCertSeq = []byte("epoch-cert-seq") // the sequence number when the current epoch started
	keyRound        = []byte("challenge-round")
)

const (
	maxReasons      = 8
	maxReasonLength = 300
	// historyRounds is how many recent rounds node listings show.
	historyRounds = 8
)

// noteCertified appends a newly certified blob to the sampling sequence.
func noteCertified(tx *bolt.Tx, rec *BlobRecord) error {
	meta := tx.Bucket(bucketMeta)
	seq := readU64(meta, keyCertSeq)
	if err := tx.Bucket(bucketCertified).Put(u64Key(seq), rec.ID[:]); err != nil {
		return err
	}
	rec.CertSeq = seq + 1
	return meta.Put(keyCertSeq, u64Key(seq+1))
}

// forgetCertified drops a blob that expired or turned invalid from the
// sampling sequence.
func forgetCertified(tx *bolt.Tx, rec BlobRecord) error {
	if rec.CertSeq == 0 {
		return nil
	}
	return tx.Bucket(bucketCertified).Delete(u64Key(rec.CertSeq - 1))
}

// markEpochStart records where the new epoch's certifications begin: a
// round samples only blobs certified in earlier epochs, which every honest
// holder has had an epoch to receive or recover.
func markEpochStart(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	return meta.Put(keyEpochCertSeq, u64Key(readU64(meta, keyCertSeq)))
}

func readRound(tx *bolt.Tx, round uint64) (ChallengeRound, bool, error) {
	var r ChallengeRound
	found, err := getJSON(tx.Bucket(bucketChallenges), u64Key(round), &r)
	return r, found, err
}

func (f *FSM) startChallenge(tx *bolt.Tx, index uint64, c StartChallenge, res *Result) ([]Event, *CommandError) {
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if state.Epoch() == 0 {
		return nil, reject(CodeFailedPrecondition, "no committee yet: advance to epoch 1 first")
	}
	if c.Challengers < 0 || c.Challengers > challenge.MaxChallengers {
		return nil, reject(CodeInvalidArgument, "%d challengers per node: want 0 to %d", c.Challengers, challenge.MaxChallengers)
	}
	if c.ShardsPerBlob < 0 || c.ShardsPerBlob > challenge.MaxShardsPerBlob {
		return nil, reject(CodeInvalidArgument, "%d shards per blob: want 0 to %d", c.ShardsPerBlob, challenge.MaxShardsPerBlob)
	}
	events, cerr := f.closeOpenRound(tx, index)
	if cerr != nil {
		return nil, cerr
	}
	meta := tx.Bucket(bucketMeta)
	round := readU64(meta, keyRound) + 1
	r := ChallengeRound{Round: round, Epoch: state.Epoch(), OpenedIndex: index, OpenedAt: c.At, Open: true,
		Challengers: c.Challengers, ShardsPerBlob: c.ShardsPerBlob, Seed: challenge.DeriveSeed(state.Epoch(), round, index, c.Fresh)}
	r.Blobs = challenge.SampleBlobs(r.Seed, challenge.DefaultSamples, readU64(meta, keyEpochCertSeq), certifiedLookup(tx), certifiedNext(tx))
	held := map[shardmap.NodeID][]uint32{}
	for shard, holder := range state.Holders() {
		held[holder] = append(held[holder], uint32(shard))
	}
	for node := range state.Map().Counts() {
		r.Nodes = append(r.Nodes, ChallengedNode{Node: node, Shards: held[node], Outcome: OutcomeOpen})
	}
	slices.SortFunc(r.Nodes, func(a, b ChallengedNode) int { return cmp.Compare(a.Node, b.Node) })
	if err := putJSON(tx.Bucket(bucketChallenges), u64Key(round), r); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := meta.Put(keyRound, u64Key(round)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	f.metrics.challenges.Inc()
	res.Epoch = round // a start-challenge result carries the round number here
	return append(events, Event{Index: index, Kind: control.EventChallengeStarted, Epoch: state.Epoch()}), nil
}

func certifiedLookup(tx *bolt.Tx) challenge.Lookup {
	b := tx.Bucket(bucketCertified)
	return func(seq uint64) (crypto.BlobID, bool) {
		var id crypto.BlobID
		raw := b.Get(u64Key(seq))
		if raw == nil {
			return id, false
		}
		copy(id[:], raw)
		return id, true
	}
}

func certifiedNext(tx *bolt.Tx) challenge.Next {
	c := tx.Bucket(bucketCertified).Cursor()
	return func(seq uint64) (uint64, crypto.BlobID, bool) {
		var id crypto.BlobID
		k, v := c.Seek(u64Key(seq))
		if k == nil {
			return 0, id, false
		}
		copy(id[:], v)
		return binary.BigEndian.Uint64(k), id, true
	}
}

// closeOpenRound closes the latest round if it is open: nodes still
// without an outcome missed it.
func (f *FSM) closeOpenRound(tx *bolt.Tx, index uint64) ([]Event, *CommandError) {
	round := readU64(tx.Bucket(bucketMeta), keyRound)
	if round == 0 {
		return nil, nil
	}
	return f.closeRound(tx, index, round)
}

func (f *FSM) closeRound(tx *bolt.Tx, index, round uint64) ([]Event, *CommandError) {
	r, found, err := readRound(tx, round)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if !found {
		return nil, reject(CodeNotFound, "no challenge round %d", round)
	}
	if !r.Open {
		return nil, nil
	}
	r.Open = false
	for i := range r.Nodes {
		if r.Nodes[i].Outcome == OutcomeOpen {
			r.Nodes[i].Outcome = OutcomeMissed
			f.metrics.challengeOutcomes.WithLabelValues(OutcomeMissed).Inc()
		}
	}
	if err := putJSON(tx.Bucket(bucketChallenges), u64Key(round), r); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return []Event{{Index: index, Kind: control.EventChallengeClosed, Epoch: r.Epoch}}, nil
}

func (f *FSM) reportChallenge(tx *bolt.Tx, index uint64, c ReportChallenge) ([]Event, *CommandError) {
	r, found, err := readRound(tx, c.Round)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if !found {
		return nil, reject(CodeNotFound, "no challenge round %d", c.Round)
	}
	if !r.Open {
		return nil, reject(CodeFailedPrecondition, "challenge round %d is closed", c.Round)
	}
	committee, found, err := readCommittee(tx, r.Epoch)
	if err != nil || !found {
		return nil, reject(CodeFailedPrecondition, "no committee for epoch %d", r.Epoch)
	}
	if !slices.ContainsFunc(committee.Members, func(m Member) bool { return m.Node == c.Reporter && m.Weight > 0 }) {
		return nil, reject(CodePermissionDenied, "%s is not a member of epoch %d's committee", c.Reporter, r.Epoch)
	}
	counted, cerr := sampledVerdicts(&r, committee, c)
	if cerr != nil {
		return nil, cerr // the whole report is refused: nothing is counted
	}
	var events []Event
	for _, v := range counted {
		if ev, changed := f.countVerdict(&r, v, c.Reporter); changed {
			events = append(events, Event{Index: index, Kind: control.ChallengeOutcome(ev), Epoch: r.Epoch, Node: v.Node})
		}
	}
	decided := !slices.ContainsFunc(r.Nodes, func(n ChallengedNode) bool { return n.Outcome == OutcomeOpen })
	if decided {
		r.Open = false // every node has its outcome: the embargo can end now
		events = append(events, Event{Index: index, Kind: control.EventChallengeClosed, Epoch: r.Epoch})
	}
	if err := putJSON(tx.Bucket(bucketChallenges), u64Key(c.Round), r); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return events, nil
}

// sampledVerdict is a verdict that counts: its node, the reporter's place
// in the node's sample, and the votes and threshold that sample gives.
type sampledVerdict struct {
	Verdict
	position, size int
	votes, need    uint64
}

// sampledVerdicts checks every verdict of a report before any counts: each
// names a node of the round other than the reporter, and the reporter must
// be among that node's sampled challengers. A repeated verdict (same node
// in one report, or reported before) is dropped: one per challenger.
func sampledVerdicts(r *ChallengeRound, committee CommitteeRecord, c ReportChallenge) ([]sampledVerdict, *CommandError) {
	members := make([]challenge.Member, len(committee.Members))
	for i, m := range committee.Members {
		members[i] = challenge.Member{Node: string(m.Node), Weight: uint64(m.Weight)}
	}
	sampler := challenge.NewSampler(r.Seed, members, r.Challengers)
	seen := map[shardmap.NodeID]bool{}
	var out []sampledVerdict
	for _, v := range c.Verdicts {
		n := r.node(v.Node)
		if n == nil {
			return nil, reject(CodeInvalidArgument, "node %s is not challenged in round %d", v.Node, c.Round)
		}
		if v.Node == c.Reporter {
			return nil, reject(CodeInvalidArgument, "%s cannot judge itself", c.Reporter)
		}
		if seen[v.Node] {
			continue
		}
		seen[v.Node] = true
		sample := sampler.Of(string(v.Node))
		i := sample.Index(string(c.Reporter))
		if i < 0 {
			return nil, reject(CodePermissionDenied, "%s is not among the %d sampled challengers of %s in round %d",
				c.Reporter, len(sample.Challengers), v.Node, c.Round)
		}
		if n.reported(i, c.Reporter) {
			continue
		}
		out = append(out, sampledVerdict{Verdict: v, position: i, size: len(sample.Challengers),
			votes: sample.Challengers[i].Votes, need: sample.Need})
	}
	return out, nil
}

// countVerdict adds one challenger's votes to a node and returns its new
// outcome if that changed: failed at the sample's threshold (over passed:
// when everyone judges at f+1, both can be reached), passed at it if the
// node was still open.
func (f *FSM) countVerdict(r *ChallengeRound, v sampledVerdict, reporter shardmap.NodeID) (string, bool) {
	n := r.node(v.Node)
	n.markReported(v.position, v.size)
	if v.Passed {
		n.Passed += v.votes
	} else {
		n.Failed += v.votes
		if len(n.Reasons) < maxReasons {
			reason := string(reporter) + ": " + v.Reason
			n.Reasons = append(n.Reasons, reason[:min(len(reason), maxReasonLength)])
		}
	}
	outcome := n.Outcome
	switch {
	case n.Failed >= v.need:
		outcome = OutcomeFailed
	case n.Passed >= v.need && n.Outcome == OutcomeOpen:
		outcome = OutcomePassed
	}
	if outcome == n.Outcome {
		return "", false
	}
	n.Outcome = outcome
	f.metrics.challengeOutcomes.WithLabelValues(outcome).Inc()
	return outcome, true
}

func readCommittee(tx *bolt.Tx, epoch uint64) (CommitteeRecord, bool, error) {
	var rec CommitteeRecord
	found, err := getJSON(tx.Bucket(bucketCommittees), u64Key(epoch), &rec)
	return rec, found, err
}

// Challenge returns a round (0: the latest) and whether it exists.
func (f *FSM) Challenge(round uint64) (r ChallengeRound, found bool, index uint64, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		index = readApplied(tx)
		if round == 0 {
			if round = readU64(tx.Bucket(bucketMeta), keyRound); round == 0 {
				return nil
			}
		}
		r, found, err = readRound(tx, round)
		return err
	})
	return r, found, index, err
}

// ChallengeHistory returns each node's outcomes in the last rounds it was
// challenged in, newest first.
func (f *FSM) ChallengeHistory(rounds int) (map[shardmap.NodeID][]string, error) {
	out := map[shardmap.NodeID][]string{}
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChallenges).Cursor()
		seen := 0
		for k, v := c.Last(); k != nil && seen < rounds; k, v = c.Prev() {
			var r ChallengeRound
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			for _, n := range r.Nodes {
				out[n.Node] = append(out[n.Node], n.Outcome)
			}
			seen++
		}
		return nil
	})
	return out, err
}

// evictable returns the nodes with stake whose last k closed rounds (in
// which they were challenged) were all failed or missed.
func evictable(tx *bolt.Tx, k int) ([]shardmap.NodeID, error) {
	if k <= 0 {
		return nil, nil
	}
	bad := map[shardmap.NodeID]int{}   // consecutive non-passed closed rounds, newest first
	done := map[shardmap.NodeID]bool{} // streak already broken
	c := tx.Bucket(bucketChallenges).Cursor()
	for key, v := c.Last(); key != nil; key, v = c.Prev() {
		var r ChallengeRound
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, err
		}
		if r.Open {
			continue
		}
		for _, n := range r.Nodes {
			if done[n.Node] {
				continue
			}
			if n.Outcome == OutcomePassed {
				done[n.Node] = true
			} else if bad[n.Node]++; bad[n.Node] >= k {
				done[n.Node] = true
			}
		}
	}
	var out []shardmap.NodeID
	nodes := tx.Bucket(bucketNodes)
	for node, streak := range bad {
		var rec NodeRecord
		if streak >= k {
			if found, err := getJSON(nodes, []byte(node), &rec); err == nil && found && rec.Stake > 0 {
				out = append(out, node)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// evict applies an epoch change's evictions: each listed node must still
// qualify (its last EvictAfter closed rounds all failed or missed), and
// its stake drops to 0 so that this and later shard maps leave it out.
func (f *FSM) evict(tx *bolt.Tx, index uint64, c AdvanceEpoch) ([]Event, *CommandError) {
	if len(c.Evict) == 0 {
		return nil, nil
	}
	due, err := evictable(tx, c.EvictAfter)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	var events []Event
	for _, node := range c.Evict {
		if !slices.Contains(due, node) {
			return nil, reject(CodeInvalidArgument, "node %s has not failed or missed its last %d challenge rounds", node, c.EvictAfter)
		}
		if _, cerr := f.updateNode(tx, index, node, control.EventStakeSet, func(n *NodeRecord) *CommandError {
			n.Stake = 0
			return nil
		}); cerr != nil {
			return nil, cerr
		}
		events = append(events, Event{Index: index, Kind: control.EventNodeEvicted, Node: node})
	}
	return events, nil
}

// Evictable lists the nodes an epoch change with --auto-evict k would
// evict now.
func (f *FSM) Evictable(k int) (nodes []shardmap.NodeID, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		nodes, err = evictable(tx, k)
		return err
	})
	return nodes, err
}
