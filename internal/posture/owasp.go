package posture

import (
	"fmt"
	"strings"
)

// Risk statuses.
const (
	// StatusAttention: a measured figure found something.
	StatusAttention = "attention"
	// StatusOK: everything the risk asks about is measured and clean.
	StatusOK = "ok"
	// StatusPartial: what is measured is clean, but part of the risk is not
	// tracked, so the risk cannot be called clean.
	StatusPartial = "partial"
	// StatusNotTracked: keybound holds no data on the risk.
	StatusNotTracked = "not_tracked"
)

// NIST CSF 2.0 functions.
const (
	CSFGovern   = "Govern"
	CSFIdentify = "Identify"
	CSFProtect  = "Protect"
	CSFDetect   = "Detect"
	CSFRespond  = "Respond"
	CSFRecover  = "Recover"
)

// Risk is one risk of the OWASP Non-Human Identities Top 10 (2025) with
// what keybound's data says about it and the NIST CSF 2.0 functions its
// mitigation touches.
type Risk struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Evidence string `json:"evidence"`
	// NotTracked names what of the risk keybound cannot see yet.
	NotTracked string   `json:"not_tracked,omitempty"`
	CSF        []string `json:"nist_csf"`
}

// risk describes one Top 10 entry: how to read its evidence from a report.
type risk struct {
	id, name string
	csf      []string
	// eval returns the evidence sentence, whether it found something, and
	// what is not tracked ("" when nothing).
	eval func(r *Report) (evidence string, found bool, notTracked string)
}

// count returns the finding's count, or -1 when it is not tracked.
func (r *Report) count(key string) int {
	for _, f := range r.Identities {
		if f.Key == key {
			if f.Count == nil {
				return -1
			}
			return *f.Count
		}
	}
	return -1
}

// counted renders "N label" for a tracked finding, and collects untracked
// ones into nt.
func counted(r *Report, key, label string, nt *[]string) (string, int) {
	n := r.count(key)
	if n < 0 {
		*nt = append(*nt, label)
		return "", 0
	}
	return plural(n, label), n
}

