package main

import (
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftstore/weft/api/wire"
)

// tlsFiles is this process's TLS setup, from the root command's flags
// (every subcommand takes them; the environment supplies the defaults, so
// one `export` covers a shell's commands).
var tlsFiles wire.TLSFiles

func addTLSFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&tlsFiles.CA, "tls-ca", os.Getenv("WEFT_TLS_CA"),
		"PEM file of the CA certificates to trust; set, every connection this command makes uses TLS ($WEFT_TLS_CA)")
	f.StringVar(&tlsFiles.Cert, "tls-cert", os.Getenv("WEFT_TLS_CERT"),
		"PEM certificate this process serves TLS with (control, node, gateway) and presents to servers that ask ($WEFT_TLS_CERT)")
	f.StringVar(&tlsFiles.Key, "tls-key", os.Getenv("WEFT_TLS_KEY"), "PEM private key of --tls-cert ($WEFT_TLS_KEY)")
	f.StringVar(&tlsFiles.ClientCA, "tls-client-ca", os.Getenv("WEFT_TLS_CLIENT_CA"),
		"servers require client certificates signed by one of these PEM CA certificates: mutual TLS ($WEFT_TLS_CLIENT_CA)")
}

// dialCredentials is the transport of every gRPC connection this process
// makes.
func dialCredentials() (grpc.DialOption, error) {
	creds, err := tlsFiles.DialCredentials()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(creds), nil
}

// serverTLS is the transport of a serving process (voter, node): the
// credentials of the connections it makes, and its server's.
func serverTLS() (credentials.TransportCredentials, grpc.ServerOption, error) {
	dial, err := tlsFiles.DialCredentials()
	if err != nil {
		return nil, nil, err
	}
	serve, err := tlsFiles.ServerCredentials()
	if err != nil {
		return nil, nil, err
	}
	return dial, grpc.Creds(serve), nil
}
