package cli_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keybound/keybound/sdk"
)

type certJSON struct {
	Serial           string `json:"serial"`
	ClientID         string `json:"client_id"`
	SPIFFEID         string `json:"spiffe_id"`
	Status           string `json:"status"`
	Via              string `json:"via"`
	CertificateChain string `json:"certificate_chain"`
}

// writeCSR writes a CSR for the key in keyFile (or, with weak, for a fresh
// RSA-1024 key) and returns its path.
func writeCSR(t *testing.T, dir, keyFile string, weak bool) string {
	t.Helper()
	var key any
	if weak {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	} else {
		k, err := sdk.LoadPrivateKey(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "*.csr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestCert(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "svc")
	created := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "billing-sync", "--owner", "team-billing@example.com",
		"--purpose", "nightly invoice export", "--environment", "prod", "--expires-in", "30d", "--scope", "a",
		"--jwks-file", jwks, "--mtls-bound", "-o", "json"))
	id := created.ClientID
	spiffe := "spiffe://keybound.local/client/" + id

	// An operator makes a join token; the workload enrolls with it.
	tok := strings.TrimSpace(s.cliOK(t, "cert", "join-token", "--client", id))
	if !strings.HasPrefix(tok, "kbjt.") || strings.Contains(tok, "\n") {
		t.Fatalf("join token output %q", tok)
	}
	crt := filepath.Join(dir, "svc.crt")
	enrolled := decodeJSON[certJSON](t, s.cliOK(t, "cert", "enroll", "--key", key, "--join-token", tok, "--out", crt, "-o", "json"))
	if enrolled.ClientID != id || enrolled.SPIFFEID != spiffe {
		t.Fatalf("enrolled %+v", enrolled)
	}
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatalf("the written chain and the key do not make a TLS pair: %v", err)
	}
	if len(pair.Certificate) != 2 || pair.Leaf.URIs[0].String() != spiffe {
		t.Errorf("written chain: %d certificates", len(pair.Certificate))
	}
	// The reused join token is refused.
	checkFailure(t, s.cli(t, "cert", "enroll", "--key", key, "--join-token", tok, "--out", filepath.Join(dir, "again.crt")), 1, "already used")
	if _, err := os.Stat(filepath.Join(dir, "again.crt")); !os.IsNotExist(err) {
		t.Error("a refused enrollment wrote a file")
	}

	// Renew in place with the current certificate.
	renewed := decodeJSON[certJSON](t, s.cliOK(t, "cert", "renew", "--cert", crt, "--key", key, "--out", crt, "-o", "json"))
	if renewed.Serial == enrolled.Serial || renewed.SPIFFEID != spiffe {
		t.Errorf("renewed %+v", renewed)
	}
	// private_key_jwt enrollment, with the key registered for the identity.
	pk := decodeJSON[certJSON](t, s.cliOK(t, "cert", "enroll", "--key", key, "--client-id", id, "--out", filepath.Join(dir, "pk.crt"), "-o", "json", "--lifetime", "2h"))
	// Admin issuance from a CSR.
	issuedOut := s.cliOK(t, "cert", "issue", "--client", id, "--csr", writeCSR(t, dir, key, false), "--out", filepath.Join(dir, "admin.crt"))
	if !strings.Contains(issuedOut, spiffe) || !strings.Contains(mustRead(t, filepath.Join(dir, "admin.crt")), "BEGIN CERTIFICATE") {
		t.Errorf("cert issue: %s", issuedOut)
	}
	checkFailure(t, s.cli(t, "cert", "issue", "--client", id, "--csr", writeCSR(t, dir, "", true), "--out", filepath.Join(dir, "weak.crt")), 1, "1024 bits")

	list := decodeJSON[[]certJSON](t, s.cliOK(t, "cert", "list", "--client", id, "-o", "json"))
	if len(list) != 4 {
		t.Fatalf("cert list: %d certificates, want 4", len(list))
	}
	vias := map[string]bool{}
	for _, c := range list {
		vias[c.Via] = true
	}
	for _, v := range []string{"join_token", "renewal", "private_key_jwt", "admin"} {
		if !vias[v] {
			t.Errorf("cert list misses a %s issuance", v)
		}
	}
	if table := s.cliOK(t, "cert", "list"); !strings.HasPrefix(table, "SERIAL") || !strings.Contains(table, pk.Serial) {
		t.Errorf("cert list table:\n%s", table)
	}

	// Revoke the renewed certificate; renewing with it is then refused.
	checkFailure(t, s.cli(t, "cert", "revoke", renewed.Serial, "--reason", "test"), 2, "--reason must be one of")
	if out := s.cliOK(t, "cert", "revoke", renewed.Serial, "--reason", "superseded", "--comment", "test"); !strings.Contains(out, "revoked") {
		t.Errorf("revoke: %s", out)
	}
	checkFailure(t, s.cli(t, "cert", "revoke", renewed.Serial), 1, "already revoked")
	checkFailure(t, s.cli(t, "cert", "renew", "--cert", crt, "--key", key, "--out", filepath.Join(dir, "x.crt")), 1, "revoked")
	checkFailure(t, s.cli(t, "cert", "revoke", "ffff"), 1, "no certificate")
	if live := decodeJSON[[]certJSON](t, s.cliOK(t, "cert", "list", "--client", id, "--live", "-o", "json")); len(live) != 3 {
		t.Errorf("live certificates: %d, want 3", len(live))
	}
	if log := s.cliOK(t, "admin-log"); !strings.Contains(log, "cert.revoke") || !strings.Contains(log, "cert.issue") || strings.Contains(log, tok) {
		t.Errorf("admin log misses certificate events or shows the join token:\n%s", log)
	}
}

