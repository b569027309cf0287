package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/provisiond/provisiond/internal/backup"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/kv"
)

// storeFlags say how migrate and restore reach an etcd store.
type storeFlags struct {
	configPath                string
	caFile, certFile, keyFile string
}

func newMigrate(e env) *cobra.Command {
	var sf storeFlags
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate --from STORE --to STORE",
		Short: "Copy an inventory from one store into another (bbolt to etcd, or back), verified",
		Long: "Copy everything in one inventory (machines, timelines, history, secrets as sealed, hardware\n" +
			"records) into an empty other one, then read both back and compare the keys per bucket and a\n" +
			"SHA-256 over every key and value. A store is bbolt:PATH (a stopped daemon's database, or a new\n" +
			"file), etcd://HOST:PORT[,HOST:PORT…]/PREFIX/ (https with --etcd-ca-file and the client\n" +
			"certificate flags), or etcd: the config's etcd section. The secret key file is not part of a\n" +
			"store: copy it to every instance's data directory.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("migrate needs --from and --to (e.g. --from bbolt:/var/lib/provisiond/provisiond.db --to etcd://192.0.2.11:2379/provisiond/)")
			}
			ctx := cmd.Context()
			src, closeSrc, err := sf.open(ctx, cmd, from, true)
			if err != nil {
				return err
			}
			defer closeSrc()
			dst, closeDst, err := sf.open(ctx, cmd, to, false)
			if err != nil {
				return err
			}
			defer closeDst()
			start := time.Now()
			sum, err := kv.Migrate(ctx, dst, src)
			if err != nil {
				return fmt.Errorf("migrate %s to %s: %w", from, to, err)
			}
			fmt.Fprintf(e.stdout, "migrated %s to %s in %s\n", from, to, time.Since(start).Round(time.Millisecond))
			printSummary(e, sum)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the store to copy: bbolt:PATH, etcd://HOSTS/PREFIX/ or etcd")
	cmd.Flags().StringVar(&to, "to", "", "the empty store to copy into: bbolt:PATH (a new file), etcd://HOSTS/PREFIX/ or etcd")
	sf.register(cmd)
	return cmd
}

func (sf *storeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&sf.configPath, "config", "c", defaultConfigPath, "YAML config file (for the etcd section)")
	cmd.Flags().StringVar(&sf.caFile, "etcd-ca-file", "", "CA of the etcd members' certificates (etcd:// URLs then use https)")
	cmd.Flags().StringVar(&sf.certFile, "etcd-cert-file", "", "client certificate for etcd (PEM)")
	cmd.Flags().StringVar(&sf.keyFile, "etcd-key-file", "", "client certificate's key for etcd (PEM)")
}

func printSummary(e env, sum kv.Summary) {
	names := make([]string, 0, len(sum.Keys))
	for b := range sum.Keys {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		fmt.Fprintf(e.stdout, "  %-9s %6d keys\n", b, sum.Keys[b])
	}
	fmt.Fprintf(e.stdout, "  sha256    %s (source and copy match)\n", sum.SHA256)
}

// open opens a store named as --from or --to take it.
func (sf *storeFlags) open(ctx context.Context, cmd *cobra.Command, spec string, source bool) (kv.DB, func(), error) {
	switch {
	case strings.HasPrefix(spec, "bbolt:"):
		path := strings.TrimPrefix(spec, "bbolt:")
		if _, err := os.Stat(path); source && err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		} else if !source && err == nil {
			return nil, nil, fmt.Errorf("%s exists: migrate into a new file (the daemon's data_dir/provisiond.db once it is moved away)", path)
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: source})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, nil, fmt.Errorf("%s is in use: stop provisiond serve first", path)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("opening %s: %w", path, err)
		}
		return kv.Bolt{DB: db}, func() { db.Close() }, nil
	case spec == "etcd":
		cfg, err := config.Load(sf.configPath, cmd.Flags().Changed("config"))
		if err != nil {
			return nil, nil, err
		}
		cfg.Store = "etcd"
		if err := cfg.Validate(); err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", sf.configPath, err)
		}
		db, client, err := kv.DialEtcd(ctx, daemon.EtcdConfig(&cfg))
		if err != nil {
			return nil, nil, err
		}
		return db, func() { client.Close() }, nil
	case strings.HasPrefix(spec, "etcd://"):
		hosts, prefix, _ := strings.Cut(strings.TrimPrefix(spec, "etcd://"), "/")
		prefix = "/" + prefix
		if hosts == "" || !strings.HasSuffix(prefix, "/") || prefix == "/" {
			return nil, nil, fmt.Errorf("%s: write etcd://HOST:PORT[,HOST:PORT…]/PREFIX/ (e.g. etcd://192.0.2.11:2379/provisiond/)", spec)
		}
		scheme := "http://"
		if sf.caFile != "" || sf.certFile != "" {
			scheme = "https://"
		}
		var eps []string
		for _, h := range strings.Split(hosts, ",") {
			eps = append(eps, scheme+h)
		}
		db, client, err := kv.DialEtcd(ctx, kv.EtcdConfig{Endpoints: eps, Prefix: prefix, CAFile: sf.caFile, CertFile: sf.certFile, KeyFile: sf.keyFile, Timeout: 10 * time.Second})
		if err != nil {
			return nil, nil, err
		}
		return db, func() { client.Close() }, nil
	}
	return nil, nil, fmt.Errorf("%q is not a store: write bbolt:PATH, etcd://HOST:PORT/PREFIX/ or etcd", spec)
}

// restoreEtcd restores a backup into the config's etcd prefix (empty) and
// its secret key into the data directory.
func restoreEtcd(ctx context.Context, e env, in io.Reader, cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp, err := os.MkdirTemp("", "provisiond-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	res, err := backup.Restore(in, tmp)
	if err != nil {
		return err
	}
	src, err := bolt.Open(filepath.Join(tmp, daemon.DBFile), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, client, err := kv.DialEtcd(ctx, daemon.EtcdConfig(cfg))
	if err != nil {
		return err
	}
	defer client.Close()
	sum, err := kv.Migrate(ctx, dst, kv.Bolt{DB: src})
	if err != nil {
		return fmt.Errorf("restore into etcd prefix %s: %w", cfg.Etcd.Prefix, err)
	}
	m := res.Manifest
	fmt.Fprintf(e.stdout, "restored into etcd prefix %s: %d machines, from a backup of %s (provisiond %s)\n",
		cfg.Etcd.Prefix, m.Machines, m.Created.Format("2006-01-02 15:04:05 MST"), m.Version)
	printSummary(e, sum)
	if !m.SecretKey {
		return nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(tmp, daemon.SecretKeyFile))
	if err != nil {
		return err
	}
	dstKey := filepath.Join(cfg.DataDir, daemon.SecretKeyFile)
	if old, err := os.ReadFile(dstKey); err == nil && !bytes.Equal(old, key) {
		kept := dstKey + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(dstKey, kept); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "kept the previous file as %s\n", kept)
	}
	if err := os.WriteFile(dstKey, key, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "secret key written to %s: copy it to every instance's data directory\n", dstKey)
	return nil
}
