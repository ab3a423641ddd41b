package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/devnet"
)

func newDevnetCommand() *cobra.Command {
	var cfg devnet.Config
	var verbose bool
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a whole network on loopback: one control-plane voter and N storage nodes",
		Long: "Starts a control plane and storage nodes in this process, stakes the nodes, advances\n" +
			"to epoch 1 and prints where everything is and the credentials to use. Data lives in\n" +
			"--dir (default: a temporary directory, removed on exit). Stop with Ctrl-C.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			net, err := devnet.Start(startCtx, cfg)
			if err != nil {
				return err
			}
			defer net.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "control plane: %s\n", net.ControlAddr)
			for i := range net.Nodes() {
				fmt.Fprintf(out, "storage node %s: %s (shards %v)\n", net.NodeID(i), net.NodeAddr(i), net.Owned(i))
			}
			fmt.Fprintf(out, "\nclient token (weft store --token …):   %s\noperator token (weft admin --token …): %s\n\nexport WEFT_CONTROL=%s\n",
				net.ClientToken, net.OperatorToken, net.ControlAddr)
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 7, "storage nodes")
	f.IntVar(&cfg.Shards, "shards", 0, "shards n (default: 3 per node)")
	f.StringVar(&cfg.Dir, "dir", "", "data directory (default: temporary)")
	f.StringVar(&cfg.ControlAddr, "control-addr", "127.0.0.1:7001", "control-plane gRPC address")
	f.BoolVarP(&verbose, "verbose", "v", false, "log the nodes' info messages")
	return cmd
}