// plural renders n with the singular or plural form of "one|many"; a label
// without "|" is used for both.
func plural(n int, forms string) string {
	one, many, ok := strings.Cut(forms, "|")
	if !ok {
		many = one
	}
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

func pctText(p *float64) string {
	if p == nil {
		return "n/a (no authenticated requests)"
	}
	return fmt.Sprintf("%.1f%%", *p)
}

// catalog is the OWASP NHI Top 10 (2025), in its order.
var catalog = []risk{
	{"NHI1:2025", "Improper Offboarding", []string{CSFGovern, CSFIdentify, CSFProtect}, func(r *Report) (string, bool, string) {
		var nt []string
		a, n1 := counted(r, KeyIdle, "idle identity still active|idle identities still active", &nt)
		b, n2 := counted(r, KeyExpiredActive, "expired identity not revoked|expired identities not revoked", &nt)
		c, n3 := counted(r, KeyOrphaned, "orphaned identity (owner departed)|orphaned identities (owners departed)", &nt)
		d, n4 := counted(r, KeyExpiredUsed, "expired identity still used|expired identities still used", &nt)
		// Name only what is missing: owners and the gateway audit trail
		// are tracked independently.
		var missing []string
		if r.count(KeyOrphaned) < 0 {
			missing = append(missing, "orphaned identities (owners who left)")
		}
		if r.count(KeyExpiredUsed) < 0 {
			missing = append(missing, "expired identities still used (no gateway audit trail)")
		}
		return joinNonEmpty(a, b, c, d), n1+n2+n3+n4 > 0, strings.Join(missing, "; ")
	}},
	{"NHI2:2025", "Secret Leakage", []string{CSFProtect, CSFDetect, CSFRespond}, func(r *Report) (string, bool, string) {
		exposed := plural(r.count(KeyStaticSecret), "active identity holds|active identities hold") +
			" a static secret that could leak (the others' tokens are bound to a key or certificate)"
		leaked := r.count(KeyLeaked)
		if leaked < 0 {
			return exposed, false, "leaked secrets: this keybound records no secret-scan findings"
		}
		return plural(leaked, "identity's secret was|identities' secrets were") + " found leaked and not rotated; " + exposed, leaked > 0,
			"secrets in code and configuration that keybound scan was not run on"
	}},
	{"NHI3:2025", "Vulnerable Third-Party NHI", []string{CSFGovern, CSFIdentify}, func(r *Report) (string, bool, string) {
		n := r.count(KeyThirdParty)
		return plural(n, "active identity has|active identities have") + " a vendor recorded", false,
			"the security of third parties and of their integrations"
	}},
	{"NHI4:2025", "Insecure Authentication", []string{CSFProtect}, func(r *Report) (string, bool, string) {
		s := r.count(KeyStaticSecret)
		b := r.count(KeyBearer)
		ov := r.Traffic.Overall
		ev := fmt.Sprintf("%s shared secrets and %s unbound bearer tokens; of %s in %d days, %s rested on static secrets and %s on bearer tokens",
			plural(s, "active identity uses|active identities use"), plural(b, "uses|use"), plural(int(ov.Authenticated), "authenticated request|authenticated requests"),
			r.Traffic.Days, pctText(ov.StaticSecretPct), pctText(ov.BearerPct))
		// A route that accepts weaker credentials than its data class is
		// an authentication weakness in waiting, even before any identity
		// or request uses it.
		nt := "gateway routes' accepted credentials (no gateway route table is running)"
		if r.Routes.Tracked {
			ev += fmt.Sprintf("; %d of %d gateway routes accept credentials below their data class", r.Routes.Misaligned, len(r.Routes.Routes))
			nt = ""
		}
		return ev, s+b > 0 || ov.StaticSecret+ov.Bearer > 0 || r.Routes.Misaligned > 0, nt
	}},
	{"NHI5:2025", "Overprivileged NHI", []string{CSFIdentify, CSFProtect}, func(r *Report) (string, bool, string) {
		var nt []string
		a, n := counted(r, KeyOverPrivileged, "identity holds scopes unused in 90 days|identities hold scopes unused in 90 days", &nt)
		return a, n > 0, notTrackedText(nt, "unused scopes (no gateway route table)")
	}},
	{"NHI6:2025", "Insecure Cloud Deployment Configurations", []string{CSFProtect, CSFIdentify}, func(r *Report) (string, bool, string) {
		// This risk is about CI/CD pipelines and cloud deployments holding
		// credentials (and OIDC trust), none of which keybound sees; the
		// gateway's route policy is counted under NHI4.
		return "", false, "CI/CD and cloud deployment configurations are outside keybound's view"
	}},
	{"NHI7:2025", "Long-Lived Secrets", []string{CSFProtect, CSFGovern}, func(r *Report) (string, bool, string) {
		var nt []string
		a, n1 := counted(r, KeyLongLived, "identity valid for more than 90 days|identities valid for more than 90 days", &nt)
		b, n2 := counted(r, KeyNoExpiry, "with no expiry", &nt)
		return joinNonEmpty(a, b), n1+n2 > 0, "the age of each static secret (rotation is not recorded)"
	}},
	{"NHI8:2025", "Environment Isolation", []string{CSFProtect, CSFDetect}, func(r *Report) (string, bool, string) {
		var nt []string
		a, n := counted(r, KeyCrossEnvironment, "identity reached a route of another environment in 90 days|identities reached a route of another environment in 90 days", &nt)
		return a, n > 0, notTrackedText(nt, "cross-environment use (no route names its environment)")
	}},
	{"NHI9:2025", "NHI Reuse", []string{CSFDetect, CSFProtect}, func(r *Report) (string, bool, string) {
		var nt []string
		a, n := counted(r, KeyAddressSpread, "identity used from an unusual spread of source addresses|identities used from an unusual spread of source addresses", &nt)
		return a, n > 0, "reuse behind one address (a shared host or proxy) is invisible"
	}},
	{"NHI10:2025", "Human Use of NHI", []string{CSFDetect, CSFGovern}, func(r *Report) (string, bool, string) {
		n := r.count(KeyAddressSpread)
		return plural(n, "identity|identities") + " used from unusual addresses, one possible sign of a person using them", false,
			"who is behind a request: keybound cannot tell a person from a workload holding the same key"
	}},
}

func notTrackedText(items []string, what string) string {
	if len(items) == 0 {
		return ""
	}
	return what
}

func risksOf(r *Report) []Risk {
	out := make([]Risk, 0, len(catalog))
	for _, c := range catalog {
		ev, found, nt := c.eval(r)
		rk := Risk{ID: c.id, Name: c.name, Evidence: ev, NotTracked: nt, CSF: c.csf}
		switch {
		case found:
			rk.Status = StatusAttention
		case ev == "":
			rk.Status = StatusNotTracked
			rk.Evidence = "no data"
		case nt != "":
			rk.Status = StatusPartial
		default:
			rk.Status = StatusOK
		}
		out = append(out, rk)
	}
	return out
}
