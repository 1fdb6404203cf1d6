package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MinSecretBytes is the shortest webhook secret accepted: an HMAC-SHA256
// key as long as its output, out of brute force's reach. The generated
// secret is 64 hex characters.
const MinSecretBytes = 32

// maxSecretFile bounds what is read of a secret file.
const maxSecretFile = 4096

// LoadSecret reads the webhook secret from file: its contents with leading
// and trailing whitespace removed, used as the HMAC key byte for byte.
func LoadSecret(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("notify: webhook secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("notify: webhook secret: %w", err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("notify: webhook secret file %s is larger than %d bytes", file, maxSecretFile)
	}
	s := bytes.TrimSpace(b)
	if len(s) < MinSecretBytes {
		return nil, fmt.Errorf("notify: webhook secret in %s is %d bytes; it must be at least %d", file, len(s), MinSecretBytes)
	}
	return s, nil
}

// LoadOrCreateSecret reads the secret at path, creating it first when it
// does not exist: 32 random bytes, written as 64 hex characters (the key is
// those characters, so an operator can paste the file's contents into the
// receiver's configuration) with mode 0600. An existing file readable by
// group or others is refused, since anyone who reads it can forge warnings.
func LoadOrCreateSecret(path string) ([]byte, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	content := []byte(hex.EncodeToString(raw) + "\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if _, err := f.Write(content); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("notify: write webhook secret: %w", err)
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("notify: write webhook secret: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("notify: create webhook secret: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("notify: webhook secret: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("notify: webhook secret %s must be a regular file of mode 0600, not %v", path, fi.Mode())
	}
	return LoadSecret(path)
}
