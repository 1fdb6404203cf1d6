package app

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckFileMode(t *testing.T) {
	dir := t.TempDir()
	const (
		groupWrite = "can be written by its group"
		otherRead  = "can be read by any user"
	)
	tests := []struct {
		name    string
		kind    fileKind
		mode    os.FileMode // 0: don't create a file
		fifo    bool
		wantErr string   // substring; "" means accepted
		warns   []string // warnings expected, each a substring
	}{
		{name: "secret owner only", kind: kindSecret, mode: 0o600},
		{name: "secret owner read only", kind: kindSecret, mode: 0o400},
		{name: "secret group readable (root:ssl-cert 0640)", kind: kindSecret, mode: 0o640},
		{name: "secret world readable warns (Kubernetes default)", kind: kindSecret, mode: 0o644, warns: []string{otherRead}},
		{name: "secret group writable warns (fsGroup volume)", kind: kindSecret, mode: 0o660, warns: []string{groupWrite}},
		{name: "secret group writable, world readable warns twice", kind: kindSecret, mode: 0o664, warns: []string{groupWrite, otherRead}},
		{name: "secret world writable refused", kind: kindSecret, mode: 0o602, wantErr: "can be written by any user (mode 0602)"},
		{name: "trust file world readable is normal", kind: kindTrust, mode: 0o644},
		{name: "trust file group writable warns", kind: kindTrust, mode: 0o664, warns: []string{groupWrite}},
		{name: "trust file world writable refused", kind: kindTrust, mode: 0o666, wantErr: "can be written by any user (mode 0666)"},
		{name: "missing refused", kind: kindSecret, wantErr: "no such file"},
		{name: "a FIFO is left to the loader", kind: kindSecret, fifo: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "file"+string(rune('a'+i)))
			switch {
			case tt.fifo:
				if err := syscall.Mkfifo(path, 0o666); err != nil {
					t.Fatal(err)
				}
			case tt.mode != 0:
				if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // not subject to umask
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			err := checkFileMode(slog.New(slog.NewTextHandler(&logs, nil)), "server.key_file", path, tt.kind)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "server.key_file: ") {
				t.Fatalf("err = %v, want one naming server.key_file and containing %q", err, tt.wantErr)
			}
			got := logs.String()
			if n := strings.Count(got, "level=WARN"); n != len(tt.warns) {
				t.Fatalf("%d warnings, want %d: %q", n, len(tt.warns), got)
			}
			for _, w := range tt.warns {
				if !strings.Contains(got, w) || !strings.Contains(got, path) {
					t.Errorf("no warning %q naming the file: %q", w, got)
				}
			}
		})
	}
}
