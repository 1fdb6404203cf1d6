package clientauth

import (
	"context"
	"errors"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/oauth"
)

// FuzzAuthenticate feeds arbitrary client_assertion strings. Invariants: no
// panic; every refusal is an *oauth.Error and leaves the replay cache as it
// was; an acceptance names the client the assertion was signed for.
func FuzzAuthenticate(f *testing.F) {
	fx := loadFixture(f)
	f.Add(sign(f, fx.ecKey, jose.ES256, "ec1", claims("jwt-client", "fuzz-seed", nil), nil))
	f.Add(sign(f, fx.edKey, jose.EdDSA, "", claims("ghost", "fuzz-seed", nil), nil))
	f.Add(rawJWS(map[string]any{"alg": "none"}, claims("jwt-client", "x", nil), nil))
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Add("a.b.c.d.e")
	f.Add("")
	f.Add(`{"payload":"e30","signatures":[]}`)

	a, replay := fx.authenticator()
	f.Fuzz(func(t *testing.T, assertion string) {
		before := replay.len()
		res, err := a.Authenticate(context.Background(), Request{Form: assertionForm(assertion)})
		if err != nil {
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *oauth.Error", err)
			}
			if replay.len() != before {
				t.Fatal("a refused assertion changed the replay cache")
			}
			return
		}
		if res.Client.ID != "jwt-client" || res.AssertionJTI == "" || replay.len() != before+1 {
			t.Fatalf("accepted %+v", res)
		}
	})
}
