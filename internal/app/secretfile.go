package app

import (
	"fmt"
	"log/slog"
	"os"
)

// checkSecretFile looks at an operator-supplied file that holds a private
// key or a shared secret (server.key_file, workload_ca.key_file,
// governance.notify.webhook.secret_file) before it is used.
//
// A file that group or others can write is refused: whoever can write it
// can swap in their own key (a CA that issues them workload certificates, a
// webhook key that lets them forge warnings). A file that group or others
// can read only draws a warning: Kubernetes mounts secrets 0644 unless told
// otherwise, inside a pod where no other user may exist, and refusing would
// break those deployments for little gain. Files keybound creates itself
// are always 0600.
func checkSecretFile(log *slog.Logger, setting, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", setting, path)
	}
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 {
		return fmt.Errorf("%s: %s can be written by group or others (mode %04o), so anyone who can write it can replace the key; run chmod 600 on it", setting, path, perm)
	}
	if perm&0o044 != 0 {
		log.Warn("a secret file can be read by group or others; anyone who reads it holds the key: run chmod 600 on it",
			"setting", setting, "file", path, "mode", fmt.Sprintf("%04o", perm))
	}
	return nil
}
