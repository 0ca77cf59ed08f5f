// The Strategy tab: follows a running advisor job (progress, then a reload with its report) and draws
// the report's charts with uPlot (static/vendor/uplot, MIT) from the API: the held-out price with the
// fixed grid's levels and the adaptive grid's nearest levels, and every candidate's profit curve.
(function () {
  const root = document.getElementById("strategy");
  if (!root || !root.dataset.api) return;
  const url = root.dataset.api;
  const words = document.getElementById("i18n").dataset;
  const getRun = () => fetch(url, { credentials: "same-origin" }).then((r) => r.ok ? r.json() : null);

  function follow() {
    getRun().then((run) => {
      if (!run) return;
      const bar = document.getElementById("run-progress");
      if (bar && run.progress.total) {
        bar.max = run.progress.total; bar.value = run.progress.done;
        document.getElementById("run-progress-text").textContent = run.progress.done + " / " + run.progress.total;
      }
      if (run.status === "done" || run.status === "failed") window.location.reload();
      else setTimeout(follow, 1000);
    }).catch(() => setTimeout(follow, 3000));
  }

  function width(element) { return Math.max(260, element.clientWidth || 600); }
  function chart(id, series, data, extra) {
    const element = document.getElementById(id);
    const options = Object.assign({ width: width(element), height: 260, series: [{ label: words.time }].concat(series),
      axes: [{}, { size: 70 }], legend: { live: true } }, extra || {});
    const made = new uPlot(options, data, element);
    new ResizeObserver(() => made.setSize({ width: width(element), height: 260 })).observe(element);
  }
  const seconds = (ms) => Math.round(ms / 1000);

  function priceChart(report) {
    const held = report.prices.filter((p) => p[0] >= report.split_ts);
    if (!held.length) return;
    const times = held.map((p) => seconds(p[0])), prices = held.map((p) => p[1]);
    const levels = report.levels || {};
    const fixed = levels.fixed;
    // The adaptive grid's nearest buy and sell levels at each time (its interval follows volatility).
    const adaptive = levels.adaptive || [];
    const below = times.map(() => null), above = times.map(() => null);
    let j = 0;
    times.forEach((t, i) => {
      while (j + 1 < adaptive.length && seconds(adaptive[j + 1][0]) <= t) j++;
      if (adaptive.length && seconds(adaptive[j][0]) <= t) { below[i] = prices[i] - adaptive[j][1]; above[i] = prices[i] + adaptive[j][1]; }
    });
    const fixedLines = { hooks: { draw: [(u) => {
      if (!fixed) return;
      const context = u.ctx;
      context.save(); context.setLineDash([4, 4]); context.strokeStyle = "#6b7280";
      for (let k = -fixed.layers; k <= fixed.layers; k++) {
        const y = u.valToPos(fixed.center + k * fixed.interval, "y", true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
        context.beginPath(); context.moveTo(u.bbox.left, y); context.lineTo(u.bbox.left + u.bbox.width, y); context.stroke();
      }
      context.restore();
    }] } };
    chart("advice-price-chart", [
      { label: report.symbol + " " + words.price, stroke: "#111827", width: 1.5 },
      { label: words.adaptive + " −", stroke: "#047857", width: 1, dash: [2, 3] },
      { label: words.adaptive + " +", stroke: "#b91c1c", width: 1, dash: [2, 3] },
    ], [times, prices, below, above], { plugins: [fixedLines] });
  }

  function equityChart(report) {
    const candidates = report.candidates;
    if (!candidates.length) return;
    const times = candidates[0].equity_curve.map((p) => seconds(p[0]));
    const series = [], data = [times];
    candidates.forEach((c, index) => {
      const byTime = new Map(c.equity_curve.map((p) => [seconds(p[0]), p[1]]));
      const best = index === report.recommended;
      series.push({ label: "#" + index + " " + (c.kind === "adaptive" ? words.adaptiveKind : words.grid) + (best ? " (" + words.recommended + ")" : ""),
        stroke: best ? "#1d4ed8" : (c.kind === "adaptive" ? "rgba(4,120,87,0.35)" : "rgba(107,114,128,0.35)"), width: best ? 2.5 : 1,
        show: best || index < 12 });
      data.push(times.map((t) => byTime.has(t) ? byTime.get(t) : null));
    });
    chart("advice-equity-chart", series, data);
  }

  if (root.dataset.status === "queued" || root.dataset.status === "running") follow();
  else if (root.dataset.status === "done") getRun().then((run) => {
    if (!run || !run.report) return;
    priceChart(run.report); equityChart(run.report);
  });
})();
