"""The operations map page (crowd_platform/api/static/, served at /map/) in real headless Chromium.

The page is served with a fake of the four API routes it reads (the agreed contract:
/api/v1/windows, /api/v1/density.geojson, /api/v1/alerts.geojson, /api/v1/alerts/<id>) by a
small HTTP server on loopback, so the page is tested on its own. The fake holds published values
only, as the real API does: suppressed districts have null people and density. One feature is
deliberately inconsistent (flagged suppressed but carrying a count of 7, at or below k) to prove
that the page never shows such a count, and a district name carries markup to prove that text
from data is never interpreted as HTML.

Nothing here writes a tracked file; the documentation screenshot is made by
bench/screenshot_ops_map.py, which reuses :class:`FakeOpsApi`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from crowd_platform_tests.support.ops_api_fake import K, TOKEN, XSS_NAME, FakeOpsApi, synthetic_dataset
from crowd_platform_tests.support.ui import browser_page, requires_chromium


pytestmark = [pytest.mark.browser]


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------

def _fills(page) -> list[str]:
    return page.eval_on_selector_all("path.district", "nodes => nodes.map(n => n.getAttribute('fill'))")


def _wait_loaded(page, window: str, level: str = "kelurahan") -> None:
    page.wait_for_function(
        "([w, l]) => document.body.getAttribute('data-loaded-window') === w"
        " && document.body.getAttribute('data-loaded-level') === l", arg=[window, level])


@requires_chromium
def test_ops_map_renders_published_density_alerts_and_evidence_without_leaving_loopback():
    dataset = synthetic_dataset()
    windows = dataset["windows"]
    fake = FakeOpsApi(dataset)
    urls: list[str] = []
    console_errors: list[str] = []
    with fake.serve() as base, browser_page() as page:
        page.on("request", lambda request: urls.append(request.url))
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.goto(f"{base}/map/#token={TOKEN}")

        # Districts: one SVG path per feature of the finest level, the last window first.
        _wait_loaded(page, windows[-1])
        expected = len(dataset["density"][("kelurahan", windows[-1])])
        page.wait_for_function(f"() => document.querySelectorAll('path.district').length === {expected}")
        assert page.locator("path.district").count() == expected
        assert page.locator("path.district.suppressed").count() == 3  # two nulls + the inconsistent one
        assert all(fill == "url(#suppressed-hatch)"
                   for fill in page.eval_on_selector_all("path.district.suppressed", "n => n.map(x => x.getAttribute('fill'))"))
        legend = page.locator("#legend").inner_text()
        assert "suppressed (k-anonymity)" in legend
        # Window label in local time (WIB = UTC+7): 04:30 UTC -> 11:30.
        assert "11:30" in page.locator("#window-label").inner_text()
        assert "Asia/Jakarta" in page.locator("#window-label").inner_text()

        # Alerts live in the last window: a district outline and a site ring, both blue.
        assert page.locator("path.alert").count() == 2
        strokes = page.eval_on_selector_all("path.alert", "n => n.map(x => x.getAttribute('stroke'))")
        assert set(strokes) == {"#1740ff"}
        assert page.locator("path.alert-site").count() == 1

        # Moving the slider changes the map: other fills, and no alert in the first window.
        before = _fills(page)
        page.locator("#window").fill("0")
        _wait_loaded(page, windows[0])
        page.wait_for_function("() => document.querySelectorAll('path.alert').length === 0")
        after = _fills(page)
        assert len(after) == expected and after != before
        assert "11:00" in page.locator("#window-label").inner_text()
        page.locator("#window").fill(str(len(windows) - 1))
        _wait_loaded(page, windows[-1])
        page.wait_for_function("() => document.querySelectorAll('path.alert').length === 2")

        # A click on the district alert: published evidence and lineage id in the side panel.
        page.locator("path.alert:not(.alert-site)").click()
        page.wait_for_function("() => document.querySelector('#panel-body .lineage-id') !== null"
                               " && document.querySelector('#panel-body .lineage-id').textContent.length > 0")
        panel = page.locator("#panel").inner_text()
        assert "lineage-7f3a9c" in panel
        assert "Published evidence" in panel and "opened" in panel and "escalated" in panel
        assert "455" in panel and "suppressed (k-anonymity)" in panel
        assert "crowd-platform audit trace alert-district-1" in panel

        # A site alert: its count is never published.
        page.locator("path.alert-site").click()
        page.wait_for_function("() => document.querySelector('#panel-body .lineage-id')"
                               " && document.querySelector('#panel-body .lineage-id').textContent === 'lineage-1b2c3d'")
        assert "Masjid <Istiqlal>" in page.locator("#panel").inner_text()

        # Districts: a suppressed one says "suppressed", never a number; the inconsistent one
        # (flagged, with 7 people) shows no 7 either; a name with markup stays text.
        page.evaluate("""() => {
            const layers = [];
            document.querySelectorAll('path.district.suppressed').forEach(p => layers.push(p));
            layers[layers.length - 1].dispatchEvent(new MouseEvent('click', {bubbles: true}));
        }""")
        page.wait_for_function("() => document.querySelector('#panel-body').getAttribute('data-kind') === 'district'")
        district_panel = page.locator("#panel").inner_text()
        assert "suppressed (k-anonymity)" in district_panel
        values = page.eval_on_selector_all(
            "#panel-body dt", "n => Object.fromEntries(n.map(x => [x.textContent, x.nextElementSibling.textContent]))")
        assert values["people (published)"] == "suppressed (k-anonymity)"
        assert values["people per km²"] == "suppressed (k-anonymity)"
        assert not any(re.fullmatch(r"\s*\d+(\.\d+)?\s*", text) and 0 < float(text) <= K for text in values.values())
        assert "1.4" not in district_panel
        page.evaluate("""() => {
            const paths = document.querySelectorAll('path.district');
            paths[12].dispatchEvent(new MouseEvent('click', {bubbles: true}));
        }""")
        page.wait_for_function("() => document.querySelector('#panel-title').textContent.includes('Markup')")
        assert page.locator("#panel-title").inner_text() == XSS_NAME
        assert page.evaluate("() => window.__xss === undefined")
        assert page.locator("#panel img").count() == 0

        # The level selector loads the coarser level.
        page.select_option("#level", "kecamatan")
        _wait_loaded(page, windows[-1], "kecamatan")
        page.wait_for_function("() => document.querySelectorAll('path.district').length === 4")

        # No number at or below k anywhere on the page (legend included).
        body = page.locator("body").inner_text().replace(",", "")
        assert " 7 " not in f" {body} "

    # Every request stayed on loopback; every API call carried the token.
    assert urls
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            continue
        assert parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"), url
    api_calls = [(path, auth) for path, auth in fake.requests if path.startswith("/api/")]
    assert api_calls and all(auth == f"Bearer {TOKEN}" for _, auth in api_calls)
    assert {path for path, _ in api_calls} >= {"/api/v1/windows", "/api/v1/density.geojson", "/api/v1/alerts.geojson",
                                                "/api/v1/alerts/alert-district-1"}
    assert not console_errors, console_errors


@requires_chromium
def test_ops_map_without_token_says_so_and_calls_nothing():
    fake = FakeOpsApi(synthetic_dataset())
    with fake.serve() as base, browser_page() as page:
        page.goto(f"{base}/map/")
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('token')")
    assert not [path for path, _ in fake.requests if path.startswith("/api/")]


# ---------------------------------------------------------------------------------------------
# The same page on the real server (crowd_platform/api, `crowd-platform serve`), when it exists:
# fixture api_server of crowd_platform_tests/api/conftest.py (a published warehouse of 40
# kelurahan and 4 windows, served from a subprocess on 127.0.0.1).
# ---------------------------------------------------------------------------------------------

def _real_server_available() -> bool:
    try:
        import crowd_platform.api.app  # noqa: F401
        import crowd_platform.api.server  # noqa: F401
    except ImportError:
        return False
    return True


@requires_chromium
@pytest.mark.skipif(not _real_server_available(), reason="the API server (crowd_platform/api) is not there yet")
def test_ops_map_on_the_real_server(request):
    import requests

    from crowd_platform_tests.api.published_warehouse import SECRET_MARKERS

    server = request.getfixturevalue("api_server")
    token = server.tokens["all"]
    headers = {"Authorization": f"Bearer {token}"}
    listing = requests.get(f"{server.api}/windows", headers=headers, timeout=30).json()
    windows = listing["windows"]
    levels = [level if isinstance(level, str) else level["level"] for level in listing["levels"]]
    finest = levels[0]
    features = {window: requests.get(f"{server.api}/density.geojson", params={"level": finest, "window": window},
                                     headers=headers, timeout=30).json()["features"] for window in windows}
    alerts = {window: requests.get(f"{server.api}/alerts.geojson", params={"window": window},
                                   headers=headers, timeout=30).json()["features"] for window in windows}
    alert_window = next(index for index, window in enumerate(windows)
                        if any(feature["properties"]["level"] != "site" for feature in alerts[window]))
    district_alert = next(feature["properties"] for feature in alerts[windows[alert_window]]
                          if feature["properties"]["level"] != "site")
    detail = requests.get(f"{server.api}/alerts/{district_alert['alert_id']}", headers=headers, timeout=30).json()

    urls: list[str] = []
    console_errors: list[str] = []
    with browser_page() as page:
        page.on("request", lambda req: urls.append(req.url))
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.goto(f"{server.url}/map/#token={token}")
        _wait_loaded(page, windows[-1], finest)
        expected = len(features[windows[-1]])
        page.wait_for_function(f"() => document.querySelectorAll('path.district').length === {expected}")
        suppressed = sum(1 for feature in features[windows[-1]] if feature["properties"]["people_estimate"] is None)
        assert page.locator("path.district.suppressed").count() == suppressed
        before = _fills(page)

        page.locator("#window").fill(str(alert_window))
        _wait_loaded(page, windows[alert_window], finest)
        page.wait_for_function(f"() => document.querySelectorAll('path.alert').length === {len(alerts[windows[alert_window]])}")
        assert _fills(page) != before
        page.locator("path.alert:not(.alert-site)").first.click()
        page.wait_for_function("() => document.querySelector('#panel-body .lineage-id')"
                               " && document.querySelector('#panel-body .lineage-id').textContent.length > 0")
        panel = page.locator("#panel").inner_text()
        assert str(detail["lineage_id"]) in panel and "Published evidence" in panel
        assert detail["lineage_command"] in panel

        if suppressed:
            page.evaluate("() => document.querySelector('path.district.suppressed')"
                          ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
            page.wait_for_function("() => document.querySelector('#panel-body').getAttribute('data-kind') === 'district'")
            assert "suppressed (k-anonymity)" in page.locator("#panel").inner_text()
        text = page.locator("body").inner_text()
        assert not [marker for marker in SECRET_MARKERS if marker in text]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            continue
        assert parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"), url
    assert not console_errors, console_errors
