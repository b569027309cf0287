package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The archive is checked by a real peer: GNU cpio extracts it.
func TestGNUCpioExtracts(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("needs GNU cpio (apt-get install cpio)")
	}
	key := []byte{0, 1, 2, 0xff, '\n', 0}
	var buf bytes.Buffer
	err := Write(&buf, []File{
		{Path: "/etc/munge/munge.key", Mode: 0o400, Data: key},
		{Path: "/etc/hostname", Mode: 0o644, Data: []byte("bld-006\n")},
		{Path: "/etc/default/slurmd", Mode: 0o644, Data: []byte(`SLURMD_OPTIONS="--conf-server ctl:6817"` + "\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-aligned", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v: %s", err, out)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "etc/munge/munge.key"))
	if !bytes.Equal(got, key) {
		t.Errorf("munge.key %v", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, "etc/munge/munge.key")); st.Mode().Perm() != 0o400 {
		t.Errorf("munge.key mode %v", st.Mode().Perm())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc/hostname")); string(got) != "bld-006\n" {
		t.Errorf("hostname %q", got)
	}
	if err := Write(&buf, []File{{Path: "etc/../../x"}}); err == nil {
		t.Error("an unclean path was written")
	}
}
