package workload_test

import (
	"encoding/pem"
	"errors"
	"testing"

	"github.com/keybound/keybound/internal/workload"
)

// FuzzParseCSR: no input panics; every refusal is a caller error of the
// bad-request or weak-key kind; an accepted CSR carries a valid
// self-signature.
func FuzzParseCSR(f *testing.F) {
	good := csrPEM(f, newKey(f), nil)
	blk, _ := pem.Decode(good)
	f.Add(good)
	f.Add(blk.Bytes)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := workload.ParseCSR(b)
		if err != nil {
			if !errors.Is(err, workload.ErrBadRequest) && !errors.Is(err, workload.ErrWeakKey) {
				t.Fatalf("refusal of an unexpected kind: %v", err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
	})
}
