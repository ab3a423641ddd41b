package committee

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftstore/weft/epoch"
)

// fsmMetrics are updated by the FSM as it applies batches.
type fsmMetrics struct {
	applyLatency prometheus.Histogram
	batchSize    prometheus.Histogram
	commands     *prometheus.CounterVec
	// Storage challenges: rounds started, node outcomes decided.
	challenges        prometheus.Counter
	challengeOutcomes *prometheus.CounterVec
	// Bytes of the WatchState responses this voter built, by kind.
	watchBytes *prometheus.CounterVec
}

func newFSMMetrics() *fsmMetrics {
	return &fsmMetrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "weft", Subsystem: "control", Name: "apply_seconds",
			Help:    "Time to apply one Raft batch to the FSM, one bbolt transaction included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "weft", Subsystem: "control", Name: "apply_batch_entries",
			Help:    "Log entries per FSM batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "control", Name: "commands_total",
			Help: "Commands applied, by kind and outcome (ok or the rejection code).",
		}, []string{"kind", "outcome"}),
		challenges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "control", Name: "challenge_rounds_total",
			Help: "Storage-challenge rounds started.",
		}),
		challengeOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "control", Name: "challenge_outcomes_total",
			Help: "Challenged nodes' outcomes as decided: passed, failed, missed.",
		}, []string{"outcome"}),
		watchBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "control", Name: "watch_bytes_total",
			Help: "Bytes of WatchState responses this voter built (not those it forwarded), by kind: full or delta.",
		}, []string{"kind"}),
	}
}

// watchSent counts a WatchState response built here.
func (m *fsmMetrics) watchSent(kind string, bytes int) {
	if m == nil {
		return
	}
	m.watchBytes.WithLabelValues(kind).Add(float64(bytes))
}

func (m *fsmMetrics) observe(start time.Time, entries int) {
	if m == nil {
		return
	}
	m.applyLatency.Observe(time.Since(start).Seconds())
	m.batchSize.Observe(float64(entries))
}

func (m *fsmMetrics) command(kind Kind, res *Result) {
	if m == nil || res == nil {
		return
	}
	outcome := "ok"
	if res.Error != nil {
		outcome = string(res.Error.Code)
	}
	m.commands.WithLabelValues(string(kind), outcome).Inc()
}

// RegisterMetrics registers the voter's metrics: Raft state, term, commit
// and applied indices, the epoch, its phase and pending shards, and the
// FSM's apply latency, batch sizes and command outcomes.
func (n *Node) RegisterMetrics(reg prometheus.Registerer) error {
	stat := func(key string) func() float64 {
		return func() float64 {
			v, _ := strconv.ParseFloat(n.raft.Stats()[key], 64)
			return v
		}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "weft", Subsystem: "control", Name: name, Help: help}, f)
	}
	epochState := func(f func(s epoch.State) float64) func() float64 {
		return func() float64 {
			s, err := n.fsm.EpochState()
			if err != nil {
				return 0
			}
			return f(s)
		}
	}
	collectors := []prometheus.Collector{
		gauge("raft_leader", "1 if this voter is the Raft leader.", func() float64 {
			if n.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 { return float64(n.raft.State()) }),
		gauge("raft_term", "Current Raft term.", stat("term")),
		gauge("compaction_pending", "1 while compaction is behind its targets (history past the retention horizon not yet deleted: DESIGN.md, Retention).", func() float64 {
			if pending, err := n.fsm.CompactionPending(); err == nil && pending {
				return 1
			}
			return 0
		}),
		gauge("raft_commit_index", "Raft commit index.", stat("commit_index")),
		gauge("raft_applied_index", "Raft applied index.", stat("applied_index")),
		gauge("raft_last_log_index", "Last index in the Raft log.", stat("last_log_index")),
		gauge("state_index", "Raft index of the last command the FSM applied.", func() float64 {
			i, _ := n.fsm.AppliedIndex()
			return float64(i)
		}),
		gauge("epoch", "Current epoch.", epochState(func(s epoch.State) float64 { return float64(s.Epoch()) })),
		gauge("epoch_handover", "1 while the epoch is in Handover, 0 when Stable.", epochState(func(s epoch.State) float64 { return float64(s.Phase()) })),
		gauge("pending_shards", "Shards whose handover is not complete.", epochState(func(s epoch.State) float64 { return float64(len(s.Pending())) })),
		n.fsm.metrics.applyLatency, n.fsm.metrics.batchSize, n.fsm.metrics.commands,
		n.fsm.metrics.challenges, n.fsm.metrics.challengeOutcomes, n.fsm.metrics.watchBytes,
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
