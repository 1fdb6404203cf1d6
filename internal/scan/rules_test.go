package scan

import (
	"crypto/rand"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keybound/keybound/internal/identity"
)

// Test secrets are generated at run time, never written into this file, so
// the repository itself holds nothing a secret scanner should report.

const upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomFrom(t testing.TB, alphabet string, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	// Guarantee a letter and a digit, as real keys of this length have.
	if n >= 2 {
		b[0], b[1] = 'Q', '7'
	}
	return string(b)
}

func keyboundSecret(t testing.TB) string {
	t.Helper()
	s, _, err := identity.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pemKey(t testing.TB) string {
	t.Helper()
	body := randomFrom(t, alnum, 64) + "\n" + randomFrom(t, alnum, 64) + "\n" + randomFrom(t, alnum, 20) + "==\n"
	return "-----BEGIN " + "EC PRIVATE KEY-----\n" + body + "-----END EC PRIVATE KEY-----"
}

func TestDetectRules(t *testing.T) {
	kbs := keyboundSecret(t)
	aws := "AKIA" + randomFrom(t, upperDigits, 16)
	awsSecret := randomFrom(t, alnum+"/+", 40)
	ghp := "ghp" + "_" + randomFrom(t, alnum, 36)
	pat := "github" + "_pat_" + randomFrom(t, alnum+"_", 82)
	slack := "xoxb" + "-" + randomFrom(t, "0123456789", 12) + "-" + randomFrom(t, alnum, 24)
	hook := "https://hooks.slack.com/services/T" + randomFrom(t, upperDigits, 8) + "/B" + randomFrom(t, upperDigits, 8) + "/" + randomFrom(t, alnum, 24)
	key := pemKey(t)
	generic := randomFrom(t, alnum, 32)

	tests := []struct {
		name    string
		content string
		rule    string // "" means no finding
		secret  string
	}{
		{"keybound secret in env", "KEYBOUND_SECRET=" + kbs + "\n", "keybound-secret", kbs},
		{"keybound secret in an api_key assignment is reported once, by its own rule", `api_key = "` + kbs + `"`, "keybound-secret", kbs},
		{"keybound prefix with the wrong length", "x=" + kbs + "A\n", "", ""},
		{"keybound secret inside a longer word", "a" + kbs, "", ""},
		{"aws access key id", "aws_access_key_id = " + aws + "\n", "aws-access-key-id", aws},
		{"aws key id inside a longer token", "X" + aws + "Y", "", ""},
		{"aws secret access key", "aws_secret_access_key: " + awsSecret + "\n", "aws-secret-access-key", awsSecret},
		{"github classic token", "token: " + ghp, "github-token", ghp},
		{"github fine-grained token", "GH=" + pat + "\n", "github-token", pat},
		{"slack bot token", `{"slack": "` + slack + `"}`, "slack-token", slack},
		{"slack webhook", "url: " + hook + "\n", "slack-webhook-url", hook},
		{"private key", "key: |\n" + key + "\n", "private-key", key},
		{"private key skeleton in docs", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n", "", ""},
		{"generic api_key", "API_KEY=" + generic + "\n", "generic-api-key", generic},
		{"generic in JSON", `{"clientSecret": "` + generic + `"}`, "generic-api-key", generic},
		{"generic in Go", `password := "` + generic + `"`, "generic-api-key", generic},
		{"generic with low entropy", "api_key = aaaaaaaaaaaaaaaa1111\n", "", ""},
		{"generic without digits", "api_key = abcdefghijklmnopqrstuvwxyz\n", "", ""},
		{"generic placeholder", "api_key = " + generic[:10] + "EXAMPLE" + generic[10:] + "\n", "", ""},
		{"generic environment reference", "api_key = ${API_KEY_FROM_THE_ENVIRONMENT_1}\n", "", ""},
		{"generic too short", "token=" + generic[:15] + "\n", "", ""},
		{"unrelated name", "commit = " + generic + "\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms []match
			for _, m := range detect([]byte(tt.content)) {
				if !m.candidate {
					ms = append(ms, m)
				}
			}
			if tt.rule == "" {
				if len(ms) != 0 {
					t.Fatalf("want no finding, got rule %s on %q", rules[ms[0].rule].ID, tt.content[ms[0].start:ms[0].end])
				}
				return
			}
			if len(ms) != 1 {
				t.Fatalf("want 1 finding, got %d", len(ms))
			}
			m := ms[0]
			if got := rules[m.rule].ID; got != tt.rule {
				t.Errorf("rule %s, want %s", got, tt.rule)
			}
			if got := tt.content[m.start:m.end]; got != tt.secret {
				t.Errorf("secret span %d:%d is not the secret", m.start, m.end)
			}
		})
	}
}

// TestDetectCandidates: a generic assignment whose value does not look
// random is a candidate (matched against the inventory, reported only if
// registered); values too short or of the wrong characters are not even that.
func TestDetectCandidates(t *testing.T) {
	tests := []struct {
		content string
		want    string // the candidate value; "" for none
	}{
		{"api_key = aaaaaaaaaaaaaaaa1111\n", "aaaaaaaaaaaaaaaa1111"},
		{"partner_token: partnerkey000000001\n", "partnerkey000000001"},
		{"api_key = short-value\n", ""},
		{"api_key = ${API_KEY_FROM_THE_ENVIRONMENT_1}\n", ""},
		{"api_key = " + keyboundSecret(t) + "\n", ""}, // a finding of its own rule, not a candidate
	}
	for _, tt := range tests {
		var got []string
		for _, m := range detect([]byte(tt.content)) {
			if m.candidate {
				got = append(got, tt.content[m.start:m.end])
			}
		}
		if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
			t.Errorf("%q: candidates %q, want %q", tt.content, got, tt.want)
		}
	}
}

