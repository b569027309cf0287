package kv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

// TestDialEtcdTLS: an etcd that asks for client certificates is reached
// with the instance's certificate and refused without one, with a message
// that says what to check.
func TestDialEtcdTLS(t *testing.T) {
	p := etcdtest.NewPKI(t)
	srv := etcdtest.StartTLS(t, p)
	ctx := context.Background()
	cfg := kv.EtcdConfig{Endpoints: []string{srv.Endpoint}, Prefix: "/tls/", CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey, Timeout: 3 * time.Second}
	var db *kv.Etcd
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		d, client, err := kv.DialEtcd(ctx, cfg)
		if err == nil {
			t.Cleanup(func() { client.Close() })
			db = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the client certificate: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := db.Update(ctx, func(tx *kv.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("m"))
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatalf("a change over TLS: %v", err)
	}
	noCert := cfg
	noCert.CertFile, noCert.KeyFile = "", ""
	if _, client, err := kv.DialEtcd(ctx, noCert); err == nil {
		client.Close()
		t.Error("an etcd with --client-cert-auth answered a client without a certificate")
	} else if !strings.Contains(err.Error(), "TLS files right?") {
		t.Errorf("without a client certificate: %v", err)
	}
}
