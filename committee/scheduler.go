package committee

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/epoch"
)

// SchedulerConfig configures the leader's timers; a zero duration leaves
// that step to the operator. The compaction timer always runs.
type SchedulerConfig struct {
	// EpochDuration: advance the epoch this often while it is Stable (a
	// handover in progress is never cut short).
	EpochDuration time.Duration
	// ChallengeWindow: open one storage-challenge round per epoch once it
	// is Stable, and close it once it has been open this long.
	ChallengeWindow time.Duration
	Logger          *slog.Logger // default slog.Default()
}

// Scheduler runs the leader-only timers of a voter beside its Service:
// the epoch timer, the challenge timer and the compaction timer. They run while this voter leads
// and stop when it loses leadership (or on Stop), and they call the
// service's leader-side steps as Go calls: no gRPC, no credentials, no
// forwarding (a voter that no longer leads is refused by Raft, and the new
// leader's own timers take over).
type Scheduler struct {
	svc      *Service
	cfg      SchedulerConfig
	log      *slog.Logger
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	running  atomic.Bool // the timers run (this voter leads)

	// seenOpen is the open challenge round this voter last saw and when
	// (monotonic): the challenge window runs from it.
	seenOpen struct {
		round uint64
		at    time.Time
	}
}

// StartScheduler starts the timers cfg asks for, and the compaction
// timer, beside svc. Stop it before closing the service and the node.
func StartScheduler(svc *Service, cfg SchedulerConfig) *Scheduler {
	s := &Scheduler{svc: svc, cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	go s.run()
	return s
}

// compactionPeriod is how often the leader checks whether compaction is
// behind; compactionBurst bounds the compact commands of one check.
const (
	compactionPeriod = time.Second
	compactionBurst  = 16
)

// Stop stops the timers and returns once they have (a step under way
// finishes first). It may be called more than once.
func (s *Scheduler) Stop() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// run starts the timers when this voter becomes leader and stops them when
// it no longer is. Raft reports each change of its state to an observer;
// a report only wakes the loop, which then reads the state as it is, so a
// report dropped while one is already waiting loses nothing.
func (s *Scheduler) run() {
	defer close(s.done)
	changed := make(chan raft.Observation, 1)
	obs := raft.NewObserver(changed, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RaftState)
		return ok
	})
	r := s.svc.node.raft
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	var stopTimers func()
	defer func() {
		if stopTimers != nil {
			stopTimers()
		}
	}()
	for {
		switch leading := s.svc.node.IsLeader(); {
		case leading && stopTimers == nil:
			stopTimers = s.lead()
		case !leading && stopTimers != nil:
			stopTimers()
			stopTimers = nil
		}
		select {
		case <-s.stop:
			return
		case <-changed:
		}
	}
}

// lead starts the timers for one term of leadership and returns what stops
// them (and waits for them).
func (s *Scheduler) lead() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(period time.Duration, step func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.every(ctx, period, step)
		}()
	}
	if s.cfg.EpochDuration > 0 {
		start(s.cfg.EpochDuration, s.epochStep)
	}
	if s.cfg.ChallengeWindow > 0 {
		start(min(s.cfg.ChallengeWindow/4, time.Second), s.challengeStep)
	}
	start(compactionPeriod, s.compactionStep)
	s.running.Store(true)
	s.log.Debug("leader timers started")
	return func() {
		cancel()
		wg.Wait()
		s.running.Store(false)
		s.log.Debug("leader timers stopped")
	}
}

// every runs step each period until ctx ends, while this voter leads (it
// may lose leadership before the scheduler hears of it).
func (s *Scheduler) every(ctx context.Context, period time.Duration, step func(context.Context)) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.svc.node.IsLeader() {
			step(ctx)
		}
	}
}

// epochStep advances the epoch if it is Stable.
func (s *Scheduler) epochStep(ctx context.Context) {
	if st, err := s.svc.node.FSM().EpochState(); err != nil || st.Phase() != epoch.Stable {
		return
	}
	resp, err := s.svc.advanceEpoch(ctx, false)
	if err != nil {
		s.log.Warn("epoch timer: advance refused", "err", err)
		return
	}
	s.log.Info("epoch timer: advanced", "epoch", resp.Epoch)
}

// compactionStep proposes compact commands while compaction is behind —
// the steps other commands carry are enough on a busy network, not on a
// quiet one — at most compactionBurst per period, so catching up never
// floods the log.
func (s *Scheduler) compactionStep(ctx context.Context) {
	for range compactionBurst {
		pending, err := s.svc.node.FSM().CompactionPending()
		if err != nil || !pending || ctx.Err() != nil {
			return
		}
		if _, err := s.svc.propose(ctx, KindCompact, Compact{}, "", 0); err != nil {
			s.log.Warn("compaction timer: compact refused", "err", err)
			return
		}
	}
}

// challengeStep opens a round once the epoch is Stable and has none, and
// closes a round that has been open for the window (nodes that never
// answered missed it).
func (s *Scheduler) challengeStep(ctx context.Context) {
	fsm := s.svc.node.FSM()
	st, err := fsm.EpochState()
	if err != nil || st.Epoch() == 0 {
		return
	}
	latest, found, _, err := fsm.Challenge(0)
	if err != nil {
		return
	}
	switch {
	case found && latest.Open:
		// The window runs on this voter's monotonic clock from when it
		// first saw the round open, not from the opening leader's wall
		// clock (OpenedAt): a clock stepped back, or one ahead of the old
		// leader's, would hold the round — and reads of its sampled
		// blobs — open for the step, or cut it short. A change of leader
		// gives a round at most one window more.
		if s.openSince(latest.Round) < s.cfg.ChallengeWindow {
			return
		}
		if _, err := s.svc.closeChallenge(ctx, latest.Round); err != nil {
			s.log.Warn("challenge timer: close refused", "round", latest.Round, "err", err)
		} else {
			s.log.Info("challenge timer: round closed", "round", latest.Round)
		}
	case (!found || latest.Epoch < st.Epoch()) && st.Phase() == epoch.Stable:
		resp, err := s.svc.startChallenge(ctx, 0)
		if err != nil {
			s.log.Warn("challenge timer: start refused", "err", err)
			return
		}
		s.log.Info("challenge timer: round started", "round", resp.Round, "epoch", st.Epoch())
	}
}

// openSince is how long this voter has seen round open (zero the first
// time it looks). Only the timer loop calls it.
func (s *Scheduler) openSince(round uint64) time.Duration {
	if s.seenOpen.at.IsZero() || s.seenOpen.round != round {
		s.seenOpen.round, s.seenOpen.at = round, time.Now()
	}
	return time.Since(s.seenOpen.at)
}
