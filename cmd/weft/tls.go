package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftstore/weft/api/wire"
)

// tlsKey carries a command's TLS setup in its context: the root command's
// flags fill it (every subcommand takes them; the environment supplies the
// defaults, so one `export` covers a shell's commands). Per command, not
// global: tests run several commands at once in one process.
type tlsKey struct{}

func addTLSFlags(root *cobra.Command) {
	files := &wire.TLSFiles{}
	f := root.PersistentFlags()
	f.StringVar(&files.CA, "tls-ca", os.Getenv("WEFT_TLS_CA"),
		"PEM file of the CA certificates to trust; set, every connection this command makes uses TLS ($WEFT_TLS_CA)")
	f.StringVar(&files.Cert, "tls-cert", os.Getenv("WEFT_TLS_CERT"),
		"PEM certificate this process serves TLS with (control, node, gateway) and presents to servers that ask; "+
			"a voter's must name it for Raft, with the URI SAN weft://voter/ID ($WEFT_TLS_CERT)")
	f.StringVar(&files.Key, "tls-key", os.Getenv("WEFT_TLS_KEY"), "PEM private key of --tls-cert ($WEFT_TLS_KEY)")
	f.StringVar(&files.ClientCA, "tls-client-ca", os.Getenv("WEFT_TLS_CLIENT_CA"),
		"servers require client certificates signed by one of these PEM CA certificates: mutual TLS ($WEFT_TLS_CLIENT_CA)")
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		cmd.SetContext(context.WithValue(cmd.Context(), tlsKey{}, files))
	}
}

// tlsOf is the TLS setup of the command ctx belongs to (none outside one).
func tlsOf(ctx context.Context) *wire.TLSFiles {
	if f, ok := ctx.Value(tlsKey{}).(*wire.TLSFiles); ok {
		return f
	}
	return &wire.TLSFiles{}
}

// dialCredentials is the transport of every gRPC connection the command
// makes.
func dialCredentials(ctx context.Context) (grpc.DialOption, error) {
	creds, err := tlsOf(ctx).DialCredentials()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(creds), nil
}

// serverTLS is the transport of a serving process (voter, node): the
// credentials of the connections it makes, and its server's.
func serverTLS(ctx context.Context) (credentials.TransportCredentials, grpc.ServerOption, error) {
	files := tlsOf(ctx)
	dial, err := files.DialCredentials()
	if err != nil {
		return nil, nil, err
	}
	serve, err := files.ServerCredentials()
	if err != nil {
		return nil, nil, err
	}
	return dial, grpc.Creds(serve), nil
}
