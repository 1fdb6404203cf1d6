package app

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
)

// fileKind says what an operator-supplied file holds, and so which of its
// modes draw a warning.
type fileKind int

const (
	// kindSecret: the file holds a private key or a shared secret
	// (server.key_file, workload_ca.key_file,
	// governance.notify.webhook.secret_file).
	kindSecret fileKind = iota
	// kindTrust: the file holds CA certificates (server.client_ca_file,
	// gateway.issuer_ca_file, governance.notify.webhook.ca_file): public,
	// but whoever can change it decides whom keybound trusts.
	kindTrust
)

// checkFileMode looks at an operator-supplied key, secret or trust file
// before it is used.
//
// A file that anyone (others) can write is refused: whoever can write it
// can swap in their own key or CA. Group write and, for a secret, reading
// by others only draw a warning: Kubernetes mounts secrets 0644 unless told
// otherwise, and gives a pod's fsGroup write access to files on writable
// volumes, in pods where no other user may exist; refusing would break
// those deployments. Group read is normal (root:ssl-cert 0640) and passes.
// Only regular files are judged; a FIFO or /dev/stdin is left to the
// loader. Files keybound creates itself are always 0600.
func checkFileMode(log *slog.Logger, setting, path string, kind fileKind) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	perm := fi.Mode().Perm()
	mode := fmt.Sprintf("%04o", perm)
	if perm&0o002 != 0 {
		return fmt.Errorf("%s: %s can be written by any user (mode %s), so anyone can replace what it holds; run chmod o-w on it", setting, path, mode)
	}
	if perm&0o020 != 0 {
		log.Warn("a key or trust file can be written by its group, so any member can replace what it holds: run chmod g-w on it",
			"setting", setting, "file", path, "mode", mode)
	}
	if kind == kindSecret && perm&0o004 != 0 {
		log.Warn("a secret file can be read by any user, and anyone who reads it holds the key: run chmod o-r on it",
			"setting", setting, "file", path, "mode", mode)
	}
	return nil
}

// trustFile checks an operator-supplied CA file's mode (kindTrust) and adds
// its certificates to pool, or to a new pool when pool is nil. Errors name
// the setting, so the operator knows which key of the configuration to fix.
func trustFile(log *slog.Logger, setting, path string, pool *x509.CertPool) (*x509.CertPool, error) {
	if err := checkFileMode(log, setting, path, kindTrust); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	pool, err := appendCAs(pool, path)
	if err != nil {
		return nil, fmt.Errorf("app: %s: %w", setting, err)
	}
	return pool, nil
}
