package scan

import (
	"bytes"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keybound/keybound/internal/identity"
)

// Rule describes one kind of secret the scanner recognises. The list is
// small on purpose: each rule is precise enough that a finding is worth a
// person's attention (see docs/dependencies.md for why not gitleaks' 200).
type Rule struct {
	// ID is stable: SARIF ruleId, JSON output and admin events use it.
	ID          string
	Name        string
	Description string
	// Help says what to do about a finding.
	Help string
}

// rule is a Rule with its matcher. The secret is submatch group (or the
// whole match when group is 0); valid, when set, must accept it; with
// bounded, the characters just before and after it must not be letters or
// digits, so a match inside a longer token is not taken for a key.
type rule struct {
	Rule
	re      *regexp.Regexp
	group   int
	bounded bool
	valid   func(secret string) bool
	// candidates: a match that valid refuses is still kept as a candidate,
	// reported only if the inventory knows it (see Finding.Candidate).
	candidates bool
}

const rotateHelp = "Remove the secret from the file and from git history, and rotate it: a secret that reached a repository must be treated as exposed."

// rules are tried in order; a later rule's match that overlaps an earlier
// one's is dropped, so the generic assignment rule never repeats a finding
// of a specific one.
var rules = []rule{
	{
		Rule: Rule{ID: "keybound-secret", Name: "KeyboundSecret", Description: "A keybound legacy client secret (" + identity.SecretPrefix + " prefix).",
			Help: "Rotate the client's secret with keybound, or better, move the client to private_key_jwt or mTLS. " + rotateHelp},
		re:      regexp.MustCompile(regexp.QuoteMeta(identity.SecretPrefix) + `[A-Za-z0-9_-]+`),
		bounded: true,
		// NewSecret encodes 32 random bytes as 43 base64url characters.
		valid: func(s string) bool { return len(s) == len(identity.SecretPrefix)+43 },
	},
	{
		Rule: Rule{ID: "aws-access-key-id", Name: "AWSAccessKeyID", Description: "An AWS access key ID.",
			Help: "Deactivate the key in AWS IAM and issue a new one. " + rotateHelp},
		re:      regexp.MustCompile(`(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}`),
		bounded: true,
	},
	{
		Rule: Rule{ID: "aws-secret-access-key", Name: "AWSSecretAccessKey", Description: "An AWS secret access key assigned to aws_secret_access_key.",
			Help: "Deactivate the key pair in AWS IAM and issue a new one. " + rotateHelp},
		re:      regexp.MustCompile(`(?i)aws_?secret_?access_?key["']?\s*(?:=|:|=>)\s*["']?([A-Za-z0-9/+=]{40})`),
		group:   1,
		bounded: true,
	},
	{
		Rule: Rule{ID: "github-token", Name: "GitHubToken", Description: "A GitHub personal access, OAuth, app or refresh token.",
			Help: "Revoke the token in GitHub's settings and create a new one. " + rotateHelp},
		re:      regexp.MustCompile(`(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})`),
		bounded: true,
	},
	{
		Rule: Rule{ID: "slack-token", Name: "SlackToken", Description: "A Slack bot, user, app or configuration token.",
			Help: "Revoke the token in the Slack app's settings and create a new one. " + rotateHelp},
		re:      regexp.MustCompile(`xox[abeprs]-[A-Za-z0-9-]{10,250}`),
		bounded: true,
	},
	{
		Rule: Rule{ID: "slack-webhook-url", Name: "SlackWebhookURL", Description: "A Slack incoming webhook URL (the URL is the credential).",
			Help: "Regenerate the webhook in Slack. " + rotateHelp},
		re:      regexp.MustCompile(`https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_-]{20,200}`),
		bounded: true,
	},
	{
		Rule: Rule{ID: "private-key", Name: "PrivateKey", Description: "A PEM-encoded private key block.",
			Help: "Replace the key pair and revoke any certificate or registration of its public key. " + rotateHelp},
		re:    regexp.MustCompile(`(?s)-----BEGIN[A-Z0-9 ]{0,32} PRIVATE KEY(?: BLOCK)?-----.*?-----END[A-Z0-9 ]{0,32} PRIVATE KEY(?: BLOCK)?-----`),
		valid: pemHasBody,
	},
	{
		Rule: Rule{ID: "generic-api-key", Name: "GenericAPIKey", Description: "A high-entropy value assigned to a name such as api_key, secret, token or password.",
			Help: "If this is a credential, move it to a secret store and rotate it; if it is not, ignore the finding. " + rotateHelp},
		re: regexp.MustCompile(`(?i)[A-Za-z0-9_.-]*(?:api[_.-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_.-]?key|auth[_.-]?key|credential)[A-Za-z0-9_.-]*["']?\s*(?:=|:=|:|=>)\s*["']?([A-Za-z0-9_\-+/=.~]{16,` +
			strconv.Itoa(maxGenericValueLen) + `})`),
		group:   1,
		bounded: true,
		valid:   looksRandom,
		// A legacy key brought in by keybound import may be anything its
		// vendor chose, such as a low-entropy string; such values are kept
		// as candidates and reported only if they are a registered secret.
		candidates: true,
	},
}

