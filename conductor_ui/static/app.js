// Conductor dashboard: live updates (server-sent events) and confirmations. No build step.
"use strict";

function follow(element, eventName, target) {
  const url = element.dataset.live;
  if (!url || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const source = new EventSource(url);
  source.addEventListener(eventName, (event) => {
    target.innerHTML = event.data;
    if (status) status.textContent = "live";
    document.dispatchEvent(new CustomEvent("conductor:updated", { detail: eventName }));
  });
  source.addEventListener("trouble", (event) => {
    if (status) status.textContent = "live (" + event.data + ")";
  });
  source.addEventListener("gone", () => source.close());
  source.onerror = () => {
    if (status) status.textContent = "reconnecting…";
  };
  // the server ends an execution's stream once it is finished: do not reconnect then
  source.addEventListener("detail", () => {
    const state = target.querySelector("#state");
    if (state && ["succeeded", "failed", "cancelled"].includes(state.textContent)) source.close();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("executions");
  if (list) follow(list, "rows", document.getElementById("rows"));
  const detail = document.getElementById("detail");
  if (detail) follow(detail, "detail", detail);
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
