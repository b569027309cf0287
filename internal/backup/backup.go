// Package backup writes and restores provisiond's backup archive: a gzip'd
// tar holding a consistent snapshot of the bbolt inventory, the key that
// seals its secrets, and a manifest. The daemon writes it while serving;
// restore puts it into the data directory of a stopped daemon.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Names inside the archive (and in the data directory).
const (
	manifestName = "MANIFEST.json"
	dbName       = "provisiond.db"
	keyName      = "secret.key"
)

// Manifest describes a backup.
type Manifest struct {
	// Created is when the snapshot was taken.
	Created time.Time `json:"created"`
	// Version is the provisiond that wrote it.
	Version string `json:"version"`
	// Machines is the number of machines in the snapshot.
	Machines int `json:"machines"`
	// DBBytes and DBSHA256 describe the database file.
	DBBytes  int64  `json:"db_bytes"`
	DBSHA256 string `json:"db_sha256"`
	// SecretKey says whether the archive holds the secret key.
	SecretKey bool `json:"secret_key"`
}

// Snapshot is what Write needs of the inventory: a consistent copy of the
// database written to w (one read transaction), its size and the number of
// machines in it.
type Snapshot interface {
	WriteSnapshot(w io.Writer) (size int64, machines int, err error)
}

// Write streams an archive of snap and the secret key file keyPath to w.
// The snapshot is spooled to a temporary file in tmpDir first, so its size
// and checksum go into the manifest and a slow reader does not hold the
// database's read transaction open.
func Write(w io.Writer, snap Snapshot, keyPath, tmpDir, version string) (*Manifest, error) {
	tmp, err := os.CreateTemp(tmpDir, ".backup-*.db")
	if err != nil {
		return nil, fmt.Errorf("backup: spooling the snapshot in %s: %w", tmpDir, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, machines, err := snap.WriteSnapshot(io.MultiWriter(tmp, h))
	if err != nil {
		return nil, fmt.Errorf("backup: snapshot of the database: %w", err)
	}
	key, err := os.ReadFile(keyPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("backup: reading the secret key %s: %w", keyPath, err)
	}
	m := &Manifest{Created: time.Now().UTC(), Version: version, Machines: machines, DBBytes: n,
		DBSHA256: hex.EncodeToString(h.Sum(nil)), SecretKey: key != nil}
	raw, _ := json.MarshalIndent(m, "", "  ")
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := add(manifestName, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if err := add(dbName, n, tmp); err != nil {
		return nil, err
	}
	if key != nil {
		if err := add(keyName, int64(len(key)), bytes.NewReader(key)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return m, gz.Close()
}

// Result is what Restore did.
type Result struct {
	Manifest Manifest
	// Kept lists the files that were in the data directory before, under
	// their new names.
	Kept []string
}

// Restore unpacks archive r into dataDir. It refuses while a daemon holds
// the database, checks the snapshot (size, checksum, a database that
// opens), and keeps the files it replaces with a .before-restore-TIME
// suffix. Nothing in dataDir changes unless every check passes.
func Restore(r io.Reader, dataDir string) (*Result, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: creating %s: %w", dataDir, err)
	}
	dbPath := filepath.Join(dataDir, dbName)
	if _, err := os.Stat(dbPath); err == nil {
		db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			if errors.Is(err, bolterrors.ErrTimeout) {
				return nil, fmt.Errorf("restore: %s is in use: stop provisiond serve first (systemctl stop provisiond)", dbPath)
			}
			return nil, fmt.Errorf("restore: checking %s: %w", dbPath, err)
		}
		db.Close()
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("restore: not a provisiond backup (gzip: %v)", err)
	}
	tr := tar.NewReader(gz)
	res := &Result{}
	staged := map[string]string{} // name -> staged temporary file
	defer func() {
		for _, p := range staged {
			os.Remove(p)
		}
	}()
	var sawManifest bool
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("restore: reading the archive: %w", err)
		}
		switch hd.Name {
		case manifestName:
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&res.Manifest); err != nil {
				return nil, fmt.Errorf("restore: bad manifest: %w", err)
			}
			sawManifest = true
		case dbName, keyName:
			f, err := os.CreateTemp(dataDir, ".restore-*")
			if err != nil {
				return nil, fmt.Errorf("restore: %w", err)
			}
			staged[hd.Name] = f.Name()
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(f, h), tr)
			if err == nil {
				err = f.Sync()
			}
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("restore: writing %s: %w", hd.Name, err)
			}
			if hd.Name == dbName && sawManifest && (n != res.Manifest.DBBytes || hex.EncodeToString(h.Sum(nil)) != res.Manifest.DBSHA256) {
				return nil, fmt.Errorf("restore: the database in the archive is damaged (%d bytes, checksum differs from the manifest)", n)
			}
		default:
			return nil, fmt.Errorf("restore: unexpected file %q in the archive: not a provisiond backup", hd.Name)
		}
	}
	if !sawManifest || staged[dbName] == "" {
		return nil, errors.New("restore: the archive lacks its manifest or database: not a provisiond backup")
	}
	db, err := bolt.Open(staged[dbName], 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("restore: the database in the archive does not open: %w", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("machines")) == nil {
			return errors.New("it has no machines bucket")
		}
		return nil
	})
	db.Close()
	if err != nil {
		return nil, fmt.Errorf("restore: the database in the archive is not provisiond's: %w", err)
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{dbName, keyName} {
		src := staged[name]
		if src == "" {
			continue
		}
		dst := filepath.Join(dataDir, name)
		if same(src, dst) {
			continue
		}
		if _, err := os.Stat(dst); err == nil {
			kept := dst + ".before-restore-" + stamp
			if err := os.Rename(dst, kept); err != nil {
				return nil, fmt.Errorf("restore: keeping %s: %w", dst, err)
			}
			res.Kept = append(res.Kept, kept)
		}
		if err := os.Chmod(src, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(src, dst); err != nil {
			return nil, fmt.Errorf("restore: putting %s in place: %w", dst, err)
		}
		delete(staged, name)
	}
	if d, err := os.Open(dataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return res, nil
}

// same reports whether files a and b hold the same bytes.
func same(a, b string) bool {
	x, err := os.ReadFile(a)
	if err != nil {
		return false
	}
	y, err := os.ReadFile(b)
	return err == nil && bytes.Equal(x, y)
}

// ReadManifestFile reads the manifest of the backup at path (it comes
// first in the archive).
func ReadManifestFile(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	hd, err := tr.Next()
	if err != nil {
		return nil, err
	}
	if hd.Name != manifestName {
		return nil, fmt.Errorf("%s does not start with %s", path, manifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return nil, err
	}
	return &m, nil
}
