/* Operations map: published density per district and live crowd alerts, over time.
 *
 * Plain JS, no build step. Reads only the API of the server that serves this page (same origin,
 * bearer token from the URL fragment #token=...). Every text that comes from data goes into the
 * DOM through textContent (never innerHTML). A value the publication hides (null, or flagged
 * suppressed) is shown as "suppressed", never as a number or a colour.
 */
(function () {
  "use strict";

  var API = "/api/v1/";
  var DEFAULT_LEVELS = ["kelurahan", "kecamatan", "kabkota"];
  var DEFAULT_TIMEZONE = "Asia/Jakarta";
  // ColorBrewer YlOrRd, 7 classes (light to dark).
  var PALETTE = ["#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026"];
  var SUPPRESSED_FILL = "url(#suppressed-hatch)";
  var NO_DATA_FILL = "#ffffff";
  var ALERT_COLOR = "#1740ff";  // blue: stands out on the yellow-to-red scale

  var state = {
    token: null, windows: [], levels: DEFAULT_LEVELS.slice(), timezone: DEFAULT_TIMEZONE, k: null,
    level: null, index: 0, density: null, alerts: null, request: 0, fitted: {}, breaks: {}, mainland: null, all: null,
  };
  var cache = new Map();

  // ---- small helpers -------------------------------------------------------------------------
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function setStatus(text, isError) {
    var status = document.getElementById("status");
    status.textContent = text || "";
    status.className = isError ? "error" : "";
  }

  function readToken() {
    var fragment = window.location.hash.replace(/^#/, "");
    var params = new URLSearchParams(fragment);
    var token = params.get("token");
    return token && token.trim() ? token.trim() : null;
  }

  function api(path) {
    if (cache.has(path)) return cache.get(path);
    var promise = fetch(API + path, {
      headers: { "Authorization": "Bearer " + state.token, "Accept": "application/json" },
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
    }).then(function (response) {
      if (!response.ok) {
        var error = new Error(response.status === 401 || response.status === 403
          ? "not authorised (" + response.status + "): check the token in #token=..."
          : "request failed: " + response.status);
        throw error;
      }
      return response.json();
    });
    promise.catch(function () { cache.delete(path); });
    cache.set(path, promise);
    return promise;
  }

  function isNumber(value) { return typeof value === "number" && isFinite(value); }

  // A value is shown only when the publication shows it: not flagged, a number, and above k if
  // the server says what k is. Anything else is "suppressed".
  function shownValue(props, key) {
    if (!props || props.suppressed === true || props.suppressed === "true") return null;
    var value = props[key];
    if (!isNumber(value)) return null;
    var people = props.people_estimate;
    if (!isNumber(people)) return null;
    if (isNumber(state.k) && people <= state.k) return null;
    return value;
  }

  function validTimezone(name) {
    if (typeof name !== "string" || !name) return false;
    try { new Intl.DateTimeFormat("en-GB", { timeZone: name }); return true; } catch (e) { return false; }
  }

  // "Fri 2020-03-27 11:30–11:45 GMT+7 (Asia/Jakarta)": local time of the configured zone.
  function localParts(date, withZone) {
    var options = { timeZone: state.timezone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                    minute: "2-digit", hourCycle: "h23", weekday: "short" };
    if (withZone) options.timeZoneName = "short";
    var parts = {};
    new Intl.DateTimeFormat("en-US", options).formatToParts(date).forEach(function (part) { parts[part.type] = part.value; });
    return parts;
  }

  function formatLocal(iso, minutes) {
    var start = new Date(iso);
    if (isNaN(start.getTime())) return String(iso === undefined || iso === null ? "" : iso);
    var p = localParts(start, true);
    var text = p.weekday + " " + p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
    if (minutes) {
      var q = localParts(new Date(start.getTime() + minutes * 60000), false);
      text += "–" + q.hour + ":" + q.minute;
    }
    return text + " " + (p.timeZoneName || "") + " (" + state.timezone + ")";
  }

  function formatNumber(value, digits) {
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  // ---- windows and levels --------------------------------------------------------------------
  function windowIso(entry) {
    if (typeof entry === "string") return entry;
    if (entry && typeof entry === "object") return entry.window_start || entry.window || entry.start || null;
    return null;
  }

  function windowMinutes() {
    if (state.windows.length > 1) {
      var a = new Date(state.windows[state.windows.length - 2]).getTime();
      var b = new Date(state.windows[state.windows.length - 1]).getTime();
      if (b > a && b - a <= 3600000) return Math.round((b - a) / 60000);
    }
    return state.windowMinutes || 15;
  }

  function currentWindow() { return state.windows[state.index]; }

  // ---- the map -------------------------------------------------------------------------------
  var map = L.map("map", {
    renderer: L.svg({ padding: 0.5 }), attributionControl: false, zoomSnap: 0.25, zoomDelta: 0.5,
    minZoom: 6, maxZoom: 17,
  });
  map.createPane("alerts");
  map.getPane("alerts").style.zIndex = 450;
  // The alerts' own renderer exists from the start, so it follows every move and zoom.
  var alertRenderer = L.svg({ pane: "alerts", padding: 0.5 });
  map.setView([-6.2, 106.85], 11, { animate: false });
  alertRenderer.addTo(map);
  var densityLayer = null;
  var alertLayer = null;
  var selectedAlert = null;

  function classBreaks(values) {
    var sorted = values.slice().sort(function (a, b) { return a - b; });
    if (!sorted.length) return [];
    var breaks = [];
    for (var i = 1; i < PALETTE.length; i += 1) {
      breaks.push(sorted[Math.min(sorted.length - 1, Math.floor((i * sorted.length) / PALETTE.length))]);
    }
    return breaks;
  }

  function colourFor(value, breaks) {
    var index = 0;
    while (index < breaks.length && value >= breaks[index]) index += 1;
    return PALETTE[Math.min(index, PALETTE.length - 1)];
  }

  function renderLegend(breaks, shownValues) {
    var list = document.getElementById("legend-classes");
    clear(list);
    if (!shownValues.length && !breaks.length) {
      list.appendChild(el("li", "no value shown in this window", "note"));
      return;
    }
    var seen = {};
    for (var i = 0; i < PALETTE.length; i += 1) {
      var label;
      if (!breaks.length) label = "shown";
      else if (i === 0) label = "< " + formatNumber(breaks[0]);
      else if (i >= breaks.length) label = "≥ " + formatNumber(breaks[breaks.length - 1]);
      else label = formatNumber(breaks[i - 1]) + " – " + formatNumber(breaks[i]);
      if (seen[label]) continue;
      seen[label] = true;
      var item = el("li");
      var swatch = el("span", null, "swatch");
      swatch.style.background = PALETTE[i];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(label));
      list.appendChild(item);
    }
  }

  // Bounds of the main cluster of features (bounding boxes that touch, grown by ~1 km): outlying
  // islands (Kepulauan Seribu off Jakarta) do not stretch the first view; "Show all" frames them.
  function mainlandBounds(layer) {
    var boxes = [];
    layer.eachLayer(function (item) {
      if (item.getBounds) boxes.push({ b: item.getBounds(), group: boxes.length });
    });
    if (!boxes.length) return null;
    var pad = 0.01;
    function touch(a, b) {
      return a.getWest() - pad <= b.getEast() && b.getWest() - pad <= a.getEast()
        && a.getSouth() - pad <= b.getNorth() && b.getSouth() - pad <= a.getNorth();
    }
    var parent = boxes.map(function (_, i) { return i; });
    function find(i) { while (parent[i] !== i) { parent[i] = parent[parent[i]]; i = parent[i]; } return i; }
    for (var i = 0; i < boxes.length; i += 1) {
      for (var j = i + 1; j < boxes.length; j += 1) {
        if (touch(boxes[i].b, boxes[j].b)) parent[find(i)] = find(j);
      }
    }
    var groups = {};
    boxes.forEach(function (box, index) {
      var root = find(index);
      var area = (box.b.getEast() - box.b.getWest()) * (box.b.getNorth() - box.b.getSouth());
      if (!groups[root]) groups[root] = { bounds: L.latLngBounds(box.b.getSouthWest(), box.b.getNorthEast()), area: 0, count: 0 };
      groups[root].bounds.extend(box.b);
      groups[root].area += area;
      groups[root].count += 1;
    });
    // The cluster with the most districts (island chains have few districts with wide boxes).
    var best = null;
    Object.keys(groups).forEach(function (key) {
      var group = groups[key];
      if (!best || group.count > best.count || (group.count === best.count && group.area > best.area)) best = group;
    });
    return best ? best.bounds : null;
  }

  // "shown" (a published value), "suppressed" (null or flagged: the publication hides it) or
  // "nodata" (a feature with neither a value nor a suppression flag).
  function districtStatus(props, value) {
    if (value !== null) return "shown";
    if (props.suppressed === true || "people_estimate" in props || "density_per_km2" in props) return "suppressed";
    return "nodata";
  }

  function drawDensity(collection) {
    var features = (collection && Array.isArray(collection.features)) ? collection.features : [];
    var shown = [];
    features.forEach(function (feature) {
      var value = shownValue(feature.properties, "density_per_km2");
      if (value !== null) shown.push(value);
    });
    // One scale per level for the whole session (from the first window drawn), so that moving the
    // slider compares like with like; built from shown values only.
    if (!state.breaks[state.level] && shown.length) state.breaks[state.level] = classBreaks(shown);
    var breaks = state.breaks[state.level] || [];
    renderLegend(breaks, shown);
    var next = L.geoJSON({ type: "FeatureCollection", features: features }, {
      style: function (feature) {
        var props = feature.properties || {};
        var value = shownValue(props, "density_per_km2");
        var status = districtStatus(props, value);
        var fill = status === "shown" ? colourFor(value, breaks) : (status === "suppressed" ? SUPPRESSED_FILL : NO_DATA_FILL);
        return { fillColor: fill, fillOpacity: status === "shown" ? 0.85 : 1, color: "#666", weight: 0.6, opacity: 0.9 };
      },
      onEachFeature: function (feature, layer) {
        var props = feature.properties || {};
        layer.districtStatus = districtStatus(props, shownValue(props, "density_per_km2"));
        layer.on("click", function () { showDistrict(props); });
      },
    });
    if (densityLayer) map.removeLayer(densityLayer);
    densityLayer = next.addTo(map);
    // Classes per feature (Leaflet applies className only when a path is created).
    densityLayer.eachLayer(function (layer) {
      var element = layer.getElement && layer.getElement();
      if (element) element.setAttribute("class", (element.getAttribute("class") || "") + " district " + layer.districtStatus);
    });
    var fitKey = state.level;
    if (!state.fitted[fitKey] && features.length) {
      state.mainland = mainlandBounds(densityLayer);
      state.all = densityLayer.getBounds();
      var bounds = state.mainland || state.all;
      if (bounds && bounds.isValid()) map.fitBounds(bounds, { padding: [10, 10], animate: false });
      state.fitted[fitKey] = true;
    }
    document.getElementById("map").setAttribute("data-districts", String(features.length));
  }

  function drawAlerts(collection) {
    var features = (collection && Array.isArray(collection.features)) ? collection.features : [];
    var next = L.geoJSON({ type: "FeatureCollection", features: features }, {
      pane: "alerts", renderer: alertRenderer, className: "alert",
      style: function () {
        return { color: ALERT_COLOR, weight: 3, opacity: 1, fill: true, fillOpacity: 0, dashArray: null };
      },
      pointToLayer: function (feature, latlng) {
        return L.circleMarker(latlng, {
          pane: "alerts", renderer: alertRenderer, className: "alert alert-site", radius: 9, color: ALERT_COLOR, weight: 3,
          fill: true, fillColor: "#ffffff", fillOpacity: 0.2,
        });
      },
      onEachFeature: function (feature, layer) {
        var props = feature.properties || {};
        var tip = el("span", (props.place_name || props.place_id || "alert") + " · " + (props.state || "") +
          (props.severity !== undefined && props.severity !== null ? " · severity " + props.severity : ""));
        layer.bindTooltip(tip, { sticky: true });
        layer.on("click", function (event) {
          if (event && event.originalEvent) L.DomEvent.stopPropagation(event);
          showAlert(props);
        });
      },
    });
    if (alertLayer) map.removeLayer(alertLayer);
    alertLayer = next.addTo(map);
    document.getElementById("map").setAttribute("data-alerts", String(features.length));
  }

  // ---- side panel ----------------------------------------------------------------------------
  function panel(title) {
    document.getElementById("panel-title").textContent = title;
    var body = document.getElementById("panel-body");
    clear(body);
    return body;
  }

  function definitions(rows) {
    var list = el("dl");
    rows.forEach(function (row) {
      list.appendChild(el("dt", row[0]));
      var dd = el("dd");
      if (row[1] instanceof Node) dd.appendChild(row[1]); else dd.textContent = row[1] === null || row[1] === undefined ? "" : String(row[1]);
      list.appendChild(dd);
    });
    return list;
  }

  function suppressedNode() { return el("span", "suppressed (k-anonymity)", "suppressed-text"); }

  function showDistrict(props) {
    var body = panel(props.district_name || props.district_code || "District");
    var people = shownValue(props, "people_estimate");
    var density = shownValue(props, "density_per_km2");
    body.setAttribute("data-kind", "district");
    body.appendChild(definitions([
      ["district", props.district_name || ""],
      ["code", props.district_code || ""],
      ["level", props.level || state.level],
      ["window", formatLocal(props.window_start || currentWindow(), windowMinutes())],
      ["people (published)", people === null ? suppressedNode() : formatNumber(people)],
      ["people per km²", density === null ? suppressedNode() : formatNumber(density, 1)],
    ]));
    if (people === null) {
      body.appendChild(el("p", "The publication hides this value (k-anonymity, with complementary suppression); " +
        "no map or table of the platform shows it.", "note"));
    }
  }

  function showAlert(props) {
    var body = panel("Alert " + (props.alert_id || ""));
    body.setAttribute("data-kind", "alert");
    var loading = el("p", "loading published evidence…", "note");
    body.appendChild(loading);
    if (!props.alert_id) { loading.textContent = "no alert id"; return; }
    selectedAlert = String(props.alert_id);
    api("alerts/" + encodeURIComponent(selectedAlert)).then(function (detail) {
      if (selectedAlert !== String(props.alert_id)) return;
      renderAlert(body, detail && (detail.alert || detail) || {}, props);
    }).catch(function (error) {
      loading.textContent = "could not load the alert: " + error.message;
      loading.className = "note error";
    });
  }

  function peopleNode(value, hidden) {
    if (hidden === true || !isNumber(value) || (isNumber(state.k) && value <= state.k)) return suppressedNode();
    return document.createTextNode(formatNumber(value));
  }

  function renderAlert(body, alert, props) {
    clear(body);
    var place = alert.place_name || props.place_name || alert.place_id || props.place_id || "";
    var people = alert.people_estimate !== undefined ? alert.people_estimate : props.people_estimate;
    var hidden = alert.evidence_suppressed !== undefined ? alert.evidence_suppressed : props.evidence_suppressed;
    body.appendChild(definitions([
      ["place", place],
      ["level", alert.level || props.level || ""],
      ["place id", alert.place_id || props.place_id || ""],
      ["state", alert.state || props.state || ""],
      ["severity", alert.severity !== undefined ? alert.severity : props.severity],
      ["opened", formatLocal(alert.opened_window || props.opened_window, 0)],
      ["last window", formatLocal(alert.last_window || props.last_window, 0)],
      ["people (published)", peopleNode(people, hidden)],
      ["lineage id", el("span", alert.lineage_id || "", "lineage-id")],
    ]));
    body.appendChild(el("h2", "Published evidence"));
    var transitions = Array.isArray(alert.transitions) ? alert.transitions : [];
    if (!transitions.length) {
      body.appendChild(el("p", "no transition published", "note"));
    } else {
      var table = el("table");
      table.className = "evidence";
      var head = el("tr");
      ["window", "transition", "people (published)"].forEach(function (name) { head.appendChild(el("th", name)); });
      table.appendChild(head);
      transitions.forEach(function (row) {
        var tr = el("tr");
        tr.appendChild(el("td", formatLocal(row.window_start || row.window, 0)));
        tr.appendChild(el("td", row.transition || ""));
        var cell = el("td");
        cell.appendChild(peopleNode(row.people_estimate, row.evidence_suppressed));
        tr.appendChild(cell);
        table.appendChild(tr);
      });
      body.appendChild(table);
    }
    if (alert.lineage_command) {
      body.appendChild(el("h2", "Trace it"));
      body.appendChild(el("code", alert.lineage_command, "lineage-command"));
    }
    body.appendChild(el("p", "Evidence as the density publication shows it; a site's count is never published. " +
      "Baselines, ratios and z-scores stay inside the platform.", "note"));
  }

  // ---- loading -------------------------------------------------------------------------------
  function load() {
    var iso = currentWindow();
    if (!iso || !state.level) return Promise.resolve();
    document.getElementById("window-label").textContent = formatLocal(iso, windowMinutes());
    var ticket = ++state.request;
    setStatus("loading…");
    var query = "window=" + encodeURIComponent(iso);
    return Promise.all([
      api("density.geojson?level=" + encodeURIComponent(state.level) + "&" + query),
      api("alerts.geojson?" + query),
    ]).then(function (results) {
      if (ticket !== state.request) return;
      drawDensity(results[0]);
      drawAlerts(results[1]);
      var alerts = results[1] && Array.isArray(results[1].features) ? results[1].features.length : 0;
      setStatus(alerts + (alerts === 1 ? " alert" : " alerts") + " live in this window");
      document.body.setAttribute("data-loaded-window", iso);
      document.body.setAttribute("data-loaded-level", state.level);
    }).catch(function (error) {
      if (ticket === state.request) setStatus(error.message, true);
    });
  }

  var debounce = null;
  function onSlider() {
    state.index = Number(document.getElementById("window").value) || 0;
    document.getElementById("window-label").textContent = formatLocal(currentWindow(), windowMinutes());
    clearTimeout(debounce);
    debounce = setTimeout(load, 120);
  }

  function start() {
    state.token = readToken();
    if (!state.token) {
      setStatus("No token: open this page as /map/#token=YOUR_TOKEN", true);
      return;
    }
    api("windows").then(function (data) {
      data = data || {};
      var windows = Array.isArray(data.windows) ? data.windows.map(windowIso).filter(Boolean) : [];
      windows.sort(function (a, b) { return new Date(a).getTime() - new Date(b).getTime(); });
      state.windows = windows;
      if (Array.isArray(data.levels) && data.levels.length) {
        state.levels = data.levels.map(function (level) { return typeof level === "string" ? level : (level && level.level); }).filter(Boolean);
      }
      var zone = data.timezone || data.local_timezone || data.time_zone;
      state.timezone = validTimezone(zone) ? zone : DEFAULT_TIMEZONE;
      state.k = isNumber(data.k) ? data.k : (isNumber(data.k_anonymity) ? data.k_anonymity : null);
      if (isNumber(data.window_minutes)) state.windowMinutes = data.window_minutes;
      var select = document.getElementById("level");
      clear(select);
      state.levels.forEach(function (level) {
        var option = el("option", level);
        option.value = level;
        select.appendChild(option);
      });
      state.level = state.levels[0];
      var slider = document.getElementById("window");
      if (!windows.length) {
        setStatus("no published window yet");
        document.getElementById("window-label").textContent = "no window";
        slider.disabled = true;
        return;
      }
      slider.max = String(windows.length - 1);
      state.index = windows.length - 1;
      slider.value = String(state.index);
      load();
    }).catch(function (error) { setStatus(error.message, true); });

    document.getElementById("window").addEventListener("input", onSlider);
    document.getElementById("level").addEventListener("change", function (event) {
      state.level = event.target.value;
      load();
    });
    document.getElementById("fit-all").addEventListener("click", function () {
      if (densityLayer) {
        var bounds = densityLayer.getBounds();
        if (bounds.isValid()) map.fitBounds(bounds, { padding: [10, 10], animate: false });
      }
    });
    window.addEventListener("hashchange", function () {
      var token = readToken();
      if (token && token !== state.token) { cache.clear(); state.token = token; load(); }
    });
  }

  start();
}());
