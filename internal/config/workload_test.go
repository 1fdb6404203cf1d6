package config

import (
	"strings"
	"testing"
	"time"
)

func TestWorkloadCA(t *testing.T) {
	c := Default()
	if err := c.LoadYAML([]byte("workload_ca:\n  trust_domain: prod.example.com\n  cert_lifetime: 15m\n  max_cert_lifetime: 72h\n  join_token_lifetime: 10m\n")); err != nil {
		t.Fatal(err)
	}
	w := c.WorkloadCA
	if w.TrustDomain != "prod.example.com" || w.CertLifetime != 15*time.Minute || w.MaxCertLifetime != 72*time.Hour || w.JoinTokenLifetime != 10*time.Minute {
		t.Errorf("decoded %+v", w)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid workload_ca refused: %v", err)
	}
	if err := c.LoadYAML([]byte("workload_ca:\n  trust_domian: x\n")); err == nil {
		t.Error("unknown workload_ca key accepted")
	}

	tests := []struct {
		key    string
		mutate func(*WorkloadCA)
	}{
		{"workload_ca.trust_domain", func(w *WorkloadCA) { w.TrustDomain = "Prod.Example" }},
		{"workload_ca.trust_domain", func(w *WorkloadCA) { w.TrustDomain = "" }},
		{"workload_ca.cert_lifetime", func(w *WorkloadCA) { w.CertLifetime = 30 * time.Second }},
		{"workload_ca.cert_lifetime", func(w *WorkloadCA) { w.CertLifetime = 48 * time.Hour }},
		{"workload_ca.max_cert_lifetime", func(w *WorkloadCA) { w.MaxCertLifetime = 31 * 24 * time.Hour }},
		{"workload_ca.join_token_lifetime", func(w *WorkloadCA) { w.JoinTokenLifetime = 25 * time.Hour }},
		{"workload_ca.cert_file", func(w *WorkloadCA) { w.CertFile = "ca.pem" }},
	}
	for _, tt := range tests {
		c := Default()
		tt.mutate(&c.WorkloadCA)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: Validate = %v", tt.key, err)
		}
	}
}
