package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestClientRotate(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	key1, jwks1 := keygen(t, dir, "one")
	key2, jwks2 := keygen(t, dir, "two")
	dpopKey := filepath.Join(dir, "dpop.pem")
	runOK(t, "keygen", "--key", dpopKey)
	id := decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks1, "-o", "json")...)).ClientID
	token := func(key string) result {
		return s.cli(t, "token", "--client-id", id, "--key", key, "--dpop-key", dpopKey)
	}

	out := s.cliOK(t, "client", "rotate", id, "--jwks-file", jwks2, "--overlap", "2d")
	if !strings.Contains(out, "rotated; the previous credential keeps working until") {
		t.Errorf("rotate output: %q", out)
	}
	for name, key := range map[string]string{"old": key1, "new": key2} {
		if r := token(key); r.code != 0 {
			t.Errorf("%s key during the overlap:\n%s", name, r)
		}
	}
	if show := s.cliOK(t, "client", "show", id); !strings.Contains(show, "previous_credential") {
		t.Errorf("client show does not mention the open overlap:\n%s", show)
	}
	checkFailure(t, s.cli(t, "client", "rotate", id, "--jwks-file", jwks1), 1, "--retire-previous")

	if out := s.cliOK(t, "client", "rotate", id, "--retire-previous"); !strings.Contains(out, "retired") {
		t.Errorf("retire output: %q", out)
	}
	if r := token(key1); r.code == 0 {
		t.Error("the retired key still gets tokens")
	}
	if r := token(key2); r.code != 0 {
		t.Errorf("the new key after retirement:\n%s", r)
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no credential", []string{"client", "rotate", id}, 1, []string{"Rotation refused: nothing was changed", "(jwks "}},
		{"bad overlap", []string{"client", "rotate", id, "--jwks-file", jwks1, "--overlap", "soon"}, 2, []string{"--overlap"}},
		{"overlap with retire", []string{"client", "rotate", id, "--retire-previous", "--overlap", "1h"}, 2, []string{"--retire-previous"}},
		{"missing jwks file", []string{"client", "rotate", id, "--jwks-file", filepath.Join(dir, "nope.json")}, 1, []string{"nope.json"}},
		{"unknown client", []string{"client", "rotate", "kb-nosuchclient", "--jwks-file", jwks1}, 1, []string{"no client"}},
	} {
		t.Run(tt.name, func(t *testing.T) { checkFailure(t, s.cli(t, tt.args...), tt.code, tt.want...) })
	}
}

func TestClientRotateLegacySecret(t *testing.T) {
	s := startServer(t)
	created := decodeJSON[clientView](t, s.cliOK(t, "client", "create", "--name", "legacy", "--owner", "team-a@example.com",
		"--purpose", "old integration", "--environment", "prod", "--expires-in", "30d", "--scope", "a",
		"--auth", "client_secret_basic", "--allow-bearer", "-o", "json"))
	out := s.cliOK(t, "client", "rotate", created.ClientID)
	if !strings.Contains(out, "client_secret  kbs_") || strings.Contains(out, created.ClientSecret) || !strings.Contains(out, "shown only now") {
		t.Errorf("legacy rotation output:\n%s", out)
	}
}

func TestClientDownscope(t *testing.T) {
	s := startServer(t)
	_, jwks := keygen(t, t.TempDir(), "svc")
	id := decodeJSON[clientView](t, s.cliOK(t, createArgs(jwks, "--scope", "a b c", "-o", "json")...)).ClientID

	out := s.cliOK(t, "client", "downscope", id, "--remove", "b c")
	if !strings.Contains(out, "  - b\n") || !strings.Contains(out, "  - c\n") || !strings.Contains(out, "    a\n") || !strings.Contains(out, "dry run") {
		t.Errorf("dry-run diff:\n%s", out)
	}
	if v := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", id, "-o", "json")); v["scope"] != "a b c" {
		t.Fatalf("the dry run changed scopes to %v", v["scope"])
	}
	out = s.cliOK(t, "client", "downscope", id, "--remove", "c", "--yes")
	if !strings.Contains(out, `now holds "a b"`) {
		t.Errorf("applied downscope output:\n%s", out)
	}
	if v := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", id, "-o", "json")); v["scope"] != "a b" {
		t.Errorf("scopes after downscope: %v", v["scope"])
	}
	found := false
	for _, ev := range s.adminLog(t) {
		found = found || ev.Target == id && ev.Action == "client.downscope" && ev.Changes["removed"] == "c"
	}
	if !found {
		t.Error("no client.downscope admin event")
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"nothing named", []string{"client", "downscope", id}, 2, []string{"--remove"}},
		{"not granted", []string{"client", "downscope", id, "--remove", "z"}, 1, []string{"Downscope refused", "remove[0]", "not granted"}},
		{"every scope", []string{"client", "downscope", id, "--remove", "a b", "--yes"}, 1, []string{"Downscope refused", "revoke"}},
		{"bad scope text", []string{"client", "downscope", id, "--remove", `"quoted"`}, 2, []string{"--remove"}},
		{"unused without a gateway", []string{"client", "downscope", id, "--unused"}, 1, []string{"route table"}},
	} {
		t.Run(tt.name, func(t *testing.T) { checkFailure(t, s.cli(t, tt.args...), tt.code, tt.want...) })
	}
	if v := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", id, "-o", "json")); v["scope"] != "a b" {
		t.Errorf("scopes after refused downscopes: %v", v["scope"])
	}
}

func TestOffboardByTag(t *testing.T) {
	s := startServer(t)
	_, jwks := keygen(t, t.TempDir(), "svc")
	create := func(tags ...string) string {
		args := createArgs(jwks, "-o", "json")
		for _, tg := range tags {
			args = append(args, "--tag", tg)
		}
		return decodeJSON[clientView](t, s.cliOK(t, args...)).ClientID
	}
	ledger := create("ledger", "billing")
	billing := create("billing")
	other := create()
	if v := decodeJSON[map[string]any](t, s.cliOK(t, "client", "show", ledger, "-o", "json")); len(v["tags"].([]any)) != 2 {
		t.Errorf("tags of the client: %v", v["tags"])
	}
	res := decodeJSON[offboardJSON](t, s.cliOK(t, "offboard", "--tag", "billing", "-o", "json"))
	if res.Matched != 2 || res.Changed != 2 {
		t.Errorf("offboard --tag billing: %+v", res)
	}
	st := s.statuses(t)
	if st[ledger] != "suspended" || st[billing] != "suspended" || st[other] != "active" {
		t.Errorf("statuses after offboard --tag: %v", st)
	}
	checkFailure(t, s.cli(t, "client", "create", "--name", "x", "--owner", "o", "--purpose", "p", "--environment", "dev",
		"--expires-in", "1d", "--jwks-file", jwks, "--tag", "has space"), 1, "tags[0]")
}
