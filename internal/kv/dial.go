package kv

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig says how to reach an etcd cluster.
type EtcdConfig struct {
	Endpoints                 []string
	Prefix                    string
	CAFile, CertFile, KeyFile string
	Timeout                   time.Duration
}

// DialEtcd connects to the cluster and checks that it answers (a member
// with a leader) within the timeout; the caller closes the client.
func DialEtcd(ctx context.Context, c EtcdConfig) (*Etcd, *clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: c.Timeout, Logger: zap.NewNop(),
		// Follow the members the cluster has (one replaced, one added).
		AutoSyncInterval: time.Minute}
	if c.CAFile != "" || c.CertFile != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, nil, fmt.Errorf("etcd TLS (ca_file %q, cert_file %q, key_file %q): %w", c.CAFile, c.CertFile, c.KeyFile, err)
		}
		cfg.TLS = tc
	}
	client, err := clientv3.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd at %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	e := &Etcd{Client: client, Prefix: c.Prefix, Timeout: c.Timeout}
	rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), e.timeout())
	defer cancel()
	if _, err := client.Get(rctx, e.revKey()); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("etcd at %s does not answer: %w (is the cluster up, with a quorum, and are the endpoints and TLS files right?)", strings.Join(c.Endpoints, ","), err)
	}
	return e, client, nil
}
