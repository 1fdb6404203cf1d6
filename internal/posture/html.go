package posture

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

// The HTML report is one self-contained file: inline CSS, charts as inline
// SVG drawn here, no script, and a Content-Security-Policy that forbids
// fetching anything, so opening it cannot call out to the network.

//go:embed report.html.tmpl
var reportTemplate string

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"count":      countText,
	"num":        numText,
	"change":     changeText,
	"accepts":    acceptText,
	"status":     func(s string) string { return statusLabels[s] },
	"join":       strings.Join,
	"orDash":     orDash,
	"rfc3339":    func(t time.Time) string { return t.Format(time.RFC3339) },
	"shareCell":  shareCell,
	"trendClass": trendClass,
	"f":          func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
}).Parse(reportTemplate))

// trendClass is the CSS class of a change: better, worse or same.
func trendClass(c Change) string {
	if c.Delta == nil || *c.Delta == 0 {
		return "same"
	}
	if (*c.Delta < 0) == c.LowerIsBetter {
		return "better"
	}
	return "worse"
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 760.0
	labelWidth  = 150.0
	barX        = labelWidth + 10
	barWidth    = 470.0
	rowHeight   = 30.0
	barHeight   = 20.0
	legendSpace = 30.0
)

// chartColors are the class colours: red for what a copied secret opens,
// amber for a copied token, green for sender-constrained.
var chartColors = map[string]string{
	ClassStaticSecret:      "#b3261e",
	ClassBearer:            "#c77700",
	ClassSenderConstrained: "#1e7b34",
	"other":                "#777777",
}

type segment struct {
	X, W         float64
	Color, Label string
	Text         string // shown inside the bar when it fits
	Tooltip      string
}

type chartRow struct {
	Label      string
	Y, TextY   float64
	Segments   []segment
	Total      string
	Empty      bool
	EmptyLabel string
}

type legendItem struct {
	X, TextX     float64
	Color, Label string
}

type chart struct {
	ID, Title    string
	Width        float64
	Height       float64
	LegendY      float64
	LegendTextY  float64
	Rows         []chartRow
	Legend       []legendItem
	BarRightEdge float64
}

// shareChart draws one stacked bar per share: static secrets, bearer and
// sender-constrained requests as parts of the authenticated ones.
func shareChart(t Traffic) chart {
	c := chart{ID: "chart-shares", Title: fmt.Sprintf("Authenticated requests by credential, last %d days", t.Days), Width: chartWidth, BarRightEdge: barX + barWidth + 8}
	shares := append([]Share{t.Overall}, t.BySensitivity...)
	for i, s := range shares {
		y := float64(i) * rowHeight
		row := chartRow{Label: shareLabel(s.Class), Y: y, TextY: y + barHeight/2 + 5, Total: plural(int(s.Authenticated), "request|requests")}
		if s.Authenticated == 0 {
			row.Empty, row.EmptyLabel = true, "no authenticated requests"
		}
		x := barX
		for _, part := range []struct {
			class string
			n     int64
		}{{ClassStaticSecret, s.StaticSecret}, {ClassBearer, s.Bearer}, {ClassSenderConstrained, s.SenderConstrained}, {"other", s.Other}} {
			if part.n == 0 || s.Authenticated == 0 {
				continue
			}
			w := barWidth * float64(part.n) / float64(s.Authenticated)
			pctv := 100 * float64(part.n) / float64(s.Authenticated)
			label := classLabels[part.class]
			if label == "" {
				label = "Other"
			}
			seg := segment{X: x, W: w, Color: chartColors[part.class], Label: label,
				Tooltip: fmt.Sprintf("%s: %d requests (%.1f%%)", label, part.n, pctv)}
			if w >= 44 {
				seg.Text = fmt.Sprintf("%.0f%%", pctv)
			}
			row.Segments = append(row.Segments, seg)
			x += w
		}
		c.Rows = append(c.Rows, row)
	}
	c.LegendY = float64(len(shares))*rowHeight + 8
	c.LegendTextY = c.LegendY + 11
	c.Height = c.LegendY + legendSpace
	x := barX
	for _, k := range []string{ClassStaticSecret, ClassBearer, ClassSenderConstrained} {
		c.Legend = append(c.Legend, legendItem{X: x, TextX: x + 18, Color: chartColors[k], Label: classLabels[k]})
		x += 205
	}
	return c
}

func shareLabel(class string) string {
	if class == "all" {
		return "All routes"
	}
	return strings.ToUpper(class[:1]) + class[1:] + " routes"
}

// countChart draws one bar per bucket, scaled to the largest.
func countChart(id, title string, bs []Bucket) chart {
	c := chart{ID: id, Title: title, Width: chartWidth, BarRightEdge: barX + barWidth + 8}
	most := 0
	for _, b := range bs {
		most = max(most, b.Count)
	}
	for i, b := range bs {
		y := float64(i) * rowHeight
		row := chartRow{Label: b.Key, Y: y, TextY: y + barHeight/2 + 5, Total: strconv.Itoa(b.Count)}
		if b.Count > 0 {
			w := barWidth * float64(b.Count) / float64(most)
			row.Segments = []segment{{X: barX, W: max(w, 2), Color: "#3a5a8c", Label: b.Key, Tooltip: fmt.Sprintf("%s: %d", b.Key, b.Count)}}
		}
		c.Rows = append(c.Rows, row)
	}
	c.Height = float64(len(bs)) * rowHeight
	return c
}

type htmlView struct {
	*Report
	Charts       []chart
	Summary      []Change
	PreviousText string
}

// WriteHTML renders r as a self-contained HTML page with inline SVG charts.
func (r *Report) WriteHTML(w io.Writer) error {
	v := htmlView{
		Report: r,
		Charts: []chart{
			shareChart(r.Traffic),
			countChart("chart-credentials", "Active identities by credential type", r.Inventory.ByCredentialType),
			countChart("chart-bindings", "Active identities by token binding", r.Inventory.ByBinding),
		},
		PreviousText: r.previousText(),
	}
	var b strings.Builder
	if err := htmlTemplate.Execute(&b, v); err != nil {
		return fmt.Errorf("posture: render HTML: %w", err)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
