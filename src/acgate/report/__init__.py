"""Self-contained HTML report and plots (matplotlib, Agg canvas; Pillow for sprite sheets)."""

from acgate.report.html import ReportFiles, write_repair_report, write_report

__all__ = ["ReportFiles", "write_repair_report", "write_report"]