func TestCertUsage(t *testing.T) {
	t.Setenv("KEYBOUND_JOIN_TOKEN", "") // a join token from the environment would complete enroll's flags
	for _, args := range [][]string{
		{"cert", "issue"},
		{"cert", "issue", "--client", "x", "--csr", "f"},
		{"cert", "enroll", "--key", "k", "--out", "o"},
		{"cert", "enroll", "--key", "k", "--out", "o", "--join-token", "t", "--client-id", "c"},
		{"cert", "renew", "--cert", "c"},
		{"cert", "join-token"},
		{"cert", "join-token", "--client", "x", "--lifetime", "48h"},
		{"cert", "issue", "--client", "x", "--csr", "f", "--out", "o", "--lifetime", "1.5s"},
		{"cert", "revoke"},
		{"cert", "frobnicate"},
	} {
		checkFailure(t, run(t, args...), 2)
	}
	checkFailure(t, run(t, "cert", "enroll", "--key", "k", "--out", "o", "--join-token", "t", "--join-token-file", "f"), 2, "--join-token or --join-token-file, not both")
	checkFailure(t, run(t, "cert", "enroll", "--key", "k", "--out", "o", "--join-token-file", ""), 2, "--join-token-file needs a file name")
}

// TestCertEnrollJoinTokenSources: the join token can stay off the command
// line, read from a file, stdin or the environment. Not parallel: it sets
// the environment and stdin.
func TestCertEnrollJoinTokenSources(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	key, jwks := keygen(t, dir, "svc")
	id := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "enroll-sources", "--owner", "team-billing@example.com",
		"--purpose", "join token sources", "--environment", "prod", "--expires-in", "30d", "--scope", "a",
		"--jwks-file", jwks, "--mtls-bound", "-o", "json")).ClientID
	joinToken := func() string { return strings.TrimSpace(s.cliOK(t, "cert", "join-token", "--client", id)) }
	enrolled := func(r result) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("enroll: %s", r)
		}
		if c := decodeJSON[certJSON](t, r.stdout); c.ClientID != id {
			t.Errorf("enrolled %+v", c)
		}
	}
	out := func(name string) string { return filepath.Join(dir, name+".pem") }

	t.Run("file", func(t *testing.T) {
		f := filepath.Join(dir, "join.token")
		writeFile(t, f, joinToken()+"\n")
		enrolled(s.cli(t, "cert", "enroll", "--key", key, "--join-token-file", f, "--out", out("file"), "-o", "json"))
	})
	t.Run("stdin", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := w.WriteString(joinToken() + "\r\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
		stdin := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = stdin }()
		enrolled(s.cli(t, "cert", "enroll", "--key", key, "--join-token-file", "-", "--out", out("stdin"), "-o", "json"))
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv("KEYBOUND_JOIN_TOKEN", joinToken())
		enrolled(s.cli(t, "cert", "enroll", "--key", key, "--out", out("env"), "-o", "json"))
		// --kid goes with --client-id only, whatever the token's source.
		checkFailure(t, s.cli(t, "cert", "enroll", "--key", key, "--kid", "k1", "--out", out("kid")), 2, "--kid")
	})
	t.Run("environment does not override --client-id", func(t *testing.T) {
		tok := joinToken()
		t.Setenv("KEYBOUND_JOIN_TOKEN", tok)
		if r := s.cli(t, "cert", "enroll", "--key", key, "--client-id", id, "--out", out("pkjwt"), "-o", "json"); r.code != 0 {
			t.Fatalf("enroll with --client-id and the environment set: %s", r)
		}
		// The token in the environment was not spent.
		enrolled(s.cli(t, "cert", "enroll", "--key", key, "--out", out("env2"), "-o", "json"))
	})
	t.Run("bad files", func(t *testing.T) {
		big, empty := filepath.Join(dir, "big.token"), filepath.Join(dir, "empty.token")
		writeFile(t, big, strings.Repeat("k", 4096))
		writeFile(t, empty, " \n")
		checkFailure(t, s.cli(t, "cert", "enroll", "--key", key, "--join-token-file", big, "--out", out("big")), 1, "big.token", "at most 128 bytes")
		checkFailure(t, s.cli(t, "cert", "enroll", "--key", key, "--join-token-file", empty, "--out", out("empty")), 1, "empty.token", "empty")
		checkFailure(t, s.cli(t, "cert", "enroll", "--key", key, "--join-token-file", filepath.Join(dir, "none"), "--out", out("none")), 1, "--join-token-file", "none")
	})
}
