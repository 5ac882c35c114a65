"""Great Expectations suites for what enters and leaves the stage."""
