"""Quiet, tidy commands: one summary line per retention run (JSON only with --json), no progress
bar when stderr is not a terminal, the demo's footing."""

from __future__ import annotations

import io
import json
import sys

from crowd_platform.cli.retention import summary_line
from crowd_platform.simulator.footing import DEMO_FOOTING, FULL_FOOTING

SUMMARY = {"as_of": "2020-04-05T01:00:00Z", "mode": "retention", "dry_run": False, "objects": 612,
           "by_kind": {"lake_partition": 200, "raw_drop": 205, "warehouse_rows": 7}, "rows": 9876,
           "bytes": 12_345_678, "drops_marked_deleted": 200, "failed_verification": 0, "compaction": {}, "notes": []}


def test_retention_summary_is_one_line():
    line = summary_line(SUMMARY)
    assert "\n" not in line
    assert line.startswith("retention as of 2020-04-05T01:00:00Z: deleted 612 object(s)")
    assert "200 lake_partition, 205 raw_drop, 7 warehouse_rows" in line and "all certificates verified" in line
    assert "FAILED" in summary_line({**SUMMARY, "failed_verification": 2})
    assert "would delete" in summary_line({**SUMMARY, "dry_run": True})


def test_retention_command_prints_one_line_or_json(tmp_path, monkeypatch, capsys):
    from crowd_platform.cli import main

    monkeypatch.setenv("CROWD_HOME", str(tmp_path))
    assert main(["retention", "--home", str(tmp_path), "--as-of", "2020-04-05T01:00:00Z"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retention as of 2020-04-05T01:00:00Z: deleted 0 object(s)"), lines
    assert main(["retention", "--home", str(tmp_path), "--as-of", "2020-04-05T01:00:00Z", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == 0


def test_no_progress_bar_unless_stderr_is_a_terminal(tmp_path, monkeypatch):
    from crowd_platform.simulator import simulate

    stderr = io.StringIO()  # not a terminal, as when `make demo > demo.log 2>&1`
    monkeypatch.setattr(sys, "stderr", stderr)
    simulate(tmp_path, start=__import__("datetime").date(2020, 3, 30), days=1, subscribers=300, seed=1,
             hours=(4, 5), gatherings=[], operators=["telkomsel"], progress=True)
    assert "\r" not in stderr.getvalue() and "window/s" not in stderr.getvalue()


def test_demo_footing_keeps_the_story_and_full_is_an_option():
    assert DEMO_FOOTING.days == FULL_FOOTING.days == 5  # 3 baseline days, a quiet day, a gathering day
    assert FULL_FOOTING.hours is None and FULL_FOOTING.windows == 480
    # The Friday prayer at Masjid Istiqlal (04:30-06:30 UTC) starts inside the demo's hours.
    assert DEMO_FOOTING.hours is not None and DEMO_FOOTING.hours[0] <= 4 < DEMO_FOOTING.hours[1]
    assert DEMO_FOOTING.windows < FULL_FOOTING.windows / 4
    assert DEMO_FOOTING.with_overrides(hours=None).hours is None
    assert DEMO_FOOTING.with_overrides(days=6).days == 6 and DEMO_FOOTING.with_overrides().hours == DEMO_FOOTING.hours
