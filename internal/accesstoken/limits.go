package accesstoken

// Bounds on what Verify will read, checked before any decoding.
const (
	// MaxTokenBytes bounds a compact token; anything longer is refused before
	// it is decoded, and Issue refuses to write one. 8 KiB is the per-header
	// line limit of common proxies (nginx large_client_header_buffers), so a
	// longer token would not reach a resource server intact anyway. Typical
	// grants make tokens of 600-900 bytes. Note that identity's bounds
	// (MaxScopes x MaxScopeLen) allow grants too large for one token: such a
	// request fails at Issue, not at every resource server.
	MaxTokenBytes = 8 << 10
	// maxHeaderBytes bounds the encoded JOSE header. Issue writes about 120
	// bytes (alg, kid, typ).
	maxHeaderBytes = 512
	// es256SigLen is the R||S length of an ES256 signature (RFC 7518 section
	// 3.4): 64 bytes, 86 in base64url.
	es256SigLen = 64
)
