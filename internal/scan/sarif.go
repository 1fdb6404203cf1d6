package scan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// SARIF 2.1.0 (OASIS, sarif-v2.1.0-os), the subset a code-scanning service
// reads: the tool with its rules, one result per finding with its location
// and partialFingerprints, and the skipped files as tool execution
// notifications. Like every other rendering it holds no secret text: the
// message names the rule, the fingerprint and the preview.

// SARIFVersion and SARIFSchema identify the format.
const (
	SARIFVersion = "2.1.0"
	SARIFSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	// sarifFingerprintKey names the fingerprint in partialFingerprints;
	// the /v1 suffix lets the algorithm change without matching old runs.
	sarifFingerprintKey = "secretSha256Prefix/v1"
	// sarifLocationKey names a digest of the finding's path: code scanning
	// treats results with equal partialFingerprints as one alert, and the
	// same secret in two files must be removed from both.
	sarifLocationKey = "secretPathSha256Prefix/v1"
	sarifBaseID      = "SRCROOT"
)

// pathDigest is the first 16 hex digits of SHA-256 of path.
func pathDigest(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:8])
}

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool sarifTool `json:"tool"`
	// ColumnKind says how startColumn counts: keybound counts runes.
	ColumnKind         string                      `json:"columnKind"`
	OriginalURIBaseIDs map[string]sarifArtifactLoc `json:"originalUriBaseIds,omitempty"`
	Invocations        []sarifInvocation           `json:"invocations"`
	Results            []sarifResult               `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string        `json:"id"`
	Name                 string        `json:"name"`
	ShortDescription     sarifText     `json:"shortDescription"`
	FullDescription      sarifText     `json:"fullDescription"`
	Help                 sarifText     `json:"help"`
	DefaultConfiguration sarifRuleConf `json:"defaultConfiguration"`
}

type sarifRuleConf struct {
	Level string `json:"level"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          sarifProperties   `json:"properties"`
}

type sarifProperties struct {
	Status      string    `json:"status"`
	Fingerprint string    `json:"fingerprint"`
	Preview     string    `json:"preview"`
	Commit      string    `json:"commit,omitempty"`
	Identity    *Identity `json:"identity,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifactLoc `json:"artifactLocation"`
	Region           *sarifRegion     `json:"region,omitempty"`
}

type sarifArtifactLoc struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
}

// WriteSARIF writes rep as a SARIF 2.1.0 log with one run.
func WriteSARIF(w io.Writer, rep *Report) error {
	ruleIndex := map[string]int{}
	var srules []sarifRule
	for i, r := range Rules() {
		ruleIndex[r.ID] = i
		srules = append(srules, sarifRule{
			ID: r.ID, Name: r.Name,
			ShortDescription:     sarifText{r.Description},
			FullDescription:      sarifText{r.Description + " keybound reports a secret only by a fingerprint (a prefix of its SHA-256) and a preview of its first characters."},
			Help:                 sarifText{r.Help},
			DefaultConfiguration: sarifRuleConf{Level: "error"},
		})
	}
	run := sarifRun{
		Tool:        sarifTool{Driver: sarifDriver{Name: "keybound", InformationURI: "https://github.com/keybound/keybound", Rules: srules}},
		ColumnKind:  "unicodeCodePoints",
		Invocations: []sarifInvocation{{ExecutionSuccessful: true}},
		Results:     []sarifResult{},
	}
	if base := baseURI(rep.Root); base != "" {
		run.OriginalURIBaseIDs = map[string]sarifArtifactLoc{sarifBaseID: {URI: base}}
	}
	for _, sk := range rep.Skipped {
		n := sarifNotification{Level: "note", Message: sarifText{"not scanned: " + sk.Reason}}
		if sk.Path != "" {
			n.Locations = []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: artifact(sk.Path)}}}
		}
		run.Invocations[0].ToolExecutionNotifications = append(run.Invocations[0].ToolExecutionNotifications, n)
	}
	for _, f := range rep.Findings {
		run.Results = append(run.Results, sarifResult{
			RuleID:    f.Rule,
			RuleIndex: ruleIndex[f.Rule],
			Level:     sarifLevel(f.Status),
			Message:   sarifText{Message(f)},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: artifact(f.Path),
				Region:           &sarifRegion{StartLine: f.Line, StartColumn: f.Column},
			}}},
			PartialFingerprints: map[string]string{sarifFingerprintKey: f.Fingerprint, sarifLocationKey: pathDigest(f.Path)},
			Properties:          sarifProperties{Status: f.Status, Fingerprint: f.Fingerprint, Preview: f.Preview, Commit: f.Commit, Identity: f.Identity},
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: SARIFSchema, Version: SARIFVersion, Runs: []sarifRun{run}})
}

// Message is a one-sentence account of a finding for people: what was
// found, where it stands in the inventory and what to do.
func Message(f Finding) string {
	what := fmt.Sprintf("%s %s (fingerprint %s)", f.Rule, f.Preview, f.Fingerprint)
	where := ""
	if f.Commit != "" {
		where = " in git history (added in commit " + shortCommit(f.Commit) + ")"
	}
	switch f.Status {
	case StatusLeaked:
		id := f.Identity
		if id == nil {
			return what + where + " is the secret of a registered identity: it has leaked; rotate it."
		}
		return fmt.Sprintf("%s%s is the secret of identity %s (%s, owner %s): it has leaked; rotate it.", what, where, id.ClientID, id.Name, id.Owner)
	case StatusUnmanaged:
		return what + where + " is not a secret of any registered identity: it is unmanaged; rotate it and register its holder."
	default:
		return what + where + " was not matched against an inventory."
	}
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func sarifLevel(status string) string {
	if status == StatusLeaked {
		return "error"
	}
	return "warning"
}

// artifact is a location relative to the scanned root, as a URI reference.
func artifact(path string) sarifArtifactLoc {
	u := &url.URL{Path: path}
	return sarifArtifactLoc{URI: u.String(), URIBaseID: sarifBaseID}
}

// baseURI is the file URI of the scanned directory (of a scanned file's
// directory), ending in a slash as SARIF requires; "" when unknown.
func baseURI(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		return ""
	}
	if st, err := os.Stat(abs); err == nil && !st.IsDir() {
		abs = filepath.Dir(abs)
	}
	p := filepath.ToSlash(abs)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive path
	}
	return (&url.URL{Scheme: "file", Path: p}).String()
}
