// The instance page: state and actions kept current, the trading picture (PnL, price with grid levels
// and fills, orders, fills), live logs with search over everything loaded, and resource charts.
// Charts use uPlot (static/vendor/uplot, MIT); history comes from the portal, so it survives a reload.
(function () {
  const root = document.getElementById("instance");
  if (!root || root.dataset.tab !== "overview") return;
  const api = root.dataset.api;
  const words = document.getElementById("i18n").dataset;
  const label = (key, fallback) => {
    const found = document.querySelector('[data-state-label="' + key + '"]');
    return found ? found.textContent : fallback;
  };
  const TONE = { running: "good", trading: "good", paused: "warn", restarting: "warn", failed: "bad",
    error: "bad", not_answering: "bad" };
  let status = root.dataset.status;
  let desired = root.dataset.desired;
  // Live data is asked only of an instance that runs and is meant to (not one being stopped or deleted).
  const live = () => status === "running" && desired === "running";

  // --- state and actions ------------------------------------------------------------------
  function setBadge(element, text, tone) {
    element.lastChild.textContent = text;
    element.className = "badge tone-" + (tone || "idle");
  }
  function showStatus(code) {
    status = code;
    const badge = document.getElementById("status");
    badge.dataset.status = code;
    setBadge(badge, label("status-" + code, code), TONE[code]);
    const running = code === "running";
    const allowed = { start: code === "stopped" || code === "failed",
      stop: running || code === "restarting" || code === "provisioning", restart: running || code === "failed" };
    document.querySelectorAll("#actions button[data-action]").forEach((button) => {
      button.disabled = !allowed[button.dataset.action];
    });
  }
  function causeText(cause) {
    return (cause || "").split(",").filter(Boolean).map((c) => label("cause-" + c, c)).join(label("separator", ", "));
  }
  function showTrading(state, cause, reason, raw) {
    const badge = document.getElementById("trading-state");
    badge.dataset.state = state;
    const because = causeText(cause);
    const text = label("trading-" + state, state);
    setBadge(badge, because ? label("format", "%(state)s: %(cause)s").replace("%(state)s", text).replace("%(cause)s", because) : text,
      TONE[state]);
    document.getElementById("trading-reason").textContent = reason || "";
    document.getElementById("trading-reason-raw").textContent = raw || "";  // the engine's own words stay at hand
    document.getElementById("trading-reason-raw-line").hidden = !raw || raw === reason;
    document.getElementById("trading-reason-line").hidden = !reason;
    document.getElementById("trading-fix").hidden = !["error", "not_answering", "paused"].includes(state);
  }

  // --- numbers and times ------------------------------------------------------------------
  const number = (value, digits) => value === null || value === undefined ? "—"
    : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  const money = (value) => value === null || value === undefined ? "—"
    : Number(value).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const localTime = (iso) => iso ? new Date(iso).toLocaleString() : "—";
  function duration(seconds) {
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    return m ? m + " min" : seconds + " " + words.seconds;
  }

  // --- charts -----------------------------------------------------------------------------
  function chartWidth(element) { return Math.max(260, element.clientWidth || 600); }
  function makeChart(id, series, data, extra) {
    const element = document.getElementById(id);
    const options = Object.assign({
      width: chartWidth(element), height: 220, series: [{ label: words.time }].concat(series),
      axes: [{}, { size: 70 }], legend: { live: true }, cursor: { drag: { x: true, y: false } },
    }, extra || {});
    const chart = new uPlot(options, data, element);
    new ResizeObserver(() => chart.setSize({ width: chartWidth(element), height: 220 })).observe(element);
    return chart;
  }
  let history = null, pnlChart = null, priceChart = null, resourcesChart = null;
  let gridLevels = [], fillPoints = [];
  let mainSymbol = null;

  // Grid orders as dashed horizontal lines, drawn over the price chart.
  const levelsPlugin = { hooks: { draw: [(u) => {
    const context = u.ctx;
    context.save();
    context.setLineDash([4, 4]);
    for (const order of gridLevels) {
      const y = u.valToPos(order.price, "y", true);
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
      context.strokeStyle = order.side === "buy" ? "#047857" : "#b91c1c";
      context.beginPath(); context.moveTo(u.bbox.left, y); context.lineTo(u.bbox.left + u.bbox.width, y); context.stroke();
    }
    context.restore();
  }] } };

  function priceData() {
    // Price samples plus fills as their own series (points only), on one time axis.
    const times = history.time.slice();
    const prices = (history.price[mainSymbol] || []).slice();
    const buys = times.map(() => null), sells = times.map(() => null);
    for (const fill of fillPoints) {
      const t = Math.round(new Date(fill.time).getTime() / 1000);
      if (times.length && t < times[0]) continue;
      times.push(t); prices.push(null);
      buys.push(fill.side === "buy" ? fill.price : null);
      sells.push(fill.side === "sell" ? fill.price : null);
    }
    const order = times.map((_, i) => i).sort((a, b) => times[a] - times[b]);
    return [order.map((i) => times[i]), order.map((i) => prices[i]), order.map((i) => buys[i]), order.map((i) => sells[i])];
  }
  function drawCharts() {
    const pnl = [history.time, history.realized_pnl, history.unrealized_pnl];
    if (!pnlChart) {
      pnlChart = makeChart("pnl-chart", [
        { label: words.realised, stroke: "#1d4ed8", width: 2 },
        { label: words.unrealised, stroke: "#d97706", width: 2 },
      ], pnl);
    } else pnlChart.setData(pnl);
    if (mainSymbol) {
      const data = priceData();
      if (!priceChart) {
        priceChart = makeChart("price-chart", [
          { label: mainSymbol + " " + words.price, stroke: "#111827", width: 1.5, spanGaps: true },
          { label: words.buy, stroke: "#047857", width: 0, points: { show: true, size: 8, fill: "#047857" } },
          { label: words.sell, stroke: "#b91c1c", width: 0, points: { show: true, size: 8, fill: "#b91c1c" } },
        ], data, { plugins: [levelsPlugin] });
      } else priceChart.setData(data);
    }
    const usage = (values) => values.map((v) => v === null ? null : Math.round(v * 1000) / 10);
    const resources = [history.time, usage(history.cpu_usage), usage(history.memory_usage)];
    if (!resourcesChart) {
      resourcesChart = makeChart("resources-chart", [
        { label: words.cpu + " %", stroke: "#1d4ed8", width: 2, spanGaps: true },
        { label: words.memory + " %", stroke: "#7c3aed", width: 2, spanGaps: true },
      ], resources, { scales: { y: { range: [0, 100] } } });
    } else resourcesChart.setData(resources);
  }
  function mergeHistory(newer) {
    const last = history.time.length ? history.time[history.time.length - 1] : 0;
    newer.time.forEach((t, i) => {
      if (t <= last) return;
      history.time.push(t);
      for (const key of ["realized_pnl", "unrealized_pnl", "cpu_usage", "memory_usage"]) history[key].push(newer[key][i]);
      for (const group of ["price", "position"]) {
        for (const symbol of Object.keys(newer[group])) {
          if (!history[group][symbol]) history[group][symbol] = history.time.slice(0, -1).map(() => null);
          history[group][symbol].push(newer[group][symbol][i]);
        }
      }
    });
  }

  // --- trading tables ---------------------------------------------------------------------
  function cell(row, text, title) {
    const td = row.insertCell();
    td.textContent = text;
    td.dataset.label = title;
    return td;
  }
  function headers(table) { return [...table.tHead.rows[0].cells].map((th) => th.textContent); }
  function showSymbols(symbols) {
    const box = document.getElementById("symbols");
    box.textContent = "";
    if (!symbols.length) {
      const note = document.createElement("p");
      note.className = "muted";
      const state = document.getElementById("trading-state").dataset.state;
      note.textContent = !live() ? words.notRunning
        : ["error", "not_answering"].includes(state) ? words.notTrading : label("trading-starting", "…");
      box.appendChild(note);
    }
    for (const s of symbols) {
      const card = document.createElement("dl");
      card.className = "symbol";
      const add = (name, value, tone) => {
        const dt = document.createElement("dt"); dt.textContent = name;
        const dd = document.createElement("dd"); dd.textContent = value;
        if (tone) dd.className = tone;
        card.append(dt, dd);
      };
      const heading = document.createElement("h3");
      heading.textContent = s.symbol;
      box.appendChild(heading);
      add(words.price, number(s.price, 2));
      add(words.position, number(s.position, 8));
      add(words.realised, money(s.realized_pnl), s.realized_pnl < 0 ? "error" : "ok");
      add(words.unrealised, money(s.unrealized_pnl), s.unrealized_pnl < 0 ? "error" : "ok");
      add(words.fees, money(s.fees));
      box.appendChild(card);
    }
    const orders = document.querySelector("#orders tbody"), fills = document.querySelector("#fills tbody");
    const orderTitles = headers(document.getElementById("orders")), fillTitles = headers(document.getElementById("fills"));
    orders.textContent = ""; fills.textContent = "";
    gridLevels = []; fillPoints = [];
    for (const s of symbols) {
      for (const o of s.orders || []) {
        const row = orders.insertRow();
        [s.symbol, words[o.side] || o.side, o.level, number(o.price, 2), number(o.amount, 8)]
          .forEach((v, i) => cell(row, v, orderTitles[i]));
        if (s.symbol === mainSymbol) gridLevels.push(o);
      }
      for (const f of (s.fills || []).slice(0, 20)) {
        const row = fills.insertRow();
        [localTime(f.time), s.symbol, words[f.side] || f.side, number(f.price, 2), number(f.amount, 8), money(f.realized_pnl)]
          .forEach((v, i) => cell(row, v, fillTitles[i]));
      }
      if (s.symbol === mainSymbol) fillPoints = s.fills || [];
    }
    for (const [body, count] of [[orders, 5], [fills, 6]]) {
      if (!body.rows.length) { const td = body.insertRow().insertCell(); td.colSpan = count; td.textContent = words.none; }
    }
  }

  let range = document.getElementById("range").value;
  async function loadTrading(full) {
    const days = full ? range : "0.01";
    const response = await fetch(api + "/trading?days=" + days, { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    if (body.status !== status) showStatus(body.status);
    showTrading(body.trading_state, body.trading_cause, body.trading_reason_text, body.trading_reason);  // before the tables: they read it
    if (full || !history) history = body.history; else mergeHistory(body.history);
    mainSymbol = mainSymbol || (body.symbols[0] && body.symbols[0].symbol) || Object.keys(history.price)[0] || null;
    showSymbols(body.symbols);
    drawCharts();
  }
  document.getElementById("range").addEventListener("change", (event) => { range = event.target.value; loadTrading(true); });

  // --- resources (live numbers; the chart's history comes with the trading view) ----------
  async function metrics() {
    if (!live()) return; // a stopped (or stopping) instance has no live metrics: do not ask
    const response = await fetch(api + "/metrics", { credentials: "same-origin" });
    if (!response.ok) return;
    const m = await response.json();
    const percent = (v) => Math.round(v * 100) + "%";
    document.getElementById("cpu-text").textContent = percent(m.cpu_usage) + " " + words.of + " " + m.cpu_limit + " CPU";
    document.getElementById("memory-text").textContent = percent(m.memory_usage) + " " + words.of + " " + m.memory_limit + " MB";
    document.getElementById("uptime").textContent = duration(m.uptime);
    const active = document.getElementById("last-active");
    active.textContent = localTime(m.last_active);
    if (m.last_active) active.title = m.last_active;
  }

  // --- logs: everything loaded is kept (up to MAX_LINES); search and level filter that -------
  const logs = document.getElementById("logs");
  const search = document.getElementById("search");
  const level = document.getElementById("level");
  const pause = document.getElementById("pause");
  const logState = document.getElementById("log-state");
  const MAX_LINES = 5000;
  const LEVEL_RANK = { DEBUG: 0, INFO: 1, WARNING: 2, ERROR: 3, CRITICAL: 3 };
  const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) /;
  let loaded = [], paused = false, lastSeq = 0;

  function lineElement(text) {
    const match = STAMP.exec(text);
    const span = document.createElement("span");
    span.className = "line";
    if (match) {
      span.dataset.level = match[2];
      const time = document.createElement("time");
      time.dateTime = match[1];
      time.textContent = new Date(match[1]).toLocaleTimeString() + " ";
      time.title = match[1];
      const tag = document.createElement("b");
      tag.className = "level level-" + match[2].toLowerCase();
      tag.textContent = match[2];
      span.append(time, tag, document.createTextNode(" " + text.slice(match[0].length) + "\n"));
    } else span.textContent = text + "\n";
    return span;
  }
  function visible(text) {
    const term = search.value.trim().toLowerCase();
    const minimum = LEVEL_RANK[level.value] || 0;
    if (term && !text.toLowerCase().includes(term)) return false;
    if (minimum) {
      const match = STAMP.exec(text);
      if (!match || LEVEL_RANK[match[2]] < minimum) return false;
    }
    return true;
  }
  function renderAll() {
    const fragment = document.createDocumentFragment();
    let shown = 0;
    for (const text of loaded) if (visible(text)) { fragment.appendChild(lineElement(text)); shown++; }
    logs.textContent = "";
    logs.appendChild(fragment);
    logState.textContent = search.value || level.value ? shown + " " + logState.dataset.matches : "";
    logs.scrollTop = logs.scrollHeight;
  }
  function add(lines) {
    loaded = loaded.concat(lines);
    if (loaded.length > MAX_LINES) loaded = loaded.slice(-MAX_LINES);
    if (paused) return;
    for (const text of lines) if (visible(text)) logs.appendChild(lineElement(text));
    while (logs.childNodes.length > MAX_LINES) logs.removeChild(logs.firstChild);
    logs.scrollTop = logs.scrollHeight;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = lastSeq ? "?since=" + lastSeq : "?lines=500";
    const socket = new WebSocket(scheme + "://" + location.host + api + "/logs/stream" + query);
    socket.onopen = () => { logState.textContent = ""; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "logs") {
        lastSeq = message.seq + message.lines.length - 1;
        add(message.lines);
      } else if (message.type === "gap") {
        logState.textContent = logState.dataset.gap;
      } else if (message.type === "status") {
        desired = message.desired_state || desired;
        showStatus(message.status);
        if (live()) { loadTrading(false); metrics(); }
      }
    };
    socket.onclose = () => { logState.textContent = logState.dataset.reconnecting; setTimeout(connect, 2000); };
  }
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? pause.dataset.resume : pause.dataset.pause;
    if (!paused) renderAll();
  });
  search.addEventListener("input", renderAll);
  level.addEventListener("change", renderAll);

  connect();
  loadTrading(true);
  metrics();
  setInterval(() => { if (live()) loadTrading(false); }, 5000);
  setInterval(metrics, 5000);
})();
