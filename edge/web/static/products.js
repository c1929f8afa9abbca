/* Product master pages: a draft from the form (errors beside the field), import, QA approval. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  const imp = $("product-import");
  if (imp) imp.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = $("import-file").files[0];
    if (!f) { $("import-error").textContent = "Choose a product file first."; return; }
    const fd = new FormData(); fd.append("file", f, f.name);
    try {
      const r = await EI.api("POST", "/api/products/import", fd);
      EI.toast(r.imported.length + " product(s) imported as drafts");
      setTimeout(() => location.reload(), 600);
    } catch (e) { $("import-error").textContent = e.message; }
  });

  const form = $("product-form");
  const body = document.querySelector("#challenge tbody");
  function unitRow() {
    const tpl = body.querySelector("tr.unit");
    const row = tpl ? tpl.cloneNode(true) : null;
    if (!row) return null;
    row.querySelectorAll("input").forEach((i) => { i.value = i.classList.contains("u-count") ? "1" : ""; });
    row.querySelector(".u-expect").value = "REJECT";
    return row;
  }
  if ($("add-unit")) $("add-unit").addEventListener("click", () => {
    let row = unitRow();
    if (!row) {  // an empty set: the first row from scratch
      row = EI.el("tr", { class: "unit" },
        EI.el("td", {}, EI.el("input", { class: "u-defect", list: "defects" })),
        EI.el("td", {}, EI.el("select", { class: "u-expect" }, EI.el("option", {}, "REJECT"), EI.el("option", {}, "PASS"))),
        EI.el("td", {}, EI.el("input", { class: "u-reason", list: "reasons" })),
        EI.el("td", {}, EI.el("input", { class: "u-count", type: "number", min: "1", max: "20", value: "1" })),
        EI.el("td", {}, EI.el("button", { class: "btn small danger u-remove", type: "button" }, "Remove")));
    }
    body.append(row);
  });
  if (body) body.addEventListener("click", (ev) => { const b = ev.target.closest(".u-remove"); if (b) b.closest("tr").remove(); });

  const num = (v) => (v === "" || v === null ? null : Number(v));
  function content() {
    const v = (n) => form.elements[n].value.trim();
    return {
      gtin: v("gtin"), name: v("name"), recipe: v("recipe"), scenario: v("scenario") || null,
      camera: { exposure_us: num(v("exposure_us")), gain: num(v("gain")), light_percent: num(v("light_percent")) },
      printed: { fields: v("fields").split(/[\s,]+/).filter(Boolean), date_format: v("date_format") || "YYMMDD" },
      challenge: [...body.querySelectorAll("tr.unit")].map((r) => ({
        defect: r.querySelector(".u-defect").value.trim() || null,
        expect: r.querySelector(".u-expect").value,
        reason: r.querySelector(".u-reason").value.trim() || null,
        count: Number(r.querySelector(".u-count").value || 1),
      })),
    };
  }
  function clearErrors() {
    form.querySelectorAll("[data-error]").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll(".bad").forEach((e) => e.classList.remove("bad"));
    if ($("form-error")) $("form-error").textContent = "";
  }
  // field errors from the server beside their field: gtin, camera.gain, challenge.0.reason, ...
  function showErrors(list) {
    for (const { field, error } of list) {
      const top = field.split(".")[0];
      const box = form.querySelector('[data-error="' + top + '"]') || $("form-error");
      box.textContent = (box.textContent ? box.textContent + " " : "") + field + ": " + error;
      const input = form.querySelector('[data-field="' + field + '"]');
      if (input) input.classList.add("bad");
      const m = /^challenge\.(\d+)\.(\w+)/.exec(field);
      if (m) { const row = body.querySelectorAll("tr.unit")[+m[1]]; const i = row && row.querySelector(".u-" + m[2]); if (i) i.classList.add("bad"); }
    }
  }
  if (form && $("save-draft")) form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); clearErrors();
    const c = content();
    const opts = { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content, "Accept": "application/json" },
      body: JSON.stringify(c) };
    try {
      const r = await fetch("/api/products", opts);
      const data = await r.json().catch(() => null);
      if (r.status === 422 && data && Array.isArray(data.detail) && data.detail.length && data.detail[0].field !== undefined) { showErrors(data.detail); return; }
      if (!r.ok) { $("form-error").textContent = (data && typeof data.detail === "string") ? data.detail : "The draft was not saved (" + r.status + ")."; return; }
      EI.toast("Draft v" + data.version + " saved");
      setTimeout(() => { location.href = "/products/" + data.gtin + "?version=" + data.version; }, 400);
    } catch (e) { $("form-error").textContent = e.message; }
  });

  const approve = $("btn-approve");
  if (approve) approve.addEventListener("click", () => EI.esign({
    url: "/api/products/" + approve.dataset.gtin + "/" + approve.dataset.version + "/approve",
    what: "Approve product " + approve.dataset.gtin + " v" + approve.dataset.version + " for production",
    done: "Approved and signed",
  }));
})();