func TestDetectSeveralInOrder(t *testing.T) {
	a, b := keyboundSecret(t), "AKIA"+randomFrom(t, upperDigits, 16)
	content := "one " + b + "\ntwo " + a + " three " + b + "\n"
	ms := detect([]byte(content))
	if len(ms) != 3 {
		t.Fatalf("%d findings, want 3", len(ms))
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].start <= ms[i-1].start {
			t.Errorf("findings are not in position order: %v", ms)
		}
	}
	if line, col := position([]byte(content), ms[2].start); line != 2 || col != len("two ")+len(a)+len(" three ")+1 {
		t.Errorf("third finding at %d:%d", line, col)
	}
}

func TestPreviewNeverShowsTheSecret(t *testing.T) {
	tests := []struct{ secret, want string }{
		{"kbs_" + strings.Repeat("A", 43), "kbs_…(47)"},
		{"abcdefghijkl", "abcd…(12)"},
		{"abcdefghijk", "…(11)"},
		{"", "…(0)"},
		{"ü\x01cdefghijklmn", "ü?cd…(14)"},
	}
	for _, tt := range tests {
		if got := Preview(tt.secret); got != tt.want {
			t.Errorf("Preview(%q) = %q, want %q", tt.secret, got, tt.want)
		}
	}
}

func TestEntropy(t *testing.T) {
	if e := entropy("aaaa"); e != 0 {
		t.Errorf("entropy of one repeated byte = %v", e)
	}
	if e := entropy("abcd"); e != 2 {
		t.Errorf("entropy of four distinct bytes = %v, want 2", e)
	}
}

// FuzzDetect: on any content, detect neither panics nor returns a range
// outside the content, ranges never overlap, and a finding's preview holds
// at most previewChars characters of the secret.
func FuzzDetect(f *testing.F) {
	f.Add([]byte("api_key = Q7abcdefghijklmnopqrstuvwxyz0123\n"))
	f.Add([]byte("kbs_" + strings.Repeat("A", 43)))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n" + strings.Repeat("A", 80) + "\n-----END PRIVATE KEY-----"))
	f.Add([]byte("AKIAABCDEFGHIJKLMNOP xoxb-1234567890-abc"))
	f.Fuzz(func(t *testing.T, content []byte) {
		ms := detect(content)
		for i, m := range ms {
			if m.start < 0 || m.end > len(content) || m.start >= m.end {
				t.Fatalf("range %d:%d outside %d bytes", m.start, m.end, len(content))
			}
			if i > 0 && m.start < ms[i-1].end {
				t.Fatalf("ranges overlap: %v", ms)
			}
			secret := string(content[m.start:m.end])
			p := Preview(secret)
			shown := p[:strings.Index(p, "…")]
			if utf8.RuneCountInString(shown) > previewChars {
				t.Fatalf("preview %q shows more than %d characters", p, previewChars)
			}
			line, col := position(content, m.start)
			if line < 1 || col < 1 {
				t.Fatalf("position %d:%d", line, col)
			}
		}
	})
}
