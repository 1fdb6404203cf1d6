package app

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		mode    os.FileMode // 0: don't create a file
		dir     bool
		wantErr string // substring; "" means accepted
		warn    bool
	}{
		{name: "owner only", mode: 0o600},
		{name: "owner read only", mode: 0o400},
		{name: "group readable warns", mode: 0o640, warn: true},
		{name: "world readable warns (Kubernetes default)", mode: 0o644, warn: true},
		{name: "group writable refused", mode: 0o620, wantErr: "can be written by group or others (mode 0620)"},
		{name: "world writable refused", mode: 0o606, wantErr: "can be written by group or others (mode 0606)"},
		{name: "missing refused", wantErr: "no such file"},
		{name: "directory refused", dir: true, wantErr: "is not a regular file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "secret"+string(rune('a'+i)))
			switch {
			case tt.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
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
			err := checkSecretFile(slog.New(slog.NewTextHandler(&logs, nil)), "server.key_file", path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "server.key_file: ") {
				t.Fatalf("err = %v, want one naming server.key_file and containing %q", err, tt.wantErr)
			}
			if warned := strings.Contains(logs.String(), "can be read by group or others"); warned != tt.warn {
				t.Errorf("warning logged = %v, want %v (log: %q)", warned, tt.warn, logs.String())
			}
			if tt.warn && !strings.Contains(logs.String(), path) {
				t.Errorf("warning does not name the file: %q", logs.String())
			}
		})
	}
}
