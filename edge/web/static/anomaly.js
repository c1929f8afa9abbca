/* Teach from good images: the image browser's pick, the fit form, the fit job's page. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "ei.teach.images";
  const stored = () => { try { return JSON.parse(sessionStorage.getItem(KEY) || "[]"); } catch (e) { return []; } };

  // image browser: remember the ticked images and go to the fit form
  const teach = $("teach-selected");
  if (teach) {
    const picked = () => [...document.querySelectorAll(".pick-box:checked")].map((b) => b.value);
    const update = () => { teach.disabled = !picked().length; };
    document.addEventListener("change", update); document.addEventListener("click", () => setTimeout(update, 0));
    teach.addEventListener("click", () => {
      sessionStorage.setItem(KEY, JSON.stringify(picked()));
      location.href = "/tech/anomaly";
    });
  }

  // the fit form
  const fit = $("anomaly-fit");
  if (fit) {
    const opt = $("anomaly-picked"), shas = stored();
    opt.textContent = "the " + shas.length + " image(s) selected in the image browser";
    opt.disabled = !shas.length;
    if (!shas.length && $("anomaly-pick").selectedIndex === 0) {
      const first = [...$("anomaly-pick").options].find((o) => !o.disabled);
      if (first) first.selected = true;
    }
    fit.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(fit).entries());
      const body = { name: f.name, input: f.input, memory: +f.memory, target_frr: +f.target_frr, hold_every: +f.hold_every };
      if (f.version) body.version = f.version;
      if (f.roi) body.roi = f.roi.split(",").map(Number);
      if (f.pick) body.product = f.pick; else body.images = stored();
      $("anomaly-status").textContent = "Starting…";
      try {
        const r = await EI.api("POST", "/api/tech/anomaly/fit", body);
        sessionStorage.removeItem(KEY);
        location.href = "/tech/anomaly/" + r.job;
      } catch (e) { $("anomaly-status").textContent = e.message; EI.toast(e.message, true); }
    });
  }

  // the job's page: refresh while it runs; cancel
  const job = $("fit-job");
  if (job && job.dataset.state === "running") setTimeout(() => location.reload(), 3000);
  const cancel = $("fit-cancel");
  if (cancel) cancel.addEventListener("click", async () => {
    try { await EI.api("POST", "/api/jobs/" + cancel.dataset.job + "/cancel", {}); location.reload(); }
    catch (e) { EI.toast(e.message, true); }
  });
})();
