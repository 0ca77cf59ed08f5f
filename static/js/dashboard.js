// The dashboard keeps each instance's status and trading state current (every 5 s, through the API),
// in the page's language (labels rendered by the server, hidden in the page).
(function () {
  const TONE = { running: "good", trading: "good", paused: "warn", restarting: "warn", failed: "bad",
    error: "bad", not_answering: "bad" };
  const label = (key, fallback) => {
    const found = document.querySelector('[data-state-label="' + key + '"]');
    return found ? found.textContent : fallback;
  };
  function show(badge, text, tone) {
    if (badge.textContent !== text) badge.textContent = text;
    badge.className = "badge tone-" + (tone || "idle");
  }
  async function refresh() {
    const response = await fetch("/api/saas/instances", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const instance of await response.json()) {
      const row = document.querySelector('[data-row="' + instance.instance_id + '"]');
      if (!row) continue;
      show(row.querySelector("[data-status]"), label("status-" + instance.status, instance.status), TONE[instance.status]);
      const causes = (instance.trading_cause || "").split(",").filter(Boolean).map((c) => label("cause-" + c, c)).join(label("separator", ", "));
      const text = label("trading-" + instance.trading_state, instance.trading_state);
      const format = label("format", "%(state)s: %(cause)s");
      const shown = causes ? format.replace("%(state)s", text).replace("%(cause)s", causes) : text;
      show(row.querySelector("[data-trading]"), shown, TONE[instance.trading_state]);
    }
  }
  setInterval(refresh, 5000);
})();
