// trainerd's live page: reads /api/v1/status and follows /api/v1/stream
// (Server-Sent Events); fetches a study, the events or the champion again
// when the status says they changed. Every string from the API is set as
// text (textContent, createTextNode, setAttribute on SVG geometry): no
// markup is ever built from data.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0a7c86", "#bf3989", "#4d5a66"];
  const STATES = ["running", "finished", "pruned", "diverged", "superseded", "stopped"];
  const MAX_EVENTS = 100;
  const MAX_TRIAL_CURVES = 12;

  const seen = { rev: {}, study: null, lastEvent: 0, events: [] };
  const loading = {};

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function num(x) { return typeof x === "number" && isFinite(x); }
  function pct(x) { return num(x) ? (x * 100).toFixed(2) + "%" : "–"; }
  function withInterval(x, iv) {
    if (!num(x)) return "–";
    if (Array.isArray(iv) && iv.length === 2) return x.toFixed(4) + " [" + iv[0].toFixed(3) + ", " + iv[1].toFixed(3) + "]";
    return pct(x);
  }
  function count(x) { return num(x) ? Math.round(x).toLocaleString("en-US") : "–"; }
  function dur(s) {
    if (!num(s)) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(s / 3600) + " h " + String(Math.floor(s / 60) % 60).padStart(2, "0") + " min";
  }
  function short(s, n) { s = s == null ? "" : String(s); return s.length > n ? s.slice(0, n) + "…" : s; }

  function facts(node, rows) {
    clear(node);
    for (const [k, v] of rows) {
      node.appendChild(el("dt", k));
      node.appendChild(el("dd", v));
    }
  }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + " answered " + r.status);
    return r.json();
  }

  // Runs `job` once at a time per name; a call while it runs runs it again after.
  function once(name, job) {
    if (loading[name]) { loading[name] = "again"; return; }
    loading[name] = true;
    job().catch(function (e) { showError(e); }).finally(function () {
      const again = loading[name] === "again";
      loading[name] = false;
      if (again) once(name, job);
    });
  }

  function showError(e) {
    const c = $("conn");
    c.textContent = "error: " + short(e && e.message, 120);
    c.className = "conn down";
  }

  // ---- status -----------------------------------------------------------

  function onStatus(s) {
    const n = s.now || {};
    seen.total = n.training ? n.total_steps || 0 : 0;
    renderNow(s);
    renderWatcher(s);
    const rev = s.rev || {};
    const study = s.study ? s.study.id : null;
    if (study !== seen.study || rev.journal !== seen.rev.journal || rev.curve !== seen.rev.curve) {
      seen.study = study;
      once("study", loadStudy);
    }
    if (rev.events !== seen.rev.events) once("events", loadEvents);
    if (rev.champion !== seen.rev.champion) once("champion", loadChampion);
    seen.rev = rev;
  }

  function renderNow(s) {
    const n = s.now || {};
    const parts = [s.state === "training" ? "training" : "idle"];
    if (n.study) parts.push("study " + n.study);
    if (n.training) {
      let t = "trial " + n.trial;
      if (num(n.rung)) t += " (rung " + n.rung + ")";
      parts.push(t);
      if (n.preset) parts.push(n.preset);
      parts.push("epoch " + (n.epoch + 1));
    } else if (s.study) {
      parts.push("study " + s.study.state.replace(/_/g, " "));
    }
    $("now-line").textContent = parts.join(" · ");
    const bar = $("now-progress");
    const frac = n.total_steps > 0 ? Math.min(1, n.step / n.total_steps) : 0;
    bar.value = n.training ? frac : (n.total_steps > 0 && n.step >= n.total_steps ? 1 : 0);
    bar.setAttribute("aria-label", "trial progress " + Math.round(frac * 100) + "%");
    facts($("now-facts"), [
      ["step", n.total_steps > 0 ? count(n.step) + " / " + count(n.total_steps) + " (" + Math.round(frac * 100) + "%)" : count(n.step)],
      ["ETA", n.training ? dur(n.eta_seconds) : "–"],
      ["samples/s", n.samples_per_sec > 0 ? count(n.samples_per_sec) : "–"],
      ["threads", n.threads > 0 ? String(n.threads) : "–"],
      ["last epoch", num(n.train_loss) ? "loss " + n.train_loss.toFixed(4) + " · val " + pct(n.val_accuracy) : "–"],
      ["model", n.arch || "–"],
      ["target", s.study && num(s.study.target) ? pct(s.study.target) : "–"],
    ]);
  }

  function renderWatcher(s) {
    const w = s.watcher || {};
    facts($("watcher-facts"), [
      ["data fingerprint", w.data_fingerprint ? short(w.data_fingerprint, 24) : "–"],
      ["settings key", w.settings_key ? short(w.settings_key, 24) : "–"],
      ["commit", w.commit ? short(w.commit, 16) : "–"],
      ["open streams", String(s.streams || 0)],
    ]);
    const v = s.serve;
    if (!v) {
      facts($("serve-facts"), [["serving", "not in this process (trainerd run --serve-addr)"]]);
      return;
    }
    if (v.error) {
      facts($("serve-facts"), [["address", v.addr], ["state", v.error]]);
      return;
    }
    const req = Object.keys(v.requests || {}).sort().map(function (c) { return c + ": " + count(v.requests[c]); });
    facts($("serve-facts"), [
      ["address", v.addr],
      ["model version", num(v.model_version) ? String(v.model_version) : "–"],
      ["requests", req.length ? req.join(" · ") : "none yet"],
      ["mean latency", num(v.mean_latency_ms) ? v.mean_latency_ms.toFixed(2) + " ms" : "–"],
      ["swaps", count(v.swaps) + (num(v.swap_failures) && v.swap_failures > 0 ? " (" + count(v.swap_failures) + " failed)" : "")],
    ]);
  }

  // ---- study: trials and curves -------------------------------------------

  async function loadStudy() {
    const id = seen.study;
    if (!id) {
      renderTrials(null);
      return;
    }
    const study = await getJSON("/api/v1/studies/" + encodeURIComponent(id));
    renderTrials(study);
    renderCurves(study);
  }

  function renderTrials(study) {
    const body = $("trial-table").tBodies[0];
    clear(body);
    $("study-line").textContent = study ? "study " + study.id + " · " + study.state.replace(/_/g, " ") : "no study yet";
    if (!study) return;
    for (const t of study.trials.slice().reverse()) {
      const tr = el("tr");
      tr.appendChild(el("td", t.trial));
      tr.appendChild(el("td", num(t.rung) ? t.rung : "–"));
      const state = STATES.indexOf(t.state) >= 0 ? t.state : "stopped";
      tr.appendChild(el("td", t.state + (t.promoted ? " ★" : ""), "state-" + state));
      tr.appendChild(el("td", t.epochs));
      tr.appendChild(el("td", dur(t.train_seconds)));
      tr.appendChild(el("td", pct(t.val_accuracy)));
      tr.appendChild(el("td", count(t.parameters)));
      const model = el("td", null, "model");
      model.appendChild(el("div", t.preset + ": " + t.arch));
      model.appendChild(el("div", t.recipe, "note"));
      model.title = t.reason || "";
      tr.appendChild(model);
      body.appendChild(tr);
    }
  }

  function renderCurves(study) {
    const trials = study.trials.slice(-MAX_TRIAL_CURVES);
    const color = function (i) { return COLORS[i % COLORS.length]; };
    const series = function (tag) {
      return trials.map(function (t, i) {
        return { trial: t.trial, running: t.state === "running", color: color(i), points: (t.curves && t.curves[tag]) || [] };
      });
    };
    // While a trial runs, the x axis spans its planned steps: its curve grows to the right.
    const xmin = trials.some(function (t) { return t.state === "running"; }) ? seen.total : 0;
    chart($("chart-loss"), series("train/loss"), { min0: true, xmin: xmin });
    chart($("chart-acc"), series("val/accuracy"), { max1: true, xmin: xmin });
    const legend = $("legend");
    clear(legend);
    trials.forEach(function (t, i) {
      const li = el("li");
      const sw = svgEl("svg", { width: 14, height: 10, "aria-hidden": "true" });
      sw.appendChild(svgEl("rect", { width: 14, height: 10, fill: color(i) }));
      li.appendChild(sw);
      li.appendChild(document.createTextNode("trial " + t.trial + " · " + t.preset + (t.state === "running" ? " (running)" : "")));
      legend.appendChild(li);
    });
    const any = trials.some(function (t) { return t.curves && Object.keys(t.curves).length > 0; });
    $("curves-note").textContent = any ? "" : "(no points yet: they come from each trial's TensorBoard files and epochs)";
  }

  // Draws each series as a polyline on shared axes (x: step, y: value).
  function chart(svg, list, opts) {
    clear(svg);
    const W = 600, H = 260, L = 48, R = 10, T = 10, B = 26;
    const all = [];
    for (const s of list) for (const p of s.points) all.push(p);
    let x1 = 1, y0 = 0, y1 = 1;
    if (all.length) {
      x1 = Math.max(1, Math.max.apply(null, all.map(function (p) { return p[0]; })));
      y0 = Math.min.apply(null, all.map(function (p) { return p[1]; }));
      y1 = Math.max.apply(null, all.map(function (p) { return p[1]; }));
    }
    x1 = Math.max(x1, opts.xmin || 0);
    if (opts.min0) y0 = 0;
    if (opts.max1) y1 = Math.max(y1, Math.min(1, y1 + 0.01));
    if (y1 - y0 < 1e-9) { y1 = y0 + 1; }
    const px = function (x) { return L + (x / x1) * (W - L - R); };
    const py = function (y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
    for (let i = 0; i <= 4; i++) {
      const y = y0 + (i / 4) * (y1 - y0);
      svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" }));
      const label = svgEl("text", { x: L - 4, y: py(y) + 4, "text-anchor": "end" });
      label.textContent = opts.max1 ? (y * 100).toFixed(1) + "%" : y.toPrecision(3);
      svg.appendChild(label);
    }
    svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    const ticks = x1 >= 2 ? [[0, "start"], [x1 / 2, "middle"], [x1, "end"]] : [];
    for (const [x, anchor] of ticks) {
      const label = svgEl("text", { x: px(x), y: H - 8, "text-anchor": anchor });
      label.textContent = "step " + Math.round(x);
      svg.appendChild(label);
    }
    for (const s of list) {
      if (!s.points.length) continue;
      const pts = s.points.map(function (p) { return px(p[0]).toFixed(1) + "," + py(p[1]).toFixed(1); });
      if (pts.length === 1) pts.push((px(s.points[0][0]) + 1).toFixed(1) + "," + py(s.points[0][1]).toFixed(1));
      const line = svgEl("polyline", { points: pts.join(" "), stroke: s.color, "data-trial": s.trial, "data-points": s.points.length });
      if (s.running) {
        line.setAttribute("class", "running");
        line.setAttribute("data-running", "true");
      }
      svg.appendChild(line);
    }
  }

  // ---- events ---------------------------------------------------------------

  async function loadEvents() {
    const got = await getJSON("/api/v1/events?since=" + seen.lastEvent + "&limit=" + MAX_EVENTS);
    for (const e of got.events) seen.events.push(e);
    seen.events = seen.events.slice(-MAX_EVENTS);
    seen.lastEvent = got.next;
    const list = $("event-list");
    clear(list);
    for (const e of seen.events.slice().reverse()) {
      const li = el("li");
      li.appendChild(el("span", e.time || "", "time"));
      li.appendChild(el("span", e.kind || "", "kind"));
      li.appendChild(document.createTextNode(e.message || ""));
      list.appendChild(li);
    }
    if (got.events.length >= MAX_EVENTS && got.next < got.last) once("events", loadEvents);
  }

  // ---- champion ---------------------------------------------------------------

  async function loadChampion() {
    const got = await getJSON("/api/v1/champion");
    renderChampion(got);
  }

  function renderChampion(got) {
    const c = got.champion;
    const line = $("champion-line");
    const perClass = $("per-class").tBodies[0];
    const matrix = $("confusion");
    const files = $("files");
    clear(perClass); clear(matrix); clear(files);
    if (!c) {
      line.textContent = got.error ? "UNUSABLE: " + got.error : "none yet";
      line.className = got.error ? "line bad" : "line";
    } else {
      line.className = "line";
      line.textContent = [
        "version " + c.version,
        "trial " + c.trial + " (" + c.preset + ")",
        "val " + withInterval(c.val_accuracy, c.val_interval),
        "test " + withInterval(c.test_accuracy, c.test_interval),
        count(c.parameters) + " parameters",
        c.created_at,
        c.commit ? "commit " + short(c.commit, 12) : "study " + c.study,
      ].join(" · ");
      renderPerClass(perClass, c.per_class || []);
      renderMatrix(matrix, c.confusion || [], c.per_class || []);
      for (const f of c.files || []) {
        const li = el("li");
        li.appendChild(el("span", f.verified ? "✓ " : "✗ ", f.verified ? "ok" : "bad"));
        li.appendChild(document.createTextNode(f.path + " · " + count(f.bytes) + " bytes · " + (f.verified ? "verifies" : f.error)));
        files.appendChild(li);
      }
      if (!(c.files || []).length) files.appendChild(el("li", "no checksummed files listed (a card of an older build)"));
    }
    const p = got.previous;
    $("previous").textContent = p
      ? "best.previous: version " + p.version + " · trial " + p.trial + " (" + p.preset + ") · val " + pct(p.val_accuracy) + " · test " + pct(p.test_accuracy) + " · " + p.created_at
      : "best.previous: none";
  }

  function renderPerClass(body, rows) {
    for (const r of rows) {
      const tr = el("tr");
      tr.appendChild(el("td", r.label));
      tr.appendChild(el("td", r.name, "name"));
      tr.appendChild(el("td", pct(r.accuracy)));
      const bar = el("td");
      const s = svgEl("svg", { width: 120, height: 10, "aria-hidden": "true" });
      s.appendChild(svgEl("rect", { width: 120, height: 10, fill: "#e6eaee" }));
      s.appendChild(svgEl("rect", { width: num(r.accuracy) ? (120 * r.accuracy).toFixed(1) : 0, height: 10, fill: "#1f6feb" }));
      bar.appendChild(s);
      tr.appendChild(bar);
      body.appendChild(tr);
    }
  }

  function renderMatrix(table, m, classes) {
    const head = el("tr");
    head.appendChild(el("th", ""));
    m.forEach(function (_, j) {
      const th = el("th", j);
      th.title = classes[j] ? classes[j].name : String(j);
      head.appendChild(th);
    });
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const body = el("tbody");
    m.forEach(function (row, i) {
      const tr = el("tr");
      const th = el("th", i + " " + (classes[i] ? classes[i].name : ""), "name");
      tr.appendChild(th);
      const total = row.reduce(function (a, b) { return a + b; }, 0) || 1;
      row.forEach(function (v, j) {
        const shade = Math.min(9, Math.round((v / total) * 9));
        const td = el("td", v, "shade-" + shade + (i !== j && v > 0 ? " off" : ""));
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
  }

  // ---- live updates -------------------------------------------------------------

  let pollTimer = null;

  function poll() {
    getJSON("/api/v1/status").then(onStatus).catch(showError);
  }

  function follow() {
    if (!window.EventSource) {
      pollTimer = setInterval(poll, 2000);
      return;
    }
    const es = new EventSource("/api/v1/stream");
    const conn = $("conn");
    es.onopen = function () {
      conn.textContent = "live";
      conn.className = "conn live";
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    };
    es.addEventListener("status", function (m) {
      try { onStatus(JSON.parse(m.data)); } catch (e) { showError(e); }
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (too many streams) or gone: poll, and try the stream again later.
        conn.textContent = "polling every 2 s";
        conn.className = "conn";
        if (!pollTimer) pollTimer = setInterval(poll, 2000);
        setTimeout(follow, 30000);
      } else {
        conn.textContent = "reconnecting…";
        conn.className = "conn down";
      }
    };
  }

  poll();
  follow();
})();
