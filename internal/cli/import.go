package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/problem"
)

// rowProblem is one problem of an import file. Row is the file's row
// number (the CSV line, or the JSON array position from 1); 0 means the
// file as a whole.
type rowProblem struct {
	Row    int    `json:"row"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func newImportCmd(g *globals) *cobra.Command {
	var (
		out    string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Bring existing static API keys into the inventory from CSV or JSON",
		Long: `Import existing static API keys as governed identities, all or nothing.

FILE is CSV with a header row naming the fields, or a JSON array of objects
with the same names:

  name, owner, purpose, environment, expires_at, secret   (required)
  vendor, scope                                            (optional)

expires_at is RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD; scope is
space-separated. Every row is validated first, with the same rules as
` + "`keybound client create`" + `; if any row is bad nothing is imported and every
problem is listed with its row (the CSV line, the header being row 1, or
the JSON array position, the first object being row 1).

Imported identities authenticate with client_secret_basic (a legacy static
secret, marked as such in every report) and their tokens are DPoP-bound.
Callers keep their keys; keybound stores only a salted hash of each.`,
		Example: `  keybound import legacy-keys.csv --dry-run
  keybound import legacy-keys.csv -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			b, err := readBounded(args[0], adminapi.MaxImportBytes)
			if err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					return fmt.Errorf("cannot read %s: %w", args[0], pe.Err)
				}
				return err
			}
			rows, rowNums, problems := parseImport(b)
			var created []adminapi.ClientView
			if len(rows) > 0 {
				api, err := newAdminAPI(cmd.Context(), g)
				if err != nil {
					return err
				}
				// With problems already found, a dry run still reports
				// every row's problems at once.
				req := adminapi.ImportRequest{Rows: rows, DryRun: dryRun || len(problems) > 0}
				var res adminapi.ImportResponse
				pd, err := api.send(cmd.Context(), "POST", "/clients:import", req, &res)
				if err != nil {
					return err
				}
				if pd != nil {
					if pd.Type == "" && pd.Status == http.StatusRequestEntityTooLarge {
						return errors.New("the import is larger than the server accepts in one request (server.max_body_bytes); raise it, or split the file")
					}
					if pd.Type != "urn:keybound:problem:invalid-import" {
						return errors.New(problemText(pd))
					}
					problems = append(problems, fromServer(pd, rowNums)...)
				}
				created = res.Clients
			}
			if len(problems) > 0 {
				sortProblems(problems)
				return printImportProblems(g, out, problems, args[0])
			}
			if out == "json" {
				return printJSON(g.stdout, map[string]any{"dry_run": dryRun, "imported": len(created), "valid": len(rows), "clients": created})
			}
			if dryRun {
				fmt.Fprintf(g.stdout, "All %d rows of %s are valid. Nothing was imported (--dry-run).\n", len(rows), args[0])
				return nil
			}
			tab := make([][]string, 0, len(created))
			for _, c := range created {
				tab = append(tab, []string{c.ClientID, c.Name, c.Owner, c.Environment, c.ExpiresAt.Format(time.RFC3339)})
			}
			if err := printTable(g.stdout, []string{"CLIENT_ID", "NAME", "OWNER", "ENVIRONMENT", "EXPIRES_AT"}, tab); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "\nImported %d identities with their existing secrets (client_secret_basic, DPoP-bound tokens); keybound stores only a hash of each.\n", len(created))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate every row and import nothing")
	outputFlag(cmd, &out)
	return cmd
}

// parseImport reads a CSV or JSON import file into rows, each with its row
// number, and lists every problem of the file's shape. Values are taken as
// they are; the server validates them.
func parseImport(b []byte) ([]inventory.ImportRow, []int, []rowProblem) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a spreadsheet's UTF-8 byte order mark
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, nil, []rowProblem{{Field: "file", Detail: "is empty: give a CSV header row naming the fields (" + strings.Join(inventory.ImportFields, ", ") + ") and one row per identity, or a JSON array of objects"}}
	}
	if trimmed[0] == '[' {
		return parseImportJSON(trimmed)
	}
	return parseImportCSV(b)
}

