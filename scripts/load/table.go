package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// runTable is "load table NAME=REPORT.json...": one row per -json report,
// so the figures of several scenarios read side by side.
func runTable(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: load table NAME=REPORT.json...") }
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var rows []namedReport
	for _, arg := range fs.Args() {
		name, path, ok := strings.Cut(arg, "=")
		if !ok || name == "" || path == "" {
			fmt.Fprintf(stderr, "load table: %q is not NAME=REPORT.json\n", arg)
			return 2
		}
		rep, err := readReport(path)
		if err != nil {
			fmt.Fprintf(stderr, "load table: %v\n", err)
			return 1
		}
		rows = append(rows, namedReport{name, rep})
	}
	writeTable(stdout, rows)
	return 0
}

type namedReport struct {
	name string
	rep  *report
}

func readReport(path string) (*report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// writeTable prints the reports as one aligned table. Server figures are
// "-" where the run had no -pid, and writes where /proc/PID/io was not
// readable.
func writeTable(w io.Writer, rows []namedReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients\tmode\tsenders×msg/s\tconnected\tall in s\tquiet at s\thandshakes/s\tKiB/session\tµs/delivery\twrites/delivery\tp50 ms\tp99 ms\tlost\tdeliveries/s\t")
	for _, r := range rows {
		rep := r.rep
		mode := "line"
		if rep.PTY {
			mode = "pty"
		}
		quiet := fmt.Sprintf("%.1f", rep.Connect.TimeToQuietSeconds)
		if !rep.Connect.Quiet {
			quiet = ">" + quiet
		}
		kib, cpu, writes := "-", "-", "-"
		if s := rep.Server; s != nil {
			kib = fmt.Sprintf("%.1f", s.IdleKBPerSession)
			cpu = fmt.Sprintf("%.2f", s.CPUPerDeliveryUS)
			if s.WritesSend > 0 {
				writes = fmt.Sprintf("%.2f", s.WritesPerDelivery)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d×%g\t%d\t%.1f\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%.2f\t%d\t%.0f\t\n",
			r.name, rep.Clients, mode, rep.Senders, rep.RatePerSender, rep.Connect.Connected,
			rep.Connect.TimeToConnectAllSeconds, quiet, rep.Connect.HandshakesPerSec, kib, cpu, writes,
			rep.Latency.P50, rep.Latency.P99, rep.Send.Lost, rep.Send.DeliveriesPerSec)
	}
	tw.Flush()
}
