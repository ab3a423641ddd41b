package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/internal/atomicfile"
)

// adminClient is what every `weft admin` command needs.
type adminClient struct {
	control string
	format  string
	tokens  tokenFlags
	timeout time.Duration
}

func (a *adminClient) dial(cmd *cobra.Command) (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	token, err := a.tokens.resolve()
	if err != nil {
		return nil, nil, nil, err
	}
	// Any voter will do (followers forward writes): several may be listed.
	conn, err := dialControl(cmd.Context(), strings.Split(a.control, ","), grpc.WithChainUnaryInterceptor(retryUnavailable))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(cmd.Context(), "authorization", "Bearer "+token), a.timeout)
	return conn, ctx, func() { cancel(); conn.Close() }, nil
}

// call runs one Admin RPC and prints its response as a table (text) or as
// protobuf JSON (-o json).
func (a *adminClient) call(cmd *cobra.Command, rpc func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error), table func(w io.Writer, m proto.Message)) error {
	conn, ctx, done, err := a.dial(cmd)
	if err != nil {
		return err
	}
	defer done()
	resp, err := rpc(ctx, weftv1.NewAdminClient(conn))
	if err != nil {
		return err
	}
	return a.print(cmd.OutOrStdout(), resp, table)
}

func (a *adminClient) print(w io.Writer, m proto.Message, table func(w io.Writer, m proto.Message)) error {
	if a.format == "json" {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw, m)
	return tw.Flush()
}

func newAdminCommand() *cobra.Command {
	a := &adminClient{}
	cmd := &cobra.Command{Use: "admin", Short: "Operate the control plane (membership, nodes, epochs, clients, snapshots)"}
	control := os.Getenv("WEFT_CONTROL")
	if control == "" {
		control = "127.0.0.1:7001"
	}
	cmd.PersistentFlags().StringVar(&a.control, "control", control, "gRPC addresses of control-plane voters, comma-separated ($WEFT_CONTROL)")
	cmd.PersistentFlags().StringVarP(&a.format, "output", "o", "text", "output format: text or json")
	cmd.PersistentFlags().DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for an answer")
	a.tokens.add(cmd)
	cmd.AddCommand(
		adminStatus(a),
		adminPeers(a),
		adminLeader(a),
		adminNodes(a),
		adminEpoch(a),
		adminClients(a),
		adminSnapshot(a),
		adminBlob(a),
		adminChallenge(a),
		adminToken(a),
		adminEvents(a),
	)
	return cmd
}

func adminStatus(a *adminClient) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Show this voter's view: Raft state, leader, epoch and phase", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.Status(ctx, &weftv1.StatusRequest{})
			}, printStatus)
		},
	}
}

func printStatus(w io.Writer, m proto.Message) {
	s := m.(*weftv1.StatusResponse)
	fmt.Fprintf(w, "voter\t%s (%s)\nleader\t%s\napplied index\t%d\nepoch\t%d (%s)\nshards\t%d\npending shards\t%d\n",
		s.Id, s.RaftState, s.LeaderId, s.AppliedIndex, s.Epoch, s.Phase, s.Shards, len(s.PendingShards))
}

func adminPeers(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "peers", Short: "Control-plane voters"}
	list := &cobra.Command{
		Use: "list", Short: "List voters with their lag", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.ListPeers(ctx, &weftv1.ListPeersRequest{})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintln(w, "ID\tRAFT\tGRPC\tROLE\tAPPLIED\tLAG\tERROR")
				for _, p := range m.(*weftv1.ListPeersResponse).Peers {
					role := p.Suffrage
					if p.Leader {
						role = "leader"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Id, p.RaftAddr, p.GrpcAddr, role, p.AppliedIndex, p.Lag, p.Error)
				}
			})
		},
	}
	add := &cobra.Command{
		Use: "add ID RAFT_ADDR", Short: "Add a voter", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.AddPeer(ctx, &weftv1.AddPeerRequest{Id: args[0], RaftAddr: args[1]})
			}, done("voter "+args[0]+" added"))
		},
	}
	remove := &cobra.Command{
		Use: "remove ID", Short: "Remove a voter", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.RemovePeer(ctx, &weftv1.RemovePeerRequest{Id: args[0]})
			}, done("voter "+args[0]+" removed"))
		},
	}
	cmd.AddCommand(list, add, remove)
	return cmd
}

