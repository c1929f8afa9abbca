/* Recipe editor: the tools' parameter forms read back as a recipe, messages beside the fields,
   regions drawn and moved on a stored image (canvas), the preview job and its changed verdicts,
   save draft; on the recipes page, QA's approval with the e-signature dialog. No framework. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  // ---- recipes page: approve a draft (QA, e-signature)
  const list = $("recipes");
  if (list) list.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-act=approve]"); if (!b) return;
    const row = b.closest("tr"), name = row.dataset.name, v = row.dataset.version;
    EI.esign({
      url: "/api/recipes/" + encodeURIComponent(name) + "/" + v + "/approve",
      what: "Approve recipe " + name + " v" + v + ": the line runs it from the next changeover.",
      done: "Signed: approved",
    });
  });

  const ed = $("recipe-editor");
  if (!ed) return;
  const srcName = ed.dataset.name, srcVersion = ed.dataset.version;

  // ---- the form read back as a recipe
  class Invalid extends Error {}
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  function num(s, kind) {
    s = String(s).trim();
    if (s === "") return null;
    const n = Number(s.replace(",", "."));
    return Number.isFinite(n) ? n : s;  // not a number: the server says so beside the field
  }
  function readField(f) {
    const kind = f.dataset.kind, ins = [...f.querySelectorAll("input, select")];
    if (kind === "bool") return ins[0].checked;
    if (kind === "choice") return ins[0].value === "" ? null : ins[0].value;
    if (kind === "int" || kind === "float") return num(ins[0].value, kind);
    if (kind === "text") return ins[0].value === "" && f.dataset.optional ? null : ins[0].value;
    if (kind === "pair" || kind === "region") {
      const parts = ins.map((i) => num(i.value, kind));
      if (parts.every((p) => p === null)) return null;
      return parts.map((p) => (p === null ? "" : p));
    }
    const s = ins[0].value.trim();
    if (s === "") return null;
    try { return JSON.parse(s); } catch (e) {
      throw new Invalid(f.dataset.key + "|is not written as a value this field takes, such as " + f.dataset.default);
    }
  }
  // the server keys a problem by the tool's place in the list sent (`tools.2.x`); a removed
  // tool is not sent, so the places after it move: this maps each back to its form
  let sentAt = [];
  function readRecipe() {
    const tools = [];
    sentAt = [];
    for (const fsl of document.querySelectorAll("fieldset.tool")) {
      if (fsl.querySelector(".remove-tool").checked) continue;
      sentAt.push(fsl.dataset.i);
      if (fsl.dataset.raw) { tools.push(JSON.parse(fsl.dataset.raw)); continue; }
      const t = { type: fsl.dataset.type };
      if (fsl.dataset.toolName) t.name = fsl.dataset.toolName;
      for (const f of fsl.querySelectorAll(".field")) {
        const key = f.dataset.key.split(".").pop();
        const v = readField(f);
        const def = JSON.parse(f.dataset.default);
        // keys the recipe did not state stay unstated while they keep their default
        if (!f.dataset.present && (same(v, def) || (v === null && def === null))) continue;
        if (v === null && !f.dataset.optional && !f.dataset.present) continue;
        t[key] = v;
      }
      tools.push(t);
    }
    return { name: $("name").value.trim(), description: $("description").value, tools, image: currentSha() };
  }
  function showErrors(fields, asSent = true) {
    document.querySelectorAll("[data-error-for]").forEach((s) => { s.textContent = ""; });
    document.querySelectorAll(".field.bad").forEach((f) => f.classList.remove("bad"));
    let first = null;
    for (const [sent, msg] of Object.entries(fields || {})) {
      const key = asSent ? sent.replace(/^tools\.(\d+)\./, (m, i) => "tools." + (sentAt[+i] ?? i) + ".") : sent;
      const span = document.querySelector('[data-error-for="' + key + '"]') || document.querySelector('[data-error-for="recipe"]');
      span.textContent = msg;
      const f = span.closest(".field"); if (f) f.classList.add("bad");
      const d = span.closest("details"); if (d) d.open = true;
      first = first || span;
    }
    if (first) first.scrollIntoView({ block: "center" });
  }
  async function send(url, extra) {
    let body;
    try { body = { ...readRecipe(), ...extra }; }
    catch (e) {
      if (!(e instanceof Invalid)) throw e;
      const [key, msg] = e.message.split("|"); showErrors({ [key]: msg }, false); throw new Error("Please correct the field marked.");
    }
    try { const r = await EI.api("POST", url, body); showErrors({}); return r; }
    catch (e) {
      if (e.detail && e.detail.fields) { showErrors(e.detail.fields); throw new Error(e.detail.message); }
      throw e;
    }
  }
  const base = "/" + encodeURIComponent(srcName) + "/" + srcVersion;

  // ---- save draft
  const save = $("save-draft");
  if (save) save.addEventListener("click", async () => {
    try {
      const r = await send("/api/tech/recipes" + base + "/draft", { reason: $("save-reason").value });
      const msg = r.new ? "Saved as " + r.name + " v" + r.version + " (draft, " + r.changes.length + " change(s) against the approved version). QA approves it on the Recipes page."
                        : "Nothing new to save: this is " + r.name + " v" + r.version + " (" + r.status + ").";
      $("save-result").textContent = msg; $("save-result").dataset.version = r.version;
      EI.toast(r.new ? "Draft saved" : "No change to save");
    } catch (e) { EI.toast(e.message, true); }
  });

  // ---- preview: a job; its result lists the images whose verdict changes
  let timer = null;
  const verdictCell = (j) => EI.el("td", { class: j.verdict === "PASS" ? "ok" : "notok" }, j.verdict + (j.reasons.length ? " " + j.reasons.join(", ") : ""));
  function render(r) {
    const rows = $("preview-rows"); rows.replaceChildren();
    $("preview-summary").textContent = r.verdict_changes + " of " + r.images + " stored image(s) change verdict against " + r.against.name + " v" + r.against.version +
      (r.changed > r.verdict_changes ? "; " + (r.changed - r.verdict_changes) + " more keep the verdict with other reasons" : "") + "." +
      (r.images && r.recorded_agree < r.images ? " The approved version itself gives another verdict than the line recorded on " + (r.images - r.recorded_agree) + " image(s) (a model changed since, or a duplicate serial, which the preview cannot check)." : "") +
      (r.skipped && r.skipped.length ? " " + r.skipped.length + " image(s) not judged: " + r.skipped[0].why + "." : "");
    if (r.rows.length) rows.append(EI.el("tr", {}, EI.el("th", {}, "Image"), EI.el("th", {}, "Approved v" + r.against.version), EI.el("th", {}, "Draft"), EI.el("th", {}, "Change")));
    for (const x of r.rows) rows.append(EI.el("tr", { "data-image": x.image, "data-change": x.change },
      EI.el("td", {}, EI.el("a", { href: "/images/" + x.image + ".png", target: "_blank" }, EI.el("img", { class: "thumb-sm", src: "/images/" + x.image + ".png", alt: "image " + x.item, loading: "lazy" }))),
      verdictCell(x.old), verdictCell(x.new), EI.el("td", {}, x.change === "verdict" ? "verdict" : "reasons")));
    const ch = r.challenge, ct = $("preview-challenge-rows"); ct.replaceChildren();
    $("preview-challenge-title").hidden = !ch;
    if (ch && ch.rows) {
      ct.append(EI.el("tr", {}, EI.el("th", {}, "Unit"), EI.el("th", {}, "Expected"), EI.el("th", {}, "Approved"), EI.el("th", {}, "Draft")));
      for (const u of ch.rows) ct.append(EI.el("tr", { "data-unit": u.unit, class: u.ok ? "" : "bad-row" }, EI.el("td", {}, u.unit),
        EI.el("td", {}, u.expect + (u.expect_reason ? " " + u.expect_reason : "")), verdictCell(u.old), verdictCell(u.new)));
      ct.append(EI.el("tr", {}, EI.el("td", { colspan: "4", class: ch.draft_passed ? "ok" : "notok", id: "preview-challenge-verdict" },
        ch.draft_passed ? "The draft passes the challenge." : "The draft FAILS the challenge: " + ch.why)));
    } else if (ch) ct.append(EI.el("tr", {}, EI.el("td", {}, ch.why || "no challenge set")));
  }
  async function poll(jid) {
    let s;
    try { s = await EI.api("GET", "/api/jobs/" + jid); } catch (e) { EI.toast(e.message, true); return; }
    $("preview-state").textContent = s.state;
    const last = (s.log || "").trim().split("\n").pop() || "";
    try { const p = JSON.parse(last); if (p.stage === "preview") $("preview-progress").textContent = p.images + " / " + p.of + " images"; else if (p.stage === "challenge") $("preview-progress").textContent = "challenge units…"; } catch (e) { /* a log line */ }
    $("preview-error").textContent = s.explanation || "";
    if (s.result) { $("preview-progress").textContent = ""; render(s.result); }
    if (s.state === "running") timer = setTimeout(() => poll(jid), 1000);
  }
  $("do-preview").addEventListener("click", async () => {
    try {
      const r = await send("/api/recipes" + base + "/preview", { limit: +$("preview-n").value || 50, challenge: $("preview-challenge").checked });
      $("preview").hidden = false; $("preview-rows").replaceChildren(); $("preview-summary").textContent = ""; $("preview-challenge-rows").replaceChildren();
      $("preview").dataset.job = r.job; clearTimeout(timer); poll(r.job);
    } catch (e) { EI.toast(e.message, true); }
  });

  // ---- a new tool: its type's form (defaults filled in) appended after the recipe's tools;
  // it runs last, as a recipe's tools run in order
  const add = $("add-tool");
  if (add) add.addEventListener("click", () => {
    const type = $("add-tool-type").value;
    const tpl = document.querySelector('template[data-tool-template="' + type + '"]');
    const i = String(document.querySelectorAll("#recipe-form fieldset.tool").length);
    const box = document.createElement("div");
    box.innerHTML = tpl.innerHTML.replaceAll("__I__", i);
    const fsl = box.firstElementChild;
    $("add-tool-row").before(fsl);
    fsl.scrollIntoView({ block: "nearest" });
    const first = fsl.querySelector("input, select"); if (first) first.focus();
  });

  // ---- regions on a stored image: Draw, then drag; drag inside a region to move it
  const cv = $("roi-canvas");
  function currentSha() { const b = document.querySelector("#ref-images .ref.on"); return b ? b.dataset.sha : null; }
  let draw = () => {};  // regions are drawn only where there is a stored image
  document.addEventListener("input", (ev) => {
    const f = ev.target.closest(".field"); if (!f) return;
    f.classList.remove("bad");  // the message was about the value now being changed
    const e = f.querySelector("[data-error-for]"); if (e) e.textContent = "";
    if (f.dataset.kind === "region") draw();
  });
  if (!cv) return;
  const g = cv.getContext("2d"), img = new Image();
  let active = null, drag = null;
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  const regionFields = () => [...document.querySelectorAll('.field[data-kind="region"]')].filter((f) => !f.closest("fieldset.tool").querySelector(".remove-tool").checked);
  function boxOf(f) {
    const v = [...f.querySelectorAll("input")].map((i) => Number(i.value));
    return v.every((x) => Number.isFinite(x)) && [...f.querySelectorAll("input")].every((i) => i.value !== "") ? v : null;
  }
  function setBox(f, b) {
    const ins = f.querySelectorAll("input");
    b.forEach((v, j) => { ins[j].value = Math.round(v); });
  }
  function pos(ev) {
    const r = cv.getBoundingClientRect();
    return [clamp((ev.clientX - r.left) * cv.width / r.width, 0, cv.width), clamp((ev.clientY - r.top) * cv.height / r.height, 0, cv.height)];
  }
  draw = () => {
    g.clearRect(0, 0, cv.width, cv.height);
    if (img.complete && img.naturalWidth) g.drawImage(img, 0, 0);
    g.lineWidth = Math.max(2, cv.width / 320); g.font = "bold " + Math.max(14, cv.width / 45) + "px sans-serif";
    for (const f of regionFields()) {
      const b = boxOf(f); if (!b) continue;
      const on = f.dataset.key === active;
      g.strokeStyle = on ? "#ffcc00" : "#29c5ff"; g.setLineDash(on ? [10, 5] : []);
      g.strokeRect(b[0], b[1], b[2], b[3]);
      g.fillStyle = g.strokeStyle; g.fillText(f.dataset.key.replace(/^tools\.(\d+)\./, (m, i) => "#" + (+i + 1) + " "), b[0] + 4, b[1] > 20 ? b[1] - 6 : b[1] + 18);
    }
    g.setLineDash([]);
    if (drag && drag.box) { g.strokeStyle = "#fff"; g.strokeRect(...drag.box); }
  };
  function field(key) { return document.querySelector('.field[data-key="' + key + '"]'); }
  document.addEventListener("click", (ev) => {
    const d = ev.target.closest("[data-draw]"), c = ev.target.closest("[data-clear]"), ref = ev.target.closest("#ref-images .ref");
    if (d) { active = d.dataset.draw; $("roi-hint").textContent = "Drag on the image to draw " + active + "; drag inside it to move it."; cv.scrollIntoView({ block: "nearest" }); draw(); }
    if (c) { field(c.dataset.clear).querySelectorAll("input").forEach((i) => { i.value = ""; }); draw(); }
    if (ref) { document.querySelectorAll("#ref-images .ref").forEach((b) => b.classList.toggle("on", b === ref)); load(); }
  });
  cv.addEventListener("pointerdown", (ev) => {
    if (!ed.dataset.edit) return;
    cv.setPointerCapture(ev.pointerId);
    const [x, y] = pos(ev);
    const inside = regionFields().reverse().find((f) => { const b = boxOf(f); return b && x >= b[0] && x <= b[0] + b[2] && y >= b[1] && y <= b[1] + b[3]; });
    if (inside && (!active || inside.dataset.key === active)) { active = inside.dataset.key; drag = { move: boxOf(inside), x, y }; draw(); return; }
    if (active) drag = { x, y, box: null };
  });
  cv.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const [x, y] = pos(ev);
    if (drag.move) {
      const [bx, by, bw, bh] = drag.move;
      setBox(field(active), [clamp(bx + x - drag.x, 0, cv.width - bw), clamp(by + y - drag.y, 0, cv.height - bh), bw, bh]);
    } else drag.box = [Math.min(x, drag.x), Math.min(y, drag.y), Math.abs(x - drag.x), Math.abs(y - drag.y)];
    draw();
  });
  cv.addEventListener("pointerup", () => {
    if (drag && drag.box && drag.box[2] > 3 && drag.box[3] > 3) setBox(field(active), drag.box);
    drag = null; draw();
  });
  function load() {
    const sha = currentSha(); if (!sha) return;
    img.onload = () => { cv.width = img.naturalWidth; cv.height = img.naturalHeight; cv.dataset.loaded = sha; draw(); };
    img.onerror = () => EI.toast("The image could not be loaded.", true);
    img.src = "/images/" + sha + ".png";
  }
  load();
})();
