// The built playground in headless Chromium, from file:// as a user opens it:
//   node playground/test/browser.mjs dist/playground/index.html target/playground.png
// 1. without any interaction the shipped FireLens sample is rendered: the `firelens` output,
//    its streams (logs-checkout, logs-cart) and services;
// 2. an invalid property shows the plugin's own error line, a misspelt one Fluent Bit 5.1.1's
//    (with the likely name);
// 3. partition keys show the values the S3 prefix is built from;
// 4. a config loaded from a file is previewed; the EKS preset routes the Kubernetes sample;
// 5. a phone-sized viewport has no horizontal scroll; 6. no script errors, no network.
// Screenshots (laptop and phone) are kept for people to look at. Exits non-zero on failure.
import { chromium } from "playwright-core";
import path from "node:path";
import { pathToFileURL } from "node:url";
import assert from "node:assert/strict";

const [page_path, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
let passed = 0;
async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`playground: ok: ${name}`);
  } catch (e) {
    failures.push(name);
    console.log(`playground: FAILED: ${name}: ${e.message}`);
  }
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  // Nothing may leave the page: any request other than its own files fails the test.
  const requests = [];
  page.on("request", (r) => { if (!r.url().startsWith("file://")) requests.push(r.url()); });
  await page.goto(pathToFileURL(path.resolve(page_path)).href);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20000 });

  await check("the shipped FireLens sample renders without interaction", async () => {
    const heading = await page.textContent(".output h2");
    assert.match(heading, /\[OUTPUT\] fanout 'firelens' \(Match_Regex \^\(\?!firelens-healthcheck\$\)\.\*\): datadog, firehose/);
    const streams = await page.$$eval(".pill.stream", (n) => n.map((e) => e.textContent));
    assert.deepEqual(streams, ["logs-checkout", "logs-cart"]);
    const text = await page.textContent("#results");
    assert.ok(text.includes("service checkout"), "service checkout");
    assert.ok(text.includes("service cart"), "service cart");
    assert.ok(text.includes("Firehose billed 5 KB units"), "billing totals");
    assert.equal(await page.$$eval(".error", (n) => n.length), 0);
    await page.screenshot({ path: screenshot, fullPage: true });
  });

  const shipped_config = await page.inputValue("#config");
  const config_with = (line) => shipped_config.replace(/^(\s*workers\s+2)$/m, `$1\n${line}`);

  await check("an invalid property shows the plugin's error line", async () => {
    await page.fill("#config", config_with("    flush_timeout   soon"));
    await page.waitForSelector(".output .error", { timeout: 5000 });
    assert.equal(
      await page.textContent(".output .error"),
      "[error] [output:fanout:firelens] property 'flush_timeout': invalid value 'soon': expected a duration such as 30s, 500ms, 2m or 1h",
    );
  });

  await check("a misspelt property shows Fluent Bit 5.1.1's error and the likely name", async () => {
    await page.fill("#config", config_with("    delivery_steam  logs-x"));
    // The previous check left an error on the page: wait for this one.
    await page.waitForFunction(
      () => document.querySelector(".output .error")?.textContent.includes("delivery_steam"),
      null, { timeout: 5000 });
    assert.equal(
      await page.textContent(".output .error"),
      "[error] [config] fanout: unknown configuration property 'delivery_steam' (did you mean 'delivery_stream'?): Fluent Bit 5.1.1 refuses to start; older versions ignore the key",
    );
  });

  await check("partition keys show what the S3 prefix is built from", async () => {
    await page.fill("#config", config_with("    partition_keys  service=$container_name"));
    await page.waitForSelector(".pill.prefix", { timeout: 5000 });
    const keys = await page.$$eval(".pill.prefix", (n) => n.map((e) => e.textContent));
    assert.deepEqual(keys, ["S3 prefix key service=checkout", "S3 prefix key service=cart"]);
  });

  await check("a config loaded from a file is previewed", async () => {
    await page.setInputFiles("#config-file", {
      name: "mine.conf",
      mimeType: "text/plain",
      buffer: Buffer.from("[OUTPUT]\n    Name fanout\n    Match *\n    label mine\n    destinations file\n    path /var/log/out.jsonl\n"),
    });
    await page.waitForFunction(() => document.querySelector(".output h2")?.textContent.includes("'mine'"));
    assert.ok((await page.textContent("#results")).includes("appended to /var/log/out.jsonl"));
  });

  await check("the EKS preset routes the Kubernetes sample", async () => {
    await page.selectOption("#preset", "eks");
    await page.waitForFunction(() => document.querySelector(".output h2")?.textContent.includes("'eks'"));
    const text = await page.textContent("#results");
    assert.ok(text.includes("service nightly-report"), text.slice(0, 400));
    assert.ok(text.includes("logs-nightly-report"), "stream");
  });

  await check("readable on a phone: no horizontal scroll at 390 px", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.selectOption("#preset", "firelens");
    await page.waitForSelector(".pill.stream");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-phone.png"), fullPage: false });
  });

  await check("no script errors and no network", async () => {
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, []);
  });
} finally {
  await browser.close();
}
console.log(`playground browser test: ${passed} passed, ${failures.length} failed; screenshot ${screenshot}`);
process.exit(failures.length === 0 ? 0 : 1);
