/* The anomaly tool's heat map over the HMI frame (see edge/anomaly/evidence.py).
   A finding's detail.heat: the region (rect, image pixels), rows x cols cells, one byte
   each in base64, 128 = the threshold. Cells under 0.75 of the threshold are not drawn;
   blue at 0.75, red at the threshold and above. */
"use strict";
const EIHeat = (() => {
  const FROM = 0.75;
  function colour(share) {
    const t = Math.max(0, Math.min(1, (share - FROM) / (1 - FROM)));
    const hue = 220 * (1 - t);  // 220 blue ... 0 red
    return "hsla(" + hue.toFixed(0) + ",100%,50%," + (0.35 + 0.25 * t).toFixed(2) + ")";
  }
  function cells(h) {
    const raw = atob(h.cells), out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  /* draw every finding's heat map; (ox, oy, s) place image pixels on the canvas */
  function draw(ctx, findings, ox, oy, s) {
    for (const f of findings || []) {
      const h = f.detail && f.detail.heat;
      if (!h || !h.rows || !h.cols) continue;
      let v;
      try { v = cells(h); } catch (e) { continue; }
      if (v.length !== h.rows * h.cols) continue;
      // a viewer that moved the finding's box (views side by side) moves the map with it
      const dx = f.bbox && h.bbox ? f.bbox[0] - h.bbox[0] : 0, dy = f.bbox && h.bbox ? f.bbox[1] - h.bbox[1] : 0;
      const [x, y, w, hh] = h.rect, cw = w / h.cols, ch = hh / h.rows;
      ctx.save();
      for (let r = 0; r < h.rows; r++) for (let c = 0; c < h.cols; c++) {
        const share = v[r * h.cols + c] / 128;
        if (share < FROM) continue;
        ctx.fillStyle = colour(share);
        ctx.fillRect(ox + (x + dx + c * cw) * s, oy + (y + dy + r * ch) * s, Math.ceil(cw * s), Math.ceil(ch * s));
      }
      ctx.restore();
    }
  }
  return { draw, colour };
})();
