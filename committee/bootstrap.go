package committee

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// Bootstrap as rqlite and consul do it: with --bootstrap-expect K, a new
// voter asks the --join addresses who they are until it knows K voters
// (itself included), then bootstraps them all with the same configuration.
// A voter that already has Raft state skips all of it, so the same command
// starts a cluster, restarts a voter and never wipes anything. With --join
// alone, a new voter asks the cluster to add it.

// HasState reports whether the node already has Raft state on disk.
func (n *Node) HasState() bool { return n.hadState }

// DiscoverAndBootstrap waits until expect voters answer (this one and the
// join addresses), then bootstraps the cluster with them.
func (n *Node) DiscoverAndBootstrap(ctx context.Context, join []string, expect int, token string) error {
	if n.hadState {
		return nil
	}
	self := raft.Server{ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.cfg.RaftAddr)}
	for {
		servers := []raft.Server{self}
		for _, addr := range join {
			info, err := n.askPeer(ctx, addr, token)
			if err != nil || info.Id == n.cfg.ID {
				continue
			}
			servers = append(servers, raft.Server{ID: raft.ServerID(info.Id), Address: raft.ServerAddress(info.RaftAddr)})
		}
		slices.SortFunc(servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
		servers = slices.CompactFunc(servers, func(a, b raft.Server) bool { return a.ID == b.ID })
		if len(servers) >= expect {
			err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
			if err != nil && err != raft.ErrCantBootstrap {
				return err
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("committee: %d of %d voters found before giving up: %w", len(servers), expect, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// JoinCluster asks the voters at the join addresses to add this one, until
// one of them (forwarding to the leader) does.
func (n *Node) JoinCluster(ctx context.Context, join []string, token string) error {
	if n.hadState {
		return nil
	}
	for {
		for _, addr := range join {
			conn, err := grpc.NewClient(addr, n.dialOptions()...)
			if err != nil {
				continue
			}
			cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, mdAuthorization, "Bearer "+token), 5*time.Second)
			_, err = weftv1.NewAdminClient(conn).AddPeer(cctx, &weftv1.AddPeerRequest{Id: n.cfg.ID, RaftAddr: n.cfg.RaftAddr})
			cancel()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("committee: no voter of %v added this one: %w", join, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *Node) askPeer(ctx context.Context, addr, token string) (*weftv1.PeerInfoResponse, error) {
	conn, err := grpc.NewClient(addr, n.dialOptions()...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, mdAuthorization, "Bearer "+token), 2*time.Second)
	defer cancel()
	return weftv1.NewAdminClient(conn).PeerInfo(cctx, &weftv1.PeerInfoRequest{})
}
