package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd is a DB in an etcd cluster, under one key prefix.
//
// Keys: PREFIX d/BUCKET/PATH//KEY holds a value, PREFIX b/BUCKET/PATH marks
// a bucket and holds its sequence (decimal), PREFIX rev is written by every
// committed change. A change commits only if rev is as it read it, so
// concurrent writers, on this instance or another, never lose each other's
// updates: the loser runs again on what the winner wrote.
type Etcd struct {
	Client *clientv3.Client
	// Prefix is the deployment's key prefix ("/provisiond/").
	Prefix string
	// Timeout bounds each request (5 s when zero).
	Timeout time.Duration
}

// maxAttempts bounds how often a conflicting change runs again.
const maxAttempts = 64

// pageSize is how many keys a scan reads per request.
const pageSize = 256

func (e *Etcd) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return 5 * time.Second
}

func (e *Etcd) revKey() string { return e.Prefix + "rev" }

func (e *Etcd) dataKey(p []string, k []byte) string { return e.bucketPrefix(p) + string(k) }

// bucketPrefix is where bucket p's own keys start.
func (e *Etcd) bucketPrefix(p []string) string { return e.Prefix + "d/" + strings.Join(p, "/") + "//" }

// subtree is where bucket p's keys and its nested buckets' keys start.
func (e *Etcd) subtree(p []string) string { return e.Prefix + "d/" + strings.Join(p, "/") + "/" }

func (e *Etcd) marker(p []string) string { return e.Prefix + "b/" + strings.Join(p, "/") }

// View implements DB.
func (e *Etcd) View(ctx context.Context, fn func(*Tx) error) error {
	for range maxAttempts {
		t, err := e.begin(ctx)
		if err != nil {
			return err
		}
		err = fn(&Tx{e: t})
		if t.err != nil {
			if t.retry {
				continue
			}
			return t.err
		}
		return err
	}
	return fmt.Errorf("%w: etcd kept compacting the revision this read was at", ErrUnavailable)
}

// Update implements DB.
func (e *Etcd) Update(ctx context.Context, fn func(*Tx) error) error {
	_, err := e.UpdateChanges(ctx, fn)
	return err
}

// UpdateChanges implements Watcher.
func (e *Etcd) UpdateChanges(ctx context.Context, fn func(*Tx) error) ([]Change, error) {
	for attempt := range maxAttempts {
		t, err := e.begin(ctx)
		if err != nil {
			return nil, err
		}
		t.writable = true
		err = fn(&Tx{e: t})
		if t.err != nil {
			if t.retry {
				continue
			}
			return nil, t.err
		}
		if err != nil {
			return nil, err
		}
		rev, ok, err := t.commit()
		if err != nil {
			return nil, err
		}
		if ok {
			return t.changes(rev), nil
		}
		// Another writer committed first: run again on its result.
		time.Sleep(time.Duration(rand.IntN(1+attempt)) * time.Millisecond)
	}
	return nil, fmt.Errorf("%w: a change lost to other writers %d times in a row; try again", ErrUnavailable, maxAttempts)
}

// changes are the keys of top-level buckets this transaction wrote.
func (t *etcdTx) changes(rev int64) []Change {
	pre := t.e.Prefix + "d/"
	var out []Change
	for k, w := range t.writes {
		bucket, key, ok := strings.Cut(strings.TrimPrefix(k, pre), "//")
		if !strings.HasPrefix(k, pre) || !ok || strings.Contains(bucket, "/") {
			continue // a marker, or a nested bucket's key
		}
		c := Change{Bucket: bucket, Key: key, Rev: rev}
		if !w.del {
			c.Value = w.v
		}
		out = append(out, c)
	}
	return out
}

// Close implements DB (the client is the caller's).
func (e *Etcd) Close() error { return nil }

