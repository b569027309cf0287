package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/inventory"
)

func newSecret(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "secret",
		Aliases: []string{"secrets"},
		Short:   "Store secrets profiles use (Omni join token, munge key): values are never shown again",
	}
	var fromFile string
	set := &cobra.Command{
		Use:   "set NAME [--from-file FILE]",
		Short: "Store a secret, read from FILE as it is (binary keys too) or from standard input (one trailing newline dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = e.stdin
			if fromFile != "" {
				f, err := os.Open(fromFile)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			raw, err := io.ReadAll(io.LimitReader(r, 64<<10+1))
			if err != nil {
				return err
			}
			if len(raw) > 64<<10 {
				return fmt.Errorf("secret %s: larger than 64 KiB", args[0])
			}
			v := string(raw)
			if fromFile == "" {
				v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
			}
			if v == "" {
				return fmt.Errorf("secret %s: the value is empty (pipe it in, or use --from-file)", args[0])
			}
			if err := cf.client(e).SetSecret(cmd.Context(), args[0], v); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "stored secret %s (%d bytes)\n", args[0], len(v))
			return nil
		},
	}
	set.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the stored secrets (names only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := cf.client(e).Secrets(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, list, "NAME\tUPDATED", func(s inventory.SecretInfo) []string {
				return []string{s.Name, s.Updated.Local().Format("2006-01-02 15:04:05")}
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.client(e).DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed secret %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(set, list, rm)
	return cmd
}
