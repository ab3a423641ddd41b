package netview

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"
	"unicode/utf8"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// Node health (DESIGN.md, "Node health").
const (
	// HealthUp: the node answered NodeStatus and follows the current
	// epoch.
	HealthUp = "up"
	// HealthLagging: it answered, but follows an earlier epoch.
	HealthLagging = "lagging"
	// HealthDown: no answer within the node timeout (Node.Error says
	// what happened), or no address, or an answer from another node.
	HealthDown = "down"
)

// A moved shard's handover state (DESIGN.md, "Handover states"), first
// rule that applies wins.
const (
	// StateSynced: the control plane records the owner as its holder.
	StateSynced = "synced"
	// StateSyncing: the owner lists it among the shards it is syncing.
	StateSyncing = "syncing"
	// StateForced: a forced epoch change carried it over unsynced.
	StateForced = "forced"
	// StateStuck: its owner or its source is down.
	StateStuck = "stuck"
	// StateWaiting: anything else — the owner has not started on it yet
	// (or is behind on the epoch), or has finished and the control plane
	// has yet to record it.
	StateWaiting = "waiting"
)

// Snapshot is the JSON of GET /v1/network (DESIGN.md, "JSON"). Nodes are
// listed once; everything else names a node by its index in Nodes.
type Snapshot struct {
	// GeneratedAt is when the snapshot was made, RefreshMS how long that
	// took, IntervalMS the least time between two snapshots (a page polls
	// at that pace). The ETag leaves these three out.
	GeneratedAt time.Time `json:"generated_at"`
	RefreshMS   int64     `json:"refresh_ms"`
	IntervalMS  int64     `json:"interval_ms"`

	Index  uint64 `json:"index"`  // the control plane's state index read at
	Epoch  uint64 `json:"epoch"`  // the current epoch
	Phase  string `json:"phase"`  // "stable" or "handover"
	Shards int    `json:"shards"` // n
	Voter  string `json:"voter"`  // the voter that answered
	Leader string `json:"leader"` // the leader as that voter knows it

	Nodes  []Node       `json:"nodes"`
	Health HealthCounts `json:"health"`
	// Owners and Holders are per shard the index in Nodes of its owner
	// this epoch and of the node holding its data (the owner once
	// synced; the node it is copied from until then); -1: none.
	Owners  []int `json:"owners"`
	Holders []int `json:"holders"`

	Handover Handover `json:"handover"`
	// Challenge is the latest storage-challenge round (null: none yet, or
	// it could not be read — ChallengeError says why).
	Challenge      *Challenge `json:"challenge"`
	ChallengeError string     `json:"challenge_error,omitempty"`
	Blobs          Blobs      `json:"blobs"`
}

// Node is one registered storage node (or, Registered false, a node the
// shard map names that the registry no longer has).
type Node struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Stake   uint64 `json:"stake"`
	Shards  int    `json:"shards"` // owned this epoch
	// Health is up, lagging or down; Error the reason it is down.
	Health string `json:"health"`
	Error  string `json:"error,omitempty"`
	// From its NodeStatus (absent when down): the epoch and control-plane
	// index it follows, the shards it synced this epoch and those it is
	// syncing, the blobs waiting for recovery, the handover bytes copied
	// from holders and rebuilt from peers since it started.
	Epoch      uint64 `json:"epoch,omitempty"`
	StateIndex uint64 `json:"state_index,omitempty"`
	Synced     uint32 `json:"synced"`
	Syncing    []int  `json:"syncing,omitempty"`
	Backlog    uint64 `json:"backlog"`
	Copied     uint64 `json:"copied,omitempty"`
	Rebuilt    uint64 `json:"rebuilt,omitempty"`
	// History is its last challenge outcomes, newest first (passed,
	// failed, missed, open); Flagged: the latest closed one was not passed.
	History    []string `json:"history,omitempty"`
	Flagged    bool     `json:"flagged,omitempty"`
	Registered bool     `json:"registered"`
}

// HealthCounts counts the nodes by health.
type HealthCounts struct {
	Up      int `json:"up"`
	Lagging int `json:"lagging"`
	Down    int `json:"down"`
}

// Handover is the current epoch's handover: the shards its change moved,
// each with its source and state.
type Handover struct {
	Epoch        uint64 `json:"epoch"`
	StartedIndex uint64 `json:"started_index"` // the Raft index of the epoch change (0: unknown)
	Forced       bool   `json:"forced"`
	// InProgress: the control plane's phase is handover.
	InProgress bool        `json:"in_progress"`
	Moved      int         `json:"moved"`
	Counts     StateCounts `json:"counts"`
	// Shards, From and States are parallel, one entry per moved shard:
	// the shard, its source (index in Nodes, -1: none) and its state.
	Shards []int    `json:"shards"`
	From   []int    `json:"from"`
	States []string `json:"states"`
	// Carried lists the shards a forced change left unsynced.
	Carried []int `json:"carried,omitempty"`
}