func setField(r *inventory.ImportRow, field, v string) {
	switch field {
	case inventory.FieldName:
		r.Name = v
	case inventory.FieldOwner:
		r.Owner = v
	case inventory.FieldPurpose:
		r.Purpose = v
	case inventory.FieldEnvironment:
		r.Environment = v
	case inventory.FieldExpiresAt:
		r.ExpiresAt = v
	case inventory.FieldSecret:
		r.Secret = v
	case inventory.FieldVendor:
		r.Vendor = v
	case inventory.FieldScope:
		r.Scope = v
	}
}

func unknownField(name string) string {
	return fmt.Sprintf("%q is not an import field; the fields are %s", name, strings.Join(inventory.ImportFields, ", "))
}

func parseImportCSV(b []byte) ([]inventory.ImportRow, []int, []rowProblem) {
	var problems []rowProblem
	rd := csv.NewReader(bytes.NewReader(b))
	rd.FieldsPerRecord = -1
	header, err := rd.Read()
	if err != nil {
		return nil, nil, []rowProblem{{Row: 1, Field: "header", Detail: csvReason(err)}}
	}
	cols := make([]string, len(header)) // import field per column; "" to ignore
	seen := map[string]bool{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		switch {
		case !slices.Contains(inventory.ImportFields, name):
			problems = append(problems, rowProblem{Row: 1, Field: "header", Detail: "column " + strconv.Itoa(i+1) + ": " + unknownField(name)})
		case seen[name]:
			problems = append(problems, rowProblem{Row: 1, Field: "header", Detail: "column " + strconv.Itoa(i+1) + ": " + name + " is named twice"})
		default:
			cols[i], seen[name] = name, true
		}
	}
	for _, f := range inventory.ImportFields[:inventory.RequiredImportFields] {
		if !seen[f] {
			problems = append(problems, rowProblem{Row: 1, Field: "header", Detail: "has no " + f + " column; the header must name " + strings.Join(inventory.ImportFields[:inventory.RequiredImportFields], ", ")})
		}
	}
	var (
		rows []inventory.ImportRow
		nums []int
	)
	for {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := rd.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			// A syntax error leaves the reader's position unreliable: stop.
			problems = append(problems, rowProblem{Row: line, Field: "csv", Detail: csvReason(err) + "; the rows after it were not read"})
			break
		}
		if len(rec) != len(header) {
			problems = append(problems, rowProblem{Row: line, Field: "csv", Detail: fmt.Sprintf("has %d fields; the header names %d", len(rec), len(header))})
			continue
		}
		var r inventory.ImportRow
		for i, v := range rec {
			setField(&r, cols[i], v)
		}
		rows, nums = append(rows, r), append(nums, line)
	}
	if len(rows) == 0 && len(problems) == 0 {
		problems = append(problems, rowProblem{Field: "file", Detail: "has a header but no rows: add one row per identity"})
	}
	return rows, nums, problems
}

// csvReason is encoding/csv's reason without its position (the row number
// says where), and never any field content.
func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "is not valid CSV: " + pe.Err.Error()
	}
	if errors.Is(err, io.EOF) {
		return "is missing"
	}
	return err.Error()
}

