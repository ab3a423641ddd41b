package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// adminEvents pages the control plane's ordered event stream: the audit
// trail of who registered, certified, extended, transferred and deleted
// what, and of the committee's epochs and challenges.
func adminEvents(a *adminClient) *cobra.Command {
	var (
		after  uint64
		limit  uint32
		kinds  []string
		client string
		object uint64
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the control plane's events (the audit trail), oldest first",
		Long: `Show the control plane's ordered events after an index: nodes, epochs, blobs and
blob objects (who created, extended, transferred, deleted them and set their
attributes), challenges. Filters apply to the page fetched; --follow waits for
new events until interrupted.`,
		Example: `  weft admin events --after 1200
  weft admin events --kind object-deleted,object-transferred --client alice
  weft admin events --object 4711 --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit == 0 || limit > 1000 {
				return fmt.Errorf("--limit %d: 1–1000", limit)
			}
			conn, ctx, done, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			keep := eventFilter(kinds, client, object)
			base, wait := ctx, uint32(0)
			if follow {
				// The dial's timeout bounds one call, not a follow (the
				// event stream needs no credential).
				base, wait = cmd.Context(), 10_000
			}
			for {
				callCtx, cancel := context.WithTimeout(base, a.timeout+time.Duration(wait)*time.Millisecond)
				resp, err := weftv1.NewWatchClient(conn).Events(callCtx, &weftv1.EventsRequest{AfterIndex: after, Limit: limit, TimeoutMs: wait})
				cancel()
				if err != nil {
					return err
				}
				page := &weftv1.EventsResponse{}
				for _, e := range resp.Events {
					after = max(after, e.Index)
					if keep(e) {
						page.Events = append(page.Events, e)
					}
				}
				if err := a.print(cmd.OutOrStdout(), page, printEvents); err != nil {
					return err
				}
				if !follow || cmd.Context().Err() != nil {
					return cmd.Context().Err()
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "show events of indices after this one")
	cmd.Flags().Uint32Var(&limit, "limit", 100, "events fetched per page (1–1000)")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "only these kinds (e.g. object-deleted,blob-expired)")
	cmd.Flags().StringVar(&client, "client", "", "only events a client acted in (or received an object by)")
	cmd.Flags().Uint64Var(&object, "object", 0, "only events of this blob object")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep waiting for new events")
	return cmd
}

func eventFilter(kinds []string, client string, object uint64) func(e *weftv1.Event) bool {
	return func(e *weftv1.Event) bool {
		return (len(kinds) == 0 || slices.Contains(kinds, e.Kind)) &&
			(client == "" || e.Client == client || e.To == client) &&
			(object == 0 || e.Object == object)
	}
}

func printEvents(w io.Writer, m proto.Message) {
	fmt.Fprintln(w, "INDEX\tEPOCH\tKIND\tWHAT")
	for _, e := range m.(*weftv1.EventsResponse).Events {
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", e.Index, e.Epoch, e.Kind, eventSubject(e))
	}
}

// eventSubject says what an event is about, in a few words.
func eventSubject(e *weftv1.Event) string {
	var parts []string
	if e.Client != "" {
		parts = append(parts, "client "+e.Client)
	}
	if e.Object != 0 {
		parts = append(parts, fmt.Sprintf("object %d", e.Object))
	}
	if e.To != "" {
		parts = append(parts, "to "+e.To)
	}
	if len(e.BlobId) == crypto.DigestSize {
		parts = append(parts, "blob "+crypto.BlobID(e.BlobId).String())
	}
	if e.Node != "" {
		parts = append(parts, "node "+e.Node)
	}
	if e.Kind == "shard-synced" {
		parts = append(parts, fmt.Sprintf("shard %d", e.Shard))
	}
	if len(e.Moves) > 0 {
		parts = append(parts, fmt.Sprintf("%d shards move", len(e.Moves)))
	}
	return strings.Join(parts, ", ")
}
