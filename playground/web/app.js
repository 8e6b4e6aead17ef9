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

  function totals(output) {
    const t = output.totals;
    const box = el("div", "totals");
    const add = (value, label) => {
      const cell = el("div");
      cell.append(el("b", null, value), el("span", null, label));
      box.append(cell);
    };
    add(t.records, "records in the sample");
    if (output.datadog) add(t.datadog_requests, "Datadog requests");
    if (output.firehose) {
      add(t.firehose_calls, "Firehose PutRecordBatch calls");
      add(t.firehose_units, "Firehose billed 5 KB units");
      add(t.firehose_units_without_aggregation, "units without aggregation");
      add(t.firehose_units_with_aggregation, "units with simple_aggregation");
    }
    return box;
  }

  function datadogRoute(route, deadLetter) {
    const row = el("div", "route");
    row.append(el("span", "dest", "Datadog"));
    if (route.kind === "dropped") {
      row.append(pill("dropped: too large for any request" + kept(deadLetter), "warn"));
      return row;
    }
    row.append(
      pill("service " + (route.service ?? "-")),
      pill("source " + (route.source ?? "-")),
      pill("status " + (route.status ?? "-")),
    );
    for (const tag of (route.tags ?? "").split(",").filter(Boolean)) row.append(pill(tag));
    const payload = el("details");
    payload.append(el("summary", null, "payload (one entry of the request's JSON array)"), json(route.payload));
    row.append(payload);
    return row;
  }

  /** Where a refused record goes besides the error line: the output's dead_letter file. */
  function kept(deadLetter) {
    return deadLetter ? ", kept in " + deadLetter : "";
  }

  function firehoseRoute(route, deadLetter) {
    const row = el("div", "route");
    row.append(el("span", "dest", "Firehose"));
    if (route.kind === "not_routed") {
      row.append(pill("not routed: " + route.reason + " (reported as failed" + kept(deadLetter) + ")", "warn"));
      return row;
    }
    row.append(pill(route.stream, "stream"), pill(route.bytes + " bytes" + (route.compression !== "none" ? ", " + route.compression : "")));
    // The S3 prefix is the stream's own, or with dynamic partitioning built from these values.
    for (const [key, value] of route.partition_keys) row.append(pill(`S3 prefix key ${key}=${value}`, "prefix"));
    const payload = el("details");
    payload.append(el("summary", null, "record (Data of the Firehose record)"), el("pre", null, route.record));
    row.append(payload);
    return row;
  }

  function renderOutput(output) {
    const card = el("article", "output");
    card.append(el("h2", null, `[OUTPUT] fanout '${output.label}' (${output.matching}): ${output.destinations.join(", ")}`));
    if (output.error) {
      card.append(el("div", "error", output.error));
      card.append(el("p", "note", "Fluent Bit logs this line and does not start."));
      return card;
    }
    for (const note of output.notes) card.append(el("p", "note", "note: " + note));
    const summary = el("div", "summary");
    if (output.datadog) summary.append(el("span", null, `Datadog: POST ${output.datadog.url} (compress ${output.datadog.compress})`));
    if (output.firehose) {
      const f = output.firehose;
      summary.append(el("span", null, `Firehose: region ${f.region}${f.endpoint ? " endpoint " + f.endpoint : ""}, aggregation ${f.aggregation ? "on" : "off"}, compression ${f.compression}`));
    }
    card.append(summary, totals(output));
    output.records.forEach((record, i) => {
      const item = el("div", "record");
      item.append(el("h3", null, `record ${i + 1} (tag ${record.tag})`), json(record.record));
      if (record.datadog) item.append(datadogRoute(record.datadog, output.dead_letter));
      if (record.firehose) item.append(firehoseRoute(record.firehose, output.dead_letter));
      if (record.file !== null && record.file !== undefined) {
        const row = el("div", "route");
        row.append(el("span", "dest", "file"), pill("appended to " + (record.file || "-")));
        item.append(row);
      }
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
