package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteAppendSummary writes a short table of append results for people:
// throughput of both sides and their ratio.
func WriteAppendSummary(w io.Writer, rs []AppendResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "append: converge events/s against raw INSERTs of the same rows (ratio = converge / raw; 1 is parity)")
	fmt.Fprintln(tw, "WRITERS\tBATCH\tCONVERGE/S\tRAW/S\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%s\n", r.Writers, r.Batch, r.EventsPerSec, r.BaselinePerSec, ratioText(r.Ratio, 2))
	}
	return tw.Flush()
}

// WritePropagationSummary writes a short table of propagation results for
// people: each method's percentiles and its ratio against polling every
// 50 ms.
func WritePropagationSummary(w io.Writer, rs []PropagationResult) error {
	if len(rs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "propagation at %d events/s: commit to waiter woken (ratio = %s p99 / p99; above 1 is sooner)\n", rs[0].Rate, MethodPoll50ms)
	fmt.Fprintln(tw, "METHOD\tEVENTS\tAPPENDED/S\tP50 MS\tP95 MS\tP99 MS\tSTALE\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%d\t%s\n", r.Method, r.Events, r.AppendedPerSec, r.P50Ms, r.P95Ms, r.P99Ms, r.Stale, ratioText(r.Ratio, 2))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		// A rate needs two appends to be measured (perSec is 0 below).
		if r.Events >= 2 && !reachedRate(r.AppendedPerSec, r.Rate) {
			if _, err := fmt.Fprintf(w, "did not reach --rate: %s appended %.0f events/s of the %d asked (below %.0f%%); its figures were measured at that lower load\n",
				r.Method, r.AppendedPerSec, r.Rate, belowRateShare*100); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteCommandSummary writes a short table of command results for people:
// each method's step-commit-to-handler percentiles and its ratio against
// watermill-sql.
func WriteCommandSummary(w io.Writer, rs []CommandResult) error {
	if len(rs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "command at %d steps/s: step commit to handler start, across processes (ratio = %s p50 / p50; above 1 is sooner)\n", rs[0].Rate, MethodWatermillSQL)
	fmt.Fprintln(tw, "METHOD\tCOMMANDS\tSTEPS/S\tP50 MS\tP95 MS\tP99 MS\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%s\n", r.Method, r.Commands, r.StepsPerSec, r.P50Ms, r.P95Ms, r.P99Ms, ratioText(r.Ratio, 2))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Commands >= 2 && !reachedRate(r.StepsPerSec, r.Rate) {
			if _, err := fmt.Fprintf(w, "did not reach --rate: %s started %.0f steps/s of the %d asked (below %.0f%%); its figures were measured at that lower load\n",
				r.Method, r.StepsPerSec, r.Rate, belowRateShare*100); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteParallelSummary writes a short table of parallel results for people:
// throughput at each partition count against the first.
func WriteParallelSummary(w io.Writer, rs []ParallelResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "parallel: a handler spending a fixed time per event, partitions shared by processes (ratio = events/s / the first line's)")
	fmt.Fprintln(tw, "PARTITIONS\tPROCESSES\tEVENTS\tEVENTS/S\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%s\n", r.Partitions, r.Processes, r.Events, r.EventsPerSec, ratioText(r.Ratio, 2))
	}
	return tw.Flush()
}

// WriteSagaSummary writes a short table of saga results for people: each
// store's saga rate and latency against its baseline.
func WriteSagaSummary(w io.Writer, rs []SagaResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "saga: 4-step sagas end to end (ratio = sagas/s / baseline per second)")
	fmt.Fprintln(tw, "STORE\tPARTITIONS\tSAGAS\tSAGAS/S\tSTEPS/S\tP50 MS\tP99 MS\tBASELINE\tBASELINE/S\tRATIO\tROUND TRIPS/SAGA")
	for _, r := range rs {
		trips := "-"
		if r.RoundTripsPerSaga > 0 {
			trips = fmt.Sprintf("%.1f", r.RoundTripsPerSaga)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t%s\t%.0f\t%s\t%s\n", r.Store, r.Partitions, r.Sagas, r.SagasPerSec, r.StepsPerSec, r.P50Ms, r.P99Ms, r.Baseline, r.BaselinePerSec, ratioText(r.Ratio, 3), trips)
	}
	return tw.Flush()
}

// WriteContendedSummary writes a short table of contended results for
// people.
func WriteContendedSummary(w io.Writer, rs []ContendedResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "contended: events/s appended to one stream by every writer, against raw INSERTs of the same rows (ratio = converge / raw)")
	fmt.Fprintln(tw, "METHOD\tWRITERS\tCONVERGE/S\tRAW/S\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%s\n", r.Method, r.Writers, r.EventsPerSec, r.BaselinePerSec, ratioText(r.Ratio, 2))
	}
	return tw.Flush()
}
