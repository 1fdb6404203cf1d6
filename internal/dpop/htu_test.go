package dpop

import "testing"

func TestMatchHTU(t *testing.T) {
	const req = "https://api.example.com/v1/things"
	tests := []struct {
		name string
		htu  string
		url  string
		want bool
	}{
		{"identical", req, req, true},
		{"query on request ignored", req, req + "?a=1", true},
		{"query on htu ignored", req + "?a=1", req, true},
		{"fragment ignored", req + "#f", req, true},
		{"scheme case", "HTTPS://api.example.com/v1/things", req, true},
		{"host case", "https://API.EXAMPLE.COM/v1/things", req, true},
		{"default https port", "https://api.example.com:443/v1/things", req, true},
		{"default http port", "http://api.example.com:80/x", "http://api.example.com/x", true},
		{"empty path is slash", "https://api.example.com", "https://api.example.com/", true},
		{"unreserved percent-decoded", "https://api.example.com/v1/%74hings", req, true},
		{"percent hex case", "https://api.example.com/a%2fb", "https://api.example.com/a%2Fb", true},
		{"dot segments", "https://api.example.com/v1/x/../things", req, true},
		{"ipv6 default port", "https://[::1]:443/a", "https://[::1]/a", true},
		{"path case matters", "https://api.example.com/V1/things", req, false},
		{"other host", "https://evil.example.com/v1/things", req, false},
		{"other path", "https://api.example.com/v1/thing", req, false},
		{"trailing slash matters", req + "/", req, false},
		{"other scheme", "http://api.example.com/v1/things", req, false},
		{"other port", "https://api.example.com:8443/v1/things", req, false},
		{"https on port 80", "https://api.example.com:80/v1/things", "https://api.example.com/v1/things", false},
		{"encoded slash is not a slash", "https://api.example.com/v1%2Fthings", req, false},
		{"userinfo refused", "https://user@api.example.com/v1/things", req, false},
		{"relative refused", "/v1/things", req, false},
		{"relative equal strings refused", "/v1/things", "/v1/things", false},
		{"other scheme refused", "ftp://api.example.com/v1/things", "ftp://api.example.com/v1/things", false},
		{"bad percent", "https://api.example.com/%zz", req, false},
		{"empty", "", req, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchHTU(tt.htu, tt.url); got != tt.want {
				t.Errorf("matchHTU(%q, %q) = %v, want %v", tt.htu, tt.url, got, tt.want)
			}
		})
	}
}

func TestRemoveDotSegments(t *testing.T) {
	// RFC 3986 section 5.2.4 and 5.4 examples.
	for in, want := range map[string]string{
		"/a/b/c/./../../g":   "/a/g",
		"mid/content=5/../6": "mid/6",
		"/a/b/..":            "/a/",
		"/../a":              "/a",
		"/a/./b/":            "/a/b/",
		"/":                  "/",
		"":                   "",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", in, got, want)
		}
	}
}
