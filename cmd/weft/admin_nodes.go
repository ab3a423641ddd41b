package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// nodeSpaceConcurrency bounds the NodeStatus calls `admin node list` has
// open at once (each has its own 3 s timeout).
const nodeSpaceConcurrency = 16

// listNodes is `weft admin node list`: the control plane's registry (ID,
// address, stake, shards, challenge history, key), and each node's space
// as the node reports it in NodeStatus — the control plane does not keep
// it: free space changes with every write, and the node is the only one
// who knows it, so the figures come from the node, like the handover's
// progress in `admin epoch status`.
func (a *adminClient) listNodes(cmd *cobra.Command) error {
	conn, ctx, done, err := a.dial(cmd)
	if err != nil {
		return err
	}
	defer done()
	resp, err := weftv1.NewAdminClient(conn).ListNodes(ctx, &weftv1.ListNodesRequest{})
	if err != nil {
		return err
	}
	spaces := nodeSpaces(ctx, resp.Nodes)
	return printNodes(cmd.OutOrStdout(), a.format, resp, spaces)
}

// nodeSpace is one node's NodeStatus figures, or why there are none.
type nodeSpace struct {
	status *weftv1.NodeStatusResponse
	err    error
}

func nodeSpaces(ctx context.Context, nodes []*weftv1.NodeInfo) []nodeSpace {
	out := make([]nodeSpace, len(nodes))
	sem := make(chan struct{}, nodeSpaceConcurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n.Address == "" {
			out[i].err = fmt.Errorf("no address registered")
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i].status, out[i].err = nodeStatus(ctx, n.Address)
			if out[i].err == nil && out[i].status.Node != n.Id {
				out[i].status, out[i].err = nil, fmt.Errorf("the node at %s says it is %q", n.Address, out[i].status.Node)
			}
		})
	}
	wg.Wait()
	return out
}

func printNodes(w io.Writer, format string, resp *weftv1.ListNodesResponse, spaces []nodeSpace) error {
	if format == "json" {
		// The registry's JSON as it was, each node with its space added
		// (uint64 as strings, as protojson writes them) or the reason
		// it did not answer.
		raw, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			return err
		}
		var doc struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			return err
		}
		for i, n := range doc.Nodes {
			if s := spaces[i]; s.err != nil {
				n["statusError"] = s.err.Error()
			} else {
				n["capacityBytes"] = strconv.FormatUint(s.status.CapacityBytes, 10)
				n["usedBytes"] = strconv.FormatUint(s.status.UsedBytes, 10)
				n["freeBytes"] = strconv.FormatUint(s.status.FreeBytes, 10)
				n["writesRefusedNoSpace"] = strconv.FormatUint(s.status.WritesRefusedNoSpace, 10)
			}
		}
		if doc.Nodes == nil {
			doc.Nodes = []map[string]any{}
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// The fingerprint is what an operator checks with the node's owner
	// before staking it (node stake --key-fingerprint). CAPACITY "-": none
	// declared, the disk is the limit.
	fmt.Fprintln(tw, "ID\tADDRESS\tSTAKE\tSHARDS\tCAPACITY\tUSED\tFREE\tCHALLENGES (newest first)\tKEY FINGERPRINT")
	var silent []string
	for i, n := range resp.Nodes {
		history := strings.Join(n.ChallengeHistory, ",")
		if n.Flagged {
			history = "FLAGGED " + history
		}
		if history == "" {
			history = "-"
		}
		capacity, used, free := "?", "?", "?"
		if s := spaces[i]; s.err != nil {
			silent = append(silent, fmt.Sprintf("%s: %v", n.Id, s.err))
		} else {
			capacity, used, free = "-", formatBytes(s.status.UsedBytes), formatBytes(s.status.FreeBytes)
			if s.status.CapacityBytes > 0 {
				capacity = formatBytes(s.status.CapacityBytes)
			}
			if s.status.FreeBytes == 0 {
				free += " FULL"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", n.Id, n.Address, n.Stake, n.ShardsOwned, capacity, used, free, history,
			crypto.KeyFingerprint(n.PublicKey))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(silent) > 0 {
		fmt.Fprintln(w, "\nspace unknown (the node did not answer NodeStatus):")
		for _, s := range silent {
			fmt.Fprintln(w, "  "+s)
		}
	}
	return nil
}