// StateCounts counts the moved shards by handover state.
type StateCounts struct {
	Synced  int `json:"synced"`
	Syncing int `json:"syncing"`
	Waiting int `json:"waiting"`
	Stuck   int `json:"stuck"`
	Forced  int `json:"forced"`
}

// Challenge is a storage-challenge round and its verdicts.
type Challenge struct {
	Round    uint64        `json:"round"`
	Epoch    uint64        `json:"epoch"`
	Open     bool          `json:"open"`
	Blobs    int           `json:"blobs"` // blobs sampled
	Counts   OutcomeCounts `json:"counts"`
	Verdicts []Verdict     `json:"verdicts"`
}

// OutcomeCounts counts a round's challenged nodes by outcome.
type OutcomeCounts struct {
	Open   int `json:"open"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	Missed int `json:"missed"`
}

// Verdict is one challenged node's outcome.
type Verdict struct {
	Node         int    `json:"node"`    // index in Nodes
	Outcome      string `json:"outcome"` // open, passed, failed, missed
	PassedWeight uint64 `json:"passed_weight"`
	FailedWeight uint64 `json:"failed_weight"`
	// Reasons counts the failure evidence reported; Reason is the first,
	// clipped (the round's own record holds them all).
	Reasons int    `json:"reasons,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Blobs is the registry by state: how many blobs, their unencoded bytes,
// the live blob objects.
type Blobs struct {
	Registered      uint64 `json:"registered"`
	Certified       uint64 `json:"certified"`
	Invalid         uint64 `json:"invalid"`
	Ended           uint64 `json:"ended"`
	RegisteredBytes uint64 `json:"registered_bytes"`
	CertifiedBytes  uint64 `json:"certified_bytes"`
	Objects         uint64 `json:"objects"`
}

// maxText bounds an error or a reason carried in the snapshot: a hundred
// nodes' worth must stay small.
const maxText = 200

// clip shortens s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// build makes the snapshot of a control-plane status, the latest round
// (nil: none) and the nodes' answers by node ID. Its cost grows with the
// nodes and the shards, never with the blobs.
func build(ns *weftv1.NetworkStatusResponse, ch *weftv1.GetChallengeResponse, chErr string, answers map[string]nodeAnswer) *Snapshot {
	s := &Snapshot{
		Index: ns.Index, Epoch: ns.Epoch, Phase: ns.Phase, Shards: int(ns.Shards), Voter: ns.Voter, Leader: ns.Leader,
		ChallengeError: chErr,
	}
	if b := ns.Blobs; b != nil {
		s.Blobs = Blobs{Registered: b.Registered, Certified: b.Certified, Invalid: b.Invalid, Ended: b.Ended,
			RegisteredBytes: b.RegisteredBytes, CertifiedBytes: b.CertifiedBytes, Objects: b.Objects}
	}
	index := make(map[string]int, len(ns.Nodes))
	s.Nodes = make([]Node, 0, len(ns.Nodes))
	for _, n := range ns.Nodes {
		node := Node{ID: n.Id, Address: n.Address, Stake: n.Stake, Shards: int(n.Shards), History: n.ChallengeHistory,
			Flagged: n.Flagged, Registered: true}
		a := answers[n.Id]
		switch r := a.resp; {
		case r == nil:
			node.Health, node.Error = HealthDown, clip(a.err, maxText)
			if node.Error == "" {
				node.Error = "not asked"
			}
		default:
			node.Health = HealthUp
			if r.Epoch < ns.Epoch {
				node.Health = HealthLagging
			}
			node.Epoch, node.StateIndex, node.Synced, node.Backlog = r.Epoch, r.StateIndex, r.ShardsSynced, r.RecoveryBacklog
			node.Copied, node.Rebuilt = r.HandoverBytesCopied, r.HandoverBytesRebuilt
			for _, shard := range r.ShardsSyncing {
				node.Syncing = append(node.Syncing, int(shard))
			}
		}
		index[n.Id] = len(s.Nodes)
		s.Nodes = append(s.Nodes, node)
	}
	// A node the shard map or the handover names that the registry does
	// not (removed since): listed, down, so that indices stay valid.
	lookup := func(id string) int {
		if id == "" {
			return -1
		}
		if i, ok := index[id]; ok {
			return i
		}
		index[id] = len(s.Nodes)
		s.Nodes = append(s.Nodes, Node{ID: id, Health: HealthDown, Error: "not in the registry"})
		return index[id]
	}
	s.Owners = make([]int, len(ns.Owners))
	for shard, id := range ns.Owners {
		s.Owners[shard] = lookup(id)
	}
	s.Holders = make([]int, len(ns.Holders))
	for shard, id := range ns.Holders {
		s.Holders[shard] = lookup(id)
	}
	s.Handover = handover(ns, s, lookup)
	if ch != nil {
		s.Challenge = challenge(ch, lookup)
	}
	for _, n := range s.Nodes {
		switch n.Health {
		case HealthUp:
			s.Health.Up++
		case HealthLagging:
			s.Health.Lagging++
		default:
			s.Health.Down++
		}
	}
	return s
}

// handover gives each moved shard its state (DESIGN.md, "Handover
// states"): the first of synced, syncing, forced, stuck and waiting that
// applies.
func handover(ns *weftv1.NetworkStatusResponse, s *Snapshot, lookup func(string) int) Handover {
	h := Handover{InProgress: ns.Phase == "handover", Shards: []int{}, From: []int{}, States: []string{}}
	hr := ns.Handover
	if hr == nil {
		return h
	}
	h.Epoch, h.StartedIndex, h.Forced = hr.Epoch, hr.StartedIndex, hr.Forced
	carried := map[int]bool{}
	for _, shard := range hr.Carried {
		carried[int(shard)] = true
		h.Carried = append(h.Carried, int(shard))
	}
	// syncing[node] is the set of shards that node says it is syncing.
	syncing := make([]map[int]bool, len(s.Nodes))
	for i, n := range s.Nodes {
		if len(n.Syncing) > 0 {
			syncing[i] = make(map[int]bool, len(n.Syncing))
			for _, shard := range n.Syncing {
				syncing[i][shard] = true
			}
		}
	}
	down := func(i int) bool { return i < 0 || s.Nodes[i].Health == HealthDown }
	for k, shard32 := range hr.Shards {
		shard := int(shard32)
		from := -1
		if k < len(hr.From) {
			from = lookup(hr.From[k])
		}
		owner, holder := -1, -1
		if shard < len(s.Owners) {
			owner = s.Owners[shard]
		}
		if shard < len(s.Holders) {
			holder = s.Holders[shard]
		}
		var state string
		switch {
		case owner >= 0 && holder == owner:
			state = StateSynced
		case owner >= 0 && owner < len(syncing) && syncing[owner][shard]:
			state = StateSyncing
		case carried[shard]:
			state = StateForced
		case down(owner) || (from >= 0 && down(from)):
			state = StateStuck
		default:
			state = StateWaiting
		}
		switch state {
		case StateSynced:
			h.Counts.Synced++
		case StateSyncing:
			h.Counts.Syncing++
		case StateForced:
			h.Counts.Forced++
		case StateStuck:
			h.Counts.Stuck++
		default:
			h.Counts.Waiting++
		}
		h.Shards, h.From, h.States = append(h.Shards, shard), append(h.From, from), append(h.States, state)
	}
	h.Moved = len(h.Shards)
	return h
}

func challenge(ch *weftv1.GetChallengeResponse, lookup func(string) int) *Challenge {
	c := &Challenge{Round: ch.Round, Epoch: ch.Epoch, Open: ch.Open, Blobs: len(ch.Blobs), Verdicts: []Verdict{}}
	for _, n := range ch.Nodes {
		v := Verdict{Node: lookup(n.Node), Outcome: n.Outcome, PassedWeight: n.PassedWeight, FailedWeight: n.FailedWeight, Reasons: len(n.Reasons)}
		if len(n.Reasons) > 0 {
			v.Reason = clip(n.Reasons[0], maxText)
		}
		switch n.Outcome {
		case "passed":
			c.Counts.Passed++
		case "failed":
			c.Counts.Failed++
		case "missed":
			c.Counts.Missed++
		default:
			c.Counts.Open++
		}
		c.Verdicts = append(c.Verdicts, v)
	}
	slices.SortStableFunc(c.Verdicts, func(a, b Verdict) int { return a.Node - b.Node })
	return c
}

// encode marshals a snapshot once for every caller: the JSON, its gzip,
// and an ETag over everything but generated_at, refresh_ms and
// interval_ms, so that a page polling an unchanged network gets 304s.
func encode(s *Snapshot) (body, gz []byte, etag string, err error) {
	stable := *s
	stable.GeneratedAt, stable.RefreshMS, stable.IntervalMS = time.Time{}, 0, 0
	b, err := json.Marshal(&stable)
	if err != nil {
		return nil, nil, "", err
	}
	sum := sha256.Sum256(b)
	etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	if body, err = json.Marshal(s); err != nil {
		return nil, nil, "", err
	}
	body = append(body, '\n')
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(body)
	if err := zw.Close(); err != nil {
		return nil, nil, "", err
	}
	return body, buf.Bytes(), etag, nil
}