func done(msg string) func(io.Writer, proto.Message) {
	return func(w io.Writer, _ proto.Message) { fmt.Fprintln(w, msg) }
}

func adminLeader(a *adminClient) *cobra.Command {
	var to string
	transfer := &cobra.Command{
		Use: "transfer", Short: "Hand leadership to another voter", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.TransferLeadership(ctx, &weftv1.TransferLeadershipRequest{ToId: to})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "leader is now %s\n", m.(*weftv1.TransferLeadershipResponse).LeaderId)
			})
		},
	}
	transfer.Flags().StringVar(&to, "to", "", "voter to hand leadership to (default: any)")
	cmd := &cobra.Command{Use: "leader", Short: "Leadership"}
	cmd.AddCommand(transfer)
	return cmd
}

func adminNodes(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Storage nodes in the registry"}
	list := &cobra.Command{
		Use: "list", Short: "List registered storage nodes, with the space each reports (capacity, used, free)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.listNodes(cmd) },
	}
	cmd.AddCommand(list, stakeCommand(a), adminNodesRemove(a), evictCommand(a))
	return cmd
}

// stakeCommand sets a node's stake, optionally pinned to the key the
// operator means to stake: without the pin a stake goes to whichever key
// registered the ID first.
func stakeCommand(a *adminClient) *cobra.Command {
	var fingerprint string
	cmd := &cobra.Command{
		Use: "stake ID AMOUNT", Short: "Set a node's stake (takes effect at the next epoch change)", Args: cobra.ExactArgs(2),
		Long: "Set a node's stake (takes effect at the next epoch change). With --key-fingerprint the\n" +
			"control plane refuses the stake unless ID is registered to that key: take the fingerprint\n" +
			"from the node's owner (weft key show on their key file), not from weft admin node list.",
		RunE: func(cmd *cobra.Command, args []string) error {
			amount, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("stake %q: %w", args[1], err)
			}
			req := &weftv1.SetStakeRequest{Node: args[0], Stake: amount, KeyFingerprint: strings.ToLower(fingerprint)}
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.SetStake(ctx, req)
			}, done(fmt.Sprintf("stake of %s set to %d", args[0], amount)))
		},
	}
	cmd.Flags().StringVar(&fingerprint, "key-fingerprint", "", "refuse unless ID is registered to the key with this fingerprint (16 hex characters)")
	return cmd
}

func adminNodesRemove(a *adminClient) *cobra.Command {
	return &cobra.Command{
		Use: "remove ID", Short: "Remove a node that owns and holds no shard", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.RemoveNode(ctx, &weftv1.RemoveNodeRequest{Node: args[0]})
			}, done("node "+args[0]+" removed"))
		},
	}
}

func adminEpoch(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "epoch", Short: "Epochs"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the epoch, its phase, each node's handover (pending, synced, bytes copied and rebuilt) and stuck shards",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.epochStatus(cmd) },
	}
	var force bool
	advance := &cobra.Command{
		Use: "advance", Short: "Start the next epoch (from Stable, or --force)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{Force: force})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "epoch %d started\n", m.(*weftv1.AdvanceEpochResponse).Epoch)
			})
		},
	}
	advance.Flags().BoolVar(&force, "force", false, "advance even though some shards' handover is not complete")
	cmd.AddCommand(status, advance)
	return cmd
}

func adminClients(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "Client credentials and quotas (bytes × epochs)"}
	var quota uint64
	add := &cobra.Command{
		Use: "add NAME", Short: "Issue a client credential (the token is shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.AddClient(ctx, &weftv1.AddClientRequest{Client: args[0], Quota: quota})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "client\t%s\ntoken\t%s\n", args[0], m.(*weftv1.AddClientResponse).Token)
			})
		},
	}
	add.Flags().Uint64Var(&quota, "quota", 0, "quota in bytes × epochs")
	list := &cobra.Command{
		Use: "list", Short: "List clients and their quota use", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.ListClients(ctx, &weftv1.ListClientsRequest{})
			}, func(w io.Writer, m proto.Message) {
				fmt.Fprintln(w, "CLIENT\tQUOTA\tUSED")
				for _, c := range m.(*weftv1.ListClientsResponse).Clients {
					fmt.Fprintf(w, "%s\t%d\t%d\n", c.Client, c.Quota, c.Used)
				}
			})
		},
	}
	setQuota := &cobra.Command{
		Use: "quota NAME BYTES_X_EPOCHS", Short: "Set a client's quota", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("quota %q: %w", args[1], err)
			}
			return a.call(cmd, func(ctx context.Context, c weftv1.AdminClient) (proto.Message, error) {
				return c.SetQuota(ctx, &weftv1.SetQuotaRequest{Client: args[0], Quota: q})
			}, done(fmt.Sprintf("quota of %s set to %d", args[0], q)))
		},
	}
	cmd.AddCommand(add, list, setQuota)
	return cmd
}

