package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/internal/atomicfile"
)

// adminToken is `weft admin token init`: the operator token of a network
// whose voters read it from a file (--token-file), made once — how
// docker-compose.yml starts, with no token fixed in the file.
func adminToken(a *adminClient) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "The operator token the voters are started with"}
	var out string
	initCmd := &cobra.Command{
		Use:   "init --out FILE",
		Short: "Write the operator token file the voters read (--token-file), once",
		Long: "Writes a fresh random operator token to FILE (mode 0600) and prints it — the only time it is\n" +
			"shown — unless FILE exists, which is then kept. A token given with --token or $WEFT_TOKEN\n" +
			"is written instead, replacing FILE's. Needs no control plane: run it before the voters.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			given := a.tokens.token
			if given == "" {
				given = os.Getenv("WEFT_TOKEN")
			}
			return initTokenFile(cmd.OutOrStdout(), out, given)
		},
	}
	initCmd.Flags().StringVar(&out, "out", "", "the token file (required)")
	_ = initCmd.MarkFlagRequired("out")
	cmd.AddCommand(initCmd)
	return cmd
}

// initTokenFile writes the given token to path, or a random one unless
// path exists. The file appears whole or not at all (written aside, then
// linked or renamed into place): a crash never leaves voters an empty
// token.
func initTokenFile(w io.Writer, path, given string) error {
	token := given
	if token == "" {
		token = randomToken()
	}
	tmp, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer tmp.Cleanup()
	if _, err := tmp.WriteString(token + "\n"); err != nil {
		return err
	}
	if given != "" {
		if err := tmp.Replace(); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote the given operator token to %s\n", path)
		return nil
	}
	// Link, unlike rename, fails when path exists: the first token stays.
	if err := tmp.Link(); errors.Is(err, os.ErrExist) {
		fmt.Fprintf(w, "%s already holds the operator token: kept (it was printed when it was made)\n", path)
		return nil
	} else if err != nil {
		return err
	}
	fmt.Fprintf(w, "operator token, written to %s (shown only now):\n%s\n", path, token)
	return nil
}
