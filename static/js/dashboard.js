// The dashboard's instance list keeps its status current (every 5 s, through the same API).
(function () {
  async function refresh() {
    const response = await fetch("/api/saas/instances", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const instance of await response.json()) {
      const cell = document.querySelector('[data-instance="' + instance.instance_id + '"]');
      if (cell && cell.textContent.toLowerCase() !== instance.status) {
        cell.textContent = instance.status;
        cell.className = "status status-" + instance.status;
      }
    }
  }
  setInterval(refresh, 5000);
})();
