// Backstop dashboard: actions through the JSON API (with the session's CSRF token), and a
// gentle auto-refresh of the page's content. No framework, no build step.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  function flash(text, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "msg " + kind;
    // The box is a polite live region already; only errors interrupt, as alerts.
    if (kind === "bad") item.setAttribute("role", "alert");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), kind === "bad" ? 10000 : 4000);
  }

  // Inputs named "a.b" become {"a": {"b": value}}; empty optional fields are left out.
  function bodyOf(form) {
    const body = {};
    for (const field of form.querySelectorAll("input, select, textarea")) {
      if (!field.name || (field.value === "" && !field.required)) continue;
      const path = field.name.split(".");
      let node = body;
      for (const part of path.slice(0, -1)) node = node[part] = node[part] || {};
      node[path[path.length - 1]] = field.value;
    }
    return body;
  }

  async function act(form) {
    const question = form.dataset.confirm;
    if (question && !window.confirm(question)) return;
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(bodyOf(form)),
      });
      let answer = {};
      try { answer = await response.json(); } catch (e) { answer = {}; }
      if (response.ok) {
        flash(form.dataset.done || "Done", "ok");
        await refresh(true);
      } else {
        const error = answer.error || {};
        flash((error.message || response.statusText) + " (" + response.status + ")", "bad");
      }
    } catch (e) {
      flash("Backstop did not answer: " + e, "bad");
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-api]")) {
      event.preventDefault();
      act(form);
    }
  });

  // -- auto-refresh ----------------------------------------------------------------------
  const period = Number(document.body.dataset.refresh || 0) * 1000;
  let enabled = localStorage.getItem("backstop-refresh") !== "off";
  let busy = false;
  let again = false; // an action finished while a refresh was in flight: refresh once more

  function typing() {
    const active = document.activeElement;
    return active && active.closest("main") && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  async function refresh(force) {
    if (!force && (!enabled || document.hidden || typing())) return;
    if (busy) {
      // The refresh in flight may have read the page before the action: show its result too.
      if (force) again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (response.redirected || response.status === 401) { window.location.reload(); return; }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const open = [...document.querySelectorAll("main details[open][id]")].map((d) => d.id);
      for (const id of ["content", "top"]) {
        const fresh = page.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) current.replaceWith(fresh);
      }
      for (const id of open) {
        const details = document.getElementById(id);
        if (details) details.open = true;
      }
      bindToggle();
      stamp();
    } catch (e) {
      // Backstop unreachable for a moment: keep showing what we have.
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh(true);
      }
    }
  }

  function stamp() {
    const updated = document.getElementById("updated");
    if (updated) updated.textContent = "updated " + new Date().toLocaleTimeString();
  }

  function bindToggle() {
    const toggle = document.getElementById("refresh-toggle");
    if (!toggle) return;
    toggle.textContent = enabled ? "auto-refresh on" : "auto-refresh off";
    toggle.setAttribute("aria-pressed", String(enabled));
    toggle.onclick = () => {
      enabled = !enabled;
      localStorage.setItem("backstop-refresh", enabled ? "on" : "off");
      bindToggle();
    };
  }

  bindToggle();
  stamp();
  if (period > 0) setInterval(() => refresh(false), period);
})();