// Snapshot implements DB: everything under the prefix at one revision,
// written as a bbolt file (what a bbolt store's backup is, so a backup
// restores into either).
func (e *Etcd) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	f, err := os.CreateTemp("", "provisiond-snapshot-*.db")
	if err != nil {
		return 0, fmt.Errorf("creating a temporary file for the snapshot: %w", err)
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	dst := Bolt{DB: db}
	if err := Copy(ctx, dst, e); err != nil {
		db.Close()
		return 0, err
	}
	n, err := dst.Snapshot(ctx, w)
	db.Close()
	return n, err
}

func (e *Etcd) begin(ctx context.Context) (*etcdTx, error) {
	t := &etcdTx{e: e, ctx: ctx, writes: map[string]write{}, reads: map[string][]byte{}}
	resp, err := t.do(func(c context.Context) (*clientv3.GetResponse, error) { return e.Client.Get(c, e.revKey()) })
	if err != nil {
		return nil, err
	}
	t.rev = resp.Header.Revision
	if len(resp.Kvs) > 0 {
		t.revMod = resp.Kvs[0].ModRevision
	}
	return t, nil
}

type write struct {
	v   []byte
	del bool
}

// etcdTx reads at revision rev and buffers its writes; the first failure
// sticks (later reads answer nothing) and is what View or Update returns.
type etcdTx struct {
	e        *Etcd
	ctx      context.Context
	rev      int64
	revMod   int64
	writable bool
	writes   map[string]write
	// delPrefixes are subtrees deleted whole (writes after the deletion
	// are in writes).
	delPrefixes []string
	reads       map[string][]byte
	err         error
	retry       bool
}

func (t *etcdTx) do(op func(context.Context) (*clientv3.GetResponse, error)) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.e.timeout())
	defer cancel()
	resp, err := op(ctx)
	if err != nil {
		return nil, t.e.unavailable(err)
	}
	return resp, nil
}

func (e *Etcd) unavailable(err error) error {
	eps := strings.Join(e.Client.Endpoints(), ",")
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: etcd at %s did not answer within %s: changes are refused until it does", ErrUnavailable, eps, e.timeout())
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		return fmt.Errorf("one change is more keys than etcd takes in a transaction: start etcd with --max-txn-ops=8192 (see docs/several-instances.md): %w", err)
	}
	return fmt.Errorf("%w: etcd at %s: %v", ErrUnavailable, eps, err)
}

func (t *etcdTx) fail(err error) {
	if t.err == nil {
		t.err = err
		t.retry = errors.Is(err, rpctypes.ErrCompacted)
	}
}

func (t *etcdTx) deleted(key string) bool {
	for _, p := range t.delPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// read is one key as this transaction sees it.
func (t *etcdTx) read(key string) []byte {
	if w, ok := t.writes[key]; ok {
		if w.del {
			return nil
		}
		return w.v
	}
	if t.deleted(key) || t.err != nil {
		return nil
	}
	if v, ok := t.reads[key]; ok {
		return v
	}
	resp, err := t.do(func(c context.Context) (*clientv3.GetResponse, error) {
		return t.e.Client.Get(c, key, clientv3.WithRev(t.rev))
	})
	if err != nil {
		t.fail(err)
		return nil
	}
	var v []byte
	if len(resp.Kvs) > 0 {
		v = resp.Kvs[0].Value
	}
	t.reads[key] = v
	return v
}

func (t *etcdTx) set(key string, w write) error {
	if t.err != nil {
		return t.err
	}
	if !t.writable {
		return errors.New("kv: write in a read transaction")
	}
	t.writes[key] = w
	return nil
}

func (t *etcdTx) get(p []string, k []byte) []byte { return t.read(t.e.dataKey(p, k)) }

func (t *etcdTx) put(p []string, k, v []byte) error {
	if err := t.create(p); err != nil {
		return err
	}
	return t.set(t.e.dataKey(p, k), write{v: slices.Clone(v)})
}

func (t *etcdTx) del(p []string, k []byte) error { return t.set(t.e.dataKey(p, k), write{del: true}) }

func (t *etcdTx) revision() int64 { return t.rev }

// prefetchBatch is how many keys one prefetch request reads (etcd's
// default --max-txn-ops is 128).
const prefetchBatch = 100

func (t *etcdTx) prefetch(p []string, keys [][]byte) error {
	var todo []string
	seen := map[string]bool{}
	for _, k := range keys {
		key := t.e.dataKey(p, k)
		_, read := t.reads[key]
		_, written := t.writes[key]
		if read || written || seen[key] || t.deleted(key) {
			continue
		}
		seen[key] = true
		todo = append(todo, key)
	}
	for len(todo) > 0 && t.err == nil {
		n := min(len(todo), prefetchBatch)
		ops := make([]clientv3.Op, n)
		for i, key := range todo[:n] {
			ops[i] = clientv3.OpGet(key, clientv3.WithRev(t.rev))
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.e.timeout())
		resp, err := t.e.Client.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			t.fail(t.e.unavailable(err))
			return t.err
		}
		for i, r := range resp.Responses {
			var v []byte
			if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
				v = kvs[0].Value
			}
			t.reads[todo[i]] = v
		}
		todo = todo[n:]
	}
	return t.err
}

