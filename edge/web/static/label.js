/* Canvas box editor: drag to draw, tap to select, set class, delete, undo/redo, zoom and pan,
   "good, no defects", save. Pointer events (touch and mouse); keyboard shortcuts on a desk.
   Boxes are kept in image pixels and clamped to the image as they are drawn. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const sha = $("editor").dataset.sha;
  const cv = $("canvas"), g = cv.getContext("2d");
  const img = new Image();
  const CLS_KEY = "ei.label.class";
  let boxes = [], sel = -1, drag = null, pan = null, spaceDown = false;
  let undo = [], redo = [];
  let zoom = 1, ox = 0, oy = 0;  // view: image pixel (ox, oy) at the canvas's top-left, zoom x
  const COLORS = ["#ff3b30", "#ff9500", "#ffcc00", "#34c759", "#5ac8fa", "#007aff", "#af52de", "#ff2d55", "#a2845e", "#29c5ff"];
  const classes = [...$("cls").options].map((o) => o.value);
  const color = (c) => COLORS[Math.max(0, classes.indexOf(c)) % COLORS.length];
  const W = () => img.width, H = () => img.height;
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

  // ---- the last class used is remembered across pages
  const last = localStorage.getItem(CLS_KEY);
  if (last && classes.includes(last)) $("cls").value = last;
  $("cls").addEventListener("change", () => localStorage.setItem(CLS_KEY, $("cls").value));
  const addClass = $("add-class");
  if (addClass) addClass.addEventListener("submit", async (ev) => {  // a new class for this product
    ev.preventDefault();
    try {
      const r = await EI.api("POST", "/api/tech/products/" + encodeURIComponent(addClass.dataset.product) + "/classes", { cls: $("new-cls").value });
      for (const c of r.classes) if (!classes.includes(c)) { classes.push(c); $("cls").append(EI.el("option", {}, c)); }
      $("cls").value = $("new-cls").value.trim().toLowerCase(); localStorage.setItem(CLS_KEY, $("cls").value);
      $("new-cls").value = ""; if ($("no-classes")) $("no-classes").hidden = true;
      EI.toast("Class added");
    } catch (e) { EI.toast(e.message, true); }
  });

  // ---- history: every change is undoable
  const snap = () => JSON.stringify(boxes);
  function change(fn) { undo.push(snap()); redo = []; fn(); dirty(true); draw(); }
  function undoOne() { if (!undo.length) return; redo.push(snap()); boxes = JSON.parse(undo.pop()); sel = -1; dirty(true); draw(); }
  function redoOne() { if (!redo.length) return; undo.push(snap()); boxes = JSON.parse(redo.pop()); sel = -1; dirty(true); draw(); }
  function dirty(d) { $("save").classList.toggle("primary", true); $("saved").dataset.dirty = d ? "1" : ""; if (d) $("saved").textContent = "Changed: not saved yet."; }

  // ---- view: zoom about a point, pan, kept on the image
  function fixView() {
    const vw = W() / zoom, vh = H() / zoom;
    ox = clamp(ox, 0, Math.max(0, W() - vw)); oy = clamp(oy, 0, Math.max(0, H() - vh));
    $("zoom-level").textContent = Math.round(zoom * 100) + " %";
  }
  function zoomAt(f, cx, cy) {  // cx, cy: canvas pixels that stay put
    const ix = ox + cx / zoom, iy = oy + cy / zoom;
    zoom = clamp(zoom * f, 1, 16);
    ox = ix - cx / zoom; oy = iy - cy / zoom; fixView(); draw();
  }
  function canvasPos(ev) {
    const r = cv.getBoundingClientRect();
    return [(ev.clientX - r.left) * cv.width / r.width, (ev.clientY - r.top) * cv.height / r.height];
  }
  function pos(ev) {  // image pixels, clamped to the image: a box never leaves it
    const [cx, cy] = canvasPos(ev);
    return [clamp(ox + cx / zoom, 0, W()), clamp(oy + cy / zoom, 0, H())];
  }

  function draw() {
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.fillStyle = "#000"; g.fillRect(0, 0, cv.width, cv.height);
    g.setTransform(zoom, 0, 0, zoom, -ox * zoom, -oy * zoom);
    g.drawImage(img, 0, 0);
    const lw = Math.max(2, cv.width / 320) / zoom;
    g.lineWidth = lw; g.font = `bold ${Math.max(14, cv.width / 40) / zoom}px sans-serif`;
    boxes.forEach((b, i) => {
      const [x, y, w, h] = b.bbox;
      g.strokeStyle = color(b.cls); g.setLineDash(i === sel ? [8 / zoom, 4 / zoom] : []);
      g.strokeRect(x, y, w, h);
      g.fillStyle = color(b.cls); g.fillText(b.cls, x + 3 / zoom, y - 4 / zoom > 12 / zoom ? y - 4 / zoom : y + 16 / zoom);
    });
    g.setLineDash([]);
    if (drag && drag.box) { const [x, y, w, h] = drag.box; g.strokeStyle = "#fff"; g.strokeRect(x, y, w, h); }
    const ul = $("boxes"); ul.replaceChildren();
    boxes.forEach((b, i) => {
      const li = EI.el("li", { class: i === sel ? "sel" : "", "data-i": i, onclick: () => { sel = i; draw(); } },
        EI.el("span", {}, b.cls), EI.el("small", {}, b.bbox.map((v) => Math.round(v)).join(", ")));
      ul.append(li);
    });
    $("good-state").hidden = !(boxes.length === 0 && $("saved").dataset.good === "1");
  }
  function hit(x, y) {
    for (let i = boxes.length - 1; i >= 0; i--) {
      const [bx, by, bw, bh] = boxes[i].bbox;
      if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) return i;
    }
    return -1;
  }

  // ---- pointer: drag draws; space-drag, right or middle drag pans; wheel zooms
  cv.addEventListener("contextmenu", (ev) => ev.preventDefault());
  cv.addEventListener("pointerdown", (ev) => {
    cv.setPointerCapture(ev.pointerId);
    if (spaceDown || ev.button === 1 || ev.button === 2 || $("pan-mode").checked) {
      const [cx, cy] = canvasPos(ev); pan = { cx, cy, ox, oy }; return;
    }
    const [x, y] = pos(ev); drag = { x, y, box: null };
  });
  cv.addEventListener("pointermove", (ev) => {
    if (pan) {
      const [cx, cy] = canvasPos(ev);
      ox = pan.ox - (cx - pan.cx) / zoom; oy = pan.oy - (cy - pan.cy) / zoom; fixView(); draw(); return;
    }
    if (!drag) return;
    const [x, y] = pos(ev);
    drag.box = [Math.min(x, drag.x), Math.min(y, drag.y), Math.abs(x - drag.x), Math.abs(y - drag.y)];
    draw();
  });
  cv.addEventListener("pointerup", (ev) => {
    if (pan) { pan = null; return; }
    if (!drag) return;
    const [x, y] = pos(ev);
    const b = drag.box; drag = null;
    if (b && b[2] > 4 / zoom && b[3] > 4 / zoom) {
      change(() => { boxes.push({ cls: $("cls").value, bbox: b.map((v) => Math.round(v * 10) / 10) }); sel = boxes.length - 1; });
      $("saved").dataset.good = "";
    } else { sel = hit(x, y); draw(); }
  });
  cv.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [cx, cy] = canvasPos(ev); zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, cx, cy);
  }, { passive: false });

  // ---- actions
  const del = () => { if (sel >= 0) change(() => { boxes.splice(sel, 1); sel = -1; }); };
  const relabel = () => { if (sel >= 0) change(() => { boxes[sel].cls = $("cls").value; }); };
  async function save(good) {
    try {
      const r = await EI.api("PUT", "/api/tech/labels/" + sha, { boxes: good ? [] : boxes, good: !!good, reason: $("reason").value || null });
      if (good && boxes.length) undo.push(snap());
      boxes = r.boxes; sel = -1;
      $("saved").dataset.good = r.good ? "1" : "";
      $("saved").textContent = r.good ? "Saved: good, no defects." : "Saved " + boxes.length + " box(es).";
      dirty(false); draw();
      EI.toast(r.good ? "Marked good (no defects)" : "Label saved");
    } catch (e) { EI.toast(e.message, true); }
  }
  $("delete").addEventListener("click", del);
  $("relabel").addEventListener("click", relabel);
  $("undo").addEventListener("click", undoOne);
  $("redo").addEventListener("click", redoOne);
  $("save").addEventListener("click", () => save(false));
  $("good").addEventListener("click", () => save(true));
  $("zoom-in").addEventListener("click", () => zoomAt(1.5, cv.width / 2, cv.height / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, cv.width / 2, cv.height / 2));
  $("zoom-fit").addEventListener("click", () => { zoom = 1; ox = oy = 0; fixView(); draw(); });

  // ---- keyboard (not while typing in a field)
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, textarea, select") && ev.key !== "Escape") return;
    const k = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
    if (k === " ") { spaceDown = true; ev.preventDefault(); return; }
    if (ctrl && (k === "z" || k === "Z")) { ev.preventDefault(); (ev.shiftKey ? redoOne : undoOne)(); return; }
    if (ctrl && (k === "y" || k === "Y")) { ev.preventDefault(); redoOne(); return; }
    if (ctrl && (k === "s" || k === "S")) { ev.preventDefault(); save(false); return; }
    if (ctrl || ev.altKey) return;
    if (k === "Delete" || k === "Backspace") { ev.preventDefault(); del(); }
    else if (k === "Escape") { sel = -1; draw(); }
    else if (k === "Tab" && boxes.length) { ev.preventDefault(); sel = (sel + (ev.shiftKey ? boxes.length - 1 : 1)) % boxes.length; draw(); }
    else if (/^[1-9]$/.test(k) && classes[+k - 1]) {
      $("cls").value = classes[+k - 1]; localStorage.setItem(CLS_KEY, $("cls").value);
      if (sel >= 0) relabel();
    }
    else if (k === "g" || k === "G") save(true);
    else if (k === "+" || k === "=") zoomAt(1.5, cv.width / 2, cv.height / 2);
    else if (k === "-") zoomAt(1 / 1.5, cv.width / 2, cv.height / 2);
    else if (k === "0") { zoom = 1; ox = oy = 0; fixView(); draw(); }
  });
  document.addEventListener("keyup", (ev) => { if (ev.key === " ") spaceDown = false; });

  img.onload = async () => {
    cv.width = img.width; cv.height = img.height; fixView();
    let lab;
    try { lab = await EI.api("GET", "/api/tech/labels/" + sha); } catch (e) { EI.toast(e.message, true); return; }
    boxes = lab.boxes || [];
    $("saved").dataset.good = lab.good ? "1" : "";
    $("saved").textContent = lab.saved ? (lab.good ? "Saved as good (no defects) by " : "Saved label by ") + lab.updated_by
      : lab.suggested ? "Suggested from what the line found: check and save."
      : "Not labelled yet: draw a box round each defect, or mark the image good.";
    draw();
  };
  img.onerror = () => EI.toast("The image could not be loaded.", true);
  img.src = "/images/" + sha + ".png";
})();
