package app

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/authserver"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
)

var errNotFound = store.ErrNotFound

// AdminDescriptor is DATA_DIR/admin/admin.json: what the CLI needs to act as
// the admin identity. The private key lives beside it in admin-key.pem.
type AdminDescriptor struct {
	ClientID      string `json:"client_id"`
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	KeyFile       string `json:"key_file"`
	KeyID         string `json:"kid"`
	CAFile        string `json:"ca_file"`
}

// Admin file names inside DATA_DIR/admin.
const (
	AdminDir     = "admin"
	AdminJSON    = "admin.json"
	adminKeyFile = "admin-key.pem"
	// adminRenewBefore: an admin identity this close to expiry is replaced
	// at start, so operators never lock themselves out.
	adminRenewBefore = 30 * 24 * time.Hour
)

// LoadAdmin reads the admin descriptor of dataDir.
func LoadAdmin(dataDir string) (*AdminDescriptor, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, AdminDir, AdminJSON))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no admin identity in %s: start the server once with `keybound serve --data-dir %s`", dataDir, dataDir)
		}
		return nil, err
	}
	var d AdminDescriptor
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dataDir, AdminDir, AdminJSON), err)
	}
	if !filepath.IsAbs(d.KeyFile) {
		d.KeyFile = filepath.Join(dataDir, AdminDir, d.KeyFile)
	}
	if !filepath.IsAbs(d.CAFile) {
		d.CAFile = filepath.Join(dataDir, d.CAFile)
	}
	return &d, nil
}

// ensureAdmin makes sure an active, unexpired admin identity exists and its
// descriptor matches the current issuer; it registers a new one otherwise.
func ensureAdmin(ctx context.Context, inv *inventory.Service, st store.Store, cfg config.Config, issuer string, log *slog.Logger) (string, error) {
	dir := filepath.Join(cfg.DataDir, AdminDir)
	path := filepath.Join(dir, AdminJSON)
	if d, err := LoadAdmin(cfg.DataDir); err == nil {
		c, err := st.GetClient(ctx, d.ClientID)
		if err == nil && c.Usable(time.Now()) == nil && time.Until(c.ExpiresAt) > adminRenewBefore {
			if d.Issuer != issuer {
				d.Issuer, d.TokenEndpoint = issuer, issuer+authserver.PathToken
				return path, writeDescriptor(path, d, cfg.DataDir)
			}
			return path, nil
		}
		log.Warn("admin identity missing, unusable or near expiry; registering a new one", "old_client_id", d.ClientID)
		if err == nil && c.Status != identity.StatusRevoked {
			if _, err := inv.Revoke(ctx, "keybound", c.ID, "replaced by a new admin identity"); err != nil {
				return "", err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256", Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	created, err := inv.Create(ctx, "keybound", inventory.Registration{
		Name:        "keybound-admin",
		Owner:       "keybound operator",
		Purpose:     "administration of keybound through the CLI and admin API",
		Environment: "admin",
		ExpiresAt:   time.Now().Add(cfg.Clients.MaxLifetime),
		Scope:       authserver.ScopeAdmin + " " + authserver.ScopeIntrospect,
		AuthMethod:  identity.AuthPrivateKeyJWT,
		JWKS:        set,
		DPoPBound:   true,
	})
	if err != nil {
		return "", fmt.Errorf("app: register admin identity: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	keyPath := filepath.Join(dir, adminKeyFile)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	if err := os.Chmod(keyPath, 0o600); err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	d := &AdminDescriptor{ClientID: created.Client.ID, Issuer: issuer, TokenEndpoint: issuer + authserver.PathToken, KeyFile: adminKeyFile, KeyID: jwk.KeyID, CAFile: filepath.Join("tls", "ca.pem")}
	if err := writeDescriptor(path, d, cfg.DataDir); err != nil {
		return "", err
	}
	log.Info("admin identity registered", "client_id", created.Client.ID, "descriptor", path)
	return path, nil
}

func writeDescriptor(path string, d *AdminDescriptor, dataDir string) error {
	out := *d
	// Store paths relative to the data directory so it can be moved.
	if rel, err := filepath.Rel(filepath.Join(dataDir, AdminDir), out.KeyFile); err == nil && filepath.IsAbs(out.KeyFile) {
		out.KeyFile = rel
	}
	if rel, err := filepath.Rel(dataDir, out.CAFile); err == nil && filepath.IsAbs(out.CAFile) {
		out.CAFile = rel
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return os.Rename(tmp, path)
}
