//go:build soak && linux

package integration

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// writeReport writes SOAK.md from what the run recorded, whether it
// passed or not (a failed run's report says so at the top).
func (s *soak) writeReport() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reportDone {
		return
	}
	s.reportDone = true
	if s.finished.IsZero() {
		s.finished = time.Now()
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	verdict := "**passed**"
	if s.t.Failed() {
		verdict = "**FAILED**"
	}
	p("# Churn soak (issue #23)")
	p("")
	p("Written by `make soak` (`integration/soak_test.go`, build tag `soak`) from one run, which %s. "+
		"A `weft devnet` of processes — 3 control-plane voters, %d storage nodes, an HTTP gateway, %d shards, the voters "+
		"advancing the epoch every %v once it is Stable — goes through %d epochs of churn: each epoch one storage node leaves "+
		"(stake 0; once an epoch change has moved its shards away and that handover is done, it is stopped with SIGTERM and "+
		"removed from the registry) and a fresh node joins (`weft devnet add-node`, stake 100); %d SIGKILLs per epoch of a "+
		"voter, a storage node or the gateway at a random moment, one process at a time, each restarted with `weft devnet "+
		"restart` after 0.5–4 s and awaited (in half the epochs the last kill waits for the epoch change and lands 0–2 s into the handover). Meanwhile one SDK writer and one gateway writer store blobs of 0 B to %s "+
		"(3%% empty, 92%% log-uniform up to 256 KiB, 5%% log-uniform from 256 KiB to the maximum, and every 250th of a writer exactly the maximum; a "+
		"1–3 s pause after each), every certificate checked with the SDK's `client.Verify` against its epoch's committee; an "+
		"SDK reader and a gateway reader read every blob stored so far, sweep after sweep, byte for byte. A read that fails "+
		"is retried every second until it succeeds or %v have passed (then it failed for good). At the end, with the "+
		"traffic stopped and the epoch Stable, every blob's certificate is verified again (`VerifyCertificate`) and it is "+
		"read through both the SDK and the gateway; a certified blob that does not read back is lost.",
		verdict, s.cfg.nodes, s.cfg.shards, s.cfg.epochDuration, s.cfg.epochs, s.cfg.killsPerEp, soakFmt(s.cfg.maxBlob), soakReadBound)
	p("")
	p("## Run")
	p("")
	p("| | |")
	p("|---|---|")
	p("| Seed | %d (replay: `make soak SOAK_SEED=%d`) |", s.cfg.seed, s.cfg.seed)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SOAK_") {
			env = append(env, kv)
		}
	}
	slices.Sort(env)
	p("| Command | `%s` |", strings.TrimSpace(strings.Join(env, " ")+" go test "+strings.Join(os.Args[1:], " ")))
	p("| Configuration | SOAK_EPOCHS=%d SOAK_NODES=%d SOAK_SHARDS=%d SOAK_MAX_BLOB=%d SOAK_KILLS=%d SOAK_EPOCH_DURATION=%v |",
		s.cfg.epochs, s.cfg.nodes, s.cfg.shards, s.cfg.maxBlob, s.cfg.killsPerEp, s.cfg.epochDuration)
	p("| Started | %s |", s.started.UTC().Format("2006-01-02 15:04:05 UTC"))
	p("| Duration | %v (devnet start to the end of the final check) |", s.finished.Sub(s.started).Round(time.Second))
	for _, kv := range soakMachine() {
		p("| %s | %s |", kv[0], kv[1])
	}
	p("| Load average (1, 5, 15 min) | %s at the start, %s at the end |", s.startLoad, soakLoad())
	p("")

	// Totals.
	var count, bytes = map[string]int{}, map[string]float64{}
	var largest int
	classes := []struct {
		name string
		max  int
	}{{"0 B", 0}, {"1 B – 1 KiB", 1 << 10}, {"1 KiB – 256 KiB", 256 << 10}, {"256 KiB – 4 MiB", 4 << 20}, {"4 – 16 MiB", 16 << 20}, {"16 – 64 MiB", 64 << 20}, {"over 64 MiB", 1 << 62}}
	byClass := make([]int, len(classes))
	for _, bl := range s.ledger {
		count[bl.via]++
		bytes[bl.via] += float64(bl.size)
		largest = max(largest, bl.size)
		for i, c := range classes {
			if bl.size <= c.max {
				byClass[i]++
				break
			}
		}
	}
	finalEpoch := s.startEpoch
	if n := len(s.epochs); n > 0 {
		finalEpoch = s.epochs[n-1].epoch
	}
	p("## Totals")
	p("")
	p("| | |")
	p("|---|---|")
	p("| Epochs | %d of the schedule done (network epoch %d → %d: %d epoch changes) |", len(s.epochs), s.startEpoch, finalEpoch, finalEpoch-s.startEpoch)
	p("| Nodes | %d left, %d joined |", len(s.epochs), len(s.epochs))
	p("| Blobs certified | %d: %d through the SDK (%s), %d through the gateway (%s); largest %s |",
		len(s.ledger), count["sdk"], gibOrMib(bytes["sdk"]), count["gateway"], gibOrMib(bytes["gateway"]), soakFmt(largest))
	var cls []string
	for i, c := range classes {
		if byClass[i] > 0 {
			cls = append(cls, fmt.Sprintf("%s: %d", c.name, byClass[i]))
		}
	}
	p("| Blob sizes | %s |", strings.Join(cls, ", "))
	p("| Stores that failed (tolerated: only certified blobs count) | %d through the SDK, %d through the gateway |", s.storeFails["sdk"], s.storeFails["gateway"])
	p("| Reads with the right bytes | %d through the SDK, %d through the gateway (%d of them in the final check) |", s.reads["sdk"], s.reads["gateway"], s.finalReads)
	p("| Read attempts that failed (then retried) | %d through the SDK, %d through the gateway; %d reads needed a retry |", s.attemptFails["sdk"], s.attemptFails["gateway"], s.retriedReads)
	p("| Reads that failed for good (%v) | %d |", soakReadBound, len(s.failedForGood))
	p("| Reads with wrong bytes | %d |", len(s.wrongBytes))
	p("| Invalid certificates | %d |", len(s.badCerts))
	p("| **Blobs lost** | **%d** |", len(s.lostIDs))
	if s.longestWait.waits > 0 {
		lw := s.longestWait
		p("| Longest wait of a read that succeeded | %.1f s (%s read of %s, %s via %s, in epoch %d; last error: %s) |",
			lw.waits.Seconds(), lw.via, short(lw.blob.id.String()), soakFmt(lw.blob.size), lw.blob.via, lw.epoch, oneLine(lw.err, 300))
	} else {
		p("| Longest wait of a read that succeeded | no read needed a retry |")
	}
	p("| Longest read (one attempt or with retries) | %.1f s |", s.longestRead.Seconds())
	for _, via := range []string{"sdk", "gateway"} {
		sw := s.sweeps[via]
		if len(sw) == 0 {
			p("| Sweeps of the %s reader | none completed |", via)
			continue
		}
		p("| Sweeps of the %s reader (every blob stored so far) | %d, longest %.0f s (%.1f epochs of %v) |", via, len(sw), slices.Max(sw).Seconds(),
			slices.Max(sw).Seconds()/s.cfg.epochDuration.Seconds(), s.cfg.epochDuration)
	}
	p("| Kills (SIGKILL + restart) | %d voters, %d storage nodes, %d gateway |", s.kills["control"], s.kills["node"], s.kills["gateway"])
	p("| Longest time to serve again after a restart | voter %.1f s, node %.1f s, gateway %.1f s |", s.restartWaits["control"].Seconds(), s.restartWaits["node"].Seconds(), s.restartWaits["gateway"].Seconds())
	if len(s.epochs) > 0 {
		var hs []time.Duration
		for _, e := range s.epochs {
			if e.handover >= 0 {
				hs = append(hs, e.handover)
			}
		}
		slices.Sort(hs)
		if len(hs) > 0 {
			p("| Handover duration | median %.1f s, longest %.1f s |", hs[len(hs)/2].Seconds(), hs[len(hs)-1].Seconds())
		}
	}
	p("| Final check | settle (Stable, recovery backlog 0) %.0f s, then %d blobs verified and read through both paths in %.0f s |", s.settleTook.Seconds(), len(s.ledger), s.finalTook.Seconds())
	if s.dataBytes > 0 {
		p("| Devnet data on disk at the end | %s |", gibOrMib(s.dataBytes))
	}
	p("")
	if len(s.problems) > 0 {
		p("## Failures")
		p("")
		for _, pr := range s.problems {
			p("- %s", oneLine(pr, 600))
		}
		p("")
	}
	if len(s.lost) > 0 {
		p("## Blobs lost")
		p("")
		for _, l := range s.lost {
			p("- %s", oneLine(l, 400))
		}
		p("")
	}
	p("## Failed reads")
	p("")
	if len(s.failedForGood) == 0 {
		p("No read failed for good.")
	} else {
		p("Failed for good (after %v of retries):", soakReadBound)
		p("")
		for _, f := range s.failedForGood {
			p("- %s epoch %d, %s read of %s (%s via %s): %s", f.at.UTC().Format("15:04:05"), f.epoch, f.via, short(f.blob.id.String()), soakFmt(f.blob.size), f.blob.via, oneLine(f.err, 300))
		}
	}
	p("")
	if n := s.attemptFails["sdk"] + s.attemptFails["gateway"]; n > 0 {
		p("Failed attempts, each retried (the first %d of %d):", len(s.attemptErrs), n)
		p("")
		for _, f := range s.attemptErrs {
			p("- %s epoch %d, %s read of %s (%s via %s), failing for %.1f s: %s", f.at.UTC().Format("15:04:05"), f.epoch, f.via, short(f.blob.id.String()), soakFmt(f.blob.size), f.blob.via, f.waits.Seconds(), oneLine(f.err, 300))
		}
		p("")
	}
	if len(s.storeErrors) > 0 {
		p("Failed stores (tolerated; the first %d):", len(s.storeErrors))
		p("")
		for _, e := range s.storeErrors {
			p("- %s", oneLine(e, 300))
		}
		p("")
	}

	p("## Epochs")
	p("")
	p("Each step of the schedule: the previous leaver stopped and removed, this step's leaver's stake set to 0, a node added, the " +
		"kills (at random moments after the step began), then a wait for an epoch change after which the leaver is neither owner nor " +
		"holder of any shard and the epoch is Stable. *Handover*: from the first poll (every 250 ms) that saw that epoch to the first " +
		"that saw it Stable. RSS and goroutines: median over the role's processes at the end of the step.")
	p("")
	p("| step | epoch | leaver | joiner | handover | kills (epoch and phase at the kill) | blobs | GiB | voter RSS | node RSS | gateway RSS | voter gor. | node gor. | gateway gor. |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i, e := range s.epochs {
		note := ""
		if e.note != "" {
			var hs []string
			for _, h := range e.handovers {
				hs = append(hs, fmt.Sprintf("%.1f s", h.Seconds()))
			}
			note = " (" + e.note + "; handovers " + strings.Join(hs, ", ") + ")"
		}
		handover := "?"
		if e.handover >= 0 {
			handover = fmt.Sprintf("%.1f s", e.handover.Seconds())
		}
		p("| %d | %d | %s | %s | %s%s | %s | %.0f | %.2f | %s | %s | %s | %s | %s | %s |", i+1, e.epoch, e.leaver, e.joiner, handover, note,
			strings.Join(e.kills, "; "), e.certified, e.blobsGB,
			roleMed(e.samples, "control", rss), roleMed(e.samples, "node", rss), roleMed(e.samples, "gateway", rss),
			roleMed(e.samples, "control", gor), roleMed(e.samples, "node", gor), roleMed(e.samples, "gateway", gor))
	}
	p("")

	p("## Processes: RSS and goroutines, start and end")
	p("")
	p("*Start*: right after the devnet was up, before any traffic. *Warm*: after the first epoch of the schedule, under " +
		"traffic. *End*: after the final check, the traffic stopped and 10 s idle. A process killed and restarted keeps its " +
		"ID (the role's instance: `weft devnet restart` runs the same command line); its figures are compared by ID, whatever its " +
		"PID. Storage nodes are replaced over the run (one leaves, one joins per epoch), so a node present at both ends is " +
		"compared by ID and the role as a whole by the median over its processes at each point. Goroutines: `go_goroutines` " +
		"from each process's metrics endpoint; the test process (the SDK and the harness) reports runtime.NumGoroutine.")
	p("")
	p("| role | start: RSS / goroutines (median) | warm | end | RSS end ÷ start | RSS end ÷ warm | goroutines end ÷ start | goroutines end ÷ warm |")
	p("|---|---|---|---|---|---|---|---|")
	for _, role := range []string{"control", "node", "gateway", "soak"} {
		r0, ok0 := roleStats(s.samplesStart, role, rss)
		rw, okw := roleStats(s.samplesWarm, role, rss)
		r1, ok1 := roleStats(s.samplesEnd, role, rss)
		g0, _ := roleStats(s.samplesStart, role, gor)
		gw, _ := roleStats(s.samplesWarm, role, gor)
		g1, _ := roleStats(s.samplesEnd, role, gor)
		if !ok0 || !ok1 {
			continue
		}
		warm, rwRatio, gwRatio := "—", "—", "—"
		if okw {
			warm = fmt.Sprintf("%s / %.0f", mibs(rw.med), gw.med)
			rwRatio, gwRatio = ratio(r1.med, rw.med), ratio(g1.med, gw.med)
		}
		p("| %s | %s / %.0f | %s | %s / %.0f | %s | %s | %s | %s |", role, mibs(r0.med), g0.med, warm, mibs(r1.med), g1.med,
			ratio(r1.med, r0.med), rwRatio, ratio(g1.med, g0.med), gwRatio)
	}
	p("")
	p("| process | restarts | start: RSS / goroutines | warm | end | RSS end ÷ start | goroutines end ÷ start | RSS end ÷ warm | goroutines end ÷ warm |")
	p("|---|---|---|---|---|---|---|---|---|")
	byID := func(samples []soakSample, id string) (soakSample, bool) {
		for _, x := range samples {
			if x.ID == id {
				return x, true
			}
		}
		return soakSample{}, false
	}
	restarts := s.restartsByID()
	var ids []string
	for _, x := range append(slices.Clone(s.samplesStart), s.samplesEnd...) {
		if !slices.Contains(ids, x.ID) {
			ids = append(ids, x.ID)
		}
	}
	for _, id := range ids {
		a, okA := byID(s.samplesStart, id)
		w, okW := byID(s.samplesWarm, id)
		z, okZ := byID(s.samplesEnd, id)
		cell := func(x soakSample, ok bool) string {
			if !ok {
				return "—"
			}
			return fmt.Sprintf("%s / %s", mibs(x.RSS), gorStr(x.Goroutines))
		}
		r1, g1, r2, g2 := "—", "—", "—", "—"
		if okA && okZ {
			r1, g1 = ratio(z.RSS, a.RSS), ratio(z.Goroutines, a.Goroutines)
		}
		if okW && okZ {
			r2, g2 = ratio(z.RSS, w.RSS), ratio(z.Goroutines, w.Goroutines)
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s |", id, restarts[id], cell(a, okA), cell(w, okW), cell(z, okZ), r1, g1, r2, g2)
	}
	p("")
	out := s.cfg.out
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		s.t.Errorf("write %s: %v", out, err)
		return
	}
	s.t.Logf("wrote %s", out)
}

// restartsByID counts the kills of each process from the epochs' records.
func (s *soak) restartsByID() map[string]int {
	n := map[string]int{}
	for _, e := range s.epochs {
		for _, k := range e.kills {
			if id, _, ok := strings.Cut(k, " "); ok {
				n[id]++
			}
		}
	}
	return n
}

func rss(x soakSample) float64 { return x.RSS }
func gor(x soakSample) float64 { return x.Goroutines }

func roleMed(samples []soakSample, role string, f func(soakSample) float64) string {
	st, ok := roleStats(samples, role, f)
	if !ok {
		return "—"
	}
	if f(soakSample{RSS: 1, Goroutines: 2}) == 1 {
		return mibs(st.med)
	}
	return fmt.Sprintf("%.0f", st.med)
}

func mibs(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

func gibOrMib(b float64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}

func gorStr(g float64) string {
	if g < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f", g)
}

func ratio(a, b float64) string {
	if a < 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func soakFmt(b int) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
