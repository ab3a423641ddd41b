package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// epochReport is `weft admin epoch status`: the control plane's view of
// the epoch and, per committee member, its handover as the node reports
// it; shards whose handover makes no progress are named.
type epochReport struct {
	Epoch   uint64         `json:"epoch"`
	Phase   string         `json:"phase"`
	Pending []uint32       `json:"pending_shards"`
	Nodes   []nodeHandover `json:"nodes"`
	Stuck   []string       `json:"stuck,omitempty"`
}

type nodeHandover struct {
	Node    string   `json:"node"`
	Address string   `json:"address"`
	Pending []uint32 `json:"pending_shards"` // owned, not yet held
	Synced  uint32   `json:"shards_synced"`  // synced in this epoch
	Syncing []uint32 `json:"shards_syncing"` // as the node reports
	Copied  uint64   `json:"bytes_copied"`
	Rebuilt uint64   `json:"bytes_rebuilt"`
	Error   string   `json:"error,omitempty"` // the node did not answer
}

func (a *adminClient) epochStatus(cmd *cobra.Command) error {
	conn, ctx, done, err := a.dial(cmd)
	if err != nil {
		return err
	}
	defer done()
	// An admin command: the operator credential is checked first.
	if _, err := weftv1.NewAdminClient(conn).Status(ctx, &weftv1.StatusRequest{}); err != nil {
		return err
	}
	// Linearizable: the voter asked may lag; the report is the leader's.
	state, err := weftv1.NewWatchClient(conn).WatchState(ctx, &weftv1.WatchStateRequest{Linearizable: true})
	if err != nil {
		return err
	}
	report := epochReport{Epoch: state.Epoch, Phase: state.Phase}
	for shard, owner := range state.Owners {
		if owner != state.Holders[shard] {
			report.Pending = append(report.Pending, uint32(shard))
		}
	}
	com, err := weftv1.NewClientClient(conn).GetCommittee(ctx, &weftv1.GetCommitteeRequest{Epoch: state.Epoch})
	if err == nil {
		report.Nodes = nodeHandovers(ctx, com, state)
	}
	report.Stuck = stuckShards(state, report.Nodes)
	return printEpochReport(cmd.OutOrStdout(), a.format, report)
}

// nodeHandovers asks every member for its status, all at once.
func nodeHandovers(ctx context.Context, com *weftv1.GetCommitteeResponse, state *weftv1.WatchStateResponse) []nodeHandover {
	out := make([]nodeHandover, len(com.Members))
	var wg sync.WaitGroup
	for i, m := range com.Members {
		h := nodeHandover{Node: m.Node, Address: m.Address}
		for shard, owner := range state.Owners {
			if owner == m.Node && state.Holders[shard] != m.Node {
				h.Pending = append(h.Pending, uint32(shard))
			}
		}
		out[i] = h
		wg.Go(func() {
			ns, err := nodeStatus(ctx, m.Address)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Synced, out[i].Syncing = ns.ShardsSynced, ns.ShardsSyncing
			if ns.Epoch == state.Epoch {
				// This epoch's handover, not the node's lifetime.
				out[i].Copied, out[i].Rebuilt = ns.EpochBytesCopied, ns.EpochBytesRebuilt
			}
		})
	}
	wg.Wait()
	return out
}

func nodeStatus(ctx context.Context, addr string) (*weftv1.NodeStatusResponse, error) {
	creds, err := dialCredentials(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return weftv1.NewStorageClient(conn).NodeStatus(cctx, &weftv1.NodeStatusRequest{})
}

// stuckShards names pending shards whose owner cannot be reached or is
// not syncing them.
func stuckShards(state *weftv1.WatchStateResponse, nodes []nodeHandover) []string {
	byNode := map[string]nodeHandover{}
	for _, n := range nodes {
		byNode[n.Node] = n
	}
	var out []string
	for shard, owner := range state.Owners {
		if owner == state.Holders[shard] {
			continue
		}
		n, ok := byNode[owner]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("shard %d: owner %s is not in the committee the control plane returned", shard, owner))
		case n.Error != "":
			out = append(out, fmt.Sprintf("shard %d: owner %s does not answer (%s); holder %s", shard, owner, n.Error, state.Holders[shard]))
		case !slices.Contains(n.Syncing, uint32(shard)):
			out = append(out, fmt.Sprintf("shard %d: owner %s is not syncing it; holder %s", shard, owner, state.Holders[shard]))
		}
	}
	return out
}

func printEpochReport(w io.Writer, format string, r epochReport) error {
	if format == "json" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "epoch\t%d\nphase\t%s\npending shards\t%v\n\n", r.Epoch, r.Phase, r.Pending)
	fmt.Fprintln(tw, "NODE\tPENDING\tSYNCED\tCOPIED\tREBUILT\t")
	for _, n := range r.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\t%v\t?\t?\t?\t(no answer: %s)\n", n.Node, n.Pending, n.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%d B\t%d B\t\n", n.Node, n.Pending, n.Synced, n.Copied, n.Rebuilt)
	}
	if len(r.Stuck) > 0 {
		fmt.Fprintln(tw, "\nstuck:")
		for _, s := range r.Stuck {
			fmt.Fprintln(tw, "  "+s)
		}
	}
	return tw.Flush()
}
