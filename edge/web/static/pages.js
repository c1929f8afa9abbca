/* Technician, QA and admin pages: small form handlers, job progress polling, e-signatures. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const form = (f) => Object.fromEntries(new FormData(f).entries());

  // ---- images: several photos or a whole folder per upload, bulk "mark good"
  const up = $("upload");
  if (up) up.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const product = $("upload-product").value.trim();
    const files = [...$("upload-files").files, ...$("upload-folder").files]
      .filter((f) => /\.(png|jpe?g|bmp)$/i.test(f.name) || /^image\//.test(f.type));
    const status = $("upload-status");
    if (!files.length) { EI.toast("Choose one or more photos, or a folder, first.", true); return; }
    let stored = 0; const refused = [];
    for (let i = 0; i < files.length; i += 20) {  // a few requests, each well under the server's limit
      const fd = new FormData(); fd.append("product", product);
      for (const f of files.slice(i, i + 20)) fd.append("files", f, f.name);
      status.textContent = "Uploading " + Math.min(i + 20, files.length) + " of " + files.length + "…";
      try {
        const r = await EI.api("POST", "/api/tech/uploads", fd);
        stored += r.stored.length; refused.push(...r.refused);
      } catch (e) { EI.toast(e.message, true); status.textContent = e.message; return; }
    }
    status.textContent = stored + " photo(s) added for " + product + "." +
      (refused.length ? " Not added: " + refused.map((r) => r.name + " (" + r.detail + ")").join("; ") : "");
    EI.toast(stored + " photo(s) added", refused.length > 0);
    if (stored) setTimeout(() => { location.href = "/tech/images?source=upload&product=" + encodeURIComponent(product); }, refused.length ? 2500 : 500);
  });
  const grid = $("images"), good = $("mark-good");
  const picked = () => [...document.querySelectorAll(".pick-box:checked")].map((b) => b.value);
  const showPicked = () => { const n = picked().length; if (good) good.disabled = !n; if ($("selected-count")) $("selected-count").textContent = n ? n + " selected" : ""; };
  if (grid) grid.addEventListener("change", showPicked);
  if ($("select-all")) $("select-all").addEventListener("click", () => { document.querySelectorAll(".pick-box").forEach((b) => { b.checked = true; }); showPicked(); });
  if (good) good.addEventListener("click", async () => {
    const shas = picked(); if (!shas.length) return;
    try {
      const r = await EI.api("POST", "/api/tech/labels/good", { images: shas, reason: "marked good in the image browser" });
      EI.toast(r.marked + " image(s) marked good"); setTimeout(() => location.reload(), 500);
    } catch (e) { EI.toast(e.message, true); }
  });

  const ds = $("build-dataset");
  if (ds) ds.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { const r = await EI.api("POST", "/api/tech/datasets", { note: form(ds).note || null, product: form(ds).product || null }); EI.toast("Dataset " + r.version + " built"); setTimeout(() => location.reload(), 600); }
    catch (e) { EI.toast(e.message, true); }
  });

  // ---- jobs (training, evaluation, shadow)
  let jobTimer = null, jobId = null;
  function showJob(id) {
    jobId = id; $("job").hidden = false; $("job-id").textContent = id;
    clearTimeout(jobTimer); pollJob();
  }
  async function pollJob() {
    let s;
    try { s = await EI.api("GET", "/api/jobs/" + jobId); } catch (e) { EI.toast(e.message, true); return; }
    $("job-state").textContent = s.state;
    $("job-log").textContent = s.log;
    let why = $("job-why");
    if (!why) { why = EI.el("p", { id: "job-why", class: "notok" }); $("job-log").before(why); }
    why.textContent = s.explanation || ""; why.hidden = !s.explanation;
    if ($("job-progress") && s.epoch) {
      $("job-progress").max = s.epoch.epochs; $("job-progress").value = s.epoch.epoch;
      const head = s.epoch.heads > 1 ? "Head " + s.epoch.head + " / " + s.epoch.heads + " · " : "";
      $("job-epoch").textContent = head + "Epoch " + s.epoch.epoch + " / " + s.epoch.epochs + " · " + s.epoch.elapsed_s + " s";
      const t = $("job-metrics"); t.replaceChildren();
      t.append(...EI.table(s.epoch.metrics || {}).children);
    }
    if ($("job-cancel")) $("job-cancel").hidden = s.state !== "running";
    if ($("job-result") && s.result) renderResult(s.result);
    const out = $("job-outcome");  // training: the candidate it made, and whether it verified
    if (out) {
      const r = s.result, ok = r && r.verify && !/^FAILED/.test(r.verify);
      out.hidden = !r || !r.version;
      if (r && r.version) {
        out.className = ok ? "ok" : "notok";
        out.textContent = "Candidate " + r.name + " " + r.version + (ok
          ? ": verify passed. QA can approve it on the models page."
          : ": verify failed (" + String(r.verify || "not run").replace(/^FAILED: /, "") + "). It cannot be approved; label more photos or train longer.");
      }
    }
    if (s.state === "running") jobTimer = setTimeout(pollJob, 1000);
  }
  function renderResult(r) {
    const box = $("job-result"); box.replaceChildren();
    if (r.acceptance) {
      box.append(EI.el("p", { class: r.acceptance.passed ? "ok" : "notok" }, r.acceptance.passed ? "Acceptance criteria met" : "Acceptance FAILED: " + r.acceptance.failures.join("; ")));
      for (const role of ["candidate", "approved"]) if (r[role]) {
        const l = r[role].line;
        if (l) box.append(EI.el("p", { "data-line": role }, role + " " + r[role].version + " through the recipe, " + l.items + " items: critical escapes " + l.critical_escapes + "/" + l.critical_items + ", false rejects " + l.false_rejects + "/" + l.expected_pass));
        box.append(EI.el("h3", {}, role + " " + r[role].version), EI.table(r[role].int8 || r[role]));
      }
    }
    if (r.diffs) {
      box.append(EI.el("p", {}, r.differ + " of " + r.images + " recorded images get a different verdict."));
      const grid = EI.el("div", { class: "diffs" });
      for (const d of r.diffs.slice(0, 40)) grid.append(EI.el("figure", { class: "tile" }, EI.el("img", { src: "/images/" + d.image + ".png", alt: "differs" }),
        EI.el("small", {}, "approved " + d.verdicts.approved + " · candidate " + d.verdicts.candidate)));
      box.append(grid);
    }
  }
  document.addEventListener("click", (ev) => { const a = ev.target.closest("[data-job]"); if (a && $("job")) { ev.preventDefault(); showJob(a.dataset.job); } });
  const tr = $("train");
  const startWhy = () => {  // the proposed start of the chosen dataset, in words
    const o = $("train-dataset") && $("train-dataset").selectedOptions[0];
    if (!o || !$("train-start-why")) return;
    const names = { shipped: "the shipped detector", imagenet: "an ImageNet backbone" };
    $("train-start-why").textContent = "Proposed start: " + (names[o.dataset.start] || o.dataset.start) + " (" + o.dataset.why + ").";
  };
  if (tr) { $("train-dataset").addEventListener("change", startWhy); startWhy(); }
  if (tr) tr.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form(tr);
    try {
      const r = await EI.api("POST", "/api/tech/train", { dataset: f.dataset, product: f.product || null, epochs: +f.epochs, imgsz: +f.imgsz, batch: +f.batch, minutes: f.minutes ? +f.minutes : null, min_examples: +f.min_examples, start: f.start || null });
      EI.toast("Training started"); showJob(r.job);
    } catch (e) { EI.toast(e.message, true); }
  });
  const cancel = $("job-cancel");
  if (cancel) cancel.addEventListener("click", async () => {
    try { await EI.api("POST", "/api/jobs/" + jobId + "/cancel", {}); EI.toast("Cancelled"); pollJob(); } catch (e) { EI.toast(e.message, true); }
  });

  // ---- models: evaluate, shadow, approve, roll back
  const models = $("models");
  if (models) models.addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-act]"); if (!b) return;
    const row = b.closest("tr"), name = row.dataset.name, version = row.dataset.version, act = b.dataset.act;
    if (act === "evaluate" || act === "shadow") {
      try { const r = await EI.api("POST", "/api/models/" + act, { name, candidate: version, test_set: ($("testset") || {}).value || null }); showJob(r.job); }
      catch (e) { EI.toast(e.message, true); }
      return;
    }
    if (act === "discard") {
      const reason = prompt("Discard " + name + " " + version + "? Reason (audit trail):");
      if (reason === null) return;
      try { await EI.api("POST", "/api/models/" + name + "/" + version + "/discard", { reason }); EI.toast("Discarded"); setTimeout(() => location.reload(), 400); }
      catch (e) { EI.toast(e.message, true); }
      return;
    }
    EI.esign(act === "approve" ? { url: "/api/models/" + name + "/" + version + "/approve", what: "Approve " + name + " " + version + " for production", meaning: "approval: release model for production" }
                               : { url: "/api/models/" + name + "/rollback", what: "Roll back " + name + " from " + version, meaning: "approval: roll back production model" });
  });
  const rs = $("btn-sign-report");
  if (rs) rs.addEventListener("click", () => {
    EI.esign({ url: "/api/reports/" + $("report").dataset.batch + "/sign" });
  });
  const devs = $("deviation-list");
  if (devs) {
    devs.addEventListener("submit", async (ev) => {
      const f = ev.target.closest("form.investigate"); if (!f) return;
      ev.preventDefault();
      try {
        await EI.api("POST", "/api/deviations/" + f.dataset.id + "/investigate",
          { root_cause: f.root_cause.value, corrective_action: f.corrective_action.value });
        EI.toast("Investigation recorded"); setTimeout(() => location.reload(), 400);
      } catch (e) { EI.toast(e.message, true); }
    });
    devs.addEventListener("click", (ev) => {
      const b = ev.target.closest(".close-deviation"); if (!b) return;
      EI.esign({ url: "/api/qa/deviations/" + b.dataset.id + "/close", what: "Close deviation #" + b.dataset.id });
    });
  }
  const pr = $("print");
  if (pr) pr.addEventListener("click", () => window.print());

  // ---- admin
  const nu = $("new-user");
  if (nu) nu.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await EI.api("POST", "/api/admin/users", form(nu)); EI.toast("User created"); setTimeout(() => location.reload(), 500); }
    catch (e) { EI.toast(e.message, true); }
  });
  const users = $("users");
  if (users) users.addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-op]"); if (!b) return;
    const u = b.closest("tr").dataset.user;
    const reason = prompt("Reason for this change (audit trail):");
    if (!reason) return;
    try { await EI.api("POST", "/api/admin/users/" + u + "/" + b.dataset.op, { reason }); location.reload(); }
    catch (e) { EI.toast(e.message, true); }
  });
})();