func (t *etcdTx) exists(p []string) bool { return t.read(t.e.marker(p)) != nil }

func (t *etcdTx) failed() error { return t.err }

func (t *etcdTx) create(p []string) error {
	for i := 1; i <= len(p); i++ {
		if t.exists(p[:i]) {
			continue
		}
		if err := t.set(t.e.marker(p[:i]), write{v: []byte("0")}); err != nil {
			return err
		}
	}
	return t.err
}

func (t *etcdTx) deleteBucket(p []string) error {
	if !t.writable {
		return errors.New("kv: write in a read transaction")
	}
	for _, pre := range []string{t.e.subtree(p), t.e.marker(p) + "/"} {
		for k := range t.writes {
			if strings.HasPrefix(k, pre) {
				delete(t.writes, k)
			}
		}
		t.delPrefixes = append(t.delPrefixes, pre)
	}
	return t.set(t.e.marker(p), write{del: true})
}

func (t *etcdTx) seq(p []string) uint64 {
	n, _ := strconv.ParseUint(string(t.read(t.e.marker(p))), 10, 64)
	return n
}

func (t *etcdTx) setSeq(p []string, n uint64) error {
	if err := t.create(p); err != nil {
		return err
	}
	return t.set(t.e.marker(p), write{v: []byte(strconv.FormatUint(n, 10))})
}

// fetch pages through [start, end) at the transaction's revision, calling
// fn on each key in order (descending with reverse) until it says stop.
func (t *etcdTx) fetch(start, end string, reverse bool, keysOnly bool, fn func(kv *mvccpb.KeyValue) bool) error {
	for {
		order := clientv3.SortAscend
		if reverse {
			order = clientv3.SortDescend
		}
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(t.rev), clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, order)}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := t.do(func(c context.Context) (*clientv3.GetResponse, error) { return t.e.Client.Get(c, start, opts...) })
		if err != nil {
			t.fail(err)
			return err
		}
		for _, kv := range resp.Kvs {
			if !fn(kv) {
				return nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if reverse {
			end = last
		} else {
			start = last + "\x00"
		}
	}
}

