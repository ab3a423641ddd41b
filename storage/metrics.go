package storage

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics are a node's Prometheus metrics, in a registry of its own (tests
// run several nodes in one process).
type Metrics struct {
	registry       *prometheus.Registry
	bytesStored    prometheus.Counter
	bytesServed    *prometheus.CounterVec
	bytesRecovered prometheus.Counter
	slivers        *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	corrupt        prometheus.Counter
	scrubbed       prometheus.Counter
	scrubPasses    prometheus.Counter
	rpcSeconds     *prometheus.HistogramVec
	shards         *prometheus.GaugeVec
	backlog        prometheus.Gauge
	verifySeconds  prometheus.Counter
	writeSeconds   prometheus.Counter

	handoverCopied  prometheus.Counter
	handoverRebuilt prometheus.Counter
	handoverSeconds prometheus.Histogram
	handoverHeld    prometheus.Gauge

	buffered    *prometheus.GaugeVec
	peerRefused *prometheus.CounterVec

	challengesProved   prometheus.Counter
	challengeVerdicts  *prometheus.CounterVec
	challengeEmbargoed prometheus.Counter
}

func newMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		bytesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_bytes_stored_total", Help: "Sliver bytes received from writers, verified and stored."}),
		bytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_storage_bytes_served_total", Help: "Bytes served, by kind (sliver, symbols)."}, []string{"kind"}),
		bytesRecovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_recovery_bytes_fetched_total", Help: "Bytes of recovery symbols fetched from peers to rebuild missing slivers (handover rebuilds included)."}),
		slivers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_storage_slivers_total", Help: "Slivers by how they arrived (recovered)."}, []string{"how"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_storage_rejected_total", Help: "Data rejected by verification, by kind."}, []string{"kind"}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_corrupt_slivers_total", Help: "Stored slivers found corrupt on read (bytes failing their CRC), dropped and queued for rebuilding."}),
		scrubbed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_scrubbed_bytes_total", Help: "Sliver bytes read back and checked by the background scrub."}),
		scrubPasses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_scrub_passes_total", Help: "Completed scrub passes over every stored sliver."}),
		rpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_storage_rpc_seconds", Help: "Storage RPC latency by method and code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"method", "code"}),
		shards: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_storage_shards", Help: "Shards by state."}, []string{"state"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_storage_recovery_backlog", Help: "Certified blobs waiting to be checked for missing slivers."}),
		verifySeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_verify_seconds_total", Help: "Time spent verifying received sliver pairs against their metadata."}),
		writeSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_write_seconds_total", Help: "Time spent writing verified sliver pairs durably (bbolt commits)."}),
		handoverCopied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_handover_bytes_copied_total", Help: "Sliver bytes copied from a gained shard's previous holder, verified."}),
		handoverRebuilt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_handover_bytes_rebuilt_total", Help: "Recovery-symbol bytes fetched to rebuild slivers the holder could not serve."}),
		handoverSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "weft_storage_handover_seconds", Help: "Time from the start of a gained shard's sync to its shard-synced report.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10)}),
		handoverHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_storage_handover_bytes_held", Help: "Sliver bytes the handover holds in memory now (pairs being copied or rebuilt), bounded by --sync-memory but for one larger pair alone."}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_storage_peer_bytes_in_flight", Help: "Bytes callers' calls hold on the node, summed over peers: write (received, not yet stored) and read (read or extended, not yet sent)."}, []string{"kind"}),
		peerRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_storage_peer_refused_total", Help: "Calls refused because their peer reached a cap, by cap."}, []string{"cap"}),
		challengesProved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_challenges_proved_total", Help: "Storage-challenge rounds this node built its signed proof for."}),
		challengeVerdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_storage_challenge_verdicts_total", Help: "This node's verdicts on other nodes' challenge proofs, by outcome (passed, failed, abstained)."}, []string{"outcome"}),
		challengeEmbargoed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_storage_challenge_embargoed_requests_total", Help: "Sliver and recovery-symbol requests refused because the blob is under an open storage challenge."}),
	}
	// Counters of rare events start at zero for the label values known
	// in advance, so that a dashboard's rate() of them reads 0, not "no
	// data", until the first one (and the family is on /metrics at all).
	for _, kind := range rejectedKinds {
		m.rejected.WithLabelValues(kind)
	}
	m.slivers.WithLabelValues("recovered")
	m.registry.MustRegister(m.bytesStored, m.bytesServed, m.bytesRecovered, m.slivers, m.rejected, m.corrupt, m.scrubbed, m.scrubPasses, m.rpcSeconds, m.shards, m.backlog,
		m.verifySeconds, m.writeSeconds, m.handoverCopied, m.handoverRebuilt, m.handoverSeconds, m.handoverHeld,
		m.buffered, m.peerRefused, m.challengesProved, m.challengeVerdicts, m.challengeEmbargoed,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// rejectedKinds are the kinds weft_storage_rejected_total counts: what a
// writer, a peer or a holder sent that failed verification.
var rejectedKinds = []string{"store-pair", "metadata", "recovery-symbol", "sync-request", "sync-pair", "sync-metadata", "challenge-response"}

func (m *Metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.rpcSeconds.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

func (m *Metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.rpcSeconds.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return err
}

func (m *Metrics) setShardStates(n *Node) {
	states, err := n.store.ShardStates()
	if err != nil {
		return
	}
	counts := map[string]int{}
	for _, s := range states {
		counts[s.String()]++
	}
	m.shards.Reset()
	for state, c := range counts {
		m.shards.WithLabelValues(state).Set(float64(c))
	}
}

// Stats are a node's byte counters, read from its metrics.
type Stats struct {
	BytesStored          int64
	BytesServedSlivers   int64
	BytesServedSymbols   int64
	RecoveryBytesFetched int64
	SliversRecovered     int64
	Rejected             int64
	CorruptSlivers       int64         // found corrupt on disk, dropped and queued for rebuilding
	ScrubbedBytes        int64         // read back and checked by the scrub
	ScrubPasses          int64         // completed scrub passes
	HandoverCopied       int64         // sliver bytes copied from holders
	HandoverRebuilt      int64         // symbol bytes fetched to rebuild gained slivers
	ChallengesProved     int64         // rounds this node built a proof for
	ChallengesPassed     int64         // verdicts "passed" this node gave others
	ChallengesFailed     int64         // verdicts "failed"
	ChallengesAbstained  int64         // nodes it could not judge (no metadata)
	EmbargoedRequests    int64         // reads refused under an open challenge
	VerifyTime           time.Duration // spent verifying received pairs
	WriteTime            time.Duration // spent writing them durably
}

func (m *Metrics) snapshot() Stats {
	value := func(c prometheus.Collector) float64 {
		ch := make(chan prometheus.Metric, 16)
		go func() { c.Collect(ch); close(ch) }()
		var total float64
		for metric := range ch {
			var pb dto.Metric
			if err := metric.Write(&pb); err == nil && pb.Counter != nil {
				total += pb.Counter.GetValue()
			}
		}
		return total
	}
	get := func(c prometheus.Collector) int64 { return int64(value(c)) }
	seconds := func(c prometheus.Collector) time.Duration { return time.Duration(value(c) * float64(time.Second)) }
	return Stats{
		BytesStored:          get(m.bytesStored),
		BytesServedSlivers:   get(m.bytesServed.WithLabelValues("sliver")),
		BytesServedSymbols:   get(m.bytesServed.WithLabelValues("symbols")),
		RecoveryBytesFetched: get(m.bytesRecovered),
		SliversRecovered:     get(m.slivers),
		Rejected:             get(m.rejected),
		CorruptSlivers:       get(m.corrupt),
		ScrubbedBytes:        get(m.scrubbed),
		ScrubPasses:          get(m.scrubPasses),
		HandoverCopied:       get(m.handoverCopied),
		HandoverRebuilt:      get(m.handoverRebuilt),
		ChallengesProved:     get(m.challengesProved),
		ChallengesPassed:     get(m.challengeVerdicts.WithLabelValues("passed")),
		ChallengesFailed:     get(m.challengeVerdicts.WithLabelValues("failed")),
		ChallengesAbstained:  get(m.challengeVerdicts.WithLabelValues("abstained")),
		EmbargoedRequests:    get(m.challengeEmbargoed),
		VerifyTime:           seconds(m.verifySeconds),
		WriteTime:            seconds(m.writeSeconds),
	}
}
