// Command weft is the one binary of the weft blob store: control plane,
// storage node, client and operator tools are its subcommands.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "weft: a Walrus-style decentralized blob store",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newBlobCommand(), newKeyCommand(), newControlCommand(), newAdminCommand())
	root.AddCommand(newClientCommands()...)
	root.AddCommand(newNodeCommand(), newDevnetCommand())
	root.AddCommand(newGatewayCommand())
	addTLSFlags(root)
	return root
}
