"""process_pending holds the sensor's requests per UTC day: a day is run once, whole, however the
sensor's pages cut the backlog (they end wherever the manifest limit falls)."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg

from crowd_platform.runner import orchestration


def _pages(*pages: list[dg.RunRequest]):
    remaining = list(pages)

    class Sensor:
        def evaluate_tick(self, context):
            return SimpleNamespace(run_requests=remaining.pop(0) if remaining else [], cursor=None)

    return Sensor()


def _window(key: str) -> dg.RunRequest:
    return dg.RunRequest(job_name="window_job", partition_key=key, run_key=key)


def test_days_cut_across_pages_run_once_each_in_order(monkeypatch, tmp_path):
    from crowd_platform.common.settings import get_settings

    day1 = [f"2020-03-30-{hour:02d}:{minute:02d}" for hour in range(4, 6) for minute in (0, 15, 30, 45)]
    day2 = [key.replace("03-30", "03-31") for key in day1]
    day3 = [key.replace("03-30", "04-01") for key in day1]
    cells = dg.RunRequest(job_name="geography_job", partition_key="2020-03-31-04:00", run_key="cells")
    # Pages cut days at odd points: day 1 + half of day 2, the rest of day 2 + cells + day 3.
    sensor = _pages([_window(k) for k in day1 + day2[:3]], [_window(k) for k in day2[3:]] + [cells] + [_window(k) for k in day3])
    defs = SimpleNamespace(resolve_sensor_def=lambda name: sensor)
    monkeypatch.setattr(orchestration, "_definitions", lambda: defs)
    monkeypatch.setattr(orchestration, "recover", lambda *args, **kwargs: None)
    monkeypatch.setattr(dg, "build_sensor_context", lambda **kwargs: None)
    ran: list[tuple] = []
    monkeypatch.setattr(orchestration, "process_day",
                        lambda defs, instance, day, keys, *rest: ran.append(("day", day, tuple(keys))))
    monkeypatch.setattr(orchestration, "_execute",
                        lambda defs, instance, job, summary, progress, label, **kwargs: ran.append((job, kwargs.get("partition_key"))) or True)
    monkeypatch.setattr(orchestration, "process_indicators",
                        lambda settings, defs, instance, days, *rest: ran.append(("indicators", tuple(days))))

    orchestration.process_pending(get_settings(tmp_path), instance=None, progress=lambda _: None)

    assert ran == [
        ("day", "2020-03-30", tuple(day1)),
        ("geography_job", "2020-03-31-04:00"),  # a day's cell lists before its windows
        ("day", "2020-03-31", tuple(day2)),
        ("day", "2020-04-01", tuple(day3)),
        ("indicators", ("2020-03-30", "2020-03-31", "2020-04-01")),  # once, after every day
    ]


def test_indicators_wait_for_the_end_of_a_local_day(monkeypatch, tmp_path):
    """A local day is published once it is over: on the wall clock, or in the data of a replayed
    backlog. Jakarta (WIB, UTC+7): local 2020-03-31 ends at 2020-03-31T17:00Z."""
    from datetime import datetime, timezone

    from crowd_platform.common import warehouse
    from crowd_platform.common.settings import get_settings

    monkeypatch.setenv("CROWD_HOME", str(tmp_path))
    settings = get_settings()
    days = ["2020-03-30", "2020-03-31", "2020-04-01"]
    live = datetime(2020, 3, 31, 12, 0, tzinfo=timezone.utc)  # 19:00 WIB on the 31st: that day still running
    assert orchestration.complete_local_days(settings, days, now=live) == ["2020-03-30"]
    with warehouse.connect(settings.warehouse_path) as connection:
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, window_start, window_end, delivery, status, feed_kind, "
            "received_at, sha256, bytes, row_count, contract_id, contract_version) VALUES "
            "('d', 'telkomsel', 'events', TIMESTAMPTZ '2020-03-31 17:00+00', TIMESTAMPTZ '2020-03-31 17:15+00', 1, "
            "'accepted', 'events', now(), 'x', 1, 1, 'c', '1.0.0')")
    # A backlog whose data already reaches past local midnight of the 31st.
    assert orchestration.complete_local_days(settings, days, now=live) == ["2020-03-30", "2020-03-31"]