func adminSnapshot(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Save or restore the control-plane state"}
	save := &cobra.Command{
		Use: "save FILE", Short: "Save a consistent copy of the state as of the latest commit", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			index, err := saveSnapshot(ctx, weftv1.NewAdminClient(conn), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapshot of state index %d saved to %s\n", index, args[0])
			return nil
		},
	}
	restore := &cobra.Command{
		Use: "restore FILE", Short: "Replace the whole cluster's state with a saved one", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			conn, ctx, done, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			index, err := restoreSnapshot(ctx, weftv1.NewAdminClient(conn), data)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "state restored from %s at Raft index %d\n", args[0], index)
			return nil
		},
	}
	cmd.AddCommand(save, restore)
	return cmd
}

// saveSnapshot streams the control plane's state into path and returns the
// state index it is as of. The file appears only once the whole stream is
// on disk: a call cut short leaves no truncated snapshot that a later
// restore would take for a whole one.
func saveSnapshot(ctx context.Context, c weftv1.AdminClient, path string) (uint64, error) {
	stream, err := c.SaveSnapshot(ctx, &weftv1.SaveSnapshotRequest{})
	if err != nil {
		return 0, err
	}
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Cleanup()
	var index uint64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if _, err := f.Write(chunk.Data); err != nil {
			return 0, err
		}
		index = max(index, chunk.Index)
	}
	if err := f.Replace(); err != nil {
		return 0, err
	}
	return index, nil
}

// restoreSnapshot sends a saved state in 1 MiB chunks (under gRPC's
// default message limit) and returns the Raft index it was applied at.
func restoreSnapshot(ctx context.Context, c weftv1.AdminClient, data []byte) (uint64, error) {
	stream, err := c.RestoreSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if err := stream.Send(&weftv1.SnapshotChunk{Data: data[off:min(off+1<<20, len(data))]}); err == io.EOF {
			break // the server ended the call: CloseAndRecv has its answer
		} else if err != nil {
			return 0, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, err
	}
	return resp.Index, nil
}

func adminBlob(a *adminClient) *cobra.Command {
	status := &cobra.Command{
		Use: "status BLOB_ID", Short: "Show a blob's registry entry", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := crypto.ParseBlobID(args[0])
			if err != nil {
				return err
			}
			conn, ctx, done, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := weftv1.NewClientClient(conn).BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: id[:]})
			if err != nil {
				return err
			}
			return a.print(cmd.OutOrStdout(), resp, func(w io.Writer, m proto.Message) {
				s := m.(*weftv1.BlobStatusResponse)
				fmt.Fprintf(w, "blob\t%s\nstatus\t%s\nlength\t%d bytes\nshards\t%d (encoding %d)\nregistered in epoch\t%d\ncertified in epoch\t%d\nend epoch\t%d\n",
					args[0], s.Status, s.Length, s.Shards, s.Encoding, s.RegisteredEpoch, s.CertifiedEpoch, s.EndEpoch)
			})
		},
	}
	cmd := &cobra.Command{Use: "blob", Short: "Blobs in the registry"}
	cmd.AddCommand(status)
	return cmd
}

// Admin calls that find no voter up, or no leader (an election), are
// tried again with backoff until the command's --timeout: an operator
// running `weft admin` just after a voter died should get an answer, not
// Unavailable.
const (
	adminBackoff    = 100 * time.Millisecond
	adminMaxBackoff = 2 * time.Second
)

// retryUnavailable retries a unary call that failed Unavailable while the
// context's deadline leaves room. Every attempt carries one request ID, so
// a write whose answer was lost is answered with its first outcome by the
// control plane (committee.Service.propose) instead of being applied
// twice.
func retryUnavailable(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("weft-request-id")) == 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, "weft-request-id", newRequestID())
	}
	backoff := adminBackoff
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		deadline, ok := ctx.Deadline()
		if !ok || time.Until(deadline) < backoff {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, adminMaxBackoff)
	}
}

// newRequestID is a random command ID for one admin call.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
