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
	root := newRootCommand()
	root.SetArgs(dashIDArgs(root, os.Args[1:]))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		if hint := argsHint(os.Args[1:], err); hint != "" {
			fmt.Fprintln(os.Stderr, hint)
		}
		os.Exit(1)
	}
}

// argsHint explains an argument error around a blob ID: flags written
// after "--", where everything is an argument. (An ID starting with '-'
// is no error: dashIDArgs places it.)
func argsHint(args []string, err error) string {
	sub, dashes := "", -1
	for i, a := range args {
		if a == "--" {
			dashes = i
			break
		}
		if sub == "" && !strings.HasPrefix(a, "-") {
			sub = a
		}
	}
	if !strings.Contains(err.Error(), "arg(s), received") || dashes < 0 {
		return ""
	}
	for _, a := range args[dashes+1:] {
		if _, perr := crypto.ParseBlobID(a); perr != nil && strings.HasPrefix(a, "-") {
			return fmt.Sprintf("weft: everything after '--' is an argument, %s too: give the flags before '--' (weft %s [flags] -- BLOB_ID)", a, sub)
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
