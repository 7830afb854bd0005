"""Screenshot of the operations map (/map/) for the docs: docs/screenshots/ops-map.png.

    .venv/bin/python bench/screenshot_ops_map.py                 # real server, synthetic published data
    .venv/bin/python bench/screenshot_ops_map.py --home .crowd   # real server over an existing CROWD_HOME (make demo)
    .venv/bin/python bench/screenshot_ops_map.py --fake          # the browser test's fake API (no server needed)

Without --home it builds a throwaway CROWD_HOME: the real Jakarta districts (districts asset) and
SYNTHETIC published density and alerts written straight into district_density_published and
crowd_alerts_published (no pipeline run; the numbers illustrate the page, they measure nothing).
The real API (`python -m crowd_platform serve --port 0`, loopback) serves the page and the data;
Debian chromium (playwright) opens /map/#token=..., moves to the last window, clicks the district
alert and saves the screenshot. Tests never write this file; run this by hand after changing the page.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

OUT = PROJECT_ROOT / "docs" / "screenshots" / "ops-map.png"
T0 = datetime(2020, 3, 27, 3, 0, tzinfo=timezone.utc)  # Friday 27 March 2020, 10:00 WIB
WINDOWS = 12
STEP = timedelta(minutes=15)
ISTIQLAL = (106.8313, -6.1702)


def build_synthetic_home(home: Path) -> None:
    """Real Jakarta boundaries; synthetic published density (some districts hidden) and two alerts."""
    import dagster as dg
    import shapely

    from crowd_platform.common.resources import CrowdPlatform
    from crowd_platform.common.warehouse import connect
    from crowd_platform.geography.assets import districts

    os.environ["CROWD_HOME"] = str(home)
    with dg.instance_for_test() as instance:
        if not dg.materialize([districts], resources={"crowd": CrowdPlatform(home=str(home))}, instance=instance).success:
            raise SystemExit("districts did not materialize")
    rng = random.Random(27)
    with connect(home / "warehouse.duckdb") as con:
        rows = con.execute("SELECT district_code, level, level_rank, name, land_area_km2, population, geometry_wkb "
                           "FROM districts").fetchall()
        hotspot = next((code for code, level, rank, _n, _a, _p, wkb in rows if rank == 0 and wkb is not None
                        and shapely.from_wkb(bytes(wkb)).contains(shapely.Point(*ISTIQLAL))), None)
        hotspot_kec = con.execute("SELECT district_code FROM district_hierarchy WHERE district_code_finest = ? "
                                  "AND level = 'kecamatan'", [hotspot]).fetchone() if hotspot else None
        published = []
        for index in range(WINDOWS):
            window = T0 + index * STEP
            daytime = 1.0 + 0.25 * math.sin(index / WINDOWS * math.pi)
            for code, level, rank, _name, land, population, _wkb in rows:
                people = (population or 0) * 0.35 * daytime * rng.lognormvariate(0, 0.25)
                if code == hotspot or (hotspot_kec and code == hotspot_kec[0]):
                    people += 20000 * max(0, index - 5)
                hidden = not land or people <= 15 or (rank == 0 and rng.random() < 0.08)
                published.append((window, level, code, None if hidden else int(people),
                                  None if hidden else people / land, hidden, "primary" if hidden else None, 1.0))
        con.execute("DELETE FROM district_density_published")
        con.executemany("INSERT INTO district_density_published VALUES (?, ?, ?, ?, ?, ?, ?, ?)", published)
        con.execute("INSERT INTO site_places VALUES ('synthetic:monas', 'place-monas', 106.8272, -6.1754)")
        alerts = []
        if hotspot:
            alerts.append(("alert-istiqlal", "kelurahan", hotspot, "Pasar Baru (synthetic)", "escalated", 2,
                           T0 + 6 * STEP, T0 + (WINDOWS - 1) * STEP))
        alerts.append(("alert-monas", "site", "place-monas", "Monas (synthetic)", "open", 1, T0 + 8 * STEP,
                       T0 + (WINDOWS - 1) * STEP))
        for alert_id, level, place, name, state, severity, opened, last in alerts:
            shown = next((row[3] for row in published if row[0] == last and row[1] == level and row[2] == place), None)
            con.execute("INSERT INTO crowd_alerts_published (alert_id, level, place_id, place_name, state, severity, "
                        "opened_window, last_window, people_estimate, evidence_suppressed, windows, drop_ids, run_id, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 4, ['synthetic'], 'synthetic', now())",
                        [alert_id, level, place, name, state, severity, opened, last, shown, shown is None])
            for offset, transition in ((0, "open"), (2, "escalate")):
                window = opened + offset * STEP
                value = next((row[3] for row in published if row[0] == window and row[1] == level and row[2] == place),
                             None)
                con.execute("INSERT INTO alert_transitions_published VALUES (?, ?, ?, ?, ?, 'synthetic')",
                            [alert_id, window, transition, value, value is None])


@contextmanager
def real_server(home: Path) -> Iterator[tuple[str, str]]:
    from crowd_platform.api.tokens import issue
    from crowd_platform.common.settings import get_settings

    token = issue(get_settings(home), "screenshot", None, all_datasets=True, actor="bench/screenshot_ops_map.py")[0]
    env = dict(os.environ, CROWD_HOME=str(home), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "crowd_platform", "serve", "--home", str(home), "--host",
                                "127.0.0.1", "--port", "0"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"server did not start: {line!r} {process.stderr.read()[-2000:]}")
        url = line.split("listening on ")[1].split()[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def fake_server() -> Iterator[tuple[str, str]]:
    from crowd_platform_tests.support.ops_api_fake import TOKEN, FakeOpsApi, synthetic_dataset  # noqa: E402

    with FakeOpsApi(synthetic_dataset()).serve() as url:
        yield url, TOKEN


def screenshot(url: str, token: str, out: Path) -> None:
    from crowd_platform_tests.support.ui import browser_page

    with browser_page() as page:
        page.goto(f"{url}/map/#token={token}")
        page.wait_for_function("() => document.body.getAttribute('data-loaded-window') !== null")
        page.wait_for_function("() => document.querySelectorAll('path.district').length > 0")
        alerts = page.locator("path.alert:not(.alert-site)")
        if alerts.count():
            alerts.first.click()
            page.wait_for_function("() => document.querySelector('#panel-body .lineage-id') !== null")
        page.wait_for_timeout(400)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="an existing CROWD_HOME to serve (default: a synthetic one)")
    parser.add_argument("--fake", action="store_true", help="serve the browser test's fake API instead")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    out = Path(args.out)
    if args.fake:
        with fake_server() as (url, token):
            screenshot(url, token, out)
        return 0
    if args.home:
        with real_server(Path(args.home).resolve()) as (url, token):
            screenshot(url, token, out)
        return 0
    with tempfile.TemporaryDirectory(prefix="ops-map-shot-") as folder:
        home = Path(folder) / "home"
        build_synthetic_home(home)
        with real_server(home) as (url, token):
            screenshot(url, token, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
