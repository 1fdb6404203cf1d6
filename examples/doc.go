// Package examples holds runnable programs that call an API through the
// keybound gateway with the public sdk: dpop-client (private_key_jwt and
// DPoP) and mtls-client (tls_client_auth and a certificate-bound token). It
// has no code of its own; its test builds each program and runs it against a
// real token service and gateway. Programs here import only sdk, as code
// outside this module would.
package examples
