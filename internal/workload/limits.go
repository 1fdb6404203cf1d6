package workload

import "time"

// Bounds. Each keeps one enrollment cheap and the stored and in-memory
// state small no matter what a caller sends.
const (
	// MaxCSRBytes bounds a CSR, PEM or DER, before it is parsed. An RSA-8192
	// CSR in PEM is under 3 KiB.
	MaxCSRBytes = 16 << 10
	// MinRSABits and MaxRSABits bound RSA keys in CSRs: below 2048 is weak
	// (NIST SP 800-131A), above 8192 only costs verification time.
	MinRSABits = 2048
	MaxRSABits = 8192

	// MinLifetime is the shortest certificate keybound issues: "down to
	// minutes". Shorter would expire before a renewal loop could react.
	MinLifetime = time.Minute
	// DefaultLifetime is used when neither the request nor the
	// configuration names one.
	DefaultLifetime = 24 * time.Hour
	// MaxLifetimeCap bounds the configurable maximum: these are short-lived
	// certificates, revocation is the exception, expiry the rule.
	MaxLifetimeCap = 30 * 24 * time.Hour
	// clockSkew back-dates NotBefore so a workload whose clock is a little
	// behind can use its certificate at once.
	clockSkew = time.Minute

	// DefaultJoinTokenLifetime, MinJoinTokenLifetime and
	// MaxJoinTokenLifetime bound how long a join token can wait to be used.
	DefaultJoinTokenLifetime = time.Hour
	MinJoinTokenLifetime     = time.Minute
	MaxJoinTokenLifetime     = 24 * time.Hour
	// MaxJoinTokenBytes bounds a presented join token before it is parsed.
	MaxJoinTokenBytes = 128

	// MaxLiveCertsPerClient bounds the unexpired, unrevoked certificates of
	// one identity: a handful of replicas renewing with overlap need far
	// fewer; more means a loop or a stolen enrollment credential.
	MaxLiveCertsPerClient = 64
	// MaxLiveJoinTokensPerClient bounds unused join tokens per identity.
	MaxLiveJoinTokensPerClient = 16
	// MaxPresentedChain bounds the certificate chain presented to renew.
	MaxPresentedChain = 4
	// MaxReasonLen bounds a revocation reason kept in the store and log.
	MaxReasonLen = 256
	// MaxRevocations bounds the in-memory revocation view. Entries leave
	// when the certificate expires (a day by default).
	MaxRevocations = 1 << 20

	// crlValidity is the CRL's NextUpdate - ThisUpdate; crlRefresh is how
	// old a cached CRL may get before it is signed again even without a new
	// revocation.
	crlValidity = time.Hour
	crlRefresh  = 5 * time.Minute
)
