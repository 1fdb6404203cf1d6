package route

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestEnvironmentTag(t *testing.T) {
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader("name: a\npath: /a\nupstream: http://up\nsensitivity: internal\nenvironment: prod\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if r := mustCompile(t, s).Routes()[0]; r.Environment != "prod" {
		t.Errorf("environment = %q, want prod", r.Environment)
	}
	if r := mustCompile(t, spec("b", "/b")).Routes()[0]; r.Environment != "" {
		t.Errorf("untagged route has environment %q", r.Environment)
	}
	for _, bad := range []string{"pr od", "prod/eu", strings.Repeat("e", MaxNameLen+1)} {
		s := spec("c", "/c")
		s.Environment = bad
		_, err := Compile([]Spec{s})
		if err == nil || !strings.Contains(err.Error(), "gateway.routes[0].environment:") {
			t.Errorf("environment %q: err = %v, want a gateway.routes[0].environment error", bad, err)
		}
	}
}
