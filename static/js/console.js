// Behaviour every console page shares (no inline scripts: the Content-Security-Policy forbids them).
// Forms marked data-confirm ask before they submit (stop, restart, delete, restore).
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); });
});
// Selects marked data-autosubmit (the language switch) submit their form when changed.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
// Times marked data-local are shown in the viewer's time zone (the server writes UTC).
document.querySelectorAll("time[data-local]").forEach((time) => {
  const when = new Date(time.dateTime);
  if (!isNaN(when)) { time.title = time.textContent; time.textContent = when.toLocaleString(); }
});
