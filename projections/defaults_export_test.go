package projections

// WithDefaults is RunnerConfig.withDefaults, the configuration NewRunner
// runs with, for the tests of its documented defaults.
func WithDefaults(c *RunnerConfig) RunnerConfig { return c.withDefaults() }
