// Package arch holds no code: its tests keep the package layout that
// docs/architecture.md describes true (import tiers, the SDK's isolation,
// and a doc comment on every package).
package arch
