/* Canvas box editor: drag to draw, tap to select, set class, delete, save. Pointer events (touch and mouse). */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const sha = $("editor").dataset.sha;
  const cv = $("canvas"), g = cv.getContext("2d");
  const img = new Image();
  let boxes = [], sel = -1, drag = null;
  const COLORS = ["#ff3b30", "#ff9500", "#ffcc00", "#34c759", "#5ac8fa", "#007aff", "#af52de", "#ff2d55", "#a2845e", "#29c5ff"];
  const classes = [...$("cls").options].map((o) => o.value);
  const color = (c) => COLORS[Math.max(0, classes.indexOf(c)) % COLORS.length];

  function pos(ev) {
    const r = cv.getBoundingClientRect();
    return [(ev.clientX - r.left) * cv.width / r.width, (ev.clientY - r.top) * cv.height / r.height];
  }
  function draw() {
    g.drawImage(img, 0, 0);
    g.lineWidth = Math.max(2, cv.width / 320); g.font = `bold ${Math.max(14, cv.width / 40)}px sans-serif`;
    boxes.forEach((b, i) => {
      const [x, y, w, h] = b.bbox;
      g.strokeStyle = color(b.cls); g.setLineDash(i === sel ? [8, 4] : []);
      g.strokeRect(x, y, w, h);
      g.fillStyle = color(b.cls); g.fillText(b.cls, x + 3, y - 4 > 12 ? y - 4 : y + 16);
    });
    g.setLineDash([]);
    if (drag && drag.box) { const [x, y, w, h] = drag.box; g.strokeStyle = "#fff"; g.strokeRect(x, y, w, h); }
    const ul = $("boxes"); ul.replaceChildren();
    boxes.forEach((b, i) => {
      const li = EI.el("li", { class: i === sel ? "sel" : "", "data-i": i, onclick: () => { sel = i; draw(); } },
        EI.el("span", {}, b.cls), EI.el("small", {}, b.bbox.map((v) => Math.round(v)).join(", ")));
      ul.append(li);
    });
  }
  function hit(x, y) {
    for (let i = boxes.length - 1; i >= 0; i--) {
      const [bx, by, bw, bh] = boxes[i].bbox;
      if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) return i;
    }
    return -1;
  }
  cv.addEventListener("pointerdown", (ev) => { cv.setPointerCapture(ev.pointerId); const [x, y] = pos(ev); drag = { x, y, box: null }; });
  cv.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const [x, y] = pos(ev);
    drag.box = [Math.min(x, drag.x), Math.min(y, drag.y), Math.abs(x - drag.x), Math.abs(y - drag.y)];
    draw();
  });
  cv.addEventListener("pointerup", (ev) => {
    if (!drag) return;
    const [x, y] = pos(ev);
    if (drag.box && drag.box[2] > 4 && drag.box[3] > 4) {
      boxes.push({ cls: $("cls").value, bbox: drag.box.map((v) => Math.round(v * 10) / 10) });
      sel = boxes.length - 1;
    } else sel = hit(x, y);
    drag = null; draw();
  });
  $("delete").addEventListener("click", () => { if (sel >= 0) { boxes.splice(sel, 1); sel = -1; draw(); } });
  $("relabel").addEventListener("click", () => { if (sel >= 0) { boxes[sel].cls = $("cls").value; draw(); } });
  $("save").addEventListener("click", async () => {
    try {
      const r = await EI.api("PUT", "/api/tech/labels/" + sha, { boxes, reason: $("reason").value || null });
      boxes = r.boxes; draw();
      $("saved").textContent = "Saved " + boxes.length + " box(es)."; EI.toast("Label saved");
    } catch (e) { EI.toast(e.message, true); }
  });
  img.onload = async () => {
    cv.width = img.width; cv.height = img.height;
    const lab = await EI.api("GET", "/api/tech/labels/" + sha);
    boxes = lab.boxes || [];
    $("saved").textContent = lab.saved ? "Saved label by " + lab.updated_by : "Suggested from what the line found: check and save.";
    draw();
  };
  img.src = "/images/" + sha + ".png";
})();
