package examples_test

import (
	"strings"
	"testing"
)

// TestMTLSClientWithJoinToken runs mtls-client in its renewing mode: it
// enrolls through the SDK with a join token for an identity registered
// without a certificate subject (keybound workload certificates only).
func TestMTLSClientWithJoinToken(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := clientID(t, e.keybound(t, "client", "create", "--name", "billing-worker", "--owner", "team-billing@example.com",
		"--purpose", "invoice worker", "--environment", "prod", "--expires-in", "30d", "--scope", "invoices:read",
		"--auth", "tls_client_auth", "--mtls-bound", "-o", "json"))
	join := strings.TrimSpace(e.keybound(t, "cert", "join-token", "--client", id, "--lifetime", "15m"))
	out := runExample(t, "mtls-client", "-token-url", e.tokenURL, "-client-id", id, "-join-token", join, "-cacert", e.caFile,
		"-scope", "invoices:read", "-url", e.gw+"/invoices/42")
	checkCaller(t, out, id, "mtls")
}
