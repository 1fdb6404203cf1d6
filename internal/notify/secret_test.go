package notify_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/notify"
)

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook-secret")
	s1, err := notify.LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := hex.DecodeString(string(s1)); err != nil || len(raw) != 32 {
		t.Errorf("generated secret %d bytes, not 32 random bytes in hex", len(s1))
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, %v", fi.Mode(), err)
	}
	s2, err := notify.LoadOrCreateSecret(path)
	if err != nil || !bytes.Equal(s1, s2) {
		t.Errorf("second start got another secret: %v", err)
	}
	other, _ := notify.LoadOrCreateSecret(filepath.Join(t.TempDir(), "webhook-secret"))
	if bytes.Equal(other, s1) {
		t.Error("two data directories got the same secret")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := notify.LoadOrCreateSecret(path); err == nil {
		t.Error("a world-readable generated secret was accepted")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := strings.Repeat("s", 40)
	got, err := notify.LoadSecret(write("ok", "  "+key+"\n"))
	if err != nil || string(got) != key {
		t.Errorf("LoadSecret = %q, %v; want the trimmed contents", got, err)
	}
	for name, content := range map[string]string{"short": strings.Repeat("s", 31), "blank": "\n\n", "huge": strings.Repeat("s", 5000)} {
		if _, err := notify.LoadSecret(write(name, content)); err == nil {
			t.Errorf("%s secret accepted", name)
		} else if strings.Contains(err.Error(), "sss") {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	if _, err := notify.LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}
