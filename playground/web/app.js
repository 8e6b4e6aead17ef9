// The page: inputs in, fanout-core's preview (WebAssembly) out. Record content is untrusted:
// everything shown is set as text, never as HTML.
"use strict";

(function () {
  const wasmBytes = Uint8Array.from(atob(FANOUT_PLAYGROUND_WASM), (c) => c.charCodeAt(0));
  wasm_bindgen.initSync({ module: wasmBytes });

  const shipped = JSON.parse(wasm_bindgen.shipped());
  const $ = (id) => document.getElementById(id);
  const inputs = { config: $("config"), records: $("records"), tag: $("tag"), env: $("env") };
  const results = $("results");
  const presets = {
    firelens: { config: shipped.config, records: shipped.records, tag: shipped.tag, env: shipped.env },
    eks: {
      config: "fluent-bit-conf/eks/fluent-bit.conf",
      records: "fluent-bit-conf/samples/kubernetes.jsonl",
      tag: "app",
      env: "AWS_REGION=us-east-1\nDD_API_KEY=example",
    },
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pill(text, kind) {
    return el("span", "pill" + (kind ? " " + kind : ""), text);
  }

  function json(value) {
    return el("pre", null, JSON.stringify(value, null, 2));
  }

  // Every destination fills the same shapes (fanout-core's destinations::spec), so the page
  // renders them without knowing which destination it is.
  function totals(output) {
    const box = el("div", "totals");
    const add = (value, label) => {
      const cell = el("div");
      cell.append(el("b", null, value), el("span", null, label));
      box.append(cell);
    };
    add(output.sample_records, "records in the sample");
    for (const destination of output.destinations) {
      for (const figure of destination.totals.figures) add(figure.value, figure.label);
    }
    return box;
  }

  /** Where a refused record goes besides the error line: the output's dead_letter file. */
  function kept(deadLetter) {
    return deadLetter ? ", kept in " + deadLetter : "";
  }

  function renderRoute(route, deadLetter) {
    const row = el("div", "route");
    row.append(el("span", "dest", route.title));
    if (route.refused) {
      row.append(pill(route.refused + kept(deadLetter), "warn"));
      return row;
    }
    for (const fact of route.facts) row.append(pill(fact.text, fact.class));
    if (route.detail) {
      const detail = el("details");
      const body = route.detail.json !== null && route.detail.json !== undefined
        ? json(route.detail.json)
        : el("pre", null, route.detail.text);
      detail.append(el("summary", null, route.detail.label), body);
      row.append(detail);
    }
    return row;
  }

  function renderOutput(output) {
    const card = el("article", "output");
    const names = output.destinations.map((d) => d.name).join(", ");
    card.append(el("h2", null, `[OUTPUT] fanout '${output.label}' (${output.matching}): ${names}`));
    if (output.error) {
      card.append(el("div", "error", output.error));
      card.append(el("p", "note", "Fluent Bit logs this line and does not start."));
      return card;
    }
    for (const note of output.notes) card.append(el("p", "note", "note: " + note));
    const summary = el("div", "summary");
    for (const destination of output.destinations) {
      if (destination.summary) summary.append(el("span", null, `${destination.title}: ${destination.summary}`));
    }
    card.append(summary, totals(output));
    output.records.forEach((record, i) => {
      const item = el("div", "record");
      item.append(el("h3", null, `record ${i + 1} (tag ${record.tag})`), json(record.record));
      for (const route of record.routes) item.append(renderRoute(route, output.dead_letter));
      card.append(item);
    });
    return card;
  }

  function render() {
    const out = JSON.parse(
      wasm_bindgen.preview(
        inputs.config.value,
        JSON.stringify(shipped.files),
        inputs.records.value,
        inputs.tag.value,
        inputs.env.value,
        Date.now(),
      ),
    );
    results.replaceChildren();
    if (out.error) {
      results.append(el("div", "error", out.error));
      return;
    }
    for (const output of out.report.outputs) results.append(renderOutput(output));
  }

  let pending;
  function schedule() {
    clearTimeout(pending);
    pending = setTimeout(render, 120);
  }

  function load(name) {
    const preset = presets[name];
    inputs.config.value = shipped.files[preset.config];
    inputs.records.value = shipped.files[preset.records];
    inputs.tag.value = preset.tag;
    inputs.env.value = preset.env;
    render();
  }

  for (const input of Object.values(inputs)) input.addEventListener("input", schedule);
  $("preset").addEventListener("change", (e) => load(e.target.value));
  for (const [picker, input] of [["config-file", inputs.config], ["records-file", inputs.records]]) {
    $(picker).addEventListener("change", async (e) => {
      const file = e.target.files[0];
      if (file) {
        input.value = await file.text();
        render();
      }
    });
  }
  load("firelens");
  document.body.dataset.ready = "true";
})();
