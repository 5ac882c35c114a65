"""Self-contained HTML report and plots."""
