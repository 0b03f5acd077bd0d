// Package bench holds the scenarios behind `converge bench`. Every scenario
// measures converge and a baseline in the same run, on the same machine, and
// reports the ratio: absolute figures on a shared 2-core machine mean little,
// ratios measured side by side do.
package bench
