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
    let r;
    try { r = await fetch(url, opts); }
    catch (e) { throw new Error("The appliance did not answer. Check the network connection and try again."); }
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("Please log in again."); }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {  // the server's detail stays with the error (a form's messages by field)
      const err = new Error(explain(r.status, data && data.detail));
      err.detail = data && data.detail;
      throw err;
    }
    return data;
  }
  // What went wrong, in a sentence: the server's own sentence where it sent one.
  const BY_STATUS = {
    400: "The request was not understood. Reload the page and try again.",
    403: "You are not allowed to do this, or the password was wrong.",
    404: "That is no longer on the appliance. Reload the page.",
    409: "That cannot be done in the current state. Reload the page and check.",
    413: "The file is too large.",
    415: "That is not a PNG, JPEG or BMP image.",
    422: "Please check what you entered.",
    429: "Too many attempts. Wait a minute, then try again.",
    500: "The appliance hit an unexpected error. Try again, and tell maintenance if it happens again.",
    502: "The appliance is busy or restarting. Try again in a minute.",
    503: "The appliance cannot do this right now. Try again in a minute.",
    504: "The appliance is busy or restarting. Try again in a minute.",
  };
  function explain(status, detail) {
    if (typeof detail === "string" && detail.trim()) return detail;
    if (Array.isArray(detail) && detail.length)  // a list of field errors
      return "Please check: " + detail.map((d) => ((d.loc || []).filter((x) => x !== "body").join(" ") + " " + (d.msg || "")).trim()).join("; ") + ".";
    return BY_STATUS[status] || (status >= 500 ? BY_STATUS[500] : "The appliance refused this (" + status + ").");
  }
  // A small table of a nested object of figures: dotted names, numbers rounded.
  const fmt = (v) => typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : typeof v === "boolean" ? (v ? "yes" : "no") : String(v);
  function flat(obj, pre, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      const name = pre ? pre + " · " + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flat(v, name, out);
      else if (!(typeof v === "string" && /^[0-9a-f]{64}$/.test(v))) out.push([name.replace(/_/g, " "), Array.isArray(v) ? v.join(", ") : fmt(v)]);
    }
    return out;
  }
  function table(obj) {
    const t = el("table", { class: "metrics" });
    for (const [k, v] of flat(obj, "", [])) t.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
    return t;
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
  // The e-signature dialog (_esign.html), one home for every page that signs: the page says
  // what is signed and where the signature goes; the password and reason go only there.
  let signing = null;
  function esign(req) {
    const $ = (id) => document.getElementById(id);
    signing = req;
    if (req.what !== undefined) $("sign-what").textContent = req.what;
    if (req.meaning !== undefined) $("sign-meaning").textContent = req.meaning;
    $("sign-error").textContent = ""; $("sign-password").value = "";
    const form = $("form-sign");
    if (!form.dataset.bound) {
      form.dataset.bound = "1";
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          await api("POST", signing.url, { password: $("sign-password").value, reason: $("sign-reason").value });
          $("dlg-sign").close(); toast(signing.done || "Signed"); setTimeout(() => location.reload(), 600);
        } catch (e) { $("sign-error").textContent = e.message; }
      });
    }
    $("dlg-sign").showModal();
  }
  const GRADE = (g) => g === null || g === undefined ? "—" : ["F", "D", "C", "B", "A"][Math.max(0, Math.min(4, Math.round(g)))];
  return { api, toast, el, csrf, GRADE, explain, table, esign };
})();
