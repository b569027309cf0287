package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/backup"
	"github.com/provisiond/provisiond/internal/config"
)

func newBackup(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent backup of the running daemon (inventory, timelines, sealed secrets and their key) to FILE",
		Long: "Write a backup of the running daemon to FILE ('-' for standard output): a gzip'd tar with a\n" +
			"consistent snapshot of the database, the key that seals its secrets, and a manifest. The\n" +
			"daemon keeps serving meanwhile. Needs the API token. The file holds secrets: it is written\n" +
			"with mode 0600; keep it like the data directory. 'provisiond restore FILE' puts it back.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			if args[0] == "-" {
				_, err := c.Backup(cmd.Context(), e.stdout)
				return err
			}
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer os.Remove(tmp.Name())
			n, err := c.Backup(cmd.Context(), tmp)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			m, err := backup.ReadManifestFile(tmp.Name())
			if err != nil {
				return fmt.Errorf("backup: the daemon's archive does not read back: %w", err)
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			fmt.Fprintf(e.stdout, "backup written to %s: %d bytes; %d machines, database %d bytes (sha256 %.16s…), secret key included: %v\n",
				dst, n, m.Machines, m.DBBytes, m.DBSHA256, m.SecretKey)
			return nil
		},
	}
}

func newRestore(e env) *cobra.Command {
	var configPath, dataDir string
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into the data directory of a stopped daemon",
		Long: "Restore a backup written by 'provisiond backup' into the data directory (from --data-dir, else\n" +
			"the config's data_dir). The daemon must be stopped: restore refuses while the database is in use.\n" +
			"The archive is checked (manifest, checksum, a database that opens) before anything changes; the\n" +
			"files it replaces are kept next to it with a .before-restore-TIME suffix. With store: etcd in the\n" +
			"config the inventory goes into the config's etcd prefix, which must be empty (stop every\n" +
			"instance, then etcdctl del --prefix PREFIX, or use a new prefix), and the secret key into the\n" +
			"data directory: copy it to the other instances.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(configPath, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			if dataDir != "" {
				cfg.DataDir = dataDir
			}
			var in io.Reader = e.stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				defer f.Close()
				in = f
			}
			if cfg.Store == "etcd" {
				return restoreEtcd(cmd.Context(), e, in, &cfg)
			}
			res, err := backup.Restore(in, cfg.DataDir)
			if err != nil {
				return err
			}
			m := res.Manifest
			fmt.Fprintf(e.stdout, "restored into %s: %d machines, database %d bytes, from a backup of %s (provisiond %s)\n",
				cfg.DataDir, m.Machines, m.DBBytes, m.Created.Format("2006-01-02 15:04:05 MST"), m.Version)
			for _, k := range res.Kept {
				fmt.Fprintf(e.stdout, "kept the previous file as %s\n", k)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", defaultConfigPath, "YAML config file (for data_dir)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory to restore into (default: the config's data_dir, /var/lib/provisiond)")
	return cmd
}
