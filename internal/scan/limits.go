package scan

// Bounds of one scan. Each keeps a scan of an unknown tree (a vendored
// dependency dump, a repository with large generated files) finite in memory
// and time, and each skip is reported with its reason rather than hidden.
const (
	// DefaultMaxFileBytes is the largest file or history blob read. Source
	// and configuration files are far smaller; what is larger is almost
	// always generated data, an archive or a database dump, and reading it
	// whole would cost memory for little chance of a finding.
	DefaultMaxFileBytes = 1 << 20

	// binarySniffBytes is how much of a file is searched for a NUL byte to
	// call it binary: the same heuristic and length git uses.
	binarySniffBytes = 8000

	// maxFindingsPerFile bounds the findings listed for one file or blob;
	// beyond it the file is listed as skipped (the rest of it unscanned) so
	// a secrets dump cannot swamp the report.
	maxFindingsPerFile = 1000

	// maxSkippedListed bounds the skipped files and blobs listed one by
	// one; past it they are counted in one last entry. A monorepo's
	// history can hold millions of binary blobs, and a report listing each
	// would cost more memory than the scan.
	maxSkippedListed = 10000

	// maxGenericValueLen bounds the value of a generic "api_key = ..."
	// assignment; a longer run of token characters is data, not a key.
	maxGenericValueLen = 512

	// previewChars is how many leading characters of a secret a preview
	// shows. Most formats put a fixed, public prefix there (kbs_, AKIA,
	// ghp_), so it tells a reader which kind of secret without revealing it.
	previewChars = 4
)
