package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// adminChallenge is `weft admin challenge start|close|status`.
func adminChallenge(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "challenge", Short: "Storage challenges: nodes prove they still hold their slivers"}
	start := &cobra.Command{
		Use: "start", Short: "Open a challenge round now (closing an open one)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.StartChallenge(ctx, &weftv1.StartChallengeRequest{})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "challenge round %d started\n", m.(*weftv1.StartChallengeResponse).Round)
			})
		},
	}
	closeRound := &cobra.Command{
		Use: "close [ROUND]", Short: "Close a round (default: the latest); nodes without a result missed it", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var round uint64 // 0: the latest, as the leader sees it
			if len(args) == 1 {
				r, err := strconv.ParseUint(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("round %q: %w", args[0], err)
				}
				round = r
			}
			what := "the latest challenge round"
			if round > 0 {
				what = fmt.Sprintf("challenge round %d", round)
			}
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.CloseChallenge(ctx, &weftv1.CloseChallengeRequest{Round: round})
			}, done(what+" is closed"))
		},
	}
	status := &cobra.Command{
		Use: "status [ROUND]", Short: "Show a round (default: the latest): sampled blobs and each node's outcome", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var round uint64
			if len(args) == 1 {
				r, err := strconv.ParseUint(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("round %q: %w", args[0], err)
				}
				round = r
			}
			resp, err := a.challenge(cmd, round)
			if err != nil {
				return err
			}
			return a.print(cmd.OutOrStdout(), resp, func(w io.Writer, m proto.Message) {
				r := m.(*weftv1.GetChallengeResponse)
				state := "closed"
				if r.Open {
					state = "open"
				}
				fmt.Fprintf(w, "round\t%d (%s)\nepoch\t%d\nblobs sampled\t%d\n\n", r.Round, state, r.Epoch, len(r.Blobs))
				fmt.Fprintln(w, "NODE\tSHARDS\tOUTCOME\tPASSED BY\tFAILED BY\tEVIDENCE")
				for _, n := range r.Nodes {
					fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\n", n.Node, len(n.Shards), n.Outcome, n.PassedWeight, n.FailedWeight, strings.Join(n.Reasons, "; "))
				}
			})
		},
	}
	cmd.AddCommand(start, closeRound, status)
	return cmd
}

// challenge reads a round (0: the latest).
func (a *adminClient) challenge(cmd *cobra.Command, round uint64) (*weftv1.GetChallengeResponse, error) {
	conn, ctx, done, err := a.dial(cmd)
	if err != nil {
		return nil, err
	}
	defer done()
	return weftv1.NewClientClient(conn).GetChallenge(ctx, &weftv1.GetChallengeRequest{Round: round})
}

// evictCommand is `weft admin node evict ID`: stake 0 and an epoch change,
// so that the others take the node's shards over (rebuilding what it will
// not hand over).
func evictCommand(a *adminClient) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "evict ID", Short: "Set a node's stake to 0 and advance the epoch: its shards move to the others", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				if _, err := c.SetStake(ctx, &weftv1.SetStakeRequest{Node: args[0], Stake: 0}); err != nil {
					return nil, err
				}
				resp, err := c.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{Force: force})
				if err != nil {
					return nil, fmt.Errorf("stake of %s set to 0, but the epoch did not advance (a handover in progress? --force): %w", args[0], err)
				}
				return resp, nil
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "%s evicted: epoch %d started without it\n", args[0], m.(*weftv1.AdvanceEpochResponse).Epoch)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "advance even though a handover is in progress")
	return cmd
}
