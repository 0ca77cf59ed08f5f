// The instance page: live logs over the websocket (session cookie), metrics every 5 s, status updates.
(function () {
  const root = document.getElementById("instance");
  if (!root) return;
  const api = root.dataset.api;
  const logs = document.getElementById("logs");
  const search = document.getElementById("search");
  const pause = document.getElementById("pause");
  const stateText = document.getElementById("log-state");
  const MAX_LINES = 2000;
  let paused = false;
  let held = [];
  let lastSeq = 0;

  function render(lines) {
    const term = search.value.toLowerCase();
    for (const line of lines) {
      if (term && !line.toLowerCase().includes(term)) continue;
      logs.appendChild(document.createTextNode(line + "\n"));
    }
    while (logs.childNodes.length > MAX_LINES) logs.removeChild(logs.firstChild);
    logs.scrollTop = logs.scrollHeight;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = lastSeq ? "?since=" + lastSeq : "?lines=200";
    const socket = new WebSocket(scheme + "://" + location.host + api + "/logs/stream" + query);
    socket.onopen = () => { stateText.textContent = ""; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "logs") {
        lastSeq = message.seq + message.lines.length - 1;
        if (paused) held = held.concat(message.lines); else render(message.lines);
      } else if (message.type === "gap") {
        render(["… lines " + message.from + "–" + message.to + " are no longer available …"]);
      } else if (message.type === "status") {
        document.getElementById("status").textContent = message.status;
      }
    };
    socket.onclose = () => { stateText.textContent = "reconnecting…"; setTimeout(connect, 2000); };
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? pause.dataset.resume || "Resume" : pause.dataset.pause || "Pause";
    if (!paused) { render(held); held = []; }
  });
  search.addEventListener("input", () => { logs.textContent = ""; });

  function percent(value) { return Math.round(value * 100) + "%"; }
  // The last 24 samples (2 minutes at one per 5 s) as a line against the limit (the chart's top).
  const history = { cpu: [], memory: [] };
  function plot(name, value) {
    const points = history[name];
    points.push(Math.max(0, Math.min(1, value)));
    if (points.length > 24) points.shift();
    const line = points.map((v, i) => (i * 5) + "," + (30 - v * 28).toFixed(1)).join(" ");
    document.querySelector("#" + name + "-chart polyline").setAttribute("points", line);
  }
  async function metrics() {
    const response = await fetch(api + "/metrics", { credentials: "same-origin" });
    if (response.ok) {
      const m = await response.json();
      plot("cpu", m.cpu_usage);
      document.getElementById("cpu-text").textContent = percent(m.cpu_usage) + " of " + m.cpu_limit + " CPU";
      plot("memory", m.memory_usage);
      document.getElementById("memory-text").textContent = percent(m.memory_usage) + " of " + m.memory_limit + " MB";
      document.getElementById("uptime").textContent = m.uptime + " s";
      document.getElementById("last-active").textContent = m.last_active || "—";
    }
  }

  connect();
  metrics();
  setInterval(metrics, 5000);
})();
