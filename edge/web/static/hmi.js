/* Operator HMI: live state over Server-Sent Events, drawn without page reloads. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("frame"), ctx = canvas.getContext("2d");
  let last = null, lastSeq = -1, loading = false, batch = null;
  const canAck = $("alarms").dataset.canAck === "1";

  function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + " %"; }

  function drawFrame(item, img) {
    const W = canvas.width, H = canvas.height;
    ctx.fillStyle = "#111"; ctx.fillRect(0, 0, W, H);
    if (!img) return;
    const s = Math.min(W / img.width, H / img.height);
    const ox = (W - img.width * s) / 2, oy = (H - img.height * s) / 2;
    ctx.drawImage(img, ox, oy, img.width * s, img.height * s);
    if (typeof EIHeat !== "undefined") EIHeat.draw(ctx, item.findings, ox, oy, s);  // anomaly heat maps
    ctx.lineWidth = 3; ctx.font = "bold 18px sans-serif";
    const views = item.views || [];  // several cameras: their pictures side by side, named
    views.forEach((name, k) => label(name, ox + (k * img.width / views.length) * s + 4, oy + 22, "#555"));
    for (const f of item.findings || []) {
      if (!f.bbox) continue;
      const [x, y, w, h] = f.bbox;
      ctx.strokeStyle = f.action === "warn" ? "#f5c400" : "#ff3b30";
      ctx.strokeRect(ox + x * s, oy + y * s, w * s, h * s);
      label(f.code + (f.score ? " " + f.score.toFixed(2) : ""), ox + x * s, oy + y * s, ctx.strokeStyle);
      if (f.detail && f.detail.expected !== undefined) printed(f.detail, ox + x * s, oy + (y + h) * s + 24);
    }
    for (const c of item.codes || []) {
      if (!c.bbox) continue;
      const [x, y, w, h] = c.bbox;
      ctx.strokeStyle = "#29c5ff";
      ctx.strokeRect(ox + x * s, oy + y * s, w * s, h * s);
      const txt = (c.text || "").replace(/\x1d/g, "<GS>");
      label(txt.slice(0, 40) + (c.grade !== null ? "  grade " + EI.GRADE(c.grade) : ""), ox + x * s, oy + (y + h) * s + 22, "#29c5ff");
    }
  }
  // an OCV finding: what was read, then what must be printed with the differing characters in red
  function printed(d, x, y) {
    const bad = new Set(d.differs || []);
    const want = String(d.expected).replace(/ /g, "");
    const read = "read " + (d.read || "∅") + "   expected ";
    const w = ctx.measureText(read + want).width + 8;
    x = Math.max(0, Math.min(x, canvas.width - w));
    y = Math.max(22, Math.min(y, canvas.height));
    ctx.fillStyle = "rgba(0,0,0,.8)"; ctx.fillRect(x, y - 22, w, 22);
    ctx.fillStyle = "#fff"; ctx.fillText(read, x + 4, y - 5);
    let cx = x + 4 + ctx.measureText(read).width;
    for (let i = 0; i < want.length; i++) {
      ctx.fillStyle = bad.has(i) ? "#ff3b30" : "#7CFC00";
      ctx.fillText(want[i], cx, y - 5);
      cx += ctx.measureText(want[i]).width;
    }
  }
  function label(text, x, y, color) {
    const w = ctx.measureText(text).width + 8;
    x = Math.max(0, Math.min(x, canvas.width - w));
    y = Math.max(22, Math.min(y, canvas.height));
    ctx.fillStyle = "rgba(0,0,0,.7)"; ctx.fillRect(x, y - 22, w, 22);
    ctx.fillStyle = color; ctx.fillText(text, x + 4, y - 5);
  }
  function showItem(item) {
    const v = $("verdict");
    v.textContent = item.verdict + (item.reasons.length ? " · " + item.reasons.join(", ") : "") + "  #" + item.seq;
    v.className = "verdict " + (item.verdict === "PASS" ? "pass" : "reject");
    if (item.seq === lastSeq || loading) return;
    loading = true;
    const img = new Image();
    img.onload = () => { loading = false; lastSeq = item.seq; drawFrame(item, img); };
    img.onerror = () => { loading = false; lastSeq = item.seq; drawFrame(item, null); };
    img.src = "/api/line/frame/" + item.seq + ".jpg";
  }
  function render(s) {
    const st = s.stats;
    $("state").textContent = s.state;
    $("state").className = "state st-" + String(s.state).toLowerCase();
    batch = s.batch;
    $("lot").textContent = s.batch ? s.batch.lot : "none";
    $("product").textContent = s.product || (s.batch && s.batch.gtin) || "—";
    $("recipe").textContent = s.recipe + (s.recipe_version ? " v" + s.recipe_version : "");
    $("rate").textContent = Math.round(st.rate_per_min);
    $("yield").textContent = pct(st.yield);
    $("p99").textContent = st.p99_ms === null ? "—" : st.p99_ms;
    $("c-items").textContent = st.items;
    $("c-good").textContent = st.passed;
    $("c-bad").textContent = st.rejected;
    const rs = $("reasons"); rs.replaceChildren();
    for (const [r, n] of Object.entries(st.by_reason || {}).slice(0, 5)) rs.append(EI.el("li", {}, EI.el("span", {}, r), EI.el("b", {}, String(n))));
    renderAlarms(s.alarms || []);
    renderDeviations(s.deviations || []);
    renderRejects(s.rejects || []);
    renderGrades(s.grades || []);
    renderTrends();
    renderJobs(s.jobs || []);
    const start = $("btn-start"), stop = $("btn-stop");
    if (stop) stop.disabled = !s.batch;
    if (start) start.textContent = s.batch ? "New batch" : "Start batch";
    if (s.last) showItem(s.last);
    renderChangeover(s.changeover, s.state);
  }
  function renderAlarms(alarms) {
    const box = $("alarms"); box.replaceChildren();
    if (!alarms.length) { box.append(EI.el("div", { class: "alarm none" }, "No active alarms")); return; }
    for (const a of alarms) {
      const row = EI.el("div", { class: "alarm sev-" + a.severity + (a.acked_by ? " acked" : ""), "data-code": a.code },
        EI.el("div", { class: "msg" }, EI.el("b", {}, a.code), " ", a.message, a.acked_by ? EI.el("small", {}, " ack " + a.acked_by) : null));
      if (canAck && !a.acked_by) row.append(EI.el("button", { class: "btn ack", type: "button", onclick: () => ack(a.code) }, "ACK"));
      box.append(row);
    }
  }
  let devKey = "";
  function renderDeviations(devs) {
    const key = devs.map((d) => d.id + d.state).join(",");
    if (key === devKey) return;
    devKey = key;
    const box = $("deviations"); box.replaceChildren();
    for (const d of devs) {
      const row = EI.el("div", { class: "deviation" + (d.acked_by ? " acked" : ""), "data-id": String(d.id) },
        EI.el("div", { class: "msg" }, EI.el("b", {}, "Deviation " + d.measure), " ", d.rule + " since item " + d.since_index,
          EI.el("small", {}, " " + (d.cause || "")), EI.el("small", {}, " → " + (d.action || ""))),
        EI.el("img", { src: "/api/line/deviations/" + d.id + "/chart.svg", alt: "control chart of " + d.measure, class: "spc-chart" }));
      if (canAck && !d.acked_by) row.append(EI.el("button", { class: "btn ack", type: "button", onclick: () => ackDeviation(d.id) }, "ACK"));
      box.append(row);
    }
  }
  async function ackDeviation(id) {
    try { await EI.api("POST", "/api/line/deviations/" + id + "/ack", {}); EI.toast("Deviation " + id + " acknowledged"); }
    catch (e) { EI.toast(e.message, true); }
  }
  async function ack(code) {
    try { await EI.api("POST", "/api/line/alarms/" + encodeURIComponent(code) + "/ack", {}); EI.toast("Alarm " + code + " acknowledged"); }
    catch (e) { EI.toast(e.message, true); }
  }
  let rejectKey = "";
  function renderRejects(rejects) {
    const key = rejects.map((r) => r.seq).join(",");
    if (key === rejectKey) return;
    rejectKey = key;
    const g = $("rejects"); g.replaceChildren();
    if (!rejects.length) g.append(EI.el("div", { class: "empty" }, "No rejects yet"));
    for (const r of rejects) {
      const fig = EI.el("figure", { class: "thumb" },
        r.image ? EI.el("img", { src: "/images/" + r.image + ".png", alt: "reject " + r.seq, loading: "lazy" }) : EI.el("div", { class: "noimg" }, "no image"),
        EI.el("figcaption", {}, r.reasons.join(", ")));
      g.append(fig);
    }
  }
  // the last hour's small charts: server-side SVG, fetched again at most every 10 s
  let trendAt = Date.now();
  function renderTrends() {
    if (Date.now() - trendAt < 10000) return;
    trendAt = Date.now();
    for (const name of ["yield", "reasons"]) {
      const img = document.querySelector("#trend-" + name + " img");
      if (img) img.src = "/api/line/trend/" + name + ".svg?t=" + trendAt;
    }
  }
  function renderGrades(gs) {
    const c = $("grades"), g = c.getContext("2d");
    const W = c.width, H = c.height;
    g.clearRect(0, 0, W, H);
    g.strokeStyle = "#555"; g.lineWidth = 1;
    for (const lv of [1, 2, 3]) { const y = H - (lv / 4) * H; g.beginPath(); g.moveTo(0, y); g.lineTo(W, y); g.stroke(); }
    if (!gs.length) { $("grade-last").textContent = "—"; return; }
    g.strokeStyle = "#29c5ff"; g.lineWidth = 2; g.beginPath();
    gs.forEach(([, v], i) => { const x = gs.length > 1 ? (i / (gs.length - 1)) * W : W; const y = H - (v / 4) * H; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
    const lastG = gs[gs.length - 1][1];
    $("grade-last").textContent = EI.GRADE(lastG) + " (" + lastG.toFixed(1) + ")";
  }
  let jobsKey = "";
  function renderJobs(jobs) {
    const key = jobs.map((j) => j.lot).join(",");
    if (key === jobsKey) return;
    jobsKey = key;
    const picks = $("picks"); if (!picks) return;
    picks.querySelectorAll(".mes").forEach((e) => e.remove());
    for (const j of jobs) picks.prepend(EI.el("button", { type: "button", class: "btn pick mes", "data-lot": j.lot, "data-gtin": j.gtin || "", "data-expiry": j.expiry || "", "data-source": "mes" }, "MES job: lot " + j.lot));
  }

  let source = "hmi";
  function wireBatch() {
    const start = $("btn-start"), stop = $("btn-stop");
    if (!start) return;
    start.addEventListener("click", () => { $("start-error").textContent = ""; source = "hmi"; $("dlg-start").showModal(); });
    stop.addEventListener("click", () => { $("stop-lot").textContent = batch ? batch.lot : ""; $("dlg-stop").showModal(); });
    $("picks").addEventListener("click", (ev) => {
      const b = ev.target.closest(".pick"); if (!b) return;
      $("in-lot").value = b.dataset.lot; $("in-gtin").value = b.dataset.gtin; $("in-expiry").value = b.dataset.expiry;
      source = b.dataset.source || "hmi";
    });
    $("form-start").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await EI.api("POST", "/api/line/batch/start", { lot: $("in-lot").value, gtin: $("in-gtin").value || null, expiry: $("in-expiry").value || null, source });
        $("dlg-start").close(); EI.toast("Batch " + r.batch + " started");
      } catch (e) { $("start-error").textContent = e.message; }
    });
    $("form-stop").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await EI.api("POST", "/api/line/batch/stop", { reason: $("in-stop-reason").value || null });
        $("dlg-stop").close(); EI.toast("Batch " + r.batch + " stopped: report ready");
      } catch (e) { EI.toast(e.message, true); $("dlg-stop").close(); }
    });
  }

  // ------------------------------------------------------------ changeover at the touchscreen
  // Product (approved only), lot and expiry checked by the appliance as GS1 AI (10) and (17)
  // with the reason beside the field, then the changeover: items in flight, the challenge unit
  // by unit (from the live state), the result, and the batch in EXECUTE.
  let co = null;  // {gtin, lot, since}: the changeover this panel started (after number `since`)
  let coProduct = null, coTimer = null, coProducts = [];
  const CO_FIELDS = ["scan", "lot", "expiry"];
  function coError(field, msg) { const e = $("co-" + field + "-error"); if (e) e.textContent = msg || ""; }
  async function loadProducts() {
    const box = $("co-products");
    try { coProducts = await EI.api("GET", "/api/line/products"); }
    catch (e) { box.replaceChildren(EI.el("p", { class: "error" }, e.message)); return; }
    box.replaceChildren();
    if (!coProducts.length) box.append(EI.el("p", { class: "hint" }, "No approved product: QA approves products on the Products page."));
    for (const p of coProducts) {
      box.append(EI.el("button", { type: "button", class: "btn product", role: "option", "data-gtin": p.gtin, onclick: () => chooseProduct(p.gtin) },
        p.name, EI.el("small", {}, "GTIN " + p.gtin + " · recipe " + p.recipe + " v" + p.recipe_version + " · " + p.challenge_units + " challenge units")));
    }
    if (coProduct) chooseProduct(coProduct);
  }
  function chooseProduct(gtin) {
    coProduct = coProducts.some((p) => p.gtin === gtin) ? gtin : null;
    document.querySelectorAll("#co-products .product").forEach((b) => {
      b.classList.toggle("on", b.dataset.gtin === coProduct); b.setAttribute("aria-selected", b.dataset.gtin === coProduct ? "true" : "false");
    });
    coReady();
  }
  function coReady() {
    $("co-start").disabled = !(coProduct && $("co-lot").value.trim() && $("co-expiry").value.trim()) || !!(co && (!co.done || co.batch));
  }
  // the appliance's own checks, so the words are the ones MES and the shell get
  async function coCheck(extra) {
    const body = { lot: $("co-lot").value || null, expiry: $("co-expiry").value || null, ...extra };
    let r;
    try { r = await EI.api("POST", "/api/line/batch/check", body); } catch (e) { coError("scan", e.message); return null; }
    if (extra && extra.scan !== undefined) {
      coError("scan", r.problems.scan || "");
      if (r.values.lot) $("co-lot").value = r.values.lot;
      if (r.values.expiry) $("co-expiry").value = r.values.expiry;
      if (r.values.gtin) {
        const g = r.values.gtin.padStart(14, "0");
        if (coProducts.some((p) => p.gtin === g)) chooseProduct(g);
        else if (!r.problems.gtin) coError("scan", "GTIN " + g + " has no approved product on this line");
      }
      if (r.problems.gtin) coError("scan", "GTIN: " + r.problems.gtin);
    }
    for (const f of ["lot", "expiry"]) coError(f, $("co-" + f).value.trim() ? (r.problems[f] || "") : "");
    coReady();
    return r;
  }
  function coPhase(p) {
    if (!p) return "";
    if (p.phase === "checking") return "Checking the product…";
    if (p.phase === "waiting") return "Waiting for " + p.in_flight + " item" + (p.in_flight === 1 ? "" : "s") + " in flight…";
    if (p.phase === "camera") return "Setting the camera for " + (p.product || "the product") + "…";
    if (p.phase === "challenge") return "Challenge test: " + (p.units_done || 0) + " / " + (p.units_total || "…") + " units judged";
    if (p.phase === "started") return "Challenge passed: " + p.units_total + " units judged right.";
    if (p.phase === "refused") return "Changeover refused.";
    return p.phase;
  }
  function renderChangeover(p, state) {
    if (!co || !p || p.lot !== co.lot || (p.n || 0) <= co.since) return;
    $("co-progress").hidden = false;
    $("co-phase").textContent = coPhase(p);
    const frac = p.phase === "started" ? 1 : p.phase === "challenge" && p.units_total ? p.units_done / p.units_total : 0;
    $("co-bar").style.width = Math.round(frac * 100) + "%";
    const fails = p.failures || [];
    $("co-failures").replaceChildren(...fails.map((f) => EI.el("li", { "data-unit": f.unit },
      f.unit + ": expected " + f.expect + (f.expect_reason ? " " + f.expect_reason : "") + ", got " + f.verdict + " " + ((f.reasons || []).join(", ") || "-"))));
    if (p.phase === "started") {
      const res = $("co-result");
      res.className = state === "EXECUTE" || state === "Execute" ? "ok" : "";
      res.textContent = "Batch " + p.batch + (res.className === "ok" ? " is running: EXECUTE" : " started, line state " + state);
    }
  }
  function wireChangeover() {
    const btn = $("btn-changeover"); if (!btn) return;
    btn.addEventListener("click", () => {
      co = null; coProduct = null;
      for (const f of CO_FIELDS) { $("co-" + f).value = ""; coError(f, ""); }
      $("co-progress").hidden = true; $("co-result").textContent = ""; $("co-result").className = "";
      $("co-close").textContent = "Cancel";
      loadProducts(); coReady();
      $("dlg-changeover").showModal();
    });
    for (const f of ["lot", "expiry"]) {
      $("co-" + f).addEventListener("input", () => { coReady(); clearTimeout(coTimer); coTimer = setTimeout(() => coCheck(), 500); });
      $("co-" + f).addEventListener("change", () => coCheck());
    }
    $("co-scan").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); coCheck({ scan: $("co-scan").value }); } });
    $("co-scan").addEventListener("change", () => $("co-scan").value && coCheck({ scan: $("co-scan").value }));
    $("form-changeover").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const chk = await coCheck();
      if (!chk || chk.problems.lot || chk.problems.expiry) return;
      co = { gtin: coProduct, lot: $("co-lot").value.trim(), since: last && last.changeover ? last.changeover.n || 0 : 0, done: false };
      coReady();
      $("co-progress").hidden = false; $("co-phase").textContent = "Checking the product…";
      $("co-failures").replaceChildren(); $("co-result").textContent = ""; $("co-bar").style.width = "0";
      try {
        const r = await EI.api("POST", "/api/line/batch/changeover", { gtin: co.gtin, lot: co.lot, expiry: $("co-expiry").value.trim() });
        co.done = true; co.batch = r.batch;
        $("co-close").textContent = "Close";
        EI.toast("Batch " + r.batch + " started with " + r.recipe + " v" + r.recipe_version);
        if (last) renderChangeover(last.changeover, last.state);
      } catch (e) {
        co.done = true;
        const m = /^(lot|expiry|gtin): (.*)$/.exec(e.message);
        if (m && m[1] !== "gtin") { coError(m[1], m[2]); $("co-progress").hidden = true; }
        else { $("co-result").className = "bad"; $("co-result").textContent = e.message; }
      }
      coReady();
    });
  }

  function connect() {
    const es = new EventSource("/api/line/events");
    es.addEventListener("state", (ev) => { $("conn").className = "conn ok"; last = JSON.parse(ev.data); render(last); });
    es.onerror = () => { $("conn").className = "conn lost"; };
  }
  wireBatch();
  wireChangeover();
  drawFrame({}, null);
  fetch("/api/line/state", { credentials: "same-origin" }).then((r) => r.ok ? r.json() : null).then((s) => s && render(s));
  connect();
})();
