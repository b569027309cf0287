// provisiond dashboard: live timelines over server-sent events, and the
// machine page's actions through the JSON API (the browser's session
// cookie stands for the API token). Plain JavaScript, no build step.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function setState(el, state) {
    for (const c of Array.from(el.classList)) {
      if (c.startsWith("state-")) el.classList.remove(c);
    }
    el.classList.add("state-" + state);
  }

  function setPower(el, power) {
    if (!el) return;
    for (const c of Array.from(el.classList)) {
      if (c.startsWith("power-")) el.classList.remove(c);
    }
    el.classList.add("power-" + (power || "unknown"));
    el.title = "power " + (power || "not known");
  }

  function delta(ms) {
    if (ms < 0 || isNaN(ms)) return "";
    const s = ms / 1000;
    if (s < 1) return "+" + s.toFixed(3) + " s";
    if (s < 60) return "+" + s.toFixed(1) + " s";
    if (s < 3600) return "+" + Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return "+" + Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  // The machines page: every step moves its machine's bay or row.
  function overviewStep(step) {
    for (const el of $$('[data-machine="' + CSS.escape(step.machine) + '"]')) {
      setState(el, step.state);
      const st = $('[data-field="state"]', el);
      if (st) st.textContent = step.state_text;
      setPower($(".power", el), step.power);
    }
  }

  // A machine's page: the step goes on top of the timeline, and the state
  // and power at the top of the page follow.
  function machineStep(table, step) {
    const body = table.tBodies[0];
    if ($('tr[data-seq="' + step.seq + '"]', body)) return;
    const none = $("tr.none", body);
    if (none) none.remove();
    const prev = body.rows[0];
    const tr = document.createElement("tr");
    tr.dataset.seq = step.seq;
    tr.dataset.time = step.time;
    tr.dataset.type = step.type;
    tr.className = "step fresh";
    const cells = [step.clock, prev ? delta(Date.parse(step.time) - Date.parse(prev.dataset.time)) : "", step.type, step.details];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i < 3) td.className = "nowrap";
      if (i === 1) td.className += " delta";
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    const state = $("#state");
    if (state) {
      setState(state, step.state);
      state.dataset.state = step.state;
      state.textContent = step.state_text;
    }
    setPower($("#power-dot"), step.power);
    const pt = $("#power-text");
    if (pt) pt.textContent = "power " + (step.power || "not known");
  }

  function follow(el, onStep) {
    let url = el.dataset.stream;
    if (el.dataset.after) url += "?after=" + encodeURIComponent(el.dataset.after);
    const es = new EventSource(url);
    const live = $("#live-state");
    es.addEventListener("open", () => { if (live) live.textContent = "live"; document.body.dataset.live = "open"; });
    es.addEventListener("error", () => { if (live) live.textContent = "reconnecting…"; document.body.dataset.live = "reconnecting"; });
    es.addEventListener("step", (e) => onStep(JSON.parse(e.data)));
  }

  async function call(method, path, body) {
    const opt = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opt);
    const text = await resp.text();
    let data = text;
    try { data = JSON.parse(text); } catch (e) { /* plain text */ }
    if (!resp.ok) {
      let msg = (data && data.error) || text || resp.statusText;
      if (resp.status === 401) msg = "Not signed in (or the session ended): sign in with the API token. " + msg;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function machinePage(root) {
    const name = root.dataset.machine;
    const base = "/api/v1/machines/" + encodeURIComponent(name);
    const out = $("#result");
    const show = (ok, text) => {
      out.className = ok ? "ok" : "bad";
      out.textContent = text;
    };
    const busy = (form, on) => $$("button", form).forEach((b) => { if (on) { b.dataset.was = b.disabled; b.disabled = true; } else { b.disabled = b.dataset.was === "true"; } });

    const assign = $("#assign");
    assign.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = new FormData(assign);
      const req = { profile: f.get("profile") };
      if (f.get("once")) { req.once = true; req.then = f.get("then"); }
      const reboot = !!f.get("reboot");
      busy(assign, true);
      show(true, (reboot ? "reprovisioning as " : "assigning ") + req.profile + "…");
      try {
        // With "PXE next and power-cycle" the daemon does all three in one
        // operation (as the CLI's assign --reboot): assign, PXE next, cycle.
        const r = await call("POST", base + (reboot ? "/reprovision" : "/assign"), req);
        const m = reboot ? r.machine : r;
        $("#profile").textContent = m.profile + (m.once ? " once, then " + m.once.then : " (persistent)");
        const steps = ["assigned " + m.profile + (m.once ? " once (then " + m.once.then + ")" : " (persistent)")];
        if (reboot) {
          steps.push("next boot PXE" + (r.bootdev.note ? " (" + r.bootdev.note + ")" : ""));
          steps.push(r.power.note ? r.power.note : "power-cycled (" + r.power.before + " → " + r.power.state + ")");
        }
        show(true, steps.join(" · "));
      } catch (err) {
        show(false, "failed: " + err.message);
      } finally {
        busy(assign, false);
      }
    });

    const power = $("#power");
    power.addEventListener("submit", async (e) => {
      e.preventDefault();
      const action = e.submitter && e.submitter.value;
      if (!action) return;
      busy(power, true);
      show(true, "power " + action + "…");
      try {
        const p = await call("POST", base + "/power", { action: action });
        show(true, "power " + action + ": " + p.before + " → " + p.state + (p.note ? " (" + p.note + ")" : "") + " in " + p.seconds.toFixed(1) + " s");
      } catch (err) {
        show(false, "power " + action + " failed: " + err.message);
      } finally {
        busy(power, false);
      }
    });
    $("#power-read").addEventListener("click", async () => {
      show(true, "asking the BMC…");
      try {
        const p = await call("GET", base + "/power");
        show(true, "the BMC says power is " + p.state);
        setPower($("#power-dot"), p.state);
        $("#power-text").textContent = "power " + p.state + " (read now)";
      } catch (err) {
        show(false, "reading the power state failed: " + err.message);
      }
    });

    // The locator LED, through the enclosure's OA (blades only).
    const locate = $("#locate");
    if (locate) {
      locate.addEventListener("submit", async (e) => {
        e.preventDefault();
        const on = e.submitter && e.submitter.value === "1";
        busy(locate, true);
        show(true, on ? "blinking the locator LED…" : "turning the locator LED off…");
        try {
          const r = await call("POST", base + "/locate", { on: on });
          show(true, "locator LED " + r.state + " (through the " + r.via.toUpperCase() + ")");
        } catch (err) {
          show(false, "locate failed: " + err.message);
        } finally {
          busy(locate, false);
        }
      });
    }

    const bootdev = $("#bootdev");
    bootdev.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = new FormData(bootdev);
      const req = { device: f.get("device"), persistent: !!f.get("persistent"), efi: !!f.get("efi") };
      busy(bootdev, true);
      try {
        const r = await call("POST", base + "/bootdev", req);
        show(true, "next boot " + r.device + (r.persistent ? ", persistent" : ", once") + (r.efi ? ", UEFI" : "") + " in " + r.seconds.toFixed(1) + " s" +
          (r.readback ? "; BMC reports " + r.readback : "") + (r.note ? "; " + r.note : ""));
      } catch (err) {
        show(false, "setting the boot device failed: " + err.message);
      } finally {
        busy(bootdev, false);
      }
    });

    const preview = $("#script-preview");
    preview.addEventListener("toggle", async () => {
      if (!preview.open || preview.dataset.loaded) return;
      preview.dataset.loaded = "1";
      const pre = $("#script-text");
      if (pre.textContent) return;
      try {
        const resp = await fetch(preview.dataset.src, { credentials: "same-origin" });
        pre.textContent = await resp.text();
      } catch (err) {
        pre.textContent = "could not load the script: " + err.message;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const timeline = $("#timeline");
    if (timeline) follow(timeline, (step) => machineStep(timeline, step));
    const live = $("#live");
    if (live) follow(live, overviewStep);
    const machine = $("#machine");
    if (machine) machinePage(machine);
  });
})();
