package app_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/replay"
)

// smallReplay is the size of the DPoP replay caches these tests fill:
// eight keys per shard, so the few proofs a test makes before filling it
// never fill a shard by chance.
const smallReplay = 8 * 64

// fill claims made-up keys in c until every shard is full.
func fill(t *testing.T, c *replay.Cache, size int) {
	t.Helper()
	for i := 0; c.Len() < size; i++ {
		if i > 100*size {
			t.Fatalf("cache holds %d keys after %d claims, want %d", c.Len(), i, size)
		}
		c.Claim("filler-"+strconv.Itoa(i), time.Now().Add(time.Hour))
	}
}

// fullLines counts the log lines reporting cache as full.
func fullLines(h *harness, cache string) int {
	n := 0
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, "replay cache is full") && strings.Contains(l, `"cache":"`+cache+`"`) {
			n++
		}
	}
	return n
}

// DPoP traffic that fills the proof replay cache cannot lock
// private_key_jwt clients out of the token endpoint: assertions have a
// cache of their own. The DPoP requests themselves are answered 503, as
// the server's capacity problem, and the full cache is logged once, not
// per request.
func TestFullDPoPReplayCacheLeavesClientAssertionsWorking(t *testing.T) {
	proofs := replay.New(smallReplay, nil)
	h := startApp(t, nil, app.WithReplayCaches(proofs, replay.New(0, nil)))
	c := h.newKeyClient(inventory.Registration{Scope: "a", AllowBearer: true})
	fill(t, proofs, smallReplay)

	for i := range 3 {
		if r := h.bearerToken(c); r.status != http.StatusOK || r.body["access_token"] == nil {
			t.Fatalf("private_key_jwt token request %d with the DPoP replay cache full: %d %s", i, r.status, r.raw)
		}
	}

	for i := range 3 {
		r := h.adminRaw("GET", "/clients/"+c.id, "", nil)
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("admin request %d with the DPoP replay cache full: %d %s, want 503", i, r.status, r.body)
		}
		p := r.problem(t)
		if p.Status != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "replay cache is full") ||
			!strings.Contains(p.Detail, "capacity") || strings.Contains(p.Detail, "already used") {
			t.Errorf("problem %+v, want 503 naming the full replay cache as a capacity problem", p)
		}
		if wa := r.header.Get("WWW-Authenticate"); strings.Contains(wa, "error=") {
			t.Errorf("WWW-Authenticate %q blames the credentials", wa)
		}
	}
	if n := fullLines(h, "dpop_proof"); n != 1 {
		t.Errorf("full DPoP replay cache logged %d times for 3 refusals, want once", n)
	}
}

// Someone holding a DPoP-bound token but not its key gets
// invalid_dpop_proof at the gateway and takes no place in the replay cache
// that every client shares; once that cache is full for other reasons, a
// legitimate request gets a 503 problem, not a refusal of its proof.
func TestGatewayProofsByAnotherKeyTakeNoReplaySlot(t *testing.T) {
	proofs := replay.New(smallReplay, nil)
	g := startGateway(t, nil, app.WithReplayCaches(proofs, replay.New(0, nil)))
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read"})
	dkey := newEC(t)
	tok := g.tokenFor(ck, dkey)
	u := g.gw + "/invoices/42"

	before := proofs.Len()
	thief := newEC(t)
	for i := range 30 {
		r := g.send(nil, "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, thief, "GET", u, tok)})
		if r.status != http.StatusUnauthorized || r.problem["error"] != "invalid_dpop_proof" ||
			!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
			t.Fatalf("stolen token with another key, try %d: %d %s", i, r.status, r.body)
		}
	}
	if after := proofs.Len(); after != before {
		t.Fatalf("30 proofs by another key took %d replay cache entries, want 0", after-before)
	}
	if r := g.send(nil, "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, tok)}); r.status != http.StatusOK {
		t.Fatalf("the token's owner: %d %s", r.status, r.body)
	}

	fill(t, proofs, smallReplay)
	seen := g.up.count()
	r := g.send(nil, "GET", "/invoices/42", map[string]string{"Authorization": "DPoP " + tok, "DPoP": proofFor(t, dkey, "GET", u, tok)})
	if r.status != http.StatusServiceUnavailable || r.problem["status"] != float64(http.StatusServiceUnavailable) {
		t.Fatalf("the owner with the replay cache full: %d %s, want a 503 problem", r.status, r.body)
	}
	if d, _ := r.problem["detail"].(string); !strings.Contains(d, "replay cache is full") || strings.Contains(d, "already used") {
		t.Errorf("problem detail %q, want it to name the full replay cache", d)
	}
	if wa := r.header.Get("WWW-Authenticate"); strings.Contains(wa, "error=") {
		t.Errorf("WWW-Authenticate %q blames the credentials", wa)
	}
	if g.up.count() != seen {
		t.Error("the upstream saw a request whose proof could not be checked for replay")
	}
}
