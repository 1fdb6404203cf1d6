package oauth

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// allowedDescriptionByte is RFC 6749 section 5.2's grammar for
// error_description: %x20-21 / %x23-5B / %x5D-7E.
func allowedDescriptionByte(c byte) bool {
	return c == 0x20 || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
}

// TestWriteJSONDescriptionCharset checks that whatever a description quotes
// back from the client, the error_description a client reads holds only the
// characters RFC 6749 section 5.2 allows, and that a double quote is shown
// as a single one so the message stays readable.
func TestWriteJSONDescriptionCharset(t *testing.T) {
	tests := []struct {
		name, desc, want string
	}{
		{"double quotes", `grant_type "a"b" is not supported`, `grant_type 'a'b' is not supported`},
		{"backslash", `scope "a\b" is not granted`, `scope 'ab' is not granted`},
		{"non-ASCII", "resource \"https://ex\u00e4mple.test/\u65e5\" is not registered", `resource 'https://exmple.test/' is not registered`},
		{"control characters", "bad\r\nX-Injected: 1\t\x00\x7f", "badX-Injected: 1"},
		{"invalid UTF-8", "bad \xff\xfe byte", "bad  byte"},
		{"already clean", "use POST for this endpoint", "use POST for this endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteJSON(rec, New(CodeInvalidRequest, tt.desc))
			var b map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			got := b["error_description"]
			for i := 0; i < len(got); i++ {
				if !allowedDescriptionByte(got[i]) {
					t.Errorf("error_description %q has byte %#x at %d, outside RFC 6749 section 5.2", got, got[i], i)
				}
			}
			if got != tt.want {
				t.Errorf("error_description = %q, want %q", got, tt.want)
			}
		})
	}
}