func parseImportJSON(b []byte) ([]inventory.ImportRow, []int, []rowProblem) {
	var elems []json.RawMessage
	if err := json.Unmarshal(b, &elems); err != nil {
		return nil, nil, []rowProblem{{Field: "file", Detail: "is not a JSON array of objects: " + jsonReason(err)}}
	}
	if len(elems) == 0 {
		return nil, nil, []rowProblem{{Field: "file", Detail: "is an empty JSON array: give one object per identity"}}
	}
	var (
		problems []rowProblem
		rows     []inventory.ImportRow
		nums     []int
	)
	for i, e := range elems {
		n := i + 1
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e, &obj); err != nil || obj == nil {
			problems = append(problems, rowProblem{Row: n, Field: "row", Detail: "is not a JSON object"})
			continue
		}
		var r inventory.ImportRow
		ok := true
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !slices.Contains(inventory.ImportFields, k) {
				problems = append(problems, rowProblem{Row: n, Field: k, Detail: unknownField(k)})
				ok = false
				continue
			}
			var v *string
			if err := json.Unmarshal(obj[k], &v); err != nil {
				problems = append(problems, rowProblem{Row: n, Field: k, Detail: "must be a JSON string"})
				ok = false
				continue
			}
			if v != nil {
				setField(&r, k, *v)
			}
		}
		if ok {
			rows, nums = append(rows, r), append(nums, n)
		}
	}
	return rows, nums, problems
}

// jsonReason is the decoder's reason without any of the input.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "found a JSON " + te.Value + " where an array of objects belongs"
	}
	return "cannot be decoded"
}

// rowsRef matches the rows[i] the admin API names rows by.
var rowsRef = regexp.MustCompile(`rows\[(\d+)\]`)

// fromServer turns the admin API's problems, which name rows by their
// index in the request, into problems named by file row.
func fromServer(pd *problem.Details, rowNums []int) []rowProblem {
	fileRow := func(idx string) (int, bool) {
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i >= len(rowNums) {
			return 0, false
		}
		return rowNums[i], true
	}
	var out []rowProblem
	for _, fe := range pd.Errors {
		p := rowProblem{Field: fe.Field, Detail: fe.Detail}
		if m := rowsRef.FindStringSubmatch(fe.Field); m != nil {
			if n, ok := fileRow(m[1]); ok {
				p.Row = n
				p.Field = strings.TrimPrefix(fe.Field[len(m[0]):], ".")
			}
		}
		p.Detail = rowsRef.ReplaceAllStringFunc(p.Detail, func(ref string) string {
			if n, ok := fileRow(rowsRef.FindStringSubmatch(ref)[1]); ok {
				return "row " + strconv.Itoa(n)
			}
			return ref
		})
		out = append(out, p)
	}
	return out
}

// sortProblems orders problems by row, then by field in column order, so
// the list reads like the file.
func sortProblems(ps []rowProblem) {
	col := func(field string) int {
		if i := slices.Index(inventory.ImportFields, field); i >= 0 {
			return i
		}
		return -1 // file, header, csv: the row as a whole first
	}
	slices.SortStableFunc(ps, func(a, b rowProblem) int {
		if a.Row != b.Row {
			return a.Row - b.Row
		}
		return col(a.Field) - col(b.Field)
	})
}

// printImportProblems lists every problem (on stderr, or as JSON on stdout
// with -o json) and returns the one-line error the command ends with.
func printImportProblems(g *globals, out string, ps []rowProblem, file string) error {
	rows := map[int]bool{}
	for _, p := range ps {
		rows[p.Row] = true
	}
	if out == "json" {
		if err := printJSON(g.stdout, map[string]any{"imported": 0, "problems": ps}); err != nil {
			return err
		}
	} else {
		tab := make([][]string, 0, len(ps))
		for _, p := range ps {
			where := "file"
			if p.Row > 0 {
				where = "row " + strconv.Itoa(p.Row)
			}
			tab = append(tab, []string{where, p.Field, p.Detail})
		}
		if err := printTable(g.stderr, []string{"ROW", "FIELD", "PROBLEM"}, tab); err != nil {
			return err
		}
	}
	n := len(ps)
	noun := "problems"
	if n == 1 {
		noun = "problem"
	}
	return fmt.Errorf("import refused: %d %s in %s; nothing was imported: fix every row listed and run the import again", n, noun, file)
}
