package arch

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/keybound/keybound"

// tiers maps each internal package to its tier in docs/architecture.md. A
// package may import only packages of lower tiers; tier 5 (assembly) may
// also import other tier-5 packages.
var tiers = map[string]int{
	"internal/identity": 1, "internal/oauth": 1, "internal/problem": 1,

	"internal/store": 2, "internal/web": 2, "internal/accesstoken": 2, "internal/dpop": 2,
	"internal/clientauth": 2, "internal/ca": 2, "internal/replay": 2, "internal/expiring": 2, "internal/route": 2, "internal/ratelimit": 2,

	"internal/keys": 3, "internal/workload": 3, "internal/revocation": 3, "internal/inventory": 3,
	"internal/protect": 3, "internal/audit": 3,
	"internal/scan":    3,
	"internal/posture": 3,
	"internal/review":  3,
	"internal/notify":  3,

	"internal/authserver": 4, "internal/adminapi": 4, "internal/gateway": 4, "internal/workloadapi": 4,

	"internal/store/sqlite": 5, "internal/store/storetest": 5, "internal/config": 5,
	"internal/app": 5, "internal/cli": 5, "internal/app/apptest": 5,

	"internal/arch": 0, // holds only tests
}

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var ps []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func TestImportTiers(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		if !strings.HasPrefix(name, "internal/") {
			continue
		}
		tier, ok := tiers[name]
		if !ok {
			t.Errorf("%s has no tier: add it to tiers here and to docs/architecture.md", name)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/internal/") {
				continue
			}
			it := tiers[rel(imp)]
			if it < tier || (tier == 5 && it == 5) {
				continue
			}
			t.Errorf("%s (tier %d) imports %s (tier %d): only lower tiers are allowed", name, tier, rel(imp), it)
		}
	}
}

// TestSDKImportsNoServerCode keeps programs that use the SDK free of server
// code: the SDK may import only vocabulary packages and dpop.
func TestSDKImportsNoServerCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"/sdk").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"internal/identity": true, "internal/oauth": true, "internal/dpop": true, "internal/problem": true, "sdk": true}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, module) {
			continue
		}
		if !allowed[rel(dep)] {
			t.Errorf("sdk depends on %s", rel(dep))
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment saying its one job", rel(p.ImportPath))
			continue
		}
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command "
		}
		if !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: doc should start %q, got %q", rel(p.ImportPath), want, p.Doc)
		}
	}
}
