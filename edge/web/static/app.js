/* Shared helpers: JSON requests with the CSRF token, a toast, dialogs. No framework. */
"use strict";
const EI = (() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  async function api(method, url, body) {
    const opts = { method, headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
                   credentials: "same-origin" };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(url, opts);
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("login required"); }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.detail) || (r.status + " " + r.statusText));
    return data;
  }
  let toastTimer = null;
  function toast(msg, bad) {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = msg;
    t.className = "show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.className = ""; }, 4000);
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  document.addEventListener("click", (ev) => {
    const c = ev.target.closest("[data-close]");
    if (c) c.closest("dialog").close();
  });
  const GRADE = (g) => g === null || g === undefined ? "—" : ["F", "D", "C", "B", "A"][Math.max(0, Math.min(4, Math.round(g)))];
  return { api, toast, el, csrf, GRADE };
})();
