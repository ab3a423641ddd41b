package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/crypto"
)

func newKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage a storage node's BLS key",
	}
	cmd.AddCommand(newKeyGenerateCommand(), newKeyShowCommand())
	return cmd
}

type keyReport struct {
	File      string `json:"file"`
	PublicKey string `json:"public_key"`
	// Fingerprint is what `weft admin node list` shows and
	// `weft admin node stake --key-fingerprint` takes.
	Fingerprint string `json:"key_fingerprint"`
	PoP         string `json:"proof_of_possession"`
}

func newKeyGenerateCommand() *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "generate --out FILE",
		Short: "Create a new key file (mode 0600) and print the public key and its proof of possession",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			sk, err := crypto.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := crypto.WriteKeyFile(out, sk); err != nil {
				return err
			}
			return printKey(cmd.OutOrStdout(), format, out, sk)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "key file to create (must not exist)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func newKeyShowCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a key file's public key and proof of possession (never the secret key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sk, err := crypto.ReadKeyFile(args[0])
			if err != nil {
				return err
			}
			return printKey(cmd.OutOrStdout(), format, args[0], sk)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func printKey(w io.Writer, format, file string, sk *crypto.SecretKey) error {
	r := keyReport{File: file, PublicKey: sk.PublicKey().String(), Fingerprint: sk.PublicKey().Fingerprint(), PoP: sk.ProvePossession().String()}
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	_, err := fmt.Fprintf(w, "key file            %s\npublic key          %s\nkey fingerprint     %s\nproof of possession %s\n", r.File, r.PublicKey, r.Fingerprint, r.PoP)
	return err
}