func (t *etcdTx) scan(p []string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if t.err != nil {
		return t.err
	}
	pre := t.e.bucketPrefix(p)
	start, end := pre, clientv3.GetPrefixRangeEnd(pre)
	if from != nil && !reverse {
		start = pre + string(from)
	} else if from != nil {
		end = pre + string(from) + "\x00"
	}
	// This transaction's own writes in range, in scan order.
	var mine []string
	for k := range t.writes {
		if k >= start && k < end {
			mine = append(mine, k)
		}
	}
	slices.Sort(mine)
	if reverse {
		slices.Reverse(mine)
	}
	before := func(a, b string) bool {
		if reverse {
			return a > b
		}
		return a < b
	}
	var ferr error
	stop := false
	emit := func(key string, v []byte) bool {
		more, err := fn([]byte(key[len(pre):]), v)
		if err != nil {
			ferr = err
		}
		stop = !more || err != nil
		return !stop
	}
	// emitMine sends this transaction's writes that come before key
	// ("" for all that are left).
	emitMine := func(key string) bool {
		for len(mine) > 0 && (key == "" || before(mine[0], key)) {
			k := mine[0]
			mine = mine[1:]
			if w := t.writes[k]; !w.del && !emit(k, w.v) {
				return false
			}
		}
		return true
	}
	err := t.fetch(start, end, reverse, false, func(kv *mvccpb.KeyValue) bool {
		key := string(kv.Key)
		if !emitMine(key) {
			return false
		}
		if len(mine) > 0 && mine[0] == key {
			return true // written by this transaction: sent by emitMine
		}
		if t.deleted(key) {
			return true
		}
		return emit(key, kv.Value)
	})
	if err != nil {
		return err
	}
	if !stop {
		emitMine("")
	}
	return ferr
}

// commit writes the buffered changes if no other change committed since
// this transaction began; ok is false when one did. rev is the revision it
// committed at (the one it read when there was nothing to write).
func (t *etcdTx) commit() (rev int64, ok bool, err error) {
	if len(t.writes) == 0 && len(t.delPrefixes) == 0 {
		return t.rev, true, nil
	}
	var ops []clientv3.Op
	covered := map[string]bool{}
	for _, pre := range t.delPrefixes {
		expand := false
		for k, w := range t.writes {
			if !w.del && strings.HasPrefix(k, pre) {
				expand = true
				break
			}
		}
		if !expand {
			ops = append(ops, clientv3.OpDelete(pre, clientv3.WithPrefix()))
			covered[pre] = true
			continue
		}
		// Keys written again under a deleted subtree: delete the others
		// one by one (etcd refuses a put inside a deleted range).
		err := t.fetch(pre, clientv3.GetPrefixRangeEnd(pre), false, true, func(kv *mvccpb.KeyValue) bool {
			if _, ok := t.writes[string(kv.Key)]; !ok {
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
			return true
		})
		if err != nil {
			return 0, false, err
		}
	}
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := t.writes[k]
		switch {
		case !w.del:
			ops = append(ops, clientv3.OpPut(k, string(w.v)))
		case !coveredBy(covered, k):
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ops = append(ops, clientv3.OpPut(t.e.revKey(), ""))
	ctx, cancel := context.WithTimeout(t.ctx, t.e.timeout())
	defer cancel()
	resp, err := t.e.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(t.e.revKey()), "=", t.revMod)).Then(ops...).Commit()
	if err != nil {
		return 0, false, t.e.unavailable(err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

func coveredBy(prefixes map[string]bool, k string) bool {
	for p := range prefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func (t *etcdTx) walk(fn func(p []string, k, v []byte, seq uint64) error) error {
	var ferr error
	mpre := t.e.Prefix + "b/"
	err := t.fetch(mpre, clientv3.GetPrefixRangeEnd(mpre), false, false, func(kv *mvccpb.KeyValue) bool {
		n, _ := strconv.ParseUint(string(kv.Value), 10, 64)
		ferr = fn(strings.Split(string(kv.Key[len(mpre):]), "/"), nil, nil, n)
		return ferr == nil
	})
	if err != nil || ferr != nil {
		return errors.Join(err, ferr)
	}
	dpre := t.e.Prefix + "d/"
	err = t.fetch(dpre, clientv3.GetPrefixRangeEnd(dpre), false, false, func(kv *mvccpb.KeyValue) bool {
		path, key, ok := strings.Cut(string(kv.Key[len(dpre):]), "//")
		if !ok {
			return true
		}
		ferr = fn(strings.Split(path, "/"), []byte(key), kv.Value, 0)
		return ferr == nil
	})
	return errors.Join(err, ferr)
}