// Rules lists the rules in the order they are tried.
func Rules() []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		out[i] = r.Rule
	}
	return out
}

// match is one secret in a content buffer: the rule that found it and the
// byte range of the secret. A candidate failed the rule's validity check.
type match struct {
	rule       int
	start, end int
	candidate  bool
}

// detect returns the secrets in content, in order of position. It never
// keeps the secret text; callers take what they need from the range.
func detect(content []byte) []match {
	var out []match
	for ri := range rules {
		r := &rules[ri]
		for _, loc := range r.re.FindAllSubmatchIndex(content, -1) {
			start, end := loc[2*r.group], loc[2*r.group+1]
			if start < 0 {
				continue
			}
			if r.bounded && (alnumAt(content, start-1) || alnumAt(content, end)) {
				continue
			}
			candidate := r.valid != nil && !r.valid(string(content[start:end]))
			if candidate && !r.candidates {
				continue
			}
			if overlaps(out, start, end) {
				continue
			}
			out = append(out, match{rule: ri, start: start, end: end, candidate: candidate})
		}
	}
	// Insertion order is by rule; report by position.
	slices.SortFunc(out, func(a, b match) int { return a.start - b.start })
	return out
}

func overlaps(ms []match, start, end int) bool {
	for _, m := range ms {
		if start < m.end && m.start < end {
			return true
		}
	}
	return false
}

func alnumAt(b []byte, i int) bool {
	if i < 0 || i >= len(b) {
		return false
	}
	c := b[i]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// pemHasBody refuses PEM skeletons in documentation ("-----BEGIN PRIVATE
// KEY-----\n...\n-----END PRIVATE KEY-----"): a real key has a base64 body.
func pemHasBody(s string) bool {
	first := strings.Index(s, "-----\n")
	if first < 0 {
		first = strings.Index(s, "-----")
	}
	n := 0
	for _, c := range []byte(s[first+5:]) {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
			n++
		}
	}
	return n >= 64
}

// minEntropy is the Shannon entropy, in bits per character, below which a
// generic value is taken for a word or a placeholder rather than a key.
// Random base64 or hex keys of 16+ characters score about 3.6 to 5.
const minEntropy = 3.5

// placeholders are parts of values that mark examples, not credentials.
var placeholders = []string{"example", "xxxx", "changeme", "placeholder", "your", "dummy", "redacted", "sample", "0000", "1234"}

// looksRandom accepts a generic value only if it has letters and digits,
// enough entropy and no placeholder word.
func looksRandom(s string) bool {
	var letter, digit bool
	for _, c := range []byte(s) {
		letter = letter || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		digit = digit || c >= '0' && c <= '9'
	}
	if !letter || !digit || entropy(s) < minEntropy {
		return false
	}
	lower := strings.ToLower(s)
	for _, p := range placeholders {
		if strings.Contains(lower, p) {
			return false
		}
	}
	return true
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for _, c := range []byte(s) {
		counts[c]++
	}
	var h float64
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// Preview is what a report shows of a secret: its first few characters, an
// ellipsis and its length, such as "kbs_…(47)". Secrets shorter than twice
// the shown prefix show only their length.
func Preview(secret string) string {
	n := utf8.RuneCountInString(secret)
	if n < 2*previewChars+4 {
		return "…(" + strconv.Itoa(n) + ")"
	}
	var b strings.Builder
	i := 0
	for _, r := range secret {
		if i == previewChars {
			break
		}
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		b.WriteRune(r)
		i++
	}
	b.WriteString("…(" + strconv.Itoa(n) + ")")
	return b.String()
}

// position returns the 1-based line and column (in characters) of offset.
func position(content []byte, offset int) (line, col int) {
	before := content[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	col = utf8.RuneCount(before[lineStart:]) + 1
	return line, col
}
