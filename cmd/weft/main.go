// Command weft is the one binary of the weft blob store: control plane,
// storage node, client and operator tools are its subcommands.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/crypto"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		if hint := dashIDHint(os.Args[1:], err); hint != "" {
			fmt.Fprintln(os.Stderr, hint)
		}
		os.Exit(1)
	}
}

// dashIDHint explains the flag error a blob ID starting with '-' (one in
// 64) causes, and how to pass it.
func dashIDHint(args []string, err error) string {
	if !strings.Contains(err.Error(), "unknown shorthand flag") {
		return ""
	}
	for _, a := range args {
		if _, perr := crypto.ParseBlobID(a); perr == nil && strings.HasPrefix(a, "-") {
			return fmt.Sprintf("weft: %s is a blob ID that starts with '-': put it after '--' (weft read -- %s)", a, a)
		}
	}
	return ""
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
