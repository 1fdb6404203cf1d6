package app

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestTrustFile: a CA file is mode-checked, read and parsed, and every
// refusal names the setting.
func TestTrustFile(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	refusals := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "absent.pem"), "no such file"},
		{"world writable", write("open.pem", caPEM, 0o666), "can be written by any user"},
		{"no certificate", write("key.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o644), "holds no PEM certificate"},
		{"empty", write("empty.pem", nil, 0o644), "holds no PEM certificate"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			p, err := trustFile(log, "gateway.issuer_ca_file", tt.path, nil)
			if err == nil || p != nil || !strings.HasPrefix(err.Error(), "app: gateway.issuer_ca_file: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("pool %v, err %v; want an error naming gateway.issuer_ca_file with %q", p, err, tt.want)
			}
		})
	}

	good := write("ca.pem", caPEM, 0o644)
	fresh, err := trustFile(log, "gateway.issuer_ca_file", good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fresh.Subjects()); n != 1 { //nolint:staticcheck // counting only
		t.Errorf("new pool holds %d certificates, want 1", n)
	}
	base := x509.NewCertPool()
	got, err := trustFile(log, "server.client_ca_file", good, base)
	if err != nil || got != base || len(base.Subjects()) != 1 { //nolint:staticcheck // counting only
		t.Errorf("appending to a pool: %v, %v (same pool: %v)", got, err, got == base)
	}
}
